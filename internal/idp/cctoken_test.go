package idp

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v3"
	josejwt "github.com/go-jose/go-jose/v3/jwt"
	"github.com/ory/fosite"
	fjwt "github.com/ory/fosite/token/jwt"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/vula-eid/vula/internal/store"
	"github.com/vula-eid/vula/internal/store/rediskv"
	"github.com/vula-eid/vula/internal/store/sqlitekv"
	"github.com/vula-eid/vula/internal/testenv"
)

// keyLog is the real ephemeral store, noting the keys written to it.
type keyLog struct {
	store.Ephemeral
	mu   sync.Mutex
	keys []string
}

func (k *keyLog) Put(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	k.mu.Lock()
	k.keys = append(k.keys, key)
	k.mu.Unlock()
	return k.Ephemeral.Put(ctx, key, value, ttl)
}

func (k *keyLog) PutAll(ctx context.Context, entries ...store.Entry) error {
	for _, e := range entries {
		if err := k.Put(ctx, e.Key, e.Value, e.TTL); err != nil {
			return err
		}
	}
	return nil
}

func (k *keyLog) written() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]string(nil), k.keys...)
}

// replica is a second provider over the same stores and keys, with a server of its own.
func (f *fixture) replica(t *testing.T) (*Provider, string) {
	t.Helper()
	other, err := New(context.Background(), Config{Issuer: f.p.cfg.Issuer, Secrets: testSealer()}, f.keys, f.db, f.eph, quiet, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	other.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return other, srv.URL
}

func bearerOf(p *Provider, tok string) error {
	r := httptest.NewRequest("POST", "/api/v1/seal", nil)
	r.Header.Set("Authorization", "Bearer "+tok)
	_, err := p.Bearer(r, "seal")
	return err
}

// A client_credentials token is not stored: issuing it writes nothing to the ephemeral store.
// It introspects and passes the bearer check at another replica from its JWT alone; revoked
// by its client at one replica it is refused at once by the other (introspection and the
// bearer check), while the client's other tokens stay good; the client's deletion through the
// admin API voids every token it holds on every replica. Run over each ephemeral backend
// (memory, the embedded SQLite file, Redis): the markers are plain Put and Get with a TTL.
func TestClientCredentialsStateless(t *testing.T) {
	backends := map[string]func(t *testing.T, now func() time.Time) store.Ephemeral{
		"memory": nil,
		"sqlite": func(t *testing.T, now func() time.Time) store.Ephemeral {
			s, err := sqlitekv.Open(context.Background(), filepath.Join(t.TempDir(), "eph.db"), now)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		},
		"redis": func(t *testing.T, _ func() time.Time) store.Ephemeral {
			rd := testenv.Redis(t)
			s, err := rediskv.Open(context.Background(), rd.URL, quiet)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		},
	}
	for name, open := range backends {
		t.Run(name, func(t *testing.T) {
			var log *keyLog
			f := newFixtureEph(t, Config{}, false, func(s store.Ephemeral) store.Ephemeral {
				if open != nil {
					s = open(t, time.Now)
				}
				log = &keyLog{Ephemeral: s}
				return log
			})
			testStateless(t, f, log)
		})
	}
}

func testStateless(t *testing.T, f *fixture, log *keyLog) {
	secret := f.register(t, ClientSpec{ID: "batch", GrantTypes: []string{"client_credentials"}, Scopes: []string{"seal"}})
	tok, hdr := ccToken(t, f.srv.URL+"/oauth2/token", secret)
	if keys := log.written(); len(keys) != 0 {
		t.Fatalf("a client_credentials token wrote %q, want nothing", keys)
	}
	if hdr["typ"] != "at+jwt" {
		t.Fatalf("header %v", hdr)
	}
	other, otherURL := f.replica(t)
	if err := bearerOf(f.p, tok); err != nil {
		t.Fatalf("the fresh token: %v", err)
	}
	if err := bearerOf(other, tok); err != nil {
		t.Fatalf("the fresh token at the other replica: %v", err)
	}
	code, body := postForm(t, otherURL+"/oauth2/introspect", url.Values{"token": {tok}}, "batch", secret)
	if code != 200 || body["active"] != true || body["client_id"] != "batch" || body["sub"] != "batch" || body["scope"] != "seal" ||
		body["exp"] == nil || body["iat"] == nil || body["aud"] == nil {
		t.Fatalf("introspection at the other replica: %d %v", code, body)
	}
	keep, _ := ccToken(t, f.srv.URL+"/oauth2/token", secret)

	// Another client may not revoke it; its owner may, at the other replica.
	thief := f.register(t, ClientSpec{ID: "thief", GrantTypes: []string{"client_credentials"}, Scopes: []string{"seal"}})
	if code, body := postForm(t, otherURL+"/oauth2/revoke", url.Values{"token": {tok}}, "thief", thief); code == 200 {
		t.Fatalf("revocation by another client: %d %v", code, body)
	}
	if err := bearerOf(f.p, tok); err != nil {
		t.Fatalf("after another client's attempt: %v", err)
	}
	if code, body := postForm(t, otherURL+"/oauth2/revoke", url.Values{"token": {tok}, "token_type_hint": {"access_token"}}, "batch", secret); code != 200 {
		t.Fatalf("revocation at the other replica: %d %v", code, body)
	}
	if code, body := postForm(t, f.srv.URL+"/oauth2/introspect", url.Values{"token": {tok}}, "batch", secret); code != 200 || body["active"] != false {
		t.Fatalf("introspection after revocation: %d %v", code, body)
	}
	if err := bearerOf(f.p, tok); !errors.Is(err, ErrTokenInvalid) {
		t.Fatalf("the revoked token as a bearer: %v", err)
	}
	if code, _ := postForm(t, f.srv.URL+"/oauth2/revoke", url.Values{"token": {tok}}, "batch", secret); code != 200 {
		t.Fatalf("revoking twice: %d", code)
	}
	if err := bearerOf(f.p, keep); err != nil {
		t.Fatalf("the client's other token after one was revoked: %v", err)
	}

	// Deleted through the admin API of one replica: refused at once by the other, whose
	// client cache still holds the client.
	adminSecret := f.register(t, ClientSpec{ID: "ops", GrantTypes: []string{"client_credentials"}, Scopes: []string{"admin"}})
	code, body = postForm(t, f.srv.URL+"/oauth2/token", url.Values{"grant_type": {"client_credentials"}, "scope": {"admin"}}, "ops", adminSecret)
	if code != 200 {
		t.Fatalf("admin token: %d %v", code, body)
	}
	req, _ := http.NewRequest(http.MethodDelete, f.srv.URL+"/api/v1/admin/clients/batch", nil)
	req.Header.Set("Authorization", "Bearer "+body["access_token"].(string))
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("delete: %v %v", err, resp)
	}
	resp.Body.Close()
	if err := bearerOf(other, keep); !errors.Is(err, ErrTokenInvalid) {
		t.Fatalf("a deleted client's token at the other replica: %v", err)
	}
	// Made again under the same ID, the client does not get its old tokens back.
	f.register(t, ClientSpec{ID: "batch", GrantTypes: []string{"client_credentials"}, Scopes: []string{"seal"}})
	other.st.cache.forget("batch")
	if err := bearerOf(other, keep); !errors.Is(err, ErrTokenInvalid) {
		t.Fatalf("the old token of a client made again: %v", err)
	}
}

