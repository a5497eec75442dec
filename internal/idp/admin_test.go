package idp

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"golang.org/x/oauth2/clientcredentials"
)

// The admin API answers only tokens with the admin scope, and does what the CLI does.
func TestAdminAPI(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	secret := f.register(t, ClientSpec{ID: "ops", GrantTypes: []string{"client_credentials"}, Scopes: []string{"admin", "seal"}})
	token := func(scope string) string {
		tok, err := (&clientcredentials.Config{ClientID: "ops", ClientSecret: secret, TokenURL: f.srv.URL + "/oauth2/token", Scopes: []string{scope}}).Token(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return tok.AccessToken
	}
	admin := token("admin")
	call := func(method, path, tok, body string) (int, string) {
		req, _ := http.NewRequest(method, f.srv.URL+path, strings.NewReader(body))
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := call("GET", "/api/v1/admin/clients", "", ""); code != 401 {
		t.Fatalf("no token: %d", code)
	}
	if code, _ := call("GET", "/api/v1/admin/clients", token("seal"), ""); code != 403 {
		t.Fatalf("token without the admin scope: %d", code)
	}
	if code, _ := call("GET", "/api/v1/admin/clients", "garbage", ""); code != 401 {
		t.Fatalf("garbage token: %d", code)
	}
	code, body := call("POST", "/api/v1/admin/clients", admin, `{"client_id":"tax","redirect_uris":["https://tax.example/cb"],"client_name":"Tax"}`)
	var made ClientView
	json.Unmarshal([]byte(body), &made)
	if code != 201 || made.Secret == "" || made.AuthMethod != AuthSecretBasic {
		t.Fatalf("create client: %d %s", code, body)
	}
	if code, body := call("POST", "/api/v1/admin/clients", admin, `{"client_id":"tax","redirect_uris":["https://tax.example/cb"]}`); code != 409 {
		t.Fatalf("same client twice: %d %s", code, body)
	}
	for _, bad := range []string{`{"client_id":"x","redirect_uris":["http://evil.example/cb"]}`, `{"client_id":"x","nonsense":1}`, `not json`} {
		if code, body := call("POST", "/api/v1/admin/clients", admin, bad); code != 400 || !strings.Contains(body, `"status":400`) {
			t.Fatalf("bad client %s: %d %s", bad, code, body)
		}
	}
	// A client bound to an institution that does not exist is refused, and nothing is stored
	// (issue #17: it was accepted, and every seal then failed with 409).
	if code, body := call("POST", "/api/v1/admin/clients", admin, `{"client_id":"ghost","grant_types":["client_credentials"],"scopes":["seal"],"organization_id":"nosuch"}`); code != 400 || !strings.Contains(body, `organization \"nosuch\" does not exist`) {
		t.Fatalf("client of an unknown organization: %d %s", code, body)
	}
	if code, _ := call("GET", "/api/v1/admin/clients/ghost", admin, ""); code != 404 {
		t.Fatalf("the refused client was stored: %d", code)
	}
	if code, body := call("GET", "/api/v1/admin/clients/tax", admin, ""); code != 200 || strings.Contains(body, `"client_secret"`) {
		t.Fatalf("get client: %d %s", code, body)
	}
	if code, _ := call("DELETE", "/api/v1/admin/clients/tax", admin, ""); code != 204 {
		t.Fatalf("delete client: %d", code)
	}
	if code, _ := call("GET", "/api/v1/admin/clients/tax", admin, ""); code != 404 {
		t.Fatalf("deleted client: %d", code)
	}
	code, body = call("POST", "/api/v1/admin/persons", admin, `{"personal_number":"1234567890","given_name":"Arta","family_name":"Krasniqi","birthdate":"1990-04-12","password":"a long passphrase"}`)
	if code != 201 || strings.Contains(body, "passphrase") {
		t.Fatalf("create person: %d %s", code, body)
	}
	if code, body := call("POST", "/api/v1/admin/persons", admin, `{"personal_number":"1","given_name":"A","family_name":"B","password":"short"}`); code != 400 {
		t.Fatalf("short password: %d %s", code, body)
	}
	code, body = call("POST", "/api/v1/admin/persons/1234567890/totp", admin, "")
	var p PersonView
	json.Unmarshal([]byte(body), &p)
	if code != 200 || !p.TOTP || !strings.HasPrefix(p.OTPAuthURI, "otpauth://totp/") {
		t.Fatalf("enrol: %d %s", code, body)
	}
	if code, body := call("GET", "/api/v1/admin/persons", admin, ""); code != 200 || !strings.Contains(body, `"totp":true`) || strings.Contains(body, "otpauth") {
		t.Fatalf("list persons: %d %s", code, body)
	}
}
