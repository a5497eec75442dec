package idp

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v3"
	josejwt "github.com/go-jose/go-jose/v3/jwt"
	"golang.org/x/oauth2"

	"github.com/vula-eid/vula/internal/idp/idptest"
)

// Regression tests for what a certified relying party found (issue #15).

// pkjwtClient is a private_key_jwt client's key and a maker of its assertions.
type pkjwtClient struct {
	id  string
	key *ecdsa.PrivateKey
}

func newPKJWTClient(t *testing.T, f *fixture, spec ClientSpec) *pkjwtClient {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k1", Algorithm: "ES256", Use: "sig"}}})
	spec.AuthMethod, spec.JWKS = AuthPrivateKeyJWT, jwks
	f.register(t, spec)
	return &pkjwtClient{id: spec.ID, key: key}
}

// assertion signs claims (iss and sub default to the client, jti to a fresh one).
func (c *pkjwtClient) assertion(claims josejwt.Claims) string {
	if claims.Issuer == "" {
		claims.Issuer = c.id
	}
	if claims.Subject == "" {
		claims.Subject = c.id
	}
	if claims.ID == "" {
		claims.ID = randomID()
	}
	s, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: c.key, KeyID: "k1"}}, nil)
	raw, _ := josejwt.Signed(s).Claims(claims).CompactSerialize()
	return raw
}

// form adds the assertion parameters to v.
func (c *pkjwtClient) form(v url.Values, assertion string) url.Values {
	out := url.Values{"client_assertion_type": {jwtBearer}, "client_assertion": {assertion}}
	for k, vs := range v {
		out[k] = vs
	}
	return out
}

func inAMinute() *josejwt.NumericDate { return josejwt.NewNumericDate(time.Now().Add(time.Minute)) }

// A citizen's tokens for client tax (client_secret_basic), through a real login.
func (f *fixture) citizenTokens(t *testing.T, clientID, secret string) *oauth2.Token {
	t.Helper()
	conf := oauth2.Config{ClientID: clientID, ClientSecret: secret, RedirectURL: rpCallback, Scopes: []string{"openid", "profile"},
		Endpoint: oauth2.Endpoint{AuthURL: f.srv.URL + "/oauth2/auth", TokenURL: f.srv.URL + "/oauth2/token"}}
	verifier, opts := newPKCE()
	b := idptest.New(t, f.srv.URL)
	cb := b.Login(conf.AuthCodeURL("state-12345678", opts...), rpCallback, "1234567890", "correct horse battery", "")
	tok, err := conf.Exchange(context.Background(), cb.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("code exchange: %v", err)
	}
	return tok
}

func postBearer(t *testing.T, u string, form url.Values, bearer string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest("POST", u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "Bearer "+bearer)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body
}

// RFC 7662 §2.1 and §4: introspection needs an authenticated client, and a client learns only
// about its own tokens unless it is registered as a resource server. Before, any access token
// sent as Bearer introspected another person's refresh token (active:true, sub, scope).
func TestIntrospectionIsAuthorized(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	taxSecret := f.register(t, ClientSpec{ID: "tax", RedirectURIs: []string{rpCallback}})
	batchSecret := f.register(t, ClientSpec{ID: "batch", GrantTypes: []string{"client_credentials"}, Scopes: []string{"seal"}})
	rsSecret := f.register(t, ClientSpec{ID: "rs", GrantTypes: []string{"client_credentials"}, Scopes: []string{"seal"}, Introspection: true})
	f.register(t, ClientSpec{ID: "app", AuthMethod: AuthNone, RedirectURIs: []string{rpCallback}})
	pk := newPKJWTClient(t, f, ClientSpec{ID: "health", GrantTypes: []string{"client_credentials"}, Scopes: []string{"seal"}})
	f.citizen(t, false)
	tok := f.citizenTokens(t, "tax", taxSecret)
	introspect := f.srv.URL + "/oauth2/introspect"

	code, body := postForm(t, f.srv.URL+"/oauth2/token", url.Values{"grant_type": {"client_credentials"}, "scope": {"seal"}}, "batch", batchSecret)
	if code != 200 {
		t.Fatalf("batch token: %d %v", code, body)
	}
	batchAT := body["access_token"].(string)
	_ = ctx

	// Another client's access token as Bearer: not client authentication.
	code, body = postBearer(t, introspect, url.Values{"token": {tok.RefreshToken}}, batchAT)
	if code != 401 || body["error"] != "invalid_client" || body["sub"] != nil {
		t.Fatalf("bearer caller: %d %v", code, body)
	}
	// An authenticated client that is not the token's and no resource server: inactive.
	for _, tt := range []string{tok.RefreshToken, tok.AccessToken} {
		code, body = postForm(t, introspect, url.Values{"token": {tt}}, "batch", batchSecret)
		if code != 200 || body["active"] != false || len(body) != 1 {
			t.Fatalf("unrelated client: %d %v", code, body)
		}
	}
	// The token's own client, and a resource server, learn about it.
	code, body = postForm(t, introspect, url.Values{"token": {tok.RefreshToken}}, "tax", taxSecret)
	if code != 200 || body["active"] != true || body["client_id"] != "tax" {
		t.Fatalf("own client: %d %v", code, body)
	}
	code, body = postForm(t, introspect, url.Values{"token": {tok.AccessToken}}, "rs", rsSecret)
	if code != 200 || body["active"] != true || body["client_id"] != "tax" {
		t.Fatalf("resource server: %d %v", code, body)
	}
	// A public client cannot authenticate, so it cannot introspect.
	code, body = postForm(t, introspect, url.Values{"token": {tok.AccessToken}, "client_id": {"app"}}, "", "")
	if code != 401 || body["error"] != "invalid_client" {
		t.Fatalf("public client: %d %v", code, body)
	}
	// No credentials at all.
	code, body = postForm(t, introspect, url.Values{"token": {tok.AccessToken}}, "", "")
	if code != 401 || body["error"] != "invalid_client" {
		t.Fatalf("anonymous: %d %v", code, body)
	}
	// private_key_jwt at introspection (discovery lists it), aud the introspection endpoint; the
	// client's own token is active.
	code, body = postForm(t, f.srv.URL+"/oauth2/token", pk.form(url.Values{"grant_type": {"client_credentials"}, "scope": {"seal"}},
		pk.assertion(josejwt.Claims{Audience: josejwt.Audience{f.srv.URL}, Expiry: inAMinute()})), "", "")
	if code != 200 {
		t.Fatalf("health token: %d %v", code, body)
	}
	code, body = postForm(t, introspect, pk.form(url.Values{"token": {body["access_token"].(string)}},
		pk.assertion(josejwt.Claims{Audience: josejwt.Audience{introspect}, Expiry: inAMinute()})), "", "")
	if code != 200 || body["active"] != true || body["client_id"] != "health" {
		t.Fatalf("private_key_jwt introspection: %d %v", code, body)
	}
}

