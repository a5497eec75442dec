package idp

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/vula-eid/vula/internal/idp/idptest"
)

// One address that fails many times (a guesser walking through identifiers) is locked, with a
// wait that doubles with each further failure; another address is not; many good logins from
// one address (people behind one NAT) never lock it. The per-identifier wait doubles too.
func TestLockoutPerAddress(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.citizen(t, false)
	const good = "correct horse battery"
	ip := "192.0.2.7"
	for i := 0; i < ipFailuresFree; i++ {
		if _, err := f.accounts.Password(ctx, fmt.Sprintf("99%08d", i), "wrong password!", ip); err != ErrBadCredentials {
			t.Fatalf("failure %d: %v", i, err)
		}
	}
	if _, err := f.accounts.Password(ctx, "1234567890", good, ip); err != ErrLockedOut {
		t.Fatalf("the right password from a locked address: %v", err)
	}
	if _, err := f.accounts.Password(ctx, "1234567890", good, "192.0.2.8"); err != nil {
		t.Fatalf("another address: %v", err)
	}
	// After the first wait one more try; its failure locks for twice as long.
	f.clock.Advance(backoffBase + time.Second)
	if _, err := f.accounts.Password(ctx, "9900000099", "wrong password!", ip); err != ErrBadCredentials {
		t.Fatalf("after the first wait: %v", err)
	}
	f.clock.Advance(backoffBase + time.Second)
	if _, err := f.accounts.Password(ctx, "1234567890", good, ip); err != ErrLockedOut {
		t.Fatalf("the second wait is not longer than the first: %v", err)
	}
	f.clock.Advance(backoffBase)
	if _, err := f.accounts.Password(ctx, "1234567890", good, ip); err != nil {
		t.Fatalf("after the second wait: %v", err)
	}
	for i := 0; i < ipFailuresFree+2; i++ {
		if _, err := f.accounts.Password(ctx, "1234567890", good, "192.0.2.9"); err != nil {
			t.Fatalf("good login %d from one address: %v", i, err)
		}
	}

	// Per identifier: locked after failuresFree failures; the next failure doubles the wait.
	for i := 0; i < failuresFree; i++ {
		f.accounts.Password(ctx, "1234567890", "wrong password!", "198.51.100.1")
	}
	f.clock.Advance(backoffBase + time.Second)
	if _, err := f.accounts.Password(ctx, "1234567890", "wrong password!", "198.51.100.2"); err != ErrBadCredentials {
		t.Fatalf("after the identifier's first wait: %v", err)
	}
	f.clock.Advance(backoffBase + time.Second)
	if _, err := f.accounts.Password(ctx, "1234567890", good, "198.51.100.3"); err != ErrLockedOut {
		t.Fatalf("the identifier's second wait is not longer: %v", err)
	}
}

var alert = regexp.MustCompile(`(?s)<p class="alert" role="alert" id="form-error">(.*?)</p>`)

// The login page says the same, with the same status, for an unknown identifier and for a
// wrong password; after the lockout it says so, for both alike.
func TestLoginSameMessage(t *testing.T) {
	f := newFixture(t)
	secret := f.register(t, ClientSpec{ID: "tax", RedirectURIs: []string{rpCallback}, Scopes: []string{"openid"}})
	f.citizen(t, false)
	conf := oauth2.Config{ClientID: "tax", ClientSecret: secret, RedirectURL: rpCallback, Scopes: []string{"openid"},
		Endpoint: oauth2.Endpoint{AuthURL: f.srv.URL + "/oauth2/auth", TokenURL: f.srv.URL + "/oauth2/token"}}
	b := idptest.New(t, f.srv.URL)
	_, opts := newPKCE()
	page := b.Get(conf.AuthCodeURL("state-12345678", opts...))
	try := func(identifier string) (int, string) {
		form := url.Values{"flow": {page.Form.Get("flow")}, "csrf": {page.Form.Get("csrf")}, "identifier": {identifier}, "password": {"wrong password!"}}
		r := b.Post("/login", form)
		m := alert.FindStringSubmatch(r.Body)
		if m == nil || !strings.Contains(r.Body, `name="password"`) {
			t.Fatalf("%s: no error on the login page: %d\n%s", identifier, r.Status, r.Body)
		}
		return r.Status, strings.TrimSpace(m[1])
	}
	s1, m1 := try("1234567890")      // known person, wrong password
	s2, m2 := try("5555555555")      // nobody
	s3, m3 := try("nobody@invalid.") // nobody, by e-mail
	if s1 != http.StatusUnauthorized || s1 != s2 || s2 != s3 || m1 != m2 || m2 != m3 || m1 == "" {
		t.Fatalf("different answers: %d %q / %d %q / %d %q", s1, m1, s2, m2, s3, m3)
	}
	for i := 1; i < failuresFree; i++ {
		try("1234567890")
		try("5555555555")
	}
	l1, lm1 := try("1234567890")
	l2, lm2 := try("5555555555")
	if l1 != http.StatusTooManyRequests || l1 != l2 || lm1 != lm2 || lm1 == m1 {
		t.Fatalf("lockout answers: %d %q / %d %q", l1, lm1, l2, lm2)
	}
}