// Tokens that are not what they claim are refused by the bearer check and by introspection:
// expired, signed by a key that is not the provider's, altered, of another issuer, without
// typ at+jwt, without exp. Each is otherwise a well-formed stateless token of a real client.
func TestClientCredentialsForged(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	secret := f.register(t, ClientSpec{ID: "batch", GrantTypes: []string{"client_credentials"}, Scopes: []string{"seal"}})
	good, _ := ccToken(t, f.srv.URL+"/oauth2/token", secret)
	parsed, err := f.p.keys.Decode(ctx, good)
	if err != nil {
		t.Fatal(err)
	}
	sign := func(edit func(c fjwt.MapClaims, h fjwt.Mapper)) string {
		c := fjwt.MapClaims{}
		for k, v := range parsed.Claims {
			c[k] = v
		}
		c["jti"] = "forged-" + time.Now().Format(time.RFC3339Nano)
		h := &fjwt.Headers{Extra: map[string]any{"typ": "at+jwt"}}
		edit(c, h)
		raw, _, err := f.p.keys.Generate(ctx, c, h)
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	if err := bearerOf(f.p, sign(func(fjwt.MapClaims, fjwt.Mapper) {})); err != nil {
		t.Fatalf("the control token, signed the same way: %v", err)
	}
	// A foreign key, under the provider's kid.
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	signer, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: k},
		(&jose.SignerOptions{}).WithType("at+jwt").WithHeader("kid", parsed.Header["kid"]))
	foreign, err := josejwt.Signed(signer).Claims(map[string]any(parsed.Claims)).CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(good, ".")
	altered := parts[0] + "." + strings.TrimRight(b64([]byte(strings.Replace(decodeSeg(t, parts[1]), `"seal"`, `"admin"`, 1))), "=") + "." + parts[2]
	bad := map[string]string{
		"expired":        sign(func(c fjwt.MapClaims, _ fjwt.Mapper) { c["exp"] = time.Now().Add(-time.Minute).Unix() }),
		"no exp":         sign(func(c fjwt.MapClaims, _ fjwt.Mapper) { delete(c, "exp") }),
		"another issuer": sign(func(c fjwt.MapClaims, _ fjwt.Mapper) { c["iss"] = "https://evil.example" }),
		"not at+jwt":     sign(func(_ fjwt.MapClaims, h fjwt.Mapper) { h.(*fjwt.Headers).Extra["typ"] = "JWT" }),
		"another client": sign(func(c fjwt.MapClaims, _ fjwt.Mapper) { c["client_id"], c["sub"] = "ghost", "ghost" }),
		"foreign key":    foreign,
		"altered":        altered,
	}
	for name, tok := range bad {
		if err := bearerOf(f.p, tok); !errors.Is(err, ErrTokenInvalid) {
			t.Errorf("%s: bearer check %v", name, err)
		}
		if code, body := postForm(t, f.srv.URL+"/oauth2/introspect", url.Values{"token": {tok}}, "batch", secret); code != 200 || body["active"] != false {
			t.Errorf("%s: introspection %d %v", name, code, body)
		}
	}
}

