package pid

import (
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v3"

	"github.com/vula-eid/vula/internal/web"
)

type client struct {
	t   *testing.T
	srv *httptest.Server
}

func newClient(t *testing.T, e *env) client {
	mux := http.NewServeMux()
	Handler{S: e.svc, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return client{t: t, srv: srv}
}

func (c client) do(method, path, ctype, body, token string) (int, map[string]any) {
	c.t.Helper()
	req, _ := http.NewRequest(method, c.srv.URL+path, strings.NewReader(body))
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// preCode is the pre-authorized code of offer.
func preCode(t testing.TB, offer Offer) string {
	t.Helper()
	var co struct {
		Grants map[string]struct {
			Code string `json:"pre-authorized_code"`
		} `json:"grants"`
	}
	if err := json.Unmarshal(offer.Value, &co); err != nil {
		t.Fatal(err)
	}
	return co.Grants[GrantPreAuthorized].Code
}

// proof signs an openid4vci-proof+jwt with k, carrying the public key jwk in its header.
func proof(t testing.TB, k *ecdsa.PrivateKey, jwk jose.JSONWebKey, aud, nonce string, iat time.Time) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: k},
		(&jose.SignerOptions{EmbedJWK: false}).WithType("openid4vci-proof+jwt").WithHeader("jwk", jwk))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(map[string]any{"aud": aud, "iat": iat.Unix(), "nonce": nonce})
	o, err := s.Sign(b)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := o.CompactSerialize()
	return c
}

func TestPreAuthorizedFlow(t *testing.T) {
	e := newEnv(t)
	c := newClient(t, e)
	ctx := context.Background()
	offer, err := e.svc.NewOffer(ctx, "1234567890", "desk-1")
	if err != nil {
		t.Fatal(err)
	}
	code := preCode(t, offer)
	form := func(tx string) string {
		return url.Values{"grant_type": {GrantPreAuthorized}, "pre-authorized_code": {code}, "tx_code": {tx}}.Encode()
	}
	wrong := "000000"
	if offer.TxCode == wrong {
		wrong = "111111"
	}
	st, out := c.do("POST", "/pid/token", "application/x-www-form-urlencoded", form(wrong), "")
	if st != 400 || out["error"] != "invalid_grant" {
		t.Fatalf("wrong tx_code: %d %v", st, out)
	}
	st, out = c.do("POST", "/pid/token", "application/x-www-form-urlencoded", form(offer.TxCode), "")
	if st != 200 || out["access_token"] == nil {
		t.Fatalf("token: %d %v", st, out)
	}
	tok := out["access_token"].(string)
	// The code is used up.
	if st, out := c.do("POST", "/pid/token", "application/x-www-form-urlencoded", form(offer.TxCode), ""); st != 400 || out["error"] != "invalid_grant" {
		t.Fatalf("second redemption: %d %v", st, out)
	}
	nonce := func() string {
		st, out := c.do("POST", "/pid/nonce", "", "", "")
		if st != 200 {
			t.Fatalf("nonce: %d", st)
		}
		return out["c_nonce"].(string)
	}
	credReq := func(proofs ...string) string {
		b, _ := json.Marshal(map[string]any{"credential_configuration_id": ConfigSDJWT, "proofs": map[string]any{"jwt": proofs}})
		return string(b)
	}
	k1, j1 := holderKey(t)
	k2, j2 := holderKey(t)
	n := nonce()
	p1, p2 := proof(t, k1, j1, issuerURL, n, e.clock), proof(t, k2, j2, issuerURL, n, e.clock)
	st, out = c.do("POST", "/pid/credential", "application/json", credReq(p1, p2), tok)
	if st != 200 {
		t.Fatalf("credential: %d %v", st, out)
	}
	if creds := out["credentials"].([]any); len(creds) != 2 {
		t.Fatalf("batch of 2 gave %d", len(creds))
	}

	cases := []struct {
		name, body, token, want string
		status                  int
	}{
		{"replayed proof", credReq(p1), tok, "invalid_nonce", 400},
		{"unknown nonce", credReq(proof(t, k1, j1, issuerURL, "made-up", e.clock)), tok, "invalid_nonce", 400},
		{"stale proof", credReq(proof(t, k1, j1, issuerURL, nonce(), e.clock.Add(-time.Hour))), tok, "invalid_proof", 400},
		{"proof by another key", credReq(proof(t, k2, j1, issuerURL, nonce(), e.clock)), tok, "invalid_proof", 400},
		{"proof for another issuer", credReq(proof(t, k1, j1, "https://other.example", nonce(), e.clock)), tok, "invalid_proof", 400},
		{"one key twice", func() string {
			n := nonce()
			return credReq(proof(t, k1, j1, issuerURL, n, e.clock), proof(t, k1, j1, issuerURL, n, e.clock))
		}(), tok, "invalid_proof", 400},
		{"no proofs", `{"credential_configuration_id":"` + ConfigSDJWT + `"}`, tok, "invalid_proof", 400},
		{"unknown configuration", `{"credential_configuration_id":"x","proofs":{"jwt":["a"]}}`, tok, "unknown_credential_configuration", 400},
		{"not JSON", `{`, tok, "invalid_credential_request", 400},
		{"no token", credReq(p1), "", "", 401},
		{"bad token", credReq(p1), "nope", "", 401},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st, out := c.do("POST", "/pid/credential", "application/json", tc.body, tc.token)
			if st != tc.status || (tc.want != "" && out["error"] != tc.want) {
				t.Fatalf("got %d %v, want %d %s", st, out, tc.status, tc.want)
			}
		})
	}
}

