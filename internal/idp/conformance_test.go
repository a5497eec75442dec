package idp

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
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
	code, _, body := send(t, "POST", u, form, map[string]string{"Authorization": "Bearer " + bearer}, "", "")
	return code, body
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

// authCodeURL is an authorization request of client tax with PKCE and extra parameters.
func (f *fixture) authCodeURL(state string, extra map[string]string) (string, string) {
	verifier, opts := newPKCE()
	conf := oauth2.Config{ClientID: "tax", RedirectURL: rpCallback, Scopes: []string{"openid", "profile"},
		Endpoint: oauth2.Endpoint{AuthURL: f.srv.URL + "/oauth2/auth", TokenURL: f.srv.URL + "/oauth2/token"}}
	for k, v := range extra {
		opts = append(opts, oauth2.SetAuthURLParam(k, v))
	}
	u := conf.AuthCodeURL(state, opts...)
	if state == "" {
		// x/oauth2 always sends state; a client without one sends none at all.
		pu, _ := url.Parse(u)
		q := pu.Query()
		q.Del("state")
		pu.RawQuery = q.Encode()
		u = pu.String()
	}
	return u, verifier
}

// max_age (OpenID Connect Core §3.1.2.1): a single sign-on login older than max_age, or any with
// max_age=0, is not reused — the login page comes again and the code carries the new auth_time.
// Before, the old session was reused silently.
func TestMaxAge(t *testing.T) {
	f := newFixture(t)
	secret := f.register(t, ClientSpec{ID: "tax", RedirectURIs: []string{rpCallback}})
	f.citizen(t, false)
	b := idptest.New(t, f.srv.URL)
	u, _ := f.authCodeURL("state-12345678", nil)
	// The first login two minutes ago (fosite refuses an auth_time in the future, so the clock
	// goes back for it rather than forward after it).
	f.p.now = func() time.Time { return time.Now().Add(-2 * time.Minute) }
	b.Login(u, rpCallback, "1234567890", "correct horse battery", "")
	f.p.now = time.Now

	// Young enough: single sign-on.
	u, _ = f.authCodeURL("state-12345678", map[string]string{"max_age": "3600"})
	if r := b.Get(u); r.Status != http.StatusSeeOther || !strings.HasPrefix(r.URL.String(), rpCallback) {
		t.Fatalf("max_age 3600 right after a login: %d %s", r.Status, r.URL)
	}
	// max_age=0: a login now.
	u, _ = f.authCodeURL("state-12345678", map[string]string{"max_age": "0"})
	if r := b.Get(u); r.Status != 200 || !strings.Contains(r.Body, `name="password"`) {
		t.Fatalf("max_age 0 with a live session: %d %s", r.Status, r.URL)
	}
	// Older than max_age: a login now; prompt=none cannot have one.
	u, _ = f.authCodeURL("state-12345678", map[string]string{"max_age": "60", "prompt": "none"})
	if r := b.Get(u); r.Status != http.StatusSeeOther || r.URL.Query().Get("error") != "login_required" {
		t.Fatalf("max_age elapsed, prompt=none: %d %s", r.Status, r.URL)
	}
	u, verifier := f.authCodeURL("state-12345678", map[string]string{"max_age": "60"})
	loginFrom := time.Now().Truncate(time.Second)
	cb := b.Login(u, rpCallback, "1234567890", "correct horse battery", "")
	loginTo := time.Now()
	conf := oauth2.Config{ClientID: "tax", ClientSecret: secret, RedirectURL: rpCallback,
		Endpoint: oauth2.Endpoint{TokenURL: f.srv.URL + "/oauth2/token"}}
	tok, err := conf.Exchange(context.Background(), cb.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	var claims struct {
		AuthTime int64 `json:"auth_time"`
	}
	raw, _ := tok.Extra("id_token").(string)
	parts := strings.Split(raw, ".")
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	json.Unmarshal(payload, &claims)
	if at := time.Unix(claims.AuthTime, 0); at.Before(loginFrom) || at.After(loginTo) {
		t.Fatalf("auth_time %v, the login was between %v and %v", at, loginFrom, loginTo)
	}
	// A max_age that is no number is refused.
	u, _ = f.authCodeURL("state-12345678", map[string]string{"max_age": "soon"})
	if r := b.Get(u); r.Status != http.StatusSeeOther || r.URL.Query().Get("error") != "invalid_request" {
		t.Fatalf("max_age=soon: %d %s", r.Status, r.URL)
	}
}

// state is optional (RFC 6749 §4.1.1); a short one, when sent, is refused. Every response to
// the client carries iss (RFC 9207), errors too. ui_locales picks the page language before
// Accept-Language, and login_hint fills in the identifier.
func TestAuthorizeParameters(t *testing.T) {
	f := newFixture(t)
	secret := f.register(t, ClientSpec{ID: "tax", RedirectURIs: []string{rpCallback}})
	f.citizen(t, false)
	b := idptest.New(t, f.srv.URL)

	u, verifier := f.authCodeURL("", map[string]string{"ui_locales": "sq-AL en", "login_hint": "1234567890"})
	r := b.Get(u)
	if r.Status != 200 || !strings.Contains(r.Body, `lang="sq"`) || !strings.Contains(r.Body, `value="1234567890"`) {
		t.Fatalf("login page for ui_locales=sq, login_hint: %d %s\n%s", r.Status, r.URL, r.Body)
	}
	r.Form.Set("identifier", "1234567890")
	r.Form.Set("password", "correct horse battery")
	r = b.Post("/login", r.Form)
	if strings.Contains(r.Body, `name="decision"`) {
		r.Form.Set("decision", "allow")
		r = b.Post("/consent", r.Form)
	}
	if r.Status != http.StatusSeeOther || !strings.HasPrefix(r.URL.String(), rpCallback) {
		t.Fatalf("no state: %d %s", r.Status, r.URL)
	}
	if r.URL.Query().Has("state") || r.URL.Query().Get("iss") != f.srv.URL {
		t.Fatalf("callback without state: %s", r.URL)
	}
	conf := oauth2.Config{ClientID: "tax", ClientSecret: secret, RedirectURL: rpCallback, Endpoint: oauth2.Endpoint{TokenURL: f.srv.URL + "/oauth2/token"}}
	if _, err := conf.Exchange(context.Background(), r.URL.Query().Get("code"), oauth2.VerifierOption(verifier)); err != nil {
		t.Fatalf("code of a request without state: %v", err)
	}

	u, _ = f.authCodeURL("abc", nil)
	r = b.Get(u)
	if r.Status != http.StatusSeeOther || r.URL.Query().Get("error") != "invalid_state" || r.URL.Query().Get("iss") != f.srv.URL {
		t.Fatalf("short state: %d %s", r.Status, r.URL)
	}

	var meta map[string]any
	resp, err := http.Get(f.srv.URL + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(resp.Body).Decode(&meta)
	resp.Body.Close()
	if meta["authorization_response_iss_parameter_supported"] != true {
		t.Fatalf("discovery: %v", meta)
	}
}

// requestObject signs claims as client c's request object.
func (c *pkjwtClient) requestObject(claims map[string]any) string {
	s, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: c.key, KeyID: "k1"}},
		(&jose.SignerOptions{}).WithType("oauth-authz-req+jwt"))
	raw, _ := josejwt.Signed(s).Claims(claims).CompactSerialize()
	return raw
}

