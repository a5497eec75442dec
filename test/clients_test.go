package e2e

import (
	"net/http"
	"net/url"
	"testing"
)

// TestCLIClientDeleteVoidsTokens: `vula clients delete` beside a running server refuses the
// client's client_credentials tokens at once, as a delete through the admin API does: they are
// not stored, so the command writes the revocation marker every replica reads, rather than
// leaving them usable until the server's client cache lapses.
func TestCLIClientDeleteVoidsTokens(t *testing.T) {
	t.Parallel()
	vulaBinary(t)
	data := t.TempDir()
	env := []string{"VULA_DATA_DIR=" + data}
	secret := sealClient(t, env, "shop", "--scope", "verify")
	srv := startReplicaAt(t, freePort(t), data, nil)
	srv.ready(t, http.StatusOK)
	issuer := "http://" + srv.addr

	code, tok := postBasic(t, issuer+"/oauth2/token", "shop", secret, url.Values{"grant_type": {"client_credentials"}, "scope": {"verify"}})
	if code != 200 || tok["access_token"] == nil {
		t.Fatalf("client_credentials: %d %v", code, tok)
	}
	result := func() int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, issuer+"/api/v1/presentations/none", nil)
		req.Header.Set("Authorization", "Bearer "+tok["access_token"].(string))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if c := result(); c != http.StatusNotFound { // the token is good: no such presentation
		t.Fatalf("before the delete: %d", c)
	}
	vula(t, env, "clients", "delete", "shop")
	if c := result(); c != http.StatusUnauthorized {
		t.Fatalf("right after vula clients delete: %d, want 401", c)
	}
}
