package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v3"
)

var offered = []string{"eu.europa.ec.eudi.pid.1.dc+sd-jwt", "eu.europa.ec.eudi.pid.1.mso_mdoc"}

const walletIssuer = "https://vula.example"

func TestParseOpenIDCredentialDetails(t *testing.T) {
	ids, err := ParseOpenIDCredentialDetails(`[{"type":"openid_credential","credential_configuration_id":"`+offered[1]+`"},`+
		`{"type":"openid_credential","credential_configuration_id":"`+offered[0]+`","locations":["`+walletIssuer+`"]},`+
		`{"type":"openid_credential","credential_configuration_id":"`+offered[1]+`"}]`, offered, walletIssuer)
	if err != nil || !slices.Equal(ids, []string{offered[1], offered[0]}) {
		t.Fatalf("%v %v", ids, err)
	}
	for _, raw := range []string{``, `null`, `[]`, `{}`, `[1]`, `[{"type":"credential"}]`, `[{"type":"openid_credential"}]`,
		`[{"type":"openid_credential","credential_configuration_id":"x"}]`,
		`[{"type":"openid_credential","credential_configuration_id":"` + offered[0] + `","locations":"` + walletIssuer + `"}]`,
		`[{"type":"openid_credential","credential_configuration_id":"` + offered[0] + `","locations":["https://other.example"]}]`} {
		if _, err := ParseOpenIDCredentialDetails(raw, offered, walletIssuer); !errors.Is(err, ErrDetails) {
			t.Errorf("%s: %v", raw, err)
		}
	}
	if !IsOpenIDCredentialDetails(`[{"type":"x"},{"type":"openid_credential"}]`) || IsOpenIDCredentialDetails(`[{"type":"credential"}]`) ||
		IsOpenIDCredentialDetails(`{`) {
		t.Fatal("IsOpenIDCredentialDetails")
	}
}

// authorization_details come from any client: whatever they hold, the parser answers ids that
// are all offered, or ErrDetails.
func FuzzParseOpenIDCredentialDetails(f *testing.F) {
	f.Add(`[{"type":"openid_credential","credential_configuration_id":"` + offered[0] + `"}]`)
	f.Add(`[{"type":"openid_credential","credential_configuration_id":"` + offered[1] + `","locations":["` + walletIssuer + `"]}]`)
	f.Add(`[{"type":"credential","credentialID":"c"}]`)
	f.Add(`[{}]`)
	f.Fuzz(func(t *testing.T, raw string) {
		IsOpenIDCredentialDetails(raw)
		ids, err := ParseOpenIDCredentialDetails(raw, offered, walletIssuer)
		if err != nil {
			if !errors.Is(err, ErrDetails) {
				t.Fatalf("error %v is not ErrDetails", err)
			}
			return
		}
		if len(ids) == 0 {
			t.Fatal("no ids and no error")
		}
		for _, id := range ids {
			if !slices.Contains(offered, id) {
				t.Fatalf("id %q was not offered", id)
			}
		}
	})
}

// seenSet is a replay cache in memory, for the proof checker's own tests.
type seenSet struct {
	mu   sync.Mutex
	keys map[string]bool
}

func (s *seenSet) SeenOnce(_ context.Context, key string, _ time.Duration) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.keys == nil {
		s.keys = map[string]bool{}
	}
	first := !s.keys[key]
	s.keys[key] = true
	return first, nil
}

func dpopFor(t testing.TB, k *ecdsa.PrivateKey, claims map[string]any) string {
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: k},
		(&jose.SignerOptions{}).WithType("dpop+jwt").WithHeader("jwk", jose.JSONWebKey{Key: k.Public()}))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(claims)
	o, _ := s.Sign(b)
	out, _ := o.CompactSerialize()
	return out
}

// A DPoP header is untrusted input: whatever it holds, the checker answers a thumbprint only
// for a proof that verifies, else a DPoPError (or the nonce error), never a panic.
func FuzzCheckDPoP(f *testing.F) {
	now := time.Unix(1_800_000_000, 0)
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	good := dpopFor(f, k, map[string]any{"jti": "j1", "htm": "POST", "htu": walletIssuer + "/pid/token", "iat": now.Unix()})
	f.Add(good)
	f.Add(dpopFor(f, k, map[string]any{"jti": "j2", "htm": "GET", "htu": walletIssuer + "/pid/token", "iat": now.Unix()}))
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	f.Add("a.b.c")
	f.Fuzz(func(t *testing.T, proof string) {
		r := httptest.NewRequest("POST", "/pid/token", nil)
		r.Header.Set("DPoP", proof)
		jkt, err := CheckDPoP(context.Background(), r, DPoPWant{Method: "POST", URL: walletIssuer + "/pid/token", ReplayPrefix: "t:"}, &seenSet{}, now)
		var bad *DPoPError
		switch {
		case err == nil && len(jkt) != 43:
			t.Fatalf("accepted with thumbprint %q", jkt)
		case err != nil && !errors.As(err, &bad):
			t.Fatalf("error %v is not a DPoPError", err)
		}
	})
}

func TestCheckDPoP(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	want := DPoPWant{Method: "POST", URL: walletIssuer + "/pid/credential", Token: "tok", ReplayPrefix: "t:",
		Nonce: func(_ context.Context, n string) (bool, error) { return n == "n1", nil }}
	sum := sha256.Sum256([]byte("tok"))
	ath := base64.RawURLEncoding.EncodeToString(sum[:])
	seen := &seenSet{}
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	check := func(claims map[string]any) (string, error) {
		r := httptest.NewRequest("POST", "/pid/credential", nil)
		r.Header.Set("DPoP", dpopFor(t, k, claims))
		return CheckDPoP(context.Background(), r, want, seen, now)
	}
	base := func(edit func(map[string]any)) map[string]any {
		c := map[string]any{"jti": time.Now().String(), "htm": "POST", "htu": walletIssuer + "/pid/credential?x=1", "iat": now.Unix(), "ath": ath, "nonce": "n1"}
		if edit != nil {
			edit(c)
		}
		return c
	}
	if jkt, err := check(base(nil)); err != nil || len(jkt) != 43 {
		t.Fatalf("a good proof: %q %v", jkt, err)
	}
	for name, edit := range map[string]func(map[string]any){
		"no ath":      func(c map[string]any) { delete(c, "ath") },
		"wrong ath":   func(c map[string]any) { c["ath"] = "x" },
		"no jti":      func(c map[string]any) { delete(c, "jti") },
		"other URL":   func(c map[string]any) { c["htu"] = walletIssuer + "/pid/token" },
		"other verb":  func(c map[string]any) { c["htm"] = "GET" },
		"old":         func(c map[string]any) { c["iat"] = now.Add(-time.Hour).Unix() },
		"future":      func(c map[string]any) { c["iat"] = now.Add(time.Hour).Unix() },
		"replayed":    func(c map[string]any) { c["jti"] = "same" },
		"wrong nonce": func(c map[string]any) { c["nonce"] = "n2" },
	} {
		if name == "replayed" {
			if _, err := check(base(edit)); err != nil {
				t.Fatalf("the first use: %v", err)
			}
		}
		_, err := check(base(edit))
		var bad *DPoPError
		if name == "wrong nonce" {
			if !errors.Is(err, ErrUseDPoPNonce) {
				t.Errorf("%s: %v", name, err)
			}
		} else if !errors.As(err, &bad) {
			t.Errorf("%s: %v", name, err)
		}
	}
}
