package idp

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
	"golang.org/x/oauth2"

	"github.com/vula-eid/vula/internal/idp/idptest"
	"github.com/vula-eid/vula/internal/store"
)

const rpCallback = "http://127.0.0.1:9/callback" // never contacted: the browser stops at the redirect

func (f *fixture) citizen(t *testing.T, withTOTP bool) (store.Person, string) {
	t.Helper()
	p, err := f.accounts.CreatePerson(context.Background(), store.Person{PersonalNumber: "1234567890", GivenName: "Arta",
		FamilyName: "Krasniqi", BirthDate: "1990-04-12", Email: "arta@example.org"}, "correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	if !withTOTP {
		return p, ""
	}
	key, err := f.accounts.NewTOTP(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.accounts.EnrollTOTP(context.Background(), p.SubjectID, key); err != nil {
		t.Fatal(err)
	}
	return p, key.Secret()
}

func newPKCE() (verifier string, opts []oauth2.AuthCodeOption) {
	v := oauth2.GenerateVerifier()
	return v, []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(v)}
}

// The code flow with PKCE as a relying party does it with golang.org/x/oauth2 and go-oidc:
// login with password and one-time code at the substantial level, consent, the ID token
// verified, userinfo, refresh (rotated; reuse revokes the family), and a code used twice.
func TestCodeFlow(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	secret := f.register(t, ClientSpec{ID: "tax", Name: "Tax Administration", RedirectURIs: []string{rpCallback},
		Scopes: []string{"openid", "profile", "personal_number"}, PostLogoutRedirectURIs: []string{"http://127.0.0.1:9/bye"}})
	person, seed := f.citizen(t, true)
	prov, err := oidc.NewProvider(ctx, f.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	conf := oauth2.Config{ClientID: "tax", ClientSecret: secret, Endpoint: prov.Endpoint(), RedirectURL: rpCallback,
		Scopes: []string{oidc.ScopeOpenID, "profile", "personal_number"}}
	verifier, opts := newPKCE()
	authURL := conf.AuthCodeURL("state-12345678", append(opts, oidc.Nonce("nonce-12345678"),
		oauth2.SetAuthURLParam("acr_values", LoASubstantial))...)
	b := idptest.New(t, f.srv.URL)
	cb := b.Login(authURL, rpCallback, "1234567890", "correct horse battery", seed)
	if cb.Query().Get("state") != "state-12345678" || cb.Query().Get("code") == "" {
		t.Fatalf("callback %s", cb)
	}
	tok, err := conf.Exchange(ctx, cb.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("code exchange: %v", err)
	}
	raw, _ := tok.Extra("id_token").(string)
	idt, err := prov.Verifier(&oidc.Config{ClientID: "tax"}).Verify(ctx, raw)
	if err != nil {
		t.Fatalf("ID token: %v", err)
	}
	var claims struct {
		ACR      string   `json:"acr"`
		AMR      []string `json:"amr"`
		AuthTime int64    `json:"auth_time"`
		Nonce    string   `json:"nonce"`
	}
	idt.Claims(&claims)
	if idt.Subject != person.SubjectID || claims.ACR != LoASubstantial || claims.Nonce != "nonce-12345678" ||
		fmt.Sprint(claims.AMR) != "[pwd otp mfa]" || time.Since(time.Unix(claims.AuthTime, 0)) > time.Minute {
		t.Fatalf("ID token claims: sub %s %+v", idt.Subject, claims)
	}
	ui, err := prov.UserInfo(ctx, oauth2.StaticTokenSource(tok))
	if err != nil {
		t.Fatal(err)
	}
	var uc map[string]any
	ui.Claims(&uc)
	if uc["given_name"] != "Arta" || uc["family_name"] != "Krasniqi" || uc["birthdate"] != "1990-04-12" || uc["personal_number"] != "1234567890" {
		t.Fatalf("userinfo: %v", uc)
	}

	// Refresh: a new pair; the old refresh token used again revokes the new one too.
	if tok.RefreshToken == "" {
		t.Fatal("no refresh token")
	}
	old := tok.RefreshToken
	tok.Expiry = time.Now().Add(-time.Second)
	tok2, err := conf.TokenSource(ctx, tok).Token()
	if err != nil || tok2.RefreshToken == old || tok2.AccessToken == tok.AccessToken {
		t.Fatalf("refresh: %v", err)
	}
	code, body := postForm(t, prov.Endpoint().TokenURL, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {old}}, "tax", secret)
	if code != 400 && code != 401 || body["error"] == nil {
		t.Fatalf("reused refresh token: %d %v", code, body)
	}
	code, body = postForm(t, prov.Endpoint().TokenURL, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok2.RefreshToken}}, "tax", secret)
	if code == 200 {
		t.Fatalf("the family survived a reuse: %v", body)
	}
	if _, err := prov.UserInfo(ctx, oauth2.StaticTokenSource(tok2)); err == nil {
		t.Fatal("the family's access token still works after a reuse")
	}

	// A second login in the same browser is single sign-on: no password page, consent remembered.
	verifier, opts = newPKCE()
	r := b.Get(conf.AuthCodeURL("state-abcdefgh", opts...))
	if r.Status != http.StatusSeeOther || !strings.HasPrefix(r.URL.String(), rpCallback) {
		t.Fatalf("single sign-on: %d %s", r.Status, r.URL)
	}
	c := r.URL.Query().Get("code")
	tok3, err := conf.Exchange(ctx, c, oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := prov.UserInfo(ctx, oauth2.StaticTokenSource(tok3)); err != nil {
		t.Fatalf("userinfo after single sign-on: %v", err)
	}
	// The same code again is refused, and the tokens of its first use die.
	if _, err := conf.Exchange(ctx, c, oauth2.VerifierOption(verifier)); err == nil {
		t.Fatal("a code was redeemed twice")
	}
	if _, err := prov.UserInfo(ctx, oauth2.StaticTokenSource(tok3)); err == nil {
		t.Fatal("the first use's access token survived the code's second use")
	}
	tok3.Expiry = time.Now().Add(-time.Second)
	if _, err := conf.TokenSource(ctx, tok3).Token(); err == nil {
		t.Fatal("the first use's refresh token survived the code's second use")
	}
}

