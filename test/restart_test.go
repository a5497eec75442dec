package e2e

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/vula-eid/vula/internal/idp/idptest"
)

// TestRestartKeepsSessions restarts the real binary on the embedded default (issue #17, item 2):
// an access token, a single sign-on session and an authorization code issued before the restart
// are still good after it, and after a SIGKILL, because the ephemeral state is in a SQLite file
// under data_dir.
// Before, a restart answered 401 to every token and sent everyone back to the login page.
func TestRestartKeepsSessions(t *testing.T) {
	t.Parallel()
	vulaBinary(t)
	data := t.TempDir()
	env := []string{"VULA_DATA_DIR=" + data}
	r := newRP(t, env, "prizren")
	pw, _ := citizen(t, env, "1234500001")
	secret := sealClient(t, env, "registry-sync")
	addr := freePort(t)
	srv := startReplicaAt(t, addr, data, nil)
	srv.ready(t, http.StatusOK)
	issuer := "http://" + addr

	// A client_credentials token, and a code flow's tokens from a password login.
	ccForm := url.Values{"grant_type": {"client_credentials"}}
	code, cc := postBasic(t, issuer+"/oauth2/token", "registry-sync", secret, ccForm)
	if code != 200 || cc["access_token"] == nil {
		t.Fatalf("client_credentials: %d %v", code, cc)
	}
	b := idptest.New(t, issuer)
	authURL, verifier := pushedAuth(t, r, issuer)
	tok := redeem(t, r, issuer, b.Login(authURL, r.callback, "1234500001", pw, "").Query().Get("code"), verifier)
	// The browser's session gives a second code without a login page; it is kept unredeemed.
	authURL, verifier2 := pushedAuth(t, r, issuer)
	res := b.Get(authURL)
	if res.Status != http.StatusSeeOther && res.Status != http.StatusFound || !strings.HasPrefix(res.URL.String(), r.callback) {
		t.Fatalf("single sign-on before the restart: %d %s", res.Status, res.URL)
	}
	code2 := res.URL.Query().Get("code")

	if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := srv.cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, srv.logs)
	}
	srv = startReplicaAt(t, addr, data, nil)
	srv.ready(t, http.StatusOK)

	// The client_credentials token introspects as active, asked by its own client.
	code, ir := postBasic(t, issuer+"/oauth2/introspect", "registry-sync", secret, url.Values{"token": {cc["access_token"].(string)}})
	if code != 200 || ir["active"] != true || ir["client_id"] != "registry-sync" {
		t.Fatalf("introspection after the restart: %d %v", code, ir)
	}
	// The code flow's access token still reads userinfo.
	req, _ := http.NewRequest(http.MethodGet, issuer+"/userinfo", nil)
	req.Header.Set("Authorization", "Bearer "+tok["access_token"].(string))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var ui map[string]any
	json.NewDecoder(resp.Body).Decode(&ui)
	resp.Body.Close()
	if resp.StatusCode != 200 || ui["sub"] == nil {
		t.Fatalf("userinfo after the restart: %d %v", resp.StatusCode, ui)
	}
	// The code issued before the restart is redeemed once, and only once.
	redeem(t, r, issuer, code2, verifier2)
	tf := r.assertion(t, issuer+"/oauth2/token")
	for k, v := range map[string]string{"grant_type": "authorization_code", "code": code2, "redirect_uri": r.callback, "code_verifier": verifier2} {
		tf.Set(k, v)
	}
	if code, body := post(t, issuer+"/oauth2/token", tf); code != http.StatusBadRequest {
		t.Fatalf("a code redeemed twice across a restart: %d %v", code, body)
	}
	// The refresh token still refreshes.
	rf := r.assertion(t, issuer+"/oauth2/token")
	rf.Set("grant_type", "refresh_token")
	rf.Set("refresh_token", tok["refresh_token"].(string))
	if code, body := post(t, issuer+"/oauth2/token", rf); code != 200 || body["access_token"] == nil {
		t.Fatalf("refresh after the restart: %d %v", code, body)
	}
	// The browser is still logged in: no login page.
	authURL, _ = pushedAuth(t, r, issuer)
	if res := b.Get(authURL); res.Status != http.StatusSeeOther && res.Status != http.StatusFound || !strings.HasPrefix(res.URL.String(), r.callback) {
		t.Fatalf("single sign-on after the restart: %d %s\n%s", res.Status, res.URL, res.Body)
	}

	// A crash is a restart too: a token issued just before SIGKILL is still active after it.
	code, cc = postBasic(t, issuer+"/oauth2/token", "registry-sync", secret, ccForm)
	if code != 200 {
		t.Fatalf("client_credentials: %d %v", code, cc)
	}
	srv.cmd.Process.Kill()
	srv.cmd.Wait()
	srv = startReplicaAt(t, addr, data, nil)
	srv.ready(t, http.StatusOK)
	code, ir = postBasic(t, issuer+"/oauth2/introspect", "registry-sync", secret, url.Values{"token": {cc["access_token"].(string)}})
	if code != 200 || ir["active"] != true {
		t.Fatalf("introspection after SIGKILL: %d %v", code, ir)
	}
}

// pushedAuth pushes an authorization request (scope openid, PKCE) and returns the URL to send
// the browser to and the PKCE verifier.
func pushedAuth(t *testing.T, r *rp, issuer string) (string, string) {
	t.Helper()
	v := oauth2.GenerateVerifier()
	form := r.assertion(t, issuer+"/oauth2/token")
	for k, val := range map[string]string{"client_id": r.id, "response_type": "code", "redirect_uri": r.callback, "scope": "openid",
		"state": "state-" + v[:8], "code_challenge": oauth2.S256ChallengeFromVerifier(v), "code_challenge_method": "S256"} {
		form.Set(k, val)
	}
	code, par := post(t, issuer+"/oauth2/par", form)
	if code != http.StatusCreated {
		t.Fatalf("PAR: %d %v", code, par)
	}
	return issuer + "/oauth2/auth?client_id=" + r.id + "&request_uri=" + url.QueryEscape(par["request_uri"].(string)), v
}

// redeem exchanges an authorization code at the token endpoint.
func redeem(t *testing.T, r *rp, issuer, code, verifier string) map[string]any {
	t.Helper()
	tf := r.assertion(t, issuer+"/oauth2/token")
	for k, v := range map[string]string{"grant_type": "authorization_code", "code": code, "redirect_uri": r.callback, "code_verifier": verifier} {
		tf.Set(k, v)
	}
	status, tok := post(t, issuer+"/oauth2/token", tf)
	if status != 200 || tok["access_token"] == nil {
		t.Fatalf("code exchange: %d %v", status, tok)
	}
	return tok
}

// postBasic posts a form with client_secret_basic authentication and decodes the JSON answer.
func postBasic(t *testing.T, u, id, secret string, form url.Values) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body
}
