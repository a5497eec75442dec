package idp

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v3"
	josejwt "github.com/go-jose/go-jose/v3/jwt"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/vula-eid/vula/hsm"
	"github.com/vula-eid/vula/hsm/software"
	"github.com/vula-eid/vula/internal/store"
	"github.com/vula-eid/vula/internal/store/memstore"
	"github.com/vula-eid/vula/internal/store/sqlstore"
	"github.com/vula-eid/vula/internal/testenv"
	"github.com/vula-eid/vula/internal/web"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.Cleanup()
	os.Exit(code)
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

type fixture struct {
	clock    *testClock // the ephemeral store's: moving it expires entries
	p        *Provider
	srv      *httptest.Server
	db       *sqlstore.DB
	eph      store.Ephemeral
	hook     *countHook
	accounts *Accounts
	keys     hsm.Manager // the instrumented key layer the provider signs with
	pages    *Pages
	raw      hsm.Manager // the key layer without instrumentation (the audit log's checkpoints)
}

// testClock is the system clock moved by an offset.
type testClock struct{ off atomic.Int64 }

func (c *testClock) Now() time.Time          { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *testClock) Advance(d time.Duration) { c.off.Add(int64(d)) }

// countHook counts the key layer's signatures (every token is one); while down is set it
// refuses them as an audit log whose database is down does.
type countHook struct {
	n    int
	down atomic.Bool
}

func (h *countHook) RecordSignature(context.Context, hsm.SignEvent) error {
	if h.down.Load() {
		return fmt.Errorf("audit: append: %w", store.ErrUnavailable)
	}
	h.n++
	return nil
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	return newFixtureWith(t, Config{}, false)
}

// newFixtureWith is newFixture with cfg (its Issuer is set here) and the pages' Secure cookies
// on or off.
func newFixtureWith(t testing.TB, cfg Config, secure bool) *fixture {
	t.Helper()
	return newFixtureEph(t, cfg, secure, nil)
}

