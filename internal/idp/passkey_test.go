package idp

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/fxamacker/cbor/v2"
	"golang.org/x/oauth2"

	"github.com/vula-eid/vula/internal/auth"
	"github.com/vula-eid/vula/internal/idp/idptest"
	"github.com/vula-eid/vula/internal/store"
)

// softKey is a WebAuthn authenticator in software (attestation none), enough to drive the
// ceremonies from a test: it answers the options the server sent, as a browser would pass them
// on, and can be told to misbehave.
type softKey struct {
	key     *ecdsa.PrivateKey
	id      []byte
	user    []byte // the user handle it was made for
	counter uint32
	rpID    string
}

func newSoftKey(t testing.TB, rpID string) *softKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id := make([]byte, 16)
	rand.Read(id)
	return &softKey{key: k, id: id, rpID: rpID}
}

const (
	flagUP = 0x01
	flagUV = 0x04
	flagAT = 0x40
)

var b64u = base64.RawURLEncoding

func (k *softKey) authData(flags byte, attested []byte) []byte {
	h := sha256.Sum256([]byte(k.rpID))
	out := append(h[:], flags)
	out = binary.BigEndian.AppendUint32(out, k.counter)
	return append(out, attested...)
}

func clientData(typ, challenge, origin string) []byte {
	b, _ := json.Marshal(map[string]any{"type": typ, "challenge": challenge, "origin": origin, "crossOrigin": false})
	return b
}

// create answers creation options (the publicKey member the server sent).
func (k *softKey) create(t *testing.T, opts map[string]any, origin string) []byte {
	t.Helper()
	user := opts["user"].(map[string]any)
	k.user, _ = b64u.DecodeString(user["id"].(string))
	cose, err := cbor.Marshal(map[int]any{1: 2, 3: -7, -1: 1, -2: k.key.X.FillBytes(make([]byte, 32)), -3: k.key.Y.FillBytes(make([]byte, 32))})
	if err != nil {
		t.Fatal(err)
	}
	attested := make([]byte, 16) // AAGUID zero
	attested = binary.BigEndian.AppendUint16(attested, uint16(len(k.id)))
	attested = append(append(attested, k.id...), cose...)
	obj, err := cbor.Marshal(map[string]any{"fmt": "none", "attStmt": map[string]any{}, "authData": k.authData(flagUP|flagUV|flagAT, attested)})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(map[string]any{"id": b64u.EncodeToString(k.id), "rawId": b64u.EncodeToString(k.id), "type": "public-key",
		"clientExtensionResults": map[string]any{},
		"response": map[string]any{"clientDataJSON": b64u.EncodeToString(clientData("webauthn.create", opts["challenge"].(string), origin)),
			"attestationObject": b64u.EncodeToString(obj)}})
	return b
}

// get answers request options with flags (UP|UV for a proper answer), counting one use.
func (k *softKey) get(t *testing.T, opts map[string]any, origin string, flags byte) []byte {
	t.Helper()
	k.counter++
	ad := k.authData(flags, nil)
	cd := clientData("webauthn.get", opts["challenge"].(string), origin)
	h := sha256.Sum256(cd)
	d := sha256.Sum256(append(slices.Clone(ad), h[:]...))
	sig, err := ecdsa.SignASN1(rand.Reader, k.key, d[:])
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(map[string]any{"id": b64u.EncodeToString(k.id), "rawId": b64u.EncodeToString(k.id), "type": "public-key",
		"clientExtensionResults": map[string]any{},
		"response": map[string]any{"clientDataJSON": b64u.EncodeToString(cd), "authenticatorData": b64u.EncodeToString(ad),
			"signature": b64u.EncodeToString(sig), "userHandle": b64u.EncodeToString(k.user)}})
	return b
}

var dataCSRF = regexp.MustCompile(`data-csrf="([^"]+)"`)

// passkeyFixture is a provider on http://localhost:<port> (WebAuthn needs a domain) with
// passkeys on, a client, and two citizens with passwords and one-time codes.
type passkeyFixture struct {
	*fixture
	origin   string
	conf     oauth2.Config
	verifier string // the PKCE verifier of the last login begun
}