// JAR (RFC 9101): a request object signed by the client's registered key is obeyed, and only
// its parameters count; an unsigned one (alg none), one signed by another key, for another
// audience or expired is refused with invalid_request_object and none of its parameters is
// used (before, an alg=none object's state came back); request_uri is only a PAR reference
// (fosite would have fetched a registered URL). The same objects at PAR.
func TestRequestObjects(t *testing.T) {
	f := newFixture(t)
	pk := newPKJWTClient(t, f, ClientSpec{ID: "tax", RedirectURIs: []string{rpCallback}})
	other := &pkjwtClient{id: "tax"}
	other.key, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	f.citizen(t, false)
	verifier := oauth2.GenerateVerifier()
	base := func(state string) map[string]any {
		return map[string]any{"iss": "tax", "aud": f.srv.URL, "exp": time.Now().Add(5 * time.Minute).Unix(), "client_id": "tax",
			"response_type": "code", "redirect_uri": rpCallback, "scope": "openid profile", "state": state,
			"code_challenge": oauth2.S256ChallengeFromVerifier(verifier), "code_challenge_method": "S256", "ui_locales": "sr"}
	}
	authorize := func(q url.Values) idptest.Response {
		return idptest.New(t, f.srv.URL).Get(f.srv.URL + "/oauth2/auth?" + q.Encode())
	}

	// A good one: its state and ui_locales count, the query's state does not.
	q := url.Values{"client_id": {"tax"}, "request": {pk.requestObject(base("from-the-object"))}, "response_type": {"code"},
		"scope": {"openid"}, "state": {"from-the-query"}, "redirect_uri": {rpCallback}}
	r := authorize(q)
	if r.Status != 200 || !strings.Contains(r.Body, `name="password"`) || !strings.Contains(r.Body, `lang="sr"`) {
		t.Fatalf("signed request object: %d %s", r.Status, r.URL)
	}

	bad := map[string]string{
		"alg none":    unsignedJWT(base("from-none")),
		"another key": other.requestObject(base("from-another-key")),
		"another aud": pk.requestObject(func() map[string]any { m := base("from-another-aud"); m["aud"] = "https://elsewhere.example"; return m }()),
		"expired": pk.requestObject(func() map[string]any {
			m := base("from-expired")
			m["exp"] = time.Now().Add(-time.Hour).Unix()
			return m
		}()),
		"no iss":     pk.requestObject(func() map[string]any { m := base("from-no-iss"); delete(m, "iss"); return m }()),
		"nested uri": pk.requestObject(func() map[string]any { m := base("from-nested"); m["request_uri"] = "https://x.example/r"; return m }()),
		"not a JWT":  "nonsense",
		"a day to live": pk.requestObject(func() map[string]any {
			m := base("from-a-day")
			m["exp"] = time.Now().Add(24 * time.Hour).Unix()
			return m
		}()),
	}
	for name, obj := range bad {
		q := url.Values{"client_id": {"tax"}, "request": {obj}, "response_type": {"code"}, "scope": {"openid"},
			"state": {"query-state"}, "redirect_uri": {rpCallback}}
		r := authorize(q)
		if r.Status != http.StatusSeeOther || r.URL.Query().Get("error") != "invalid_request_object" ||
			strings.Contains(r.URL.RawQuery, "from-") {
			t.Errorf("%s: %d %s", name, r.Status, r.URL)
		}
	}

	// request_uri other than a PAR reference: refused, and never fetched.
	var hits atomic.Int32
	objSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		w.Write([]byte(pk.requestObject(base("from-a-fetched-object"))))
	}))
	defer objSrv.Close()
	r = authorize(url.Values{"client_id": {"tax"}, "request_uri": {objSrv.URL + "/request.jwt"}, "response_type": {"code"},
		"scope": {"openid"}, "state": {"query-state"}, "redirect_uri": {rpCallback}})
	if r.Status != http.StatusSeeOther || r.URL.Query().Get("error") != "request_uri_not_supported" || hits.Load() != 0 {
		t.Fatalf("remote request_uri: %d %s", r.Status, r.URL)
	}

	// At PAR, with private_key_jwt: the object's parameters are pushed, the browser brings only
	// the reference, and the flow ends with a code and the object's state.
	par := func(obj string) (int, map[string]any) {
		return postForm(t, f.srv.URL+"/oauth2/par", pk.form(url.Values{"client_id": {"tax"}, "request": {obj}},
			pk.assertion(josejwt.Claims{Audience: josejwt.Audience{f.srv.URL}, Expiry: inAMinute()})), "", "")
	}
	for name, obj := range bad {
		if code, body := par(obj); code != 400 || body["error"] != "invalid_request_object" {
			t.Errorf("%s at PAR: %d %v", name, code, body)
		}
	}
	code, body := par(pk.requestObject(base("pushed-state")))
	if code != 201 {
		t.Fatalf("PAR with a request object: %d %v", code, body)
	}
	b := idptest.New(t, f.srv.URL)
	cb := b.Login(f.srv.URL+"/oauth2/auth?"+url.Values{"client_id": {"tax"}, "request_uri": {body["request_uri"].(string)}}.Encode(),
		rpCallback, "1234567890", "correct horse battery", "")
	if cb.Query().Get("state") != "pushed-state" || cb.Query().Get("code") == "" {
		t.Fatalf("callback after a pushed request object: %s", cb)
	}
	tf := pk.form(url.Values{"grant_type": {"authorization_code"}, "code": {cb.Query().Get("code")}, "redirect_uri": {rpCallback},
		"code_verifier": {verifier}}, pk.assertion(josejwt.Claims{Audience: josejwt.Audience{f.srv.URL}, Expiry: inAMinute()}))
	if code, body := postForm(t, f.srv.URL+"/oauth2/token", tf, "", ""); code != 200 || body["id_token"] == nil {
		t.Fatalf("token for a pushed request object's code: %d %v", code, body)
	}
}