// newFixtureEph is newFixtureWith with the ephemeral store wrapped by wrap (when not nil): for
// a store failure that a real one cannot be made to give at just that call.
func newFixtureEph(t testing.TB, cfg Config, secure bool, wrap func(store.Ephemeral) store.Ephemeral) *fixture {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	kf := filepath.Join(dir, "k")
	software.CreateKeyFile(kf)
	m, err := software.Open(ctx, software.Config{Dir: filepath.Join(dir, "keys"), KeyFile: kf}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	db, err := sqlstore.Open(ctx, "sqlite:"+filepath.Join(dir, "db"), quiet)
	if err != nil {
		t.Fatal(err)
	}
	hook := &countHook{}
	keys := hsm.Instrument(m, hsm.NewMetrics(prometheus.NewRegistry()), hook, time.Now)
	clock := &testClock{}
	var eph store.Ephemeral = memstore.New(clock.Now)
	if wrap != nil {
		eph = wrap(eph)
	}
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	t.Cleanup(func() { srv.Close(); db.Close(); m.Close() })
	if cfg.Issuer != "" {
		// A host name for the issuer instead of the server's address (WebAuthn needs a
		// domain); the server is still reached at its address.
		cfg.Issuer = strings.Replace(srv.URL, "127.0.0.1", cfg.Issuer, 1)
	} else {
		cfg.Issuer = srv.URL
	}
	if cfg.Secrets == nil {
		cfg.Secrets = testSealer()
	}
	p, err := New(ctx, cfg, keys, db, eph, quiet, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	p.Register(mux)
	sealer, _ := store.NewSeedSealer(make([]byte, 32))
	accounts := NewAccounts(db, eph, sealer, "Vula test", time.Now)
	r, err := web.New(quiet, false)
	if err != nil {
		t.Fatal(err)
	}
	pages := NewPages(p, accounts, r, secure)
	if strings.HasPrefix(cfg.Issuer, "http://localhost:") {
		if err := pages.EnablePasskeys(PasskeyTrust{}); err != nil {
			t.Fatal(err)
		}
	}
	pages.Register(mux)
	NewAdmin(p, accounts).Register(mux)
	return &fixture{clock: clock, p: p, srv: srv, db: db, eph: eph, hook: hook, accounts: accounts, keys: keys, pages: pages, raw: m}
}

// register stores a client and returns its secret (for client_secret_basic).
func (f *fixture) register(t testing.TB, spec ClientSpec) string {
	t.Helper()
	rec, secret, err := NewClient(spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.db.CreateClient(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
	return secret
}

func postForm(t *testing.T, u string, form url.Values, user, pass string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest("POST", u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if user != "" {
		req.SetBasicAuth(url.QueryEscape(user), url.QueryEscape(pass))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body
}

// Discovery and JWKS as a relying-party library reads them; a client_credentials token from
// golang.org/x/oauth2 verifies against the published keys; introspection and revocation
// (RFC 7662, RFC 7009) agree; a wrong secret is refused.
func TestClientCredentials(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	secret := f.register(t, ClientSpec{ID: "tax-batch", GrantTypes: []string{"client_credentials"}, Scopes: []string{"seal", "admin"}})
	prov, err := oidc.NewProvider(ctx, f.srv.URL)
	if err != nil {
		t.Fatalf("go-oidc discovery: %v", err)
	}
	var meta map[string]any
	prov.Claims(&meta)
	if meta["token_endpoint"] != f.srv.URL+"/oauth2/token" || !strings.Contains(toJSON(meta["code_challenge_methods_supported"]), "S256") ||
		strings.Contains(toJSON(meta["code_challenge_methods_supported"]), "plain") {
		t.Fatalf("discovery: %v", meta)
	}
	cc := clientcredentials.Config{ClientID: "tax-batch", ClientSecret: secret, TokenURL: prov.Endpoint().TokenURL,
		Scopes: []string{"seal"}, AuthStyle: oauth2.AuthStyleInHeader}
	tok, err := cc.Token(ctx)
	if err != nil {
		t.Fatalf("client_credentials: %v", err)
	}
	// The access token is a JWT (RFC 9068) signed by a key in the JWKS.
	keySet := oidc.NewRemoteKeySet(ctx, f.srv.URL+"/jwks.json")
	payload, err := keySet.VerifySignature(ctx, tok.AccessToken)
	if err != nil {
		t.Fatalf("access token signature: %v", err)
	}
	var claims map[string]any
	json.Unmarshal(payload, &claims)
	if claims["iss"] != f.srv.URL || claims["sub"] != "tax-batch" || claims["client_id"] != "tax-batch" || claims["scope"] != "seal" {
		t.Fatalf("access token claims: %v", claims)
	}
	if hdr := strings.Split(tok.AccessToken, ".")[0]; !strings.Contains(decodeSeg(t, hdr), `"typ":"at+jwt"`) {
		t.Errorf("access token header: %s", decodeSeg(t, hdr))
	}
	if f.hook.n == 0 {
		t.Error("the token was not signed through the audited key layer")
	}
	// Introspection (the client itself asks) says active; after revocation, not.
	intro := f.srv.URL + "/oauth2/introspect"
	if code, body := postForm(t, intro, url.Values{"token": {tok.AccessToken}}, "tax-batch", secret); code != 200 || body["active"] != true || body["sub"] != "tax-batch" {
		t.Fatalf("introspection: %d %v", code, body)
	}
	if code, _ := postForm(t, f.srv.URL+"/oauth2/revoke", url.Values{"token": {tok.AccessToken}}, "tax-batch", secret); code != 200 {
		t.Fatalf("revocation: %d", code)
	}
	if code, body := postForm(t, intro, url.Values{"token": {tok.AccessToken}}, "tax-batch", secret); code != 200 || body["active"] != false {
		t.Fatalf("introspection after revocation: %d %v", code, body)
	}
	// Refusals: a wrong secret, an unknown client, a scope the client does not have.
	for _, tc := range []struct {
		user, pass, scope, want string
		status                  int
	}{
		{"tax-batch", "wrong", "seal", "invalid_client", 401},
		{"nobody", secret, "seal", "invalid_client", 401},
		{"tax-batch", secret, "openid", "invalid_scope", 400},
	} {
		code, body := postForm(t, f.srv.URL+"/oauth2/token", url.Values{"grant_type": {"client_credentials"}, "scope": {tc.scope}}, tc.user, tc.pass)
		if code != tc.status || body["error"] != tc.want {
			t.Errorf("%s/%s: %d %v, want %d %s", tc.user, tc.scope, code, body, tc.status, tc.want)
		}
		if strings.Contains(toJSON(body), secret) {
			t.Error("the secret came back in an error")
		}
	}
}

// private_key_jwt: the client signs an assertion with its own key; the same assertion twice
// is refused (jti replay cache).
func TestPrivateKeyJWT(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	pub := jose.JSONWebKey{Key: &key.PublicKey, KeyID: "k1", Algorithm: "ES256", Use: "sig"}
	jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{pub}})
	f.register(t, ClientSpec{ID: "health", GrantTypes: []string{"client_credentials"}, Scopes: []string{"seal"}, AuthMethod: AuthPrivateKeyJWT, JWKS: jwks})
	tokenURL := f.srv.URL + "/oauth2/token"
	assertion := func(jti string) string {
		s, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: key, KeyID: "k1"}}, nil)
		raw, _ := josejwt.Signed(s).Claims(josejwt.Claims{Issuer: "health", Subject: "health", Audience: josejwt.Audience{tokenURL},
			ID: jti, IssuedAt: josejwt.NewNumericDate(time.Now()), Expiry: josejwt.NewNumericDate(time.Now().Add(time.Minute))}).CompactSerialize()
		return raw
	}
	a := assertion("jti-1")
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {"seal"}, "client_id": {"health"},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {a}}
	if code, body := postForm(t, tokenURL, form, "", ""); code != 200 || body["access_token"] == nil {
		t.Fatalf("private_key_jwt: %d %v", code, body)
	}
	// A known jti is invalid_client (RFC 7523 §3: the assertion is not valid), not fosite's own
	// jti_known.
	if code, body := postForm(t, tokenURL, form, "", ""); code != 401 || body["error"] != "invalid_client" {
		t.Fatalf("replayed assertion: %d %v", code, body)
	}
	// With x/oauth2, a fresh assertion a request.
	cc := clientcredentials.Config{ClientID: "health", TokenURL: tokenURL, Scopes: []string{"seal"}, AuthStyle: oauth2.AuthStyleInParams,
		EndpointParams: url.Values{"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {assertion("jti-2")}}}
	if _, err := cc.Token(ctx); err != nil {
		t.Fatalf("x/oauth2 with an assertion: %v", err)
	}
	// An assertion signed by another key is refused.
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	s, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: other, KeyID: "k1"}}, nil)
	forged, _ := josejwt.Signed(s).Claims(josejwt.Claims{Issuer: "health", Subject: "health", Audience: josejwt.Audience{tokenURL},
		ID: "jti-3", Expiry: josejwt.NewNumericDate(time.Now().Add(time.Minute))}).CompactSerialize()
	form.Set("client_assertion", forged)
	if code, body := postForm(t, tokenURL, form, "", ""); code != 401 || body["error"] != "invalid_client" {
		t.Fatalf("forged assertion: %d %v", code, body)
	}
}

func toJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func decodeSeg(t *testing.T, seg string) string {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// A token whose signature cannot be audited (the durable store is down) is a 503 with
// Retry-After, not fosite's 500 "The error is unrecognizable": with the client read from the
// cache, the store's failure first shows at the signature.
func TestTokenWhenAuditDown(t *testing.T) {
	f := newFixture(t)
	secret := f.register(t, ClientSpec{ID: "tax-batch", GrantTypes: []string{"client_credentials"}, Scopes: []string{"seal"}})
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {"seal"}}
	token := func() *http.Response {
		req, _ := http.NewRequest("POST", f.srv.URL+"/oauth2/token", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth("tax-batch", secret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if resp := token(); resp.StatusCode != http.StatusOK {
		t.Fatalf("token: %d", resp.StatusCode)
	}
	f.hook.down.Store(true)
	if resp := token(); resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("token with the audit log down: %d (Retry-After %q)", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	f.hook.down.Store(false)
	if resp := token(); resp.StatusCode != http.StatusOK {
		t.Fatalf("token after: %d", resp.StatusCode)
	}
}
