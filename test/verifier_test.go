package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestHolderPresentsToVerifier: `vula wallet`, the reference holder, answers Vula's own
// verifier — a relying party's DCQL query for the family name and age over 18, in both response
// modes — and the relying party's result has exactly those claims, trusted, valid and key bound.
// The two were built apart, each against OpenID4VP 1.0: this is their interoperability check.
func TestHolderPresentsToVerifier(t *testing.T) {
	vulaBinary(t)
	work := t.TempDir()
	data := filepath.Join(work, "var")
	addr := freePort(t)
	base := "http://" + addr
	env := []string{"VULA_DATA_DIR=" + data, "VULA_IDP_DEMO=false", "VULA_BASE_URL=" + base}
	const number = "7788990011"
	vula(t, append(env, "CITIZEN_PW=a long and secret passphrase"), "persons", "create", number, "--given-name", "Vjosa",
		"--family-name", "Krasniqi", "--birthdate", "1992-03-14", "--password-env", "CITIZEN_PW")
	var cc struct {
		Secret string `json:"client_secret"`
	}
	if err := json.Unmarshal([]byte(vula(t, env, "clients", "create", "shop", "--grant-type", "client_credentials", "--scope", "verify",
		"-o", "json")), &cc); err != nil || cc.Secret == "" {
		t.Fatalf("clients create: %v", err)
	}
	srv := startReplicaAt(t, addr, data, env)
	srv.ready(t, http.StatusOK)

	resp, err := http.Get(base + "/pki/root.crt")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("root certificate: %v %v", err, resp)
	}
	root, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	rootFile := filepath.Join(work, "root.crt")
	os.WriteFile(rootFile, root, 0o600)
	wallet := filepath.Join(work, "wallet.json")
	vula(t, nil, "wallet", "init", "--file", wallet, "--trust", rootFile)
	var o struct {
		URI    string `json:"credential_offer_uri"`
		TxCode string `json:"tx_code"`
	}
	if err := json.Unmarshal([]byte(vula(t, env, "pid", "offer", number, "-o", "json")), &o); err != nil {
		t.Fatal(err)
	}
	vula(t, nil, "wallet", "accept", o.URI, "--file", wallet, "--tx-code", o.TxCode)

	tokReq, _ := http.NewRequest("POST", base+"/oauth2/token", strings.NewReader("grant_type=client_credentials&scope=verify"))
	tokReq.SetBasicAuth("shop", cc.Secret)
	tokReq.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	doJSON(t, tokReq, 200, &tok)
	for _, mode := range []string{"direct_post.jwt", "direct_post"} {
		t.Run(mode, func(t *testing.T) {
			body := `{"dcql_query":{"credentials":[{"id":"pid","format":"dc+sd-jwt","meta":{"vct_values":["urn:eudi:pid:1"]},
				"claims":[{"path":["family_name"]},{"path":["age_equal_or_over","18"]}]}]},"response_mode":"` + mode + `"}`
			req, _ := http.NewRequest("POST", base+"/api/v1/presentations", strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
			req.Header.Set("Content-Type", "application/json")
			var tx struct {
				DeepLink  string `json:"deep_link"`
				ResultURI string `json:"result_uri"`
			}
			doJSON(t, req, 201, &tx)
			out := vula(t, nil, "wallet", "present", tx.DeepLink, "--file", wallet, "--trust", rootFile, "--yes")
			if !strings.Contains(out, "answered 200") {
				t.Fatalf("wallet present: %s", out)
			}
			get, _ := http.NewRequest("GET", tx.ResultURI, nil)
			get.Header.Set("Authorization", "Bearer "+tok.AccessToken)
			var res struct {
				Status      string `json:"status"`
				Reason      string `json:"reason"`
				Credentials []struct {
					Trust      string          `json:"trust"`
					Status     string          `json:"status"`
					KeyBinding string          `json:"key_binding"`
					Claims     json.RawMessage `json:"claims"`
				} `json:"credentials"`
			}
			doJSON(t, get, 200, &res)
			if res.Status != "accepted" || len(res.Credentials) != 1 {
				t.Fatalf("result %+v\n%s", res, srv.logs)
			}
			c := res.Credentials[0]
			if c.Trust != "trusted" || c.Status != "valid" || c.KeyBinding != "ok" || string(c.Claims) != `[{"path":["family_name"],"value":"Krasniqi"},{"path":["age_equal_or_over","18"],"value":true}]` {
				t.Fatalf("credential %+v %s", c, c.Claims)
			}
		})
	}
}
