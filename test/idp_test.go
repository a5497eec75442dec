package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v3"
	josejwt "github.com/go-jose/go-jose/v3/jwt"
	"golang.org/x/oauth2"

	"github.com/vula-eid/vula/internal/idp/idptest"
)

// rp is a relying party registered with private_key_jwt, as an operator registers one with
// `vula clients create`.
type rp struct {
	id       string
	key      *ecdsa.PrivateKey
	callback string
}

// newRP writes the client's JWKS and registers it with the CLI (env names the stores).
func newRP(t *testing.T, env []string, id string, extra ...string) *rp {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: id + "-1", Algorithm: "ES256", Use: "sig"}}})
	path := filepath.Join(t.TempDir(), "jwks.json")
	os.WriteFile(path, jwks, 0o600)
	r := &rp{id: id, key: key, callback: "http://127.0.0.1:9/" + id + "/callback"}
	args := append([]string{"clients", "create", id, "--auth-method", "private_key_jwt", "--jwks", path, "--redirect-uri", r.callback,
		"--post-logout-redirect-uri", "http://127.0.0.1:9/" + id + "/bye", "--scope", "openid,profile,personal_number", "--name", "Municipality of Prishtina"}, extra...)
	vula(t, env, args...)
	return r
}

// assertion is a fresh client assertion for the token endpoint at tokenURL.
func (r *rp) assertion(t *testing.T, aud string) url.Values {
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: r.key, KeyID: r.id + "-1"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := josejwt.Signed(s).Claims(josejwt.Claims{Issuer: r.id, Subject: r.id, Audience: josejwt.Audience{aud},
		ID: oauth2.GenerateVerifier(), IssuedAt: josejwt.NewNumericDate(time.Now()), Expiry: josejwt.NewNumericDate(time.Now().Add(time.Minute))}).CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return url.Values{"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {raw}}
}

// post sends a form and decodes the JSON answer.
func post(t *testing.T, u string, form url.Values) (int, map[string]any) {
	t.Helper()
	resp, err := http.PostForm(u, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body
}

// citizen registers a person with the CLI and an authenticator; it returns the password and
// the authenticator's secret.
func citizen(t *testing.T, env []string, number string) (string, string) {
	t.Helper()
	const pw = "a long and secret passphrase"
	vula(t, append(env, "CITIZEN_PW="+pw), "persons", "create", number, "--given-name", "Arta", "--family-name", "Krasniqi",
		"--birthdate", "1990-04-12", "--password-env", "CITIZEN_PW")
	return pw, enrolTOTP(t, env, number)
}

// enrolTOTP enrols an authenticator app for number at the command line and returns its seed.
func enrolTOTP(t *testing.T, env []string, number string) string {
	t.Helper()
	var enrolled struct {
		URI string `json:"otpauth_uri"`
	}
	json.Unmarshal([]byte(vula(t, env, "persons", "enroll-totp", number, "-o", "json")), &enrolled)
	u, err := url.Parse(enrolled.URI)
	if err != nil || u.Query().Get("secret") == "" {
		t.Fatalf("enroll-totp printed %q", enrolled.URI)
	}
	return u.Query().Get("secret")
}

// codeFlow pushes an authorization request (PAR, private_key_jwt, PKCE) to authServer, logs in
// there with password and one-time code at the substantial level, and redeems the code at
// tokenServer (which may be another replica). It returns the token response.
func codeFlow(t *testing.T, r *rp, issuer, authServer, tokenServer, number, pw, seed string) map[string]any {
	t.Helper()
	verifier := oauth2.GenerateVerifier()
	form := r.assertion(t, issuer+"/oauth2/token")
	for k, v := range map[string]string{"client_id": r.id, "response_type": "code", "redirect_uri": r.callback, "scope": "openid profile personal_number",
		"state": "state-" + verifier[:8], "nonce": "nonce-" + verifier[:8], "code_challenge": oauth2.S256ChallengeFromVerifier(verifier),
		"code_challenge_method": "S256", "acr_values": "http://eidas.europa.eu/LoA/substantial"} {
		form.Set(k, v)
	}
	code, par := post(t, authServer+"/oauth2/par", form)
	if code != http.StatusCreated || par["request_uri"] == nil {
		t.Fatalf("PAR: %d %v", code, par)
	}
	b := idptest.New(t, authServer)
	cb := b.Login(authServer+"/oauth2/auth?client_id="+r.id+"&request_uri="+url.QueryEscape(par["request_uri"].(string)), r.callback, number, pw, seed)
	if cb.Query().Get("state") != "state-"+verifier[:8] {
		t.Fatalf("callback %s", cb)
	}
	tf := r.assertion(t, issuer+"/oauth2/token")
	tf.Set("grant_type", "authorization_code")
	tf.Set("code", cb.Query().Get("code"))
	tf.Set("redirect_uri", r.callback)
	tf.Set("code_verifier", verifier)
	code, tok := post(t, tokenServer+"/oauth2/token", tf)
	if code != 200 {
		t.Fatalf("code exchange: %d %v", code, tok)
	}
	return tok
}

// TestIdPEndToEnd runs the provider in the real binary and uses it as a relying party would,
// with go-oidc and golang.org/x/oauth2: PAR, private_key_jwt, PKCE, password + one-time code,
// ID token and userinfo, refresh with rotation, RP-initiated logout.
func TestIdPEndToEnd(t *testing.T) {
	t.Parallel()
	vulaBinary(t)
	ctx := context.Background()
	data := t.TempDir()
	env := []string{"VULA_DATA_DIR=" + data}
	r := newRP(t, env, "prishtina", "--require-par")
	pw, seed := citizen(t, env, "1234567890")
	srv := startReplicaAt(t, freePort(t), data, nil)
	srv.ready(t, http.StatusOK)
	issuer := "http://" + srv.addr
	prov, err := oidc.NewProvider(ctx, issuer)
	if err != nil {
		t.Fatalf("go-oidc discovery: %v", err)
	}

	tok := codeFlow(t, r, issuer, issuer, issuer, "1234567890", pw, seed)
	idt, err := prov.Verifier(&oidc.Config{ClientID: r.id}).Verify(ctx, tok["id_token"].(string))
	if err != nil {
		t.Fatalf("ID token: %v", err)
	}
	var claims map[string]any
	idt.Claims(&claims)
	if claims["acr"] != "http://eidas.europa.eu/LoA/substantial" || !strings.HasPrefix(claims["nonce"].(string), "nonce-") {
		t.Fatalf("ID token claims: %v", claims)
	}
	access := &oauth2.Token{AccessToken: tok["access_token"].(string), TokenType: "Bearer"}
	ui, err := prov.UserInfo(ctx, oauth2.StaticTokenSource(access))
	if err != nil {
		t.Fatal(err)
	}
	var uc map[string]any
	ui.Claims(&uc)
	if uc["personal_number"] != "1234567890" || uc["given_name"] != "Arta" || ui.Subject != idt.Subject {
		t.Fatalf("userinfo: %v", uc)
	}

	// Refresh: a new pair, and the used refresh token is dead.
	rf := r.assertion(t, issuer+"/oauth2/token")
	rf.Set("grant_type", "refresh_token")
	rf.Set("refresh_token", tok["refresh_token"].(string))
	code, tok2 := post(t, issuer+"/oauth2/token", rf)
	if code != 200 || tok2["refresh_token"] == tok["refresh_token"] {
		t.Fatalf("refresh: %d %v", code, tok2)
	}
	rf = r.assertion(t, issuer+"/oauth2/token")
	rf.Set("grant_type", "refresh_token")
	rf.Set("refresh_token", tok["refresh_token"].(string))
	if code, body := post(t, issuer+"/oauth2/token", rf); code == 200 {
		t.Fatalf("a used refresh token worked again: %v", body)
	}

	// A PAR client coming to /oauth2/auth directly is refused.
	b := idptest.New(t, issuer)
	if res := b.Get(issuer + "/oauth2/auth?client_id=" + r.id + "&response_type=code&redirect_uri=" + url.QueryEscape(r.callback) +
		"&scope=openid&state=state-12345678&code_challenge=" + oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier()) + "&code_challenge_method=S256"); res.URL.Query().Get("error") != "invalid_request" {
		t.Fatalf("PAR client without PAR: %d %s", res.Status, res.URL)
	}

	// RP-initiated logout: confirmed, back to the registered URI with the state; the next
	// authorization asks for the password again.
	lb := idptest.New(t, issuer)
	lb.Login(authURLFor(t, r, issuer), r.callback, "1234567890", pw, "")
	res := lb.Get(issuer + "/logout?id_token_hint=" + tok["id_token"].(string) + "&post_logout_redirect_uri=" +
		url.QueryEscape("http://127.0.0.1:9/"+r.id+"/bye") + "&state=bye-123")
	if res.Status != 200 || res.Form.Get("logout") == "" {
		t.Fatalf("logout page: %d\n%s", res.Status, res.Body)
	}
	res = lb.Post("/logout", res.Form)
	if res.Status != http.StatusSeeOther || res.URL.String() != "http://127.0.0.1:9/"+r.id+"/bye?state=bye-123" {
		t.Fatalf("logout: %d %s", res.Status, res.URL)
	}
	if res := lb.Get(authURLFor(t, r, issuer)); !strings.Contains(res.Body, `name="password"`) {
		t.Fatalf("still logged in after logout: %d %s", res.Status, res.URL)
	}
	// A logout to an unregistered URI is refused.
	if res := lb.Get(issuer + "/logout?client_id=" + r.id + "&post_logout_redirect_uri=" + url.QueryEscape("https://evil.example/")); res.Status != http.StatusBadRequest {
		t.Fatalf("logout to an unregistered URI: %d", res.Status)
	}
}

// authURLFor pushes a fresh authorization request and returns the URL to send the browser to.
func authURLFor(t *testing.T, r *rp, issuer string) string {
	form := r.assertion(t, issuer+"/oauth2/token")
	v := oauth2.GenerateVerifier()
	for k, val := range map[string]string{"client_id": r.id, "response_type": "code", "redirect_uri": r.callback, "scope": "openid",
		"state": "state-" + v[:8], "code_challenge": oauth2.S256ChallengeFromVerifier(v), "code_challenge_method": "S256"} {
		form.Set(k, val)
	}
	code, par := post(t, issuer+"/oauth2/par", form)
	if code != http.StatusCreated {
		t.Fatalf("PAR: %d %v", code, par)
	}
	return issuer + "/oauth2/auth?client_id=" + r.id + "&request_uri=" + url.QueryEscape(par["request_uri"].(string))
}