// The refusals a relying party can cause.
func TestAuthorizeRefusals(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	secret := f.register(t, ClientSpec{ID: "tax", RedirectURIs: []string{rpCallback}, Scopes: []string{"openid", "profile"}})
	f.register(t, ClientSpec{ID: "health", RedirectURIs: []string{rpCallback}, Scopes: []string{"openid"}, RequirePAR: true})
	f.citizen(t, false)
	conf := oauth2.Config{ClientID: "tax", ClientSecret: secret, RedirectURL: rpCallback, Scopes: []string{"openid"},
		Endpoint: oauth2.Endpoint{AuthURL: f.srv.URL + "/oauth2/auth", TokenURL: f.srv.URL + "/oauth2/token", AuthStyle: oauth2.AuthStyleInHeader}}
	b := idptest.New(t, f.srv.URL)
	_, opts := newPKCE()

	// A redirect URI that is not registered exactly: an error page, no redirect.
	bad := conf
	bad.RedirectURL = rpCallback + "/other"
	if r := b.Get(bad.AuthCodeURL("state-12345678", opts...)); r.Status == http.StatusSeeOther || strings.HasPrefix(r.URL.String(), rpCallback) {
		t.Fatalf("wrong redirect_uri: %d %s", r.Status, r.URL)
	}
	// No PKCE: refused back to the client.
	if r := b.Get(conf.AuthCodeURL("state-12345678")); r.URL.Query().Get("error") != "invalid_request" {
		t.Fatalf("no PKCE: %s", r.URL)
	}
	// A plain PKCE challenge is not S256.
	if r := b.Get(conf.AuthCodeURL("state-12345678", oauth2.SetAuthURLParam("code_challenge", strings.Repeat("a", 43)),
		oauth2.SetAuthURLParam("code_challenge_method", "plain"))); r.URL.Query().Get("error") != "invalid_request" {
		t.Fatalf("plain PKCE: %s", r.URL)
	}
	// A client that must use PAR may not come to /oauth2/auth directly.
	par := conf
	par.ClientID = "health"
	if r := b.Get(par.AuthCodeURL("state-12345678", opts...)); r.URL.Query().Get("error") != "invalid_request" {
		t.Fatalf("PAR required: %s", r.URL)
	}
	// The substantial level for a person without an authenticator cannot be met.
	verifier, opts := newPKCE()
	r := b.Get(conf.AuthCodeURL("state-12345678", append(opts, oauth2.SetAuthURLParam("acr_values", LoASubstantial))...))
	if r.Status != 200 {
		t.Fatalf("login page: %d %s", r.Status, r.Body)
	}
	r.Form.Set("identifier", "1234567890")
	r.Form.Set("password", "correct horse battery")
	if r := b.Post("/login", r.Form); r.URL.Query().Get("error") != "unmet_authentication_requirements" {
		t.Fatalf("unmet acr: %s", r.URL)
	}
	// A login form without its CSRF token is refused, and so is a wrong PKCE verifier.
	r = b.Get(conf.AuthCodeURL("state-12345678", opts...))
	noCSRF := url.Values{"flow": {r.Form.Get("flow")}, "identifier": {"1234567890"}, "password": {"correct horse battery"}}
	if r := b.Post("/login", noCSRF); r.Status != http.StatusForbidden {
		t.Fatalf("login without CSRF token: %d", r.Status)
	}
	cb := b.Login(conf.AuthCodeURL("state-12345678", opts...), rpCallback, "1234567890", "correct horse battery", "")
	if _, err := conf.Exchange(ctx, cb.Query().Get("code"), oauth2.VerifierOption(verifier+"x")); err == nil {
		t.Fatal("a wrong PKCE verifier was accepted")
	}
	if _, err := conf.Exchange(ctx, cb.Query().Get("code")); err == nil {
		t.Fatal("a code without its PKCE verifier was accepted")
	}
}

