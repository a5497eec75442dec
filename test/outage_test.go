package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vula-eid/vula/internal/testenv"
)

// TestIdPOutages stops PostgreSQL and then Redis under a running Vula: every token request,
// introspection and bearer-protected call answers 503 with Retry-After — never 401 (an outage
// is not bad credentials) and never 500 — and when the store returns, the same requests succeed
// without restarting Vula. Nothing panics.
func TestIdPOutages(t *testing.T) {
	vulaBinary(t)
	pg := testenv.Postgres(t)
	rd := testenv.Redis(t)
	addr := freePort(t)
	issuer := "http://" + addr
	env := []string{"VULA_STORE_DURABLE=" + pg.DSN, "VULA_STORE_EPHEMERAL=" + rd.URL, "VULA_BASE_URL=" + issuer,
		"VULA_IDP_DEMO=false", "VULA_IDP_SEED_KEY_FILE=" + filepath.Join(t.TempDir(), "totp-seal.key")}
	data := t.TempDir()
	env = append(env, "VULA_DATA_DIR="+data)
	var created map[string]any
	if err := json.Unmarshal([]byte(vula(t, env, "clients", "create", "ops", "--grant-type", "client_credentials",
		"--scope", "admin", "--introspection", "--output", "json")), &created); err != nil || created["client_secret"] == nil {
		t.Fatalf("clients create: %v %v", err, created)
	}
	secret, _ := created["client_secret"].(string)
	srv := startReplicaAt(t, addr, data, env)
	srv.ready(t, http.StatusOK)

	call := func(method, path string, form url.Values, bearer string) (int, http.Header, map[string]any) {
		t.Helper()
		var body io.Reader
		if form != nil {
			body = strings.NewReader(form.Encode())
		}
		req, _ := http.NewRequest(method, issuer+path, body)
		if form != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		} else {
			req.SetBasicAuth("ops", secret)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, resp.Header, out
	}
	token := func() (int, http.Header, map[string]any) {
		return call("POST", "/oauth2/token", url.Values{"grant_type": {"client_credentials"}, "scope": {"admin"}}, "")
	}
	works := func(stage string) string {
		t.Helper()
		code, _, body := token()
		if code != 200 {
			t.Fatalf("%s: token %d %v\n%s", stage, code, body, srv.logs)
		}
		at := body["access_token"].(string)
		if code, _, body := call("GET", "/api/v1/admin/clients", nil, at); code != 200 {
			t.Fatalf("%s: admin API %d %v", stage, code, body)
		}
		if code, _, body := call("POST", "/oauth2/introspect", url.Values{"token": {at}}, ""); code != 200 || body["active"] != true {
			t.Fatalf("%s: introspection %d %v", stage, code, body)
		}
		return at
	}
	unavailable := func(stage string, at string) {
		t.Helper()
		for name, c := range map[string]func() (int, http.Header, map[string]any){
			"token":     token,
			"admin API": func() (int, http.Header, map[string]any) { return call("GET", "/api/v1/admin/clients", nil, at) },
			"introspection": func() (int, http.Header, map[string]any) {
				return call("POST", "/oauth2/introspect", url.Values{"token": {at}}, "")
			},
		} {
			code, h, body := c()
			if stage == "PostgreSQL down" && name == "introspection" && code == http.StatusOK && body["active"] == true {
				// Nothing durable is needed: the client is cached (5 s) and the token's session
				// is in Redis, so the answer is right, not a refusal.
				continue
			}
			if stage == "Redis down" && name == "token" && code == http.StatusOK {
				// A client_credentials token is not stored (its revocation is read where it is
				// used), so issuing one needs only the audit log; using it needs Redis (503 below).
				continue
			}
			if code != http.StatusServiceUnavailable || h.Get("Retry-After") == "" {
				t.Errorf("%s, %s: %d (Retry-After %q) %v\n%s", stage, name, code, h.Get("Retry-After"), body, srv.logs)
			}
		}
	}

	at := works("before")
	pg.Stop(t)
	unavailable("PostgreSQL down", at)
	pg.Start(t)
	at = works("PostgreSQL back")
	rd.Stop(t)
	unavailable("Redis down", at)
	rd.Start(t)
	works("Redis back")
	if strings.Contains(srv.logs.String(), "panic") {
		t.Fatalf("the server log has a panic:\n%s", srv.logs)
	}
}