// RFC 9068 §2.2 and RFC 8707: an access token's aud names the resources it is for (it was
// empty), a client may narrow it with resource, and an API refuses a token for another one.
func TestAccessTokenAudience(t *testing.T) {
	f := newFixture(t)
	secret := f.register(t, ClientSpec{ID: "ops", GrantTypes: []string{"client_credentials"}, Scopes: []string{"seal", "admin"}})
	iss := f.srv.URL
	token := func(form url.Values) (int, map[string]any) {
		form.Set("grant_type", "client_credentials")
		return postForm(t, iss+"/oauth2/token", form, "ops", secret)
	}
	audOf := func(at string) []any {
		var c map[string]any
		json.Unmarshal([]byte(decodeSeg(t, strings.Split(at, ".")[1])), &c)
		a, _ := c["aud"].([]any)
		return a
	}
	admin := func(at string) int {
		req, _ := http.NewRequest("GET", iss+"/api/v1/admin/clients", nil)
		req.Header.Set("Authorization", "Bearer "+at)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}

	code, body := token(url.Values{"scope": {"seal admin"}})
	if code != 200 {
		t.Fatalf("token: %d %v", code, body)
	}
	at := body["access_token"].(string)
	if a := audOf(at); len(a) != 2 || a[0] != iss+"/api/v1/seal" || a[1] != iss+"/api/v1/admin" {
		t.Fatalf("aud %v", a)
	}
	if s := admin(at); s != 200 {
		t.Fatalf("admin API with its resource in aud: %d", s)
	}
	code, body = token(url.Values{"scope": {"seal admin"}, "resource": {iss + "/api/v1/seal"}})
	if code != 200 {
		t.Fatalf("token for one resource: %d %v", code, body)
	}
	at = body["access_token"].(string)
	if a := audOf(at); len(a) != 1 || a[0] != iss+"/api/v1/seal" {
		t.Fatalf("aud of a token for the sealing API: %v", a)
	}
	if s := admin(at); s != 401 {
		t.Fatalf("admin API with a token for the sealing API: %d", s)
	}
	for _, res := range []string{iss + "/csc/v2", "https://elsewhere.example/api", "not a uri", iss + "/api/v1/seal#x"} {
		if code, body := token(url.Values{"scope": {"seal"}, "resource": {res}}); code != 400 || body["error"] != "invalid_target" {
			t.Errorf("resource %q: %d %v", res, code, body)
		}
	}

	// A login's token is for userinfo.
	taxSecret := f.register(t, ClientSpec{ID: "tax", RedirectURIs: []string{rpCallback}})
	f.citizen(t, false)
	tok := f.citizenTokens(t, "tax", taxSecret)
	if a := audOf(tok.AccessToken); len(a) != 1 || a[0] != iss+"/userinfo" {
		t.Fatalf("aud of a login's token: %v", a)
	}
}

