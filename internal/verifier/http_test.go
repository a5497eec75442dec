package verifier

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/vula-eid/vula/internal/apitest"
	"github.com/vula-eid/vula/internal/auth"
	"github.com/vula-eid/vula/internal/web"
)

// bearers is the provider as the verifier sees it: a token names its client.
type bearers map[string]string

func (b bearers) Bearer(r *http.Request, scope string) (auth.Caller, error) {
	tok := auth.TokenOf(r)
	if tok == "" {
		return auth.Caller{}, auth.ErrNoToken
	}
	c, ok := b[tok]
	if !ok || scope != Scope {
		return auth.Caller{}, auth.ErrTokenInvalid
	}
	return auth.Caller{ClientID: c, Scopes: []string{Scope}}, nil
}

var _ auth.Authenticator = bearers(nil)

// The API answers as api/openapi.yaml says, bad input gets a 4xx naming why, and the wallet's
// endpoints answer in OAuth's error form.
func TestHTTP(t *testing.T) {
	is := newIssuer(t, "outside")
	s := newService(t, is, is.ca)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	pages, err := web.New(log, true)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	Handler{S: s, Auth: bearers{"t-shop": "shop", "t-other": "other"}, Pages: pages, Log: log}.Register(mux)
	spec := apitest.Load(t)
	do := func(method, path, token, ctype string, body []byte) (*http.Request, *httptest.ResponseRecorder) {
		req := httptest.NewRequest(method, "https://vula.example"+path, bytes.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, req)
		return req, w
	}
	ask := `{"dcql_query":` + pidQuery + `,"response_mode":"direct_post","redirect_uri":"https://shop.example/done","state":"s1"}`
	for _, tc := range []struct {
		name, token, body string
		status            int
		want              string
	}{
		{"no token", "", ask, 401, "token"},
		{"not JSON", "t-shop", `{`, 400, "JSON"},
		{"an unknown member", "t-shop", `{"dcql_query":` + pidQuery + `,"presentation_definition":{}}`, 400, "presentation_definition"},
		{"no query", "t-shop", `{}`, 400, "dcql_query is required"},
		{"an unknown format", "t-shop", `{"dcql_query":{"credentials":[{"id":"a","format":"jwt_vc_json","meta":{}}]}}`, 400, "unknown"},
		{"mdoc without a doctype", "t-shop", `{"dcql_query":{"credentials":[{"id":"a","format":"mso_mdoc","meta":{}}]}}`, 400, "doctype_value"},
		{"a bad response mode", "t-shop", `{"dcql_query":` + pidQuery + `,"response_mode":"fragment"}`, 400, "response_mode"},
		{"a plain http redirect", "t-shop", `{"dcql_query":` + pidQuery + `,"redirect_uri":"http://shop.example/"}`, 400, "redirect_uri"},
		{"too large", "t-shop", `{"dcql_query":` + pidQuery + `,"state":"` + strings.Repeat("x", maxAsk) + `"}`, 413, "larger"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, w := do("POST", "/api/v1/presentations", tc.token, "application/json", []byte(tc.body))
			if w.Code != tc.status || !strings.Contains(w.Body.String(), tc.want) {
				t.Fatalf("%d %s, want %d naming %q", w.Code, w.Body, tc.status, tc.want)
			}
			spec.CheckResponse(t, req, w.Code, w.Header(), w.Body.Bytes())
		})
	}

	req, w := do("POST", "/api/v1/presentations", "t-shop", "application/json", []byte(ask))
	if w.Code != 201 {
		t.Fatalf("create: %d %s", w.Code, w.Body)
	}
	spec.CheckResponse(t, req, w.Code, w.Header(), w.Body.Bytes())
	var tx Created
	json.Unmarshal(w.Body.Bytes(), &tx)
	path := func(u string) string { p, _ := url.Parse(u); return p.Path }

	req, w = do("GET", path(tx.ResultURI), "t-shop", "", nil)
	if w.Code != 200 || !strings.Contains(w.Body.String(), `"pending"`) {
		t.Fatalf("pending result: %d %s", w.Code, w.Body)
	}
	spec.CheckResponse(t, req, w.Code, w.Header(), w.Body.Bytes())
	if req, w = do("GET", path(tx.ResultURI), "t-other", "", nil); w.Code != 404 {
		t.Fatalf("another client's fetch: %d %s", w.Code, w.Body)
	}
	spec.CheckResponse(t, req, w.Code, w.Header(), w.Body.Bytes())

	// The page: framable by the relying party's origin only.
	_, w = do("GET", "/verify/"+tx.ID+"?lang=en", "", "", nil)
	if csp := w.Header().Get("Content-Security-Policy"); w.Code != 200 || !strings.Contains(csp, "frame-ancestors https://shop.example;") ||
		w.Header().Get("Refresh") == "" {
		t.Fatalf("page: %d, CSP %q, Refresh %q", w.Code, csp, w.Header().Get("Refresh"))
	}
	if _, w = do("GET", "/verify/nope", "", "", nil); w.Code != 404 {
		t.Fatalf("an unknown page: %d", w.Code)
	}

	// The request object, by GET and by POST with a wallet nonce.
	_, w = do("GET", path(tx.RequestURI), "", "", nil)
	if w.Code != 200 || w.Header().Get("Content-Type") != "application/oauth-authz-req+jwt" {
		t.Fatalf("request object: %d %s", w.Code, w.Header())
	}
	_, w = do("POST", path(tx.RequestURI), "", "application/x-www-form-urlencoded", []byte("wallet_nonce=wn-1&wallet_metadata=%7B%7D"))
	payload, _ := b64.DecodeString(strings.Split(w.Body.String(), ".")[1])
	var ro struct {
		WalletNonce string `json:"wallet_nonce"`
		State       string `json:"state"`
		Nonce       string `json:"nonce"`
		ClientID    string `json:"client_id"`
	}
	json.Unmarshal(payload, &ro)
	if w.Code != 200 || ro.WalletNonce != "wn-1" {
		t.Fatalf("request object by POST: %d %s", w.Code, payload)
	}
	if _, w = do("GET", "/openid4vp/request/nope", "", "", nil); w.Code != 404 || !strings.Contains(w.Body.String(), "invalid_request_uri") {
		t.Fatalf("an unknown request: %d %s", w.Code, w.Body)
	}

	// The response endpoint: garbage and strangers get 4xx and change nothing.
	for _, tc := range []struct {
		name, path, body string
		status           int
	}{
		{"an unknown transaction", "/openid4vp/response/nope", "vp_token=%7B%7D&state=x", 404},
		{"a foreign state", path(tx.ResponseURI), "vp_token=%7B%7D&state=x", 400},
		{"an encrypted response to direct_post", path(tx.ResponseURI), "response=a.b.c.d.e&state=" + ro.State, 400},
		{"too large", path(tx.ResponseURI), "vp_token=" + strings.Repeat("x", maxResponseBody), 413},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, w := do("POST", tc.path, "", "application/x-www-form-urlencoded", []byte(tc.body))
			if w.Code != tc.status {
				t.Fatalf("%d %s, want %d", w.Code, w.Body, tc.status)
			}
		})
	}
	holder, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p := present(t, is.credential(t, holder, 1, time.Now().Add(time.Hour)), holder, ro.ClientID, ro.Nonce, "family_name", "age_equal_or_over", "18")
	vp, _ := json.Marshal(map[string]any{"pid": []string{p}})
	_, w = do("POST", path(tx.ResponseURI), "", "application/x-www-form-urlencoded", []byte(url.Values{"vp_token": {string(vp)}, "state": {ro.State}}.Encode()))
	if w.Code != 200 || !strings.Contains(w.Body.String(), `"redirect_uri":"https://shop.example/done?`) {
		t.Fatalf("the answer: %d %s", w.Code, w.Body)
	}
	req, w = do("GET", path(tx.ResultURI), "t-shop", "", nil)
	if w.Code != 200 || !strings.Contains(w.Body.String(), `"accepted"`) {
		t.Fatalf("accepted result: %d %s", w.Code, w.Body)
	}
	spec.CheckResponse(t, req, w.Code, w.Header(), w.Body.Bytes())
	// The page now sends the browser on, with the state and without the response code.
	_, w = do("GET", "/verify/"+tx.ID, "", "", nil)
	if loc := w.Header().Get("Location"); w.Code != 303 || loc != "https://shop.example/done?state=s1" {
		t.Fatalf("page once answered: %d %q", w.Code, loc)
	}
}