func TestWrongTxCodeIsRateLimited(t *testing.T) {
	e := newEnv(t)
	c := newClient(t, e)
	offer, err := e.svc.NewOffer(context.Background(), "1234567890", "desk-1")
	if err != nil {
		t.Fatal(err)
	}
	code := preCode(t, offer)
	wrong := "000000"
	if offer.TxCode == wrong {
		wrong = "111111"
	}
	for i := 0; i < maxTxErrors; i++ {
		st, out := c.do("POST", "/pid/token", "application/x-www-form-urlencoded",
			url.Values{"grant_type": {GrantPreAuthorized}, "pre-authorized_code": {code}, "tx_code": {wrong}}.Encode(), "")
		if st != 400 || out["error"] != "invalid_grant" {
			t.Fatalf("try %d: %d %v", i, st, out)
		}
	}
	// After the fifth wrong code even the right one is refused: the offer is gone.
	st, out := c.do("POST", "/pid/token", "application/x-www-form-urlencoded",
		url.Values{"grant_type": {GrantPreAuthorized}, "pre-authorized_code": {code}, "tx_code": {offer.TxCode}}.Encode(), "")
	if st != 400 || out["error"] != "invalid_grant" {
		t.Fatalf("right code after the limit: %d %v", st, out)
	}
}

func TestStatusEndpoint(t *testing.T) {
	e := newEnv(t)
	c := newClient(t, e)
	_, jwk := holderKey(t)
	if _, err := e.svc.Issue(context.Background(), Request{SubjectID: e.sub, Format: FormatSDJWT, Holders: []jose.JSONWebKey{jwk}}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ accept, ctype string }{{"", MediaStatusJWT}, {MediaStatusCWT, MediaStatusCWT}} {
		req, _ := http.NewRequest("GET", c.srv.URL+"/pid/status/1", nil)
		req.Header.Set("Accept", tc.accept)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != tc.ctype || !strings.HasPrefix(resp.Header.Get("Cache-Control"), "public, max-age=") ||
			resp.Header.Get("ETag") == "" {
			t.Fatalf("accept %q: %d %v", tc.accept, resp.StatusCode, resp.Header)
		}
		req.Header.Set("If-None-Match", resp.Header.Get("ETag"))
		resp, err = http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotModified {
			t.Fatalf("conditional fetch: %d", resp.StatusCode)
		}
	}
	for _, p := range []string{"/pid/status/2", "/pid/status/0", "/pid/status/x", "/pid/status/99999999999999999999"} {
		if st, _ := c.do("GET", p, "", "", ""); st != 404 {
			t.Fatalf("%s: %d", p, st)
		}
	}
}

// The offer page shows the offer as a QR code and a link in the person's language, never the
// transaction code; an unknown or used offer is a 404 page.
func TestOfferPage(t *testing.T) {
	e := newEnv(t)
	pages, err := web.New(slog.New(slog.NewTextHandler(io.Discard, nil)), false)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	Handler{S: e.svc, Pages: pages, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	offer, err := e.svc.NewOffer(context.Background(), "1234567890", "desk-1")
	if err != nil {
		t.Fatal(err)
	}
	for lang, want := range map[string]string{"en": "Your identity for your digital wallet", "sq": "Identiteti juaj për portofolin digjital",
		"sr": "Vaš identitet za digitalni novčanik"} {
		resp, err := http.Get(srv.URL + "/pid/offer/" + offer.ID + "?lang=" + lang)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		page := html.UnescapeString(string(body))
		if resp.StatusCode != 200 || !strings.Contains(page, want) || !strings.Contains(page, `src="data:image/png;base64,`) ||
			!strings.Contains(page, offer.URI) {
			t.Fatalf("%s page: %d\n%s", lang, resp.StatusCode, page)
		}
		if strings.Contains(page, offer.TxCode) {
			t.Fatalf("%s page shows the transaction code", lang)
		}
	}
	resp, err := http.Get(srv.URL + "/pid/offer/unknown")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Fatalf("unknown offer: %d", resp.StatusCode)
	}
}