// Two redemptions of one code at the same moment (two replicas): one gets the tokens, the
// other invalid_grant — never the 500 fosite gives when the code is invalidated under it.
func TestCodeRedeemRace(t *testing.T) {
	f := newFixture(t)
	secret := f.register(t, ClientSpec{ID: "tax", RedirectURIs: []string{rpCallback}})
	f.citizen(t, false)
	b := idptest.New(t, f.srv.URL)
	for i := 0; i < 10; i++ {
		u, verifier := f.authCodeURL("state-12345678", nil)
		var cb *url.URL
		if i == 0 {
			cb = b.Login(u, rpCallback, "1234567890", "correct horse battery", "")
		} else {
			cb = b.Get(u).URL // single sign-on
		}
		form := url.Values{"grant_type": {"authorization_code"}, "code": {cb.Query().Get("code")}, "redirect_uri": {rpCallback}, "code_verifier": {verifier}}
		codes := make(chan int, 2)
		errs := make(chan any, 2)
		start := make(chan struct{})
		for j := 0; j < 2; j++ {
			go func() {
				<-start
				code, body := postForm(t, f.srv.URL+"/oauth2/token", form, "tax", secret)
				codes <- code
				errs <- body["error"]
			}()
		}
		close(start)
		c1, c2 := <-codes, <-codes
		e1, e2 := <-errs, <-errs
		if c1+c2 != 600 || (e1 != "invalid_grant" && e2 != "invalid_grant") {
			t.Fatalf("round %d: %d %v and %d %v, want one 200 and one 400 invalid_grant", i, c1, e1, c2, e2)
		}
	}
}