// With the ephemeral store down the bearer check cannot say whether a token was revoked: 503
// (store.ErrUnavailable), never 401; and revocation is not acknowledged.
func TestClientCredentialsStoreDown(t *testing.T) {
	rd := testenv.Redis(t)
	f := newFixtureEph(t, Config{}, false, func(store.Ephemeral) store.Ephemeral {
		s, err := rediskv.Open(context.Background(), rd.URL, quiet)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
	secret := f.register(t, ClientSpec{ID: "batch", GrantTypes: []string{"client_credentials"}, Scopes: []string{"seal"}})
	tok, _ := ccToken(t, f.srv.URL+"/oauth2/token", secret)
	if err := bearerOf(f.p, tok); err != nil {
		t.Fatal(err)
	}
	rd.Stop(t)
	if err := bearerOf(f.p, tok); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("bearer check with Redis down: %v", err)
	}
	if code, body := postForm(t, f.srv.URL+"/oauth2/introspect", url.Values{"token": {tok}}, "batch", secret); code != 503 {
		t.Fatalf("introspection with Redis down: %d %v", code, body)
	}
	if code, body := postForm(t, f.srv.URL+"/oauth2/revoke", url.Values{"token": {tok}}, "batch", secret); code != 503 {
		t.Fatalf("revocation with Redis down: %d %v", code, body)
	}
	rd.Start(t)
	if err := bearerOf(f.p, tok); err != nil {
		t.Fatalf("Redis back: %v", err)
	}
}

// Rolling upgrade: a client_credentials token issued by the older version (no gty claim, its
// session stored under its own key) still passes the bearer check and introspection here, and
// its revocation here deletes its session, after which it is refused.
func TestClientCredentialsStoredBefore(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	secret := f.register(t, ClientSpec{ID: "batch", GrantTypes: []string{"client_credentials"}, Scopes: []string{"seal"}})
	c, err := f.p.st.GetClient(ctx, "batch")
	if err != nil {
		t.Fatal(err)
	}
	// The token and session as the older version made them.
	sess := newSession()
	sess.Subject, sess.ClientOnly = "batch", true
	sess.JWTClaims.Subject, sess.JWTClaims.Extra = "batch", map[string]any{"client_id": "batch"}
	sess.JWTHeader.Add("typ", "at+jwt")
	exp := time.Now().Add(10 * time.Minute).Truncate(time.Second)
	sess.SetExpiresAt("access_token", exp)
	ar := fosite.NewAccessRequest(sess)
	ar.ID, ar.Client, ar.RequestedAt = "5f0c8f0e-older", c, time.Now().UTC().Truncate(time.Second)
	ar.GrantScope("seal")
	ar.GrantAudience(f.p.resourceOf("seal"))
	claims := sess.JWTClaims.With(exp, ar.GetGrantedScopes(), ar.GetGrantedAudience()).WithDefaults(time.Now().UTC(), f.p.cfg.Issuer).
		WithScopeField(fjwt.JWTScopeFieldString)
	tok, sig, err := f.p.keys.Generate(ctx, claims.ToMapClaims(), sess.JWTHeader)
	if err != nil {
		t.Fatal(err)
	}
	b, err := encode(ar, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.eph.Put(ctx, "idp:at:"+sig, b, 10*time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := bearerOf(f.p, tok); err != nil {
		t.Fatalf("the older token: %v", err)
	}
	if code, body := postForm(t, f.srv.URL+"/oauth2/introspect", url.Values{"token": {tok}}, "batch", secret); code != 200 || body["active"] != true {
		t.Fatalf("introspection of the older token: %d %v", code, body)
	}
	if code, body := postForm(t, f.srv.URL+"/oauth2/revoke", url.Values{"token": {tok}}, "batch", secret); code != 200 {
		t.Fatalf("revocation of the older token: %d %v", code, body)
	}
	if _, err := f.eph.Get(ctx, "idp:at:"+sig); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the older token's session after revocation: %v", err)
	}
	if err := bearerOf(f.p, tok); !errors.Is(err, ErrTokenInvalid) {
		t.Fatalf("the revoked older token: %v", err)
	}
}

// The bearer check reads untrusted tokens: whatever arrives, it ends in one of its errors or
// accepts a token of the real client with its real scope, and never panics. Seeded with a good
// stateless token, its parts mangled, unsigned and hostile claims, and an opaque token's shape.
func FuzzClientToken(f *testing.F) {
	fx := newFixture(f)
	secret := fx.register(f, ClientSpec{ID: "batch", GrantTypes: []string{"client_credentials"}, Scopes: []string{"seal"}})
	cc := clientcredentials.Config{ClientID: "batch", ClientSecret: secret, TokenURL: fx.srv.URL + "/oauth2/token", Scopes: []string{"seal"}, AuthStyle: oauth2.AuthStyleInHeader}
	tok, err := cc.Token(context.Background())
	if err != nil {
		f.Fatal(err)
	}
	good := tok.AccessToken
	parts := strings.Split(good, ".")
	f.Add(good)
	f.Add(parts[0] + "." + parts[1] + ".")
	f.Add(parts[0] + ".." + parts[2])
	f.Add("eyJhbGciOiJub25lIn0." + parts[1] + ".")
	f.Add(parts[0] + "." + b64([]byte(`{"gty":"client_credentials","client_id":"batch","sub":"batch","exp":1e300,"iat":-1,"aud":[1,{}],"scope":7,"cnf":"x"}`)) + "." + parts[2])
	f.Add("ory_at_x.y")
	f.Fuzz(func(t *testing.T, raw string) {
		r := httptest.NewRequest("POST", "/api/v1/seal", nil)
		r.Header.Set("Authorization", "Bearer "+raw)
		c, err := fx.p.Bearer(r, "seal")
		switch {
		case err == nil:
			if c.ClientID != "batch" || !slices.Contains(c.Scopes, "seal") {
				t.Fatalf("accepted %q as %+v", raw, c)
			}
		case errors.Is(err, ErrTokenInvalid), errors.Is(err, ErrNoToken), errors.Is(err, ErrInsufficientScope), errors.Is(err, ErrDPoPProof):
		default:
			t.Fatalf("%q: %v", raw, err)
		}
	})
}