func newPasskeyFixture(t testing.TB) *passkeyFixture {
	f := newFixtureWith(t, Config{Issuer: "localhost"}, false)
	secret := f.register(t, ClientSpec{ID: "tax", RedirectURIs: []string{rpCallback}, Scopes: []string{"openid"}})
	return &passkeyFixture{fixture: f, origin: f.p.cfg.Issuer,
		conf: oauth2.Config{ClientID: "tax", ClientSecret: secret, RedirectURL: rpCallback, Scopes: []string{"openid"},
			Endpoint: oauth2.Endpoint{AuthURL: f.srv.URL + "/oauth2/auth", TokenURL: f.srv.URL + "/oauth2/token"}}}
}

// person makes a citizen with a one-time code authenticator; proofing as given.
func (f *passkeyFixture) person(t *testing.T, number, proofing string) (store.Person, string) {
	t.Helper()
	p, err := f.accounts.CreatePerson(context.Background(), store.Person{PersonalNumber: number, GivenName: "Arta", FamilyName: "Krasniqi",
		Proofing: proofing}, "correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	key, _ := f.accounts.NewTOTP(p)
	if err := f.accounts.EnrollTOTP(context.Background(), p.SubjectID, key); err != nil {
		t.Fatal(err)
	}
	return p, key.Secret()
}

// enrol logs number in at substantial in browser b and enrols k as a passkey named name.
func (f *passkeyFixture) enrol(t *testing.T, b *idptest.Browser, number, seed string, k *softKey) idptest.Response {
	t.Helper()
	_, opts := newPKCE()
	b.Login(f.conf.AuthCodeURL("state-12345678", append(opts, oauth2.SetAuthURLParam("acr_values", LoASubstantial))...), rpCallback, number, "correct horse battery", seed)
	page := b.Get("/account/passkeys")
	m := dataCSRF.FindStringSubmatch(page.Body)
	if page.Status != http.StatusOK || m == nil {
		t.Fatalf("passkeys page: %d %s", page.Status, page.Body)
	}
	h := map[string]string{"X-CSRF-Token": m[1]}
	begin := b.PostJSON("/account/passkeys/begin", h, nil)
	var o struct {
		Ceremony  string         `json:"ceremony"`
		PublicKey map[string]any `json:"publicKey"`
	}
	if err := json.Unmarshal([]byte(begin.Body), &o); err != nil || begin.Status != http.StatusOK {
		t.Fatalf("enrolment begin: %d %s", begin.Status, begin.Body)
	}
	return b.PostJSON("/account/passkeys/finish?ceremony="+o.Ceremony+"&name=key", h, k.create(t, o.PublicKey, f.origin))
}

// loginBegin opens a login asking acr and starts a passkey ceremony on it; the login page's
// flow and CSRF token come back with the options.
func (f *passkeyFixture) loginBegin(t testing.TB, b *idptest.Browser, acr string) (flow, csrf, ceremony string, opts map[string]any) {
	t.Helper()
	var pk []oauth2.AuthCodeOption
	f.verifier, pk = newPKCE()
	page := b.Get(f.conf.AuthCodeURL("state-12345678", append(pk, oauth2.SetAuthURLParam("acr_values", acr), oauth2.SetAuthURLParam("prompt", "login"))...))
	flow, csrf = page.Form.Get("flow"), page.Form.Get("csrf")
	if flow == "" {
		m := regexp.MustCompile(`data-flow="([^"]+)" data-csrf="([^"]+)"`).FindStringSubmatch(page.Body)
		if m == nil {
			t.Fatalf("login page: %d %s", page.Status, page.Body)
		}
		flow, csrf = m[1], m[2]
	}
	return flow, csrf, "" + f.begin(t, b, flow, csrf, &opts), opts
}

func (f *passkeyFixture) begin(t testing.TB, b *idptest.Browser, flow, csrf string, opts *map[string]any) string {
	t.Helper()
	r := b.PostJSON("/login/passkey/begin?flow="+flow, map[string]string{"X-CSRF-Token": csrf}, nil)
	var o struct {
		Ceremony  string         `json:"ceremony"`
		PublicKey map[string]any `json:"publicKey"`
	}
	if err := json.Unmarshal([]byte(r.Body), &o); err != nil || r.Status != http.StatusOK {
		t.Fatalf("login begin: %d %s", r.Status, r.Body)
	}
	*opts = o.PublicKey
	return o.Ceremony
}

func (f *passkeyFixture) finish(b *idptest.Browser, flow, csrf, ceremony string, answer []byte) idptest.Response {
	return b.PostJSON("/login/passkey/finish?flow="+flow+"&ceremony="+ceremony, map[string]string{"X-CSRF-Token": csrf}, answer)
}

// claimsAfter consents (when asked) from the redirect the finish gave and redeems the code; it
// returns the ID token's claims.
func (f *passkeyFixture) claimsAfter(t *testing.T, b *idptest.Browser, finish idptest.Response) map[string]any {
	t.Helper()
	var out struct{ Redirect string }
	if err := json.Unmarshal([]byte(finish.Body), &out); err != nil || finish.Status != http.StatusOK {
		t.Fatalf("finish: %d %s", finish.Status, finish.Body)
	}
	r := b.Get(out.Redirect)
	if strings.Contains(r.Body, `name="decision"`) {
		r.Form.Set("decision", "allow")
		r = b.Post("/consent", r.Form)
	}
	u, _ := url.Parse(r.URL.String())
	if u.Query().Get("code") == "" {
		t.Fatalf("no code: %d %s", r.Status, r.URL)
	}
	tok, err := f.conf.Exchange(context.Background(), u.Query().Get("code"), oauth2.VerifierOption(f.verifier))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := tok.Extra("id_token").(string)
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		t.Fatalf("id_token %q", raw)
	}
	payload, _ := b64u.DecodeString(parts[1])
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	return claims
}