// The claims parameter (OpenID Connect Core §5.5): person claims in the ID token and from
// userinfo without their scopes, consent asked for them, and an essential acr that cannot be
// met refused.
func TestClaimsParameter(t *testing.T) {
	f := newFixture(t)
	secret := f.register(t, ClientSpec{ID: "tax", RedirectURIs: []string{rpCallback}, Scopes: []string{"openid"}})
	f.citizen(t, false)
	b := idptest.New(t, f.srv.URL)
	claims := `{"id_token":{"given_name":{"essential":true},"personal_number":null,"nickname":null},"userinfo":{"birthdate":null}}`
	conf := oauth2.Config{ClientID: "tax", ClientSecret: secret, RedirectURL: rpCallback, Scopes: []string{"openid"},
		Endpoint: oauth2.Endpoint{AuthURL: f.srv.URL + "/oauth2/auth", TokenURL: f.srv.URL + "/oauth2/token"}}
	verifier, opts := newPKCE()
	r := b.Get(conf.AuthCodeURL("state-12345678", append(opts, oauth2.SetAuthURLParam("claims", claims))...))
	r.Form.Set("identifier", "1234567890")
	r.Form.Set("password", "correct horse battery")
	r = b.Post("/login", r.Form)
	if !strings.Contains(r.Body, `name="decision"`) || !strings.Contains(r.Body, "consent.personal_number") && !strings.Contains(strings.ToLower(r.Body), "personal number") {
		t.Fatalf("consent page for the claims asked: %d\n%s", r.Status, r.Body)
	}
	r.Form.Set("decision", "allow")
	r = b.Post("/consent", r.Form)
	tok, err := conf.Exchange(context.Background(), r.URL.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	var idt map[string]any
	json.Unmarshal([]byte(decodeSeg(t, strings.Split(tok.Extra("id_token").(string), ".")[1])), &idt)
	if idt["given_name"] != "Arta" || idt["personal_number"] != "1234567890" || idt["birthdate"] != nil || idt["nickname"] != nil {
		t.Fatalf("ID token claims: %v", idt)
	}
	req, _ := http.NewRequest("GET", f.srv.URL+"/userinfo", nil)
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var ui map[string]any
	json.NewDecoder(resp.Body).Decode(&ui)
	resp.Body.Close()
	if ui["birthdate"] != "1990-04-12" || ui["given_name"] != nil {
		t.Fatalf("userinfo: %v", ui)
	}
	// An essential acr of high: this person cannot reach it.
	_, opts = newPKCE()
	r = b.Get(conf.AuthCodeURL("state-12345678", append(opts, oauth2.SetAuthURLParam("prompt", "login"),
		oauth2.SetAuthURLParam("claims", `{"id_token":{"acr":{"essential":true,"values":["`+LoAHigh+`"]}}}`))...))
	if r.Status != http.StatusSeeOther || r.URL.Query().Get("error") != "unmet_authentication_requirements" {
		t.Fatalf("essential acr high: %d %s", r.Status, r.URL)
	}
	// Not JSON: refused.
	_, opts = newPKCE()
	r = b.Get(conf.AuthCodeURL("state-12345678", append(opts, oauth2.SetAuthURLParam("claims", "{nope"))...))
	if r.Status != http.StatusSeeOther || r.URL.Query().Get("error") != "invalid_request" {
		t.Fatalf("claims not JSON: %d %s", r.Status, r.URL)
	}
}

// client_secret_post (RFC 6749 §2.3.1), openid-client's default for a client with a secret:
// accepted beside Basic for every client with a secret; a wrong one, or the secret sent both
// ways at once, is 401.
func TestClientSecretPost(t *testing.T) {
	f := newFixture(t)
	secret := f.register(t, ClientSpec{ID: "batch", GrantTypes: []string{"client_credentials"}, Scopes: []string{"seal"}})
	tokenURL := f.srv.URL + "/oauth2/token"
	form := func(s string) url.Values {
		return url.Values{"grant_type": {"client_credentials"}, "scope": {"seal"}, "client_id": {"batch"}, "client_secret": {s}}
	}
	if code, body := postForm(t, tokenURL, form(secret), "", ""); code != 200 {
		t.Fatalf("client_secret_post: %d %v", code, body)
	}
	if code, body := postForm(t, tokenURL, form("wrong"), "", ""); code != 401 || body["error"] != "invalid_client" {
		t.Fatalf("wrong secret in the form: %d %v", code, body)
	}
	if code, body := postForm(t, tokenURL, form(secret), "batch", secret); code != 401 || body["error"] != "invalid_client" {
		t.Fatalf("secret both ways: %d %v", code, body)
	}
}

// response_mode=query, the mode discovery lists, is accepted (fosite refused any explicit
// response_mode); prompt=consent asks again although the consent is remembered, and prompt=none
// without a remembered consent answers consent_required instead of showing the page.
func TestResponseModeAndPromptConsent(t *testing.T) {
	f := newFixture(t)
	f.register(t, ClientSpec{ID: "tax", RedirectURIs: []string{rpCallback}})
	f.citizen(t, false)
	b := idptest.New(t, f.srv.URL)
	u, _ := f.authCodeURL("state-12345678", map[string]string{"response_mode": "query"})
	cb := b.Login(u, rpCallback, "1234567890", "correct horse battery", "")
	if cb.Query().Get("code") == "" {
		t.Fatalf("response_mode=query: %s", cb)
	}
	u, _ = f.authCodeURL("state-12345678", map[string]string{"prompt": "consent"})
	if r := b.Get(u); r.Status != 200 || !strings.Contains(r.Body, `name="decision"`) {
		t.Fatalf("prompt=consent with a remembered consent: %d %s", r.Status, r.URL)
	}
	f.register(t, ClientSpec{ID: "other", RedirectURIs: []string{rpCallback}})
	verifier := oauth2.GenerateVerifier()
	q := url.Values{"client_id": {"other"}, "response_type": {"code"}, "redirect_uri": {rpCallback}, "scope": {"openid"}, "prompt": {"none"},
		"state": {"state-12345678"}, "code_challenge": {oauth2.S256ChallengeFromVerifier(verifier)}, "code_challenge_method": {"S256"}}
	if r := b.Get(f.srv.URL + "/oauth2/auth?" + q.Encode()); r.Status != http.StatusSeeOther || r.URL.Query().Get("error") != "consent_required" {
		t.Fatalf("prompt=none without consent: %d %s", r.Status, r.URL)
	}
}