// Wrong passwords lock the identifier with growing waits; an unknown identifier behaves the same.
func TestLockout(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.citizen(t, false)
	for _, id := range []string{"1234567890", "9999999999"} {
		for i := 0; i < failuresFree; i++ {
			if _, err := f.accounts.Password(ctx, id, "wrong password!", "192.0.2.1"); err != ErrBadCredentials {
				t.Fatalf("%s attempt %d: %v", id, i, err)
			}
		}
		if _, err := f.accounts.Password(ctx, id, "correct horse battery", "192.0.2.1"); err != ErrLockedOut {
			t.Fatalf("%s after %d failures: %v", id, failuresFree, err)
		}
	}
}

// A TOTP code is good once.
func TestTOTPOnce(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	p, seed := f.citizen(t, true)
	code, _ := totp.GenerateCodeCustom(seed, time.Now(), totp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	if err := f.accounts.TOTP(ctx, p.SubjectID, code); err != nil {
		t.Fatal(err)
	}
	if err := f.accounts.TOTP(ctx, p.SubjectID, code); err != ErrBadCode {
		t.Fatalf("the same code twice: %v", err)
	}
	if err := f.accounts.TOTP(ctx, p.SubjectID, "000000"); err != ErrBadCode && code != "000000" {
		t.Fatalf("a wrong code: %v", err)
	}
}

// Pairwise subjects differ between sectors and are stable within one.
func TestPairwise(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	a, _ := f.p.subject(ctx, store.Client{SectorIdentifier: "https://tax.example"}, "person-1")
	a2, _ := f.p.subject(ctx, store.Client{SectorIdentifier: "https://tax.example"}, "person-1")
	b, _ := f.p.subject(ctx, store.Client{SectorIdentifier: "https://health.example"}, "person-1")
	if a != a2 || a == b || a == "person-1" {
		t.Fatalf("pairwise: %s %s %s", a, a2, b)
	}
}

// A pushed request_uri is good for a while only.
func TestPARExpires(t *testing.T) {
	f := newFixture(t)
	secret := f.register(t, ClientSpec{ID: "tax", RedirectURIs: []string{rpCallback}, Scopes: []string{"openid"}})
	v, _ := newPKCE()
	form := url.Values{"response_type": {"code"}, "client_id": {"tax"}, "redirect_uri": {rpCallback}, "scope": {"openid"},
		"state": {"state-12345678"}, "code_challenge": {oauth2.S256ChallengeFromVerifier(v)}, "code_challenge_method": {"S256"}}
	code, par := postForm(t, f.srv.URL+"/oauth2/par", form, "tax", secret)
	if code != http.StatusCreated || par["request_uri"] == nil || par["expires_in"] == nil {
		t.Fatalf("PAR: %d %v", code, par)
	}
	// Without PKCE a push is refused at once.
	noPKCE := url.Values{"response_type": {"code"}, "client_id": {"tax"}, "redirect_uri": {rpCallback}, "scope": {"openid"}, "state": {"state-12345678"}}
	if code, body := postForm(t, f.srv.URL+"/oauth2/par", noPKCE, "tax", secret); code != 400 || body["error"] != "invalid_request" {
		t.Fatalf("PAR without PKCE: %d %v", code, body)
	}
	f.clock.Advance(f.p.cfg.PARTTL + time.Second)
	b := idptest.New(t, f.srv.URL)
	r := b.Get(f.srv.URL + "/oauth2/auth?client_id=tax&request_uri=" + url.QueryEscape(par["request_uri"].(string)))
	if r.Status == http.StatusSeeOther && strings.HasPrefix(r.URL.Path, "/login") || strings.Contains(r.Body, `name="password"`) {
		t.Fatalf("an expired request_uri led to the login page: %d %s", r.Status, r.URL)
	}
	t.Logf("expired request_uri: %d %s", r.Status, r.URL)
	if e := r.URL.Query().Get("error"); e != "invalid_request_uri" && e != "invalid_request" && r.Status != http.StatusBadRequest {
		t.Fatalf("expired request_uri: %d %s\n%s", r.Status, r.URL, r.Body)
	}
}

// prompt=login asks for a fresh login: one made in the same second as the authorization request
// is fresh. auth_time has whole seconds (OIDC Core §2), so the request time it is compared with
// must too; with the request's nanoseconds, such a login was refused as login_required.
func TestPromptLoginSameSecond(t *testing.T) {
	f := newFixture(t)
	secret := f.register(t, ClientSpec{ID: "tax", Name: "Tax Administration", RedirectURIs: []string{rpCallback},
		Scopes: []string{"openid", "profile"}})
	_, seed := f.citizen(t, true)
	prov, err := oidc.NewProvider(context.Background(), f.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	conf := oauth2.Config{ClientID: "tax", ClientSecret: secret, Endpoint: prov.Endpoint(), RedirectURL: rpCallback,
		Scopes: []string{oidc.ScopeOpenID}}
	_, opts := newPKCE()
	// Start just after a second begins, so that the request and the login share their second.
	time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second + 20*time.Millisecond)))
	authURL := conf.AuthCodeURL("state-12345678", append(opts, oidc.Nonce("nonce-12345678"),
		oauth2.SetAuthURLParam("prompt", "login"), oauth2.SetAuthURLParam("acr_values", LoASubstantial))...)
	cb := idptest.New(t, f.srv.URL).Login(authURL, rpCallback, "1234567890", "correct horse battery", seed)
	if cb.Query().Get("code") == "" {
		t.Fatalf("a login in the request's second was not fresh enough: %s", cb)
	}
}