func amrOf(c map[string]any) string {
	var out []string
	for _, v := range c["amr"].([]any) {
		out = append(out, v.(string))
	}
	return strings.Join(out, " ")
}

// The passkey ceremonies refuse what they must: a replayed or re-targeted assertion, a wrong
// origin, no user verification, another person's passkey as the second factor, a sign counter
// that went back, a suspended person; and a good one logs in with amr hwk user mfa at the
// lower of the person's proofing and the passkey's level.
func TestPasskeyRefusals(t *testing.T) {
	f := newPasskeyFixture(t)
	arta, artaSeed := f.person(t, "1234567890", store.ProofingHigh)
	_, milanSeed := f.person(t, "2222222222", store.ProofingSubstantial)
	artaKey, milanKey := newSoftKey(t, "localhost"), newSoftKey(t, "localhost")
	for _, p := range []struct {
		number, seed string
		k            *softKey
	}{{"1234567890", artaSeed, artaKey}, {"2222222222", milanSeed, milanKey}} {
		b := idptest.New(t, f.srv.URL)
		if r := f.enrol(t, b, p.number, p.seed, p.k); r.Status != http.StatusOK || !strings.Contains(r.Body, LoASubstantial) {
			t.Fatalf("enrolment (attestation none: substantial): %d %s", r.Status, r.Body)
		}
	}
	b := idptest.New(t, f.srv.URL)

	// A proper first-factor login: substantial (the passkey's level, below Arta's proofing).
	flow, csrf, cer, opts := f.loginBegin(t, b, LoASubstantial)
	answer := artaKey.get(t, opts, f.origin, flagUP|flagUV)
	c := f.claimsAfter(t, b, f.finish(b, flow, csrf, cer, answer))
	if c["acr"] != LoASubstantial || amrOf(c) != "hwk user mfa" || c["sub"] != arta.SubjectID {
		t.Errorf("a passkey login: acr %v amr %q sub %v", c["acr"], amrOf(c), c["sub"])
	}

	// Replayed: the same answer to the same ceremony (taken), and to a new one (other challenge).
	if r := f.finish(b, flow, csrf, cer, answer); r.Status != http.StatusBadRequest {
		t.Errorf("replayed to the same ceremony: %d %s", r.Status, r.Body)
	}
	flow, csrf, cer, _ = f.loginBegin(t, b, LoASubstantial)
	if r := f.finish(b, flow, csrf, cer, answer); r.Status != http.StatusUnauthorized {
		t.Errorf("replayed to a new ceremony: %d %s", r.Status, r.Body)
	}
	// Wrong origin.
	flow, csrf, cer, opts = f.loginBegin(t, b, LoASubstantial)
	if r := f.finish(b, flow, csrf, cer, artaKey.get(t, opts, "https://evil.example", flagUP|flagUV)); r.Status != http.StatusUnauthorized {
		t.Errorf("wrong origin: %d %s", r.Status, r.Body)
	}
	// No user verification.
	flow, csrf, cer, opts = f.loginBegin(t, b, LoASubstantial)
	if r := f.finish(b, flow, csrf, cer, artaKey.get(t, opts, f.origin, flagUP)); r.Status != http.StatusUnauthorized {
		t.Errorf("no user verification: %d %s", r.Status, r.Body)
	}
	// A sign counter that went back: a cloned authenticator.
	flow, csrf, cer, opts = f.loginBegin(t, b, LoASubstantial)
	artaKey.counter = 0
	if r := f.finish(b, flow, csrf, cer, artaKey.get(t, opts, f.origin, flagUP|flagUV)); r.Status != http.StatusUnauthorized {
		t.Errorf("counter went back: %d %s", r.Status, r.Body)
	}
	artaKey.counter = 100
	// Another person's passkey as Milan's second factor.
	pkVerifier, pk := newPKCE()
	page := b.Get(f.conf.AuthCodeURL("state-12345678", append(pk, oauth2.SetAuthURLParam("acr_values", LoASubstantial), oauth2.SetAuthURLParam("prompt", "login"))...))
	page.Form.Set("identifier", "2222222222")
	page.Form.Set("password", "correct horse battery")
	second := b.Post("/login", page.Form)
	if !strings.Contains(second.Body, `id="passkey-login"`) {
		t.Fatalf("no passkey on the second-factor page: %d %s", second.Status, second.Body)
	}
	flow, csrf = second.Form.Get("flow"), second.Form.Get("csrf")
	cer = f.begin(t, b, flow, csrf, &opts)
	if r := f.finish(b, flow, csrf, cer, artaKey.get(t, opts, f.origin, flagUP|flagUV)); r.Status != http.StatusUnauthorized {
		t.Errorf("Arta's passkey for Milan: %d %s", r.Status, r.Body)
	}
	// Milan's own passkey as his second factor works.
	cer = f.begin(t, b, flow, csrf, &opts)
	f.verifier = pkVerifier
	if c := f.claimsAfter(t, b, f.finish(b, flow, csrf, cer, milanKey.get(t, opts, f.origin, flagUP|flagUV))); c["acr"] != LoASubstantial || amrOf(c) != "pwd hwk user mfa" {
		t.Errorf("password and passkey: acr %v amr %q", c["acr"], amrOf(c))
	}

	// High is out of reach of a substantial passkey: the client hears so.
	flow, csrf, cer, opts = f.loginBegin(t, b, LoAHigh)
	r := f.finish(b, flow, csrf, cer, artaKey.get(t, opts, f.origin, flagUP|flagUV))
	var out struct{ Redirect string }
	json.Unmarshal([]byte(r.Body), &out)
	if got := b.Get(out.Redirect); got.URL.Query().Get("error") != "unmet_authentication_requirements" {
		t.Errorf("a substantial passkey for high: %d %s", got.Status, got.URL)
	}

	// Suspended: no login.
	if err := f.db.UpdatePerson(context.Background(), arta.SubjectID, func(p store.Person) (store.Person, error) {
		p.Status = store.EIDSuspended
		return p, nil
	}); err != nil {
		t.Fatal(err)
	}
	flow, csrf, cer, opts = f.loginBegin(t, b, LoASubstantial)
	if r := f.finish(b, flow, csrf, cer, artaKey.get(t, opts, f.origin, flagUP|flagUV)); r.Status != http.StatusForbidden {
		t.Errorf("suspended: %d %s", r.Status, r.Body)
	}
}

