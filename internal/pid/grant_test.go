package pid

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v3"
)

// dpopProof signs a DPoP proof (RFC 9449) by k for method and the issuer's path; token, when
// not "", gives ath; nonce, when not "", the server nonce.
func dpopProof(t testing.TB, k *ecdsa.PrivateKey, method, path, token, nonce string, iat time.Time) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: k},
		(&jose.SignerOptions{}).WithType("dpop+jwt").WithHeader("jwk", jose.JSONWebKey{Key: k.Public()}))
	if err != nil {
		t.Fatal(err)
	}
	c := map[string]any{"jti": fmt.Sprint(time.Now().UnixNano()), "htm": method, "htu": issuerURL + path, "iat": iat.Unix()}
	if token != "" {
		sum := sha256.Sum256([]byte(token))
		c["ath"] = base64.RawURLEncoding.EncodeToString(sum[:])
	}
	if nonce != "" {
		c["nonce"] = nonce
	}
	b, _ := json.Marshal(c)
	o, err := s.Sign(b)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := o.CompactSerialize()
	return out
}

// send posts body to path with headers, and reads the JSON answer.
func (c client) send(path, ctype, body string, headers map[string]string) (*http.Response, map[string]any) {
	c.t.Helper()
	req, _ := http.NewRequest("POST", c.srv.URL+path, strings.NewReader(body))
	req.Header.Set("Content-Type", ctype)
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp, out
}

func tokenForm(code, tx string, extra url.Values) string {
	v := url.Values{"grant_type": {GrantPreAuthorized}, "pre-authorized_code": {code}, "tx_code": {tx}}
	for k, vs := range extra {
		v[k] = vs
	}
	return v.Encode()
}

const formType = "application/x-www-form-urlencoded"