// The single sign-on cookie is HttpOnly and SameSite=Lax always, Secure when the pages are
// served for https (everywhere outside dev mode).
func TestSSOCookieFlags(t *testing.T) {
	for _, secure := range []bool{true, false} {
		t.Run(fmt.Sprintf("secure=%v", secure), func(t *testing.T) {
			f := newFixtureWith(t, Config{}, secure)
			secret := f.register(t, ClientSpec{ID: "tax", RedirectURIs: []string{rpCallback}, Scopes: []string{"openid"}})
			f.citizen(t, false)
			conf := oauth2.Config{ClientID: "tax", ClientSecret: secret, RedirectURL: rpCallback, Scopes: []string{"openid"},
				Endpoint: oauth2.Endpoint{AuthURL: f.srv.URL + "/oauth2/auth", TokenURL: f.srv.URL + "/oauth2/token"}}
			_, opts := newPKCE()
			page := idptest.New(t, f.srv.URL).Get(conf.AuthCodeURL("state-12345678", opts...))
			form := url.Values{"flow": {page.Form.Get("flow")}, "csrf": {page.Form.Get("csrf")}, "identifier": {"1234567890"}, "password": {"correct horse battery"}}
			req, _ := http.NewRequest("POST", f.srv.URL+"/login", strings.NewReader(form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			resp, err := http.DefaultTransport.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			var sso *http.Cookie
			for _, c := range resp.Cookies() {
				if c.Name == ssoCookie {
					sso = c
				}
			}
			if resp.StatusCode != http.StatusSeeOther || sso == nil {
				t.Fatalf("login: %d, cookies %v", resp.StatusCode, resp.Header.Values("Set-Cookie"))
			}
			if !sso.HttpOnly || sso.SameSite != http.SameSiteLaxMode || sso.Secure != secure || sso.Path != "/" || len(sso.Value) < 32 {
				t.Fatalf("cookie %q", resp.Header.Get("Set-Cookie"))
			}
		})
	}
}

// Pairwise subjects in real flows: two clients of one sector see the same sub, a client of
// another sector another, none the person's own id; the access token and userinfo carry the
// same sub as the ID token. Without the personal_number scope there is no personal number.
func TestPairwiseFlow(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	person, _ := f.citizen(t, false)
	prov, err := oidc.NewProvider(ctx, f.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	sub := func(id, sector string) string {
		secret := f.register(t, ClientSpec{ID: id, RedirectURIs: []string{rpCallback}, Scopes: []string{"openid", "profile", "personal_number"}, SectorIdentifier: sector})
		conf := oauth2.Config{ClientID: id, ClientSecret: secret, Endpoint: prov.Endpoint(), RedirectURL: rpCallback, Scopes: []string{"openid", "profile"}}
		verifier, opts := newPKCE()
		cb := idptest.New(t, f.srv.URL).Login(conf.AuthCodeURL("state-12345678", opts...), rpCallback, "1234567890", "correct horse battery", "")
		tok, err := conf.Exchange(ctx, cb.Query().Get("code"), oauth2.VerifierOption(verifier))
		if err != nil {
			t.Fatal(err)
		}
		idt, err := prov.Verifier(&oidc.Config{ClientID: id}).Verify(ctx, tok.Extra("id_token").(string))
		if err != nil {
			t.Fatal(err)
		}
		ui, err := prov.UserInfo(ctx, oauth2.StaticTokenSource(tok))
		if err != nil {
			t.Fatal(err)
		}
		var uc map[string]any
		ui.Claims(&uc)
		var at map[string]any
		json.Unmarshal([]byte(decodeSeg(t, strings.Split(tok.AccessToken, ".")[1])), &at)
		if ui.Subject != idt.Subject || at["sub"] != idt.Subject {
			t.Fatalf("%s: ID token sub %s, userinfo %s, access token %v", id, idt.Subject, ui.Subject, at["sub"])
		}
		if uc["given_name"] != "Arta" || uc["personal_number"] != nil {
			t.Fatalf("%s: userinfo without the personal_number scope: %v", id, uc)
		}
		return idt.Subject
	}
	a1 := sub("tax", "https://tax.example")
	a2 := sub("tax-appeals", "https://tax.example")
	b := sub("health", "https://health.example")
	plain := sub("municipality", "")
	if a1 != a2 || a1 == b || a1 == person.SubjectID || b == person.SubjectID || plain != person.SubjectID {
		t.Fatalf("subjects: tax %s, tax-appeals %s, health %s, municipality %s, person %s", a1, a2, b, plain, person.SubjectID)
	}
}

// More refusals: the high level (no means of reaching it), a consent form without its CSRF
// token, and a client_secret_basic client sending its secret in the body instead.
func TestMoreRefusals(t *testing.T) {
	f := newFixture(t)
	secret := f.register(t, ClientSpec{ID: "tax", RedirectURIs: []string{rpCallback}, Scopes: []string{"openid"}})
	f.citizen(t, true)
	conf := oauth2.Config{ClientID: "tax", ClientSecret: secret, RedirectURL: rpCallback, Scopes: []string{"openid"},
		Endpoint: oauth2.Endpoint{AuthURL: f.srv.URL + "/oauth2/auth", TokenURL: f.srv.URL + "/oauth2/token"}}
	b := idptest.New(t, f.srv.URL)
	_, opts := newPKCE()
	// Without passkeys nothing reaches high: the client hears so at once.
	if r := b.Get(conf.AuthCodeURL("state-12345678", append(opts, oauth2.SetAuthURLParam("acr_values", LoAHigh))...)); r.URL.Query().Get("error") != "unmet_authentication_requirements" || r.URL.Query().Get("state") != "state-12345678" {
		t.Fatalf("acr high: %d %s", r.Status, r.URL)
	}

	r := b.Get(conf.AuthCodeURL("state-12345678", opts...))
	r.Form.Set("identifier", "1234567890")
	r.Form.Set("password", "correct horse battery")
	r = b.Post("/login", r.Form)
	if !strings.Contains(r.Body, `name="decision"`) {
		t.Fatalf("no consent page: %d %s", r.Status, r.URL)
	}
	noCSRF := url.Values{"flow": {r.Form.Get("flow")}, "decision": {"allow"}}
	if r := b.Post("/consent", noCSRF); r.Status != http.StatusForbidden {
		t.Fatalf("consent without CSRF token: %d %s", r.Status, r.URL)
	}
	wrong := url.Values{"flow": {r.Form.Get("flow")}, "csrf": {r.Form.Get("csrf") + "x"}, "decision": {"allow"}}
	if r := b.Post("/consent", wrong); r.Status != http.StatusForbidden {
		t.Fatalf("consent with a wrong CSRF token: %d %s", r.Status, r.URL)
	}

	// The secret in the body authenticates (client_secret_post, TestClientSecretPost), but this
	// client may not use client_credentials.
	inBody := url.Values{"grant_type": {"client_credentials"}, "client_id": {"tax"}, "client_secret": {secret}}
	if code, body := postForm(t, f.srv.URL+"/oauth2/token", inBody, "", ""); code != http.StatusBadRequest || body["error"] != "unauthorized_client" {
		t.Fatalf("client_credentials for a code-flow client: %d %v", code, body)
	}
}