// The TOTP enrolment page shows its QR code. html/template refuses a data: URL given as a plain
// string in src (it writes "#ZgotmplZ"), which left the page with a broken image.
func TestEnrolmentPageShowsQR(t *testing.T) {
	f := newFixture(t)
	secret := f.register(t, ClientSpec{ID: "tax", RedirectURIs: []string{rpCallback}, Scopes: []string{"openid"}})
	f.citizen(t, false)
	conf := oauth2.Config{ClientID: "tax", ClientSecret: secret, RedirectURL: rpCallback, Scopes: []string{"openid"},
		Endpoint: oauth2.Endpoint{AuthURL: f.srv.URL + "/oauth2/auth", TokenURL: f.srv.URL + "/oauth2/token"}}
	_, opts := newPKCE()
	b := idptest.New(t, f.srv.URL)
	b.Login(conf.AuthCodeURL("state-12345678", opts...), rpCallback, "1234567890", "correct horse battery", "")
	r := b.Get("/account/totp")
	if r.Status != http.StatusOK {
		t.Fatalf("enrolment page: %d %s", r.Status, r.Body)
	}
	if !strings.Contains(r.Body, `src="data:image/png;base64,`) || strings.Contains(r.Body, "ZgotmplZ") {
		t.Fatalf("enrolment page has no QR image: %s", r.Body)
	}
}