// The offer goes by reference: the deep link names only where the offer is, which serves it
// until its code is redeemed.
func TestCredentialOfferByReference(t *testing.T) {
	e := newEnv(t)
	c := newClient(t, e)
	offer, err := e.svc.NewOffer(context.Background(), "1234567890", "desk-1")
	if err != nil {
		t.Fatal(err)
	}
	want := "openid-credential-offer://?credential_offer_uri=" + url.QueryEscape(issuerURL+"/pid/credential-offer/"+offer.ID)
	if offer.URI != want || offer.OfferURI != issuerURL+"/pid/credential-offer/"+offer.ID || strings.Contains(offer.URI, preCode(t, offer)) {
		t.Fatalf("offer URI %q, reference %q", offer.URI, offer.OfferURI)
	}
	get := func(path string) (int, string, string) {
		resp, err := http.Get(c.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
	}
	st, ct, body := get("/pid/credential-offer/" + offer.ID)
	var got, sent map[string]any
	_ = json.Unmarshal([]byte(body), &got)
	_ = json.Unmarshal(offer.Value, &sent)
	if st != 200 || ct != "application/json" || fmt.Sprint(got) != fmt.Sprint(sent) || got["credential_issuer"] != issuerURL {
		t.Fatalf("offer by reference: %d %s %s", st, ct, body)
	}
	if st, _, _ := get("/pid/credential-offer/unknown"); st != 404 {
		t.Fatalf("unknown offer: %d", st)
	}
	if resp, out := c.send("/pid/token", formType, tokenForm(preCode(t, offer), offer.TxCode, nil), nil); resp.StatusCode != 200 {
		t.Fatalf("token: %d %v", resp.StatusCode, out)
	}
	if st, _, _ := get("/pid/credential-offer/" + offer.ID); st != 404 {
		t.Fatalf("a redeemed offer is still served: %d", st)
	}
}

// A DPoP proof at the pre-authorized code's token endpoint binds the token; the credential
// endpoint then wants the DPoP scheme and a fresh proof by that key over the token.
func TestPreAuthorizedDPoP(t *testing.T) {
	e := newEnv(t)
	c := newClient(t, e)
	offer, err := e.svc.NewOffer(context.Background(), "1234567890", "desk-1")
	if err != nil {
		t.Fatal(err)
	}
	code := preCode(t, offer)
	dk, _ := holderKey(t)
	other, _ := holderKey(t)

	// First without the server nonce: use_dpop_nonce, and the nonce to use.
	resp, out := c.send("/pid/token", formType, tokenForm(code, offer.TxCode, nil),
		map[string]string{"DPoP": dpopProof(t, dk, "POST", "/pid/token", "", "", e.clock)})
	nonce := resp.Header.Get("DPoP-Nonce")
	if resp.StatusCode != 400 || out["error"] != "use_dpop_nonce" || nonce == "" {
		t.Fatalf("proof without nonce: %d %v %q", resp.StatusCode, out, nonce)
	}
	for name, p := range map[string]string{
		"proof for another URL": dpopProof(t, dk, "POST", "/pid/credential", "", nonce, e.clock),
		"stale proof":           dpopProof(t, dk, "POST", "/pid/token", "", nonce, e.clock.Add(-time.Hour)),
		"not a JWT":             "nope",
	} {
		resp, out := c.send("/pid/token", formType, tokenForm(code, offer.TxCode, nil), map[string]string{"DPoP": p})
		if resp.StatusCode != 400 || out["error"] != "invalid_dpop_proof" {
			t.Fatalf("%s: %d %v", name, resp.StatusCode, out)
		}
	}
	resp, out = c.send("/pid/token", formType, tokenForm(code, offer.TxCode, nil),
		map[string]string{"DPoP": dpopProof(t, dk, "POST", "/pid/token", "", nonce, e.clock)})
	if resp.StatusCode != 200 || out["token_type"] != "DPoP" {
		t.Fatalf("token with a proof: %d %v", resp.StatusCode, out)
	}
	tok := out["access_token"].(string)

	credReq := func() string {
		_, n := c.do("POST", "/pid/nonce", "", "", "")
		hk, hj := holderKey(t)
		b, _ := json.Marshal(map[string]any{"credential_configuration_id": ConfigSDJWT,
			"proofs": map[string]any{"jwt": []string{proof(t, hk, hj, issuerURL, n["c_nonce"].(string), e.clock)}}})
		return string(b)
	}
	good := func() string { return dpopProof(t, dk, "POST", "/pid/credential", tok, "", e.clock) }
	replayed := good()
	for _, tc := range []struct {
		name    string
		headers map[string]string
	}{
		{"as a bearer token", map[string]string{"Authorization": "Bearer " + tok}},
		{"without a proof", map[string]string{"Authorization": "DPoP " + tok}},
		{"proof without ath", map[string]string{"Authorization": "DPoP " + tok, "DPoP": dpopProof(t, dk, "POST", "/pid/credential", "", "", e.clock)}},
		{"proof over another token", map[string]string{"Authorization": "DPoP " + tok, "DPoP": dpopProof(t, dk, "POST", "/pid/credential", "other", "", e.clock)}},
		{"proof by another key", map[string]string{"Authorization": "DPoP " + tok, "DPoP": dpopProof(t, other, "POST", "/pid/credential", tok, "", e.clock)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, out := c.send("/pid/credential", "application/json", credReq(), tc.headers)
			if resp.StatusCode != 401 || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "DPoP ") {
				t.Fatalf("%d %v %v", resp.StatusCode, out, resp.Header)
			}
		})
	}
	resp, out = c.send("/pid/credential", "application/json", credReq(), map[string]string{"Authorization": "DPoP " + tok, "DPoP": replayed})
	if resp.StatusCode != 200 || len(out["credentials"].([]any)) != 1 {
		t.Fatalf("credential with the bound token and a proof: %d %v", resp.StatusCode, out)
	}
	resp, out = c.send("/pid/credential", "application/json", credReq(), map[string]string{"Authorization": "DPoP " + tok, "DPoP": replayed})
	if resp.StatusCode != 401 {
		t.Fatalf("a proof used twice: %d %v", resp.StatusCode, out)
	}
	var meta map[string]any
	resp, err = http.Get(c.srv.URL + "/.well-known/oauth-authorization-server/pid")
	if err != nil {
		t.Fatal(err)
	}
	_ = json.NewDecoder(resp.Body).Decode(&meta)
	resp.Body.Close()
	if fmt.Sprint(meta["dpop_signing_alg_values_supported"]) == "<nil>" || fmt.Sprint(meta["authorization_details_types_supported"]) != "[openid_credential]" {
		t.Fatalf("authorization server metadata: %v", meta)
	}
}