// Client assertions as certified relying parties send them (aud the issuer, OIDC Core §9 and
// FAPI 2.0), and every bad one 401 invalid_client — before, an expired one was a 500 at the
// token endpoint and a 200 at revocation, and a replayed one the non-standard jti_known.
func TestClientAssertions(t *testing.T) {
	f := newFixture(t)
	pk := newPKJWTClient(t, f, ClientSpec{ID: "health", GrantTypes: []string{"client_credentials"}, Scopes: []string{"seal"}})
	tokenURL, revokeURL := f.srv.URL+"/oauth2/token", f.srv.URL+"/oauth2/revoke"
	grant := url.Values{"grant_type": {"client_credentials"}, "scope": {"seal"}}
	now := time.Now()

	var token string
	for _, aud := range []string{f.srv.URL, tokenURL} {
		code, body := postForm(t, tokenURL, pk.form(grant, pk.assertion(josejwt.Claims{Audience: josejwt.Audience{aud}, Expiry: inAMinute()})), "", "")
		if code != 200 {
			t.Fatalf("aud %s: %d %v", aud, code, body)
		}
		token = body["access_token"].(string)
	}
	replayed := pk.assertion(josejwt.Claims{Audience: josejwt.Audience{f.srv.URL}, Expiry: inAMinute()})
	if code, body := postForm(t, tokenURL, pk.form(grant, replayed), "", ""); code != 200 {
		t.Fatalf("first use: %d %v", code, body)
	}

	for name, a := range map[string]string{
		"expired":         pk.assertion(josejwt.Claims{Audience: josejwt.Audience{f.srv.URL}, Expiry: josejwt.NewNumericDate(now.Add(-time.Hour))}),
		"not yet valid":   pk.assertion(josejwt.Claims{Audience: josejwt.Audience{f.srv.URL}, Expiry: josejwt.NewNumericDate(now.Add(2 * time.Hour)), NotBefore: josejwt.NewNumericDate(now.Add(time.Hour))}),
		"no exp":          pk.assertion(josejwt.Claims{Audience: josejwt.Audience{f.srv.URL}}),
		"exp a day away":  pk.assertion(josejwt.Claims{Audience: josejwt.Audience{f.srv.URL}, Expiry: josejwt.NewNumericDate(now.Add(24 * time.Hour))}),
		"another aud":     pk.assertion(josejwt.Claims{Audience: josejwt.Audience{"https://elsewhere.example"}, Expiry: inAMinute()}),
		"another issuer":  pk.assertion(josejwt.Claims{Issuer: "tax", Audience: josejwt.Audience{f.srv.URL}, Expiry: inAMinute()}),
		"replayed jti":    replayed,
		"unsigned (none)": unsignedJWT(map[string]any{"iss": "health", "sub": "health", "aud": f.srv.URL, "jti": "x", "exp": now.Add(time.Minute).Unix()}),
		"garbage":         "not.a.jwt",
	} {
		code, body := postForm(t, tokenURL, pk.form(grant, a), "", "")
		if code != 401 || body["error"] != "invalid_client" {
			t.Errorf("%s at the token endpoint: %d %v", name, code, body)
		}
		code, body = postForm(t, revokeURL, pk.form(url.Values{"token": {token}}, a), "", "")
		if code != 401 || body["error"] != "invalid_client" {
			t.Errorf("%s at revocation: %d %v", name, code, body)
		}
	}
	// A good assertion at revocation, aud the revocation endpoint.
	code, body := postForm(t, revokeURL, pk.form(url.Values{"token": {token}}, pk.assertion(josejwt.Claims{Audience: josejwt.Audience{revokeURL}, Expiry: inAMinute()})), "", "")
	if code != 200 {
		t.Fatalf("revocation with private_key_jwt: %d %v", code, body)
	}
}

// unsignedJWT is a JWT with alg none.
func unsignedJWT(claims map[string]any) string {
	h, _ := json.Marshal(map[string]string{"alg": "none", "typ": "JWT"})
	c, _ := json.Marshal(claims)
	return b64(h) + "." + b64(c) + "."
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
