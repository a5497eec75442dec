package idp

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/oauth2"

	"github.com/vula-eid/vula/internal/auth"
	"github.com/vula-eid/vula/internal/idp/idptest"
)

const (
	walletSDJWT = "eu.europa.ec.eudi.pid.1.dc+sd-jwt"
	walletMdoc  = "eu.europa.ec.eudi.pid.1.mso_mdoc"
)

// A wallet asks for the PID by authorization_details of type openid_credential (OpenID4VCI
// §5.1.1) through PAR: the token response and the access token name the credential
// identifiers, and Bearer hands them to the credential issuer; unknown types and
// configurations are invalid_authorization_details, at PAR and at the authorization endpoint.
func TestWalletAuthorizationDetails(t *testing.T) {
	f := newFixtureWith(t, Config{WalletConfigurations: []string{walletSDJWT, walletMdoc}, WalletLoA: LoASubstantial}, false)
	ctx := context.Background()
	secret := f.register(t, ClientSpec{ID: "wallet", Name: "Wallet", RedirectURIs: []string{rpCallback}, Scopes: []string{"openid", auth.ScopePID}})
	rpSecret := f.register(t, ClientSpec{ID: "rp", Name: "RP", RedirectURIs: []string{rpCallback}, Scopes: []string{"openid"}})
	_, seed := f.citizen(t, true)

	var meta map[string]any
	resp, err := http.Get(f.srv.URL + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(resp.Body).Decode(&meta)
	resp.Body.Close()
	if !strings.Contains(toJSON(meta["authorization_details_types_supported"]), auth.OpenIDCredentialType) {
		t.Fatalf("authorization_details_types_supported %v", meta["authorization_details_types_supported"])
	}

	verifier := oauth2.GenerateVerifier()
	push := func(client, details string) (int, map[string]any) {
		pw := secret
		if client == "rp" {
			pw = rpSecret
		}
		return postForm(t, f.srv.URL+"/oauth2/par", url.Values{"client_id": {client}, "response_type": {"code"}, "redirect_uri": {rpCallback},
			"state": {"state-12345678"}, "code_challenge": {oauth2.S256ChallengeFromVerifier(verifier)}, "code_challenge_method": {"S256"},
			"authorization_details": {details}, "resource": {f.srv.URL}}, client, pw)
	}
	for name, d := range map[string]string{
		"unknown type":          `[{"type":"diploma","credential_configuration_id":"` + walletSDJWT + `"}]`,
		"unknown configuration": `[{"type":"openid_credential","credential_configuration_id":"eu.example.diploma"}]`,
		"no configuration":      `[{"type":"openid_credential"}]`,
		"mixed with credential": `[{"type":"openid_credential","credential_configuration_id":"` + walletSDJWT + `"},{"type":"credential","credentialID":"c"}]`,
	} {
		if code, body := push("wallet", d); code != 400 || body["error"] != "invalid_authorization_details" {
			t.Errorf("PAR, %s: %d %v", name, code, body)
		}
	}
	// The front channel too, without PAR.
	q := url.Values{"client_id": {"wallet"}, "response_type": {"code"}, "redirect_uri": {rpCallback}, "state": {"state-12345678"},
		"code_challenge": {oauth2.S256ChallengeFromVerifier(verifier)}, "code_challenge_method": {"S256"},
		"authorization_details": {`[{"type":"openid_credential","credential_configuration_id":"nope"}]`}}
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err = noRedirect.Get(f.srv.URL + "/oauth2/auth?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if loc, _ := url.Parse(resp.Header.Get("Location")); loc == nil || loc.Query().Get("error") != "invalid_authorization_details" {
		t.Errorf("authorization endpoint, unknown configuration: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}

	code, par := push("wallet", `[{"type":"openid_credential","credential_configuration_id":"`+walletSDJWT+`"}]`)
	if code != 201 {
		t.Fatalf("PAR: %d %v", code, par)
	}
	b := idptest.New(t, f.srv.URL)
	cb := b.Login(f.srv.URL+"/oauth2/auth?client_id=wallet&request_uri="+url.QueryEscape(par["request_uri"].(string)), rpCallback,
		"1234567890", "correct horse battery", seed)
	// RFC 8707 at the code's redemption: a resource not granted is refused (and the code is not
	// spent); the one granted is accepted (fosite grants the audience only after the check).
	code, tok := postForm(t, f.srv.URL+"/oauth2/token", url.Values{"grant_type": {"authorization_code"}, "code": {cb.Query().Get("code")},
		"redirect_uri": {rpCallback}, "code_verifier": {verifier}, "resource": {f.srv.URL + "/api/v1/seal"}}, "wallet", secret)
	if code != 400 || tok["error"] != "invalid_target" {
		t.Fatalf("token for a resource not granted: %d %v", code, tok)
	}
	code, tok = postForm(t, f.srv.URL+"/oauth2/token", url.Values{"grant_type": {"authorization_code"}, "code": {cb.Query().Get("code")},
		"redirect_uri": {rpCallback}, "code_verifier": {verifier}, "resource": {f.srv.URL}}, "wallet", secret)
	want := `[{"credential_configuration_id":"` + walletSDJWT + `","credential_identifiers":["` + walletSDJWT + `"],"type":"openid_credential"}]`
	if code != 200 || toJSON(tok["authorization_details"]) != want {
		t.Fatalf("token: %d %v", code, tok)
	}
	at := tok["access_token"].(string)
	if !strings.Contains(decodeSeg(t, strings.Split(at, ".")[1]), `"credential_identifiers"`) {
		t.Fatal("the access token lacks authorization_details")
	}
	req := httptest.NewRequest("POST", f.srv.URL+"/pid/credential", nil)
	req.Header.Set("Authorization", "Bearer "+at)
	c, err := f.p.Bearer(req.WithContext(ctx), auth.ScopePID)
	if err != nil || toJSON(c.WalletCredentials) != `["`+walletSDJWT+`"]` || c.Subject == "" {
		t.Fatalf("Bearer: %v %+v", err, c)
	}

	// A client not allowed the PID cannot ask for it by details either.
	if code, body := push("rp", `[{"type":"openid_credential","credential_configuration_id":"`+walletSDJWT+`"}]`); code != 400 || body["error"] != "invalid_authorization_details" {
		t.Errorf("PAR by a client without the PID scope: %d %v", code, body)
	}
}

// With wallet.loa high, a login for the PID must reach high: where nothing offered reaches it
// (no high passkey, no card), the wallet hears unmet_authentication_requirements, whatever it
// asked for; other scopes are not affected.
func TestWalletLoAHigh(t *testing.T) {
	f := newFixtureWith(t, Config{WalletConfigurations: []string{walletSDJWT}, WalletLoA: LoAHigh}, false)
	f.register(t, ClientSpec{ID: "wallet", Name: "Wallet", RedirectURIs: []string{rpCallback}, Scopes: []string{"openid", auth.ScopePID}, AuthMethod: AuthNone})
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for name, extra := range map[string]url.Values{
		"scope":                 {"scope": {auth.ScopePID}, "acr_values": {LoASubstantial}},
		"authorization_details": {"authorization_details": {`[{"type":"openid_credential","credential_configuration_id":"` + walletSDJWT + `"}]`}},
		"openid only":           {"scope": {"openid"}},
	} {
		q := url.Values{"client_id": {"wallet"}, "response_type": {"code"}, "redirect_uri": {rpCallback}, "state": {"state-12345678"},
			"code_challenge": {oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier())}, "code_challenge_method": {"S256"}}
		for k, v := range extra {
			q[k] = v
		}
		resp, err := noRedirect.Get(f.srv.URL + "/oauth2/auth?" + q.Encode())
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		loc, _ := url.Parse(resp.Header.Get("Location"))
		got := ""
		if loc != nil {
			got = loc.Query().Get("error")
		}
		if want := map[bool]string{true: "", false: "unmet_authentication_requirements"}[name == "openid only"]; got != want {
			t.Errorf("%s: %d %s, want error %q", name, resp.StatusCode, resp.Header.Get("Location"), want)
		}
	}
}