// highCredentials is a signing service whose every credential requires LoA high.
type highCredentials struct{}

func (highCredentials) ParseDetails(raw []byte) (*CredentialAuthorization, error) {
	var list []CredentialAuthorization
	if err := json.Unmarshal(raw, &list); err != nil || len(list) != 1 {
		return nil, errors.New("one credential entry")
	}
	return &list[0], nil
}
func (highCredentials) ParseParams(url.Values) (*CredentialAuthorization, error) {
	return nil, errors.New("authorization_details only")
}
func (highCredentials) HashName(string) string { return "SHA-256" }

func (highCredentials) CheckCredential(context.Context, string, string) error { return nil }
func (highCredentials) RecordAuthorization(context.Context, string, string, CredentialAuthorization, string) (int64, error) {
	return 1, nil
}
func (highCredentials) CredentialLevel(context.Context, string) (string, error) { return LoAHigh, nil }

var (
	_ auth.CredentialAuthorizer = highCredentials{}
	_ auth.CredentialLevels     = highCredentials{}
)

// A credential that requires high steps the login up: the page offers the passkey only, and
// a provider with nothing reaching high refuses the authorization at once.
func TestCredentialRequiresHigh(t *testing.T) {
	details := `[{"type":"credential","credentialID":"c1","hashAlgorithmOID":"2.16.840.1.101.3.4.2.1","documentDigests":[{"hash":"` +
		base64.StdEncoding.EncodeToString(make([]byte, 32)) + `","label":"a"}]}]`
	for _, passkeys := range []bool{true, false} {
		cfg := Config{Credentials: highCredentials{}}
		if passkeys {
			cfg.Issuer = "localhost"
		}
		f := newFixtureWith(t, cfg, false)
		secret := f.register(t, ClientSpec{ID: "app", RedirectURIs: []string{rpCallback}, Scopes: []string{"openid", CredentialScope}})
		conf := oauth2.Config{ClientID: "app", ClientSecret: secret, RedirectURL: rpCallback, Scopes: []string{"openid"},
			Endpoint: oauth2.Endpoint{AuthURL: f.srv.URL + "/oauth2/auth"}}
		_, pk := newPKCE()
		r := idptest.New(t, f.srv.URL).Get(conf.AuthCodeURL("state-12345678", append(pk, oauth2.SetAuthURLParam("authorization_details", details))...))
		if passkeys {
			if r.Status != http.StatusOK || !strings.Contains(r.Body, `id="passkey-login"`) || strings.Contains(r.Body, `name="password"`) {
				t.Errorf("with passkeys: %d %s", r.Status, r.Body)
			}
		} else if r.URL.Query().Get("error") != "unmet_authentication_requirements" {
			t.Errorf("without passkeys: %d %s", r.Status, r.URL)
		}
	}
}

// FuzzPasskeyFinish: whatever a browser posts as the answer to a login ceremony is refused
// with a 4xx (or accepted when it is a good answer), never a 500; seeded with a good answer
// and a few broken ones.
func FuzzPasskeyFinish(f *testing.F) {
	pf := newPasskeyFixture(f)
	k := newSoftKey(f, "localhost")
	good, _ := json.Marshal(map[string]any{"id": b64u.EncodeToString(k.id), "rawId": b64u.EncodeToString(k.id), "type": "public-key",
		"response": map[string]any{"clientDataJSON": "e30", "authenticatorData": "AAAA", "signature": "AAAA"}})
	for _, seed := range [][]byte{good, []byte("{}"), []byte("null"), []byte(`{"id":"","rawId":"","type":"public-key","response":{}}`), []byte("\x00")} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		b := idptest.New(t, pf.srv.URL)
		flow, csrf, cer, _ := pf.loginBegin(t, b, LoASubstantial)
		r := pf.finish(b, flow, csrf, cer, body)
		if r.Status >= 500 || r.Status == http.StatusOK {
			t.Fatalf("answer %q: %d %s", body, r.Status, r.Body)
		}
	})
}