// authorization_details of type openid_credential at the pre-authorized code's token endpoint:
// the token response names the credential identifiers, and the credential request must use
// one of them.
func TestPreAuthorizedAuthorizationDetails(t *testing.T) {
	e := newEnv(t)
	c := newClient(t, e)
	offer, err := e.svc.NewOffer(context.Background(), "1234567890", "desk-1")
	if err != nil {
		t.Fatal(err)
	}
	code := preCode(t, offer)
	details := func(s string) url.Values { return url.Values{"authorization_details": {s}} }
	for name, d := range map[string]string{
		"unknown type":      `[{"type":"credential","credential_configuration_id":"` + ConfigSDJWT + `"}]`,
		"unknown config":    `[{"type":"openid_credential","credential_configuration_id":"eu.example.diploma"}]`,
		"no config":         `[{"type":"openid_credential"}]`,
		"another location":  `[{"type":"openid_credential","credential_configuration_id":"` + ConfigSDJWT + `","locations":["https://other.example"]}]`,
		"not an array":      `{"type":"openid_credential"}`,
		"empty":             `[]`,
		"one of two wrong":  `[{"type":"openid_credential","credential_configuration_id":"` + ConfigSDJWT + `"},{"type":"x"}]`,
		"not JSON at all":   `[{`,
		"config not string": `[{"type":"openid_credential","credential_configuration_id":7}]`,
	} {
		resp, out := c.send("/pid/token", formType, tokenForm(code, offer.TxCode, details(d)), nil)
		if resp.StatusCode != 400 || out["error"] != "invalid_authorization_details" {
			t.Fatalf("%s: %d %v", name, resp.StatusCode, out)
		}
	}
	resp, out := c.send("/pid/token", formType, tokenForm(code, offer.TxCode, details(
		`[{"type":"openid_credential","credential_configuration_id":"`+ConfigSDJWT+`","locations":["`+issuerURL+`"]}]`)), nil)
	if resp.StatusCode != 200 {
		t.Fatalf("token: %d %v", resp.StatusCode, out)
	}
	ad, _ := json.Marshal(out["authorization_details"])
	if string(ad) != `[{"credential_configuration_id":"`+ConfigSDJWT+`","credential_identifiers":["`+ConfigSDJWT+`"],"type":"openid_credential"}]` {
		t.Fatalf("authorization_details in the token response: %s", ad)
	}
	tok := out["access_token"].(string)
	req := func(field, value string) string {
		_, n := c.do("POST", "/pid/nonce", "", "", "")
		hk, hj := holderKey(t)
		b, _ := json.Marshal(map[string]any{field: value,
			"proofs": map[string]any{"jwt": []string{proof(t, hk, hj, issuerURL, n["c_nonce"].(string), e.clock)}}})
		return string(b)
	}
	for _, tc := range []struct{ name, body, want string }{
		{"by configuration id", req("credential_configuration_id", ConfigSDJWT), "invalid_credential_request"},
		{"an identifier not granted", req("credential_identifier", ConfigMdoc), "unknown_credential_identifier"},
		{"both", `{"credential_identifier":"` + ConfigSDJWT + `","credential_configuration_id":"` + ConfigSDJWT + `"}`, "invalid_credential_request"},
	} {
		if st, out := c.do("POST", "/pid/credential", "application/json", tc.body, tok); st != 400 || out["error"] != tc.want {
			t.Fatalf("%s: %d %v, want %s", tc.name, st, out, tc.want)
		}
	}
	if st, out := c.do("POST", "/pid/credential", "application/json", req("credential_identifier", ConfigSDJWT), tok); st != 200 {
		t.Fatalf("by credential_identifier: %d %v", st, out)
	}

	// A token asked without authorization_details knows no credential identifiers.
	offer2, err := e.svc.NewOffer(context.Background(), "1234567890", "desk-1")
	if err != nil {
		t.Fatal(err)
	}
	_, out = c.send("/pid/token", formType, tokenForm(preCode(t, offer2), offer2.TxCode, nil), nil)
	if _, ok := out["authorization_details"]; ok {
		t.Fatalf("authorization_details without asking: %v", out)
	}
	if st, out := c.do("POST", "/pid/credential", "application/json", req("credential_identifier", ConfigSDJWT), out["access_token"].(string)); st != 400 || out["error"] != "invalid_credential_request" {
		t.Fatalf("credential_identifier without authorization_details: %d %v", st, out)
	}
}
