package idp

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v3"
	josejwt "github.com/go-jose/go-jose/v3/jwt"
	"golang.org/x/oauth2"

	"github.com/vula-eid/vula/internal/idp/idptest"
)

// dpopKey makes DPoP proofs (RFC 9449 §4) with one key.
type dpopKey struct{ priv *ecdsa.PrivateKey }

func newDPoPKey() dpopKey {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	return dpopKey{k}
}

func (k dpopKey) jkt() string {
	tp, _ := (&jose.JSONWebKey{Key: &k.priv.PublicKey}).Thumbprint(crypto.SHA256)
	return base64.RawURLEncoding.EncodeToString(tp)
}

func (k dpopKey) proof(htm, htu, nonce, token string) string {
	opts := (&jose.SignerOptions{EmbedJWK: true}).WithType("dpop+jwt")
	s, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: k.priv}, opts)
	c := map[string]any{"jti": randomID(), "htm": htm, "htu": htu, "iat": time.Now().Unix()}
	if nonce != "" {
		c["nonce"] = nonce
	}
	if token != "" {
		sum := sha256.Sum256([]byte(token))
		c["ath"] = base64.RawURLEncoding.EncodeToString(sum[:])
	}
	raw, _ := josejwt.Signed(s).Claims(c).CompactSerialize()
	return raw
}

// send posts form (or GETs when form is nil) with the given headers.
func send(t *testing.T, method, u string, form url.Values, hdr map[string]string, user, pass string) (int, http.Header, map[string]any) {
	t.Helper()
	var req *http.Request
	if form != nil {
		req, _ = http.NewRequest(method, u, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	} else {
		req, _ = http.NewRequest(method, u, nil)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	if user != "" {
		req.SetBasicAuth(url.QueryEscape(user), url.QueryEscape(pass))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, resp.Header, body
}

// DPoP (RFC 9449) at the token endpoint, PAR, userinfo, introspection and a protected API:
// nonces, bound tokens (cnf.jkt, token_type DPoP), proofs checked at every use (key, htm, htu,
// ath, replay), a client whose policy requires DPoP, dpop_jkt binding the code, and a public
// client's refresh token bound to its key.
func TestDPoP(t *testing.T) {
	f := newFixture(t)
	iss := f.srv.URL
	tokenURL := iss + "/oauth2/token"
	svcSecret := f.register(t, ClientSpec{ID: "svc", GrantTypes: []string{"client_credentials"}, Scopes: []string{"admin"}, DPoP: DPoPRequired})
	key, other := newDPoPKey(), newDPoPKey()
	cc := url.Values{"grant_type": {"client_credentials"}, "scope": {"admin"}}

	code, _, body := send(t, "POST", tokenURL, cc, nil, "svc", svcSecret)
	if code != 400 || body["error"] != "invalid_dpop_proof" {
		t.Fatalf("no proof for a client that requires DPoP: %d %v", code, body)
	}
	code, h, body := send(t, "POST", tokenURL, cc, map[string]string{"DPoP": key.proof("POST", tokenURL, "", "")}, "svc", svcSecret)
	nonce := h.Get("DPoP-Nonce")
	if code != 400 || body["error"] != "use_dpop_nonce" || nonce == "" {
		t.Fatalf("proof without a nonce: %d %v nonce %q", code, body, nonce)
	}
	for name, proof := range map[string]string{
		"another htu": key.proof("POST", iss+"/oauth2/par", nonce, ""),
		"another htm": key.proof("GET", tokenURL, nonce, ""),
		"bad nonce":   key.proof("POST", tokenURL, "bm9uY2U", ""),
		"garbage":     "a.b.c",
	} {
		code, _, body := send(t, "POST", tokenURL, cc, map[string]string{"DPoP": proof}, "svc", svcSecret)
		if code != 400 || (body["error"] != "invalid_dpop_proof" && body["error"] != "use_dpop_nonce") {
			t.Errorf("%s: %d %v", name, code, body)
		}
	}
	code, _, body = send(t, "POST", tokenURL, cc, map[string]string{"DPoP": key.proof("POST", tokenURL, nonce, "")}, "svc", svcSecret)
	if code != 200 || body["token_type"] != "DPoP" {
		t.Fatalf("DPoP token: %d %v", code, body)
	}
	at := body["access_token"].(string)
	var claims map[string]any
	json.Unmarshal([]byte(decodeSeg(t, strings.Split(at, ".")[1])), &claims)
	if cnf, _ := claims["cnf"].(map[string]any); cnf["jkt"] != key.jkt() {
		t.Fatalf("access token cnf: %v", claims["cnf"])
	}

	// The admin API: the bound token only with the DPoP scheme and a fresh proof of its key.
	api := iss + "/api/v1/admin/clients"
	replayed := key.proof("GET", api, "", at)
	for name, hdr := range map[string]map[string]string{
		"as a bearer token":  {"Authorization": "Bearer " + at},
		"without a proof":    {"Authorization": "DPoP " + at},
		"proof of another":   {"Authorization": "DPoP " + at, "DPoP": other.proof("GET", api, "", at)},
		"proof without ath":  {"Authorization": "DPoP " + at, "DPoP": key.proof("GET", api, "", "")},
		"proof for a POST":   {"Authorization": "DPoP " + at, "DPoP": key.proof("POST", api, "", at)},
		"proof for elswhere": {"Authorization": "DPoP " + at, "DPoP": key.proof("GET", iss+"/userinfo", "", at)},
	} {
		if code, h, body := send(t, "GET", api, nil, hdr, "", ""); code != 401 || h.Get("WWW-Authenticate") == "" {
			t.Errorf("admin API, %s: %d %v", name, code, body)
		}
	}
	if code, _, body := send(t, "GET", api, nil, map[string]string{"Authorization": "DPoP " + at, "DPoP": replayed}, "", ""); code != 200 {
		t.Fatalf("admin API with a proof: %d %v", code, body)
	}
	if code, _, _ := send(t, "GET", api, nil, map[string]string{"Authorization": "DPoP " + at, "DPoP": replayed}, "", ""); code != 401 {
		t.Fatalf("admin API with a replayed proof: %d", code)
	}
	// Introspection says it is bound.
	code, _, body = send(t, "POST", iss+"/oauth2/introspect", url.Values{"token": {at}}, nil, "svc", svcSecret)
	if cnf, _ := body["cnf"].(map[string]any); code != 200 || body["token_type"] != "DPoP" || cnf["jkt"] != key.jkt() {
		t.Fatalf("introspection of a bound token: %d %v", code, body)
	}

	// A public client: PAR with a proof binds the code; the token, userinfo and refresh follow.
	f.register(t, ClientSpec{ID: "app", AuthMethod: AuthNone, RedirectURIs: []string{rpCallback}, Scopes: []string{"openid", "profile", "offline_access"},
		GrantTypes: []string{"authorization_code", "refresh_token"}})
	f.citizen(t, false)
	verifier := oauth2.GenerateVerifier()
	par := url.Values{"client_id": {"app"}, "response_type": {"code"}, "redirect_uri": {rpCallback}, "scope": {"openid profile offline_access"},
		"code_challenge": {oauth2.S256ChallengeFromVerifier(verifier)}, "code_challenge_method": {"S256"}, "state": {"state-12345678"}}
	parURL := iss + "/oauth2/par"
	code, _, body = send(t, "POST", parURL, par, map[string]string{"DPoP": key.proof("POST", parURL, nonce, "")}, "", "")
	if code != 201 {
		t.Fatalf("PAR with a proof: %d %v", code, body)
	}
	cb := idptest.New(t, iss).Login(iss+"/oauth2/auth?"+url.Values{"client_id": {"app"}, "request_uri": {body["request_uri"].(string)}}.Encode(),
		rpCallback, "1234567890", "correct horse battery", "")
	redeem := url.Values{"grant_type": {"authorization_code"}, "client_id": {"app"}, "code": {cb.Query().Get("code")},
		"redirect_uri": {rpCallback}, "code_verifier": {verifier}}
	code, _, body = send(t, "POST", tokenURL, redeem, map[string]string{"DPoP": other.proof("POST", tokenURL, nonce, "")}, "", "")
	if code != 400 || body["error"] != "invalid_dpop_proof" {
		t.Fatalf("code bound by dpop_jkt redeemed with another key: %d %v", code, body)
	}
	code, _, body = send(t, "POST", tokenURL, redeem, map[string]string{"DPoP": key.proof("POST", tokenURL, nonce, "")}, "", "")
	if code != 200 || body["token_type"] != "DPoP" || body["refresh_token"] == nil {
		t.Fatalf("code redeemed with the bound key: %d %v", code, body)
	}
	uat, rt := body["access_token"].(string), body["refresh_token"].(string)
	ui := iss + "/userinfo"
	if code, _, body := send(t, "GET", ui, nil, map[string]string{"Authorization": "DPoP " + uat, "DPoP": key.proof("GET", ui, "", uat)}, "", ""); code != 200 || body["sub"] == nil {
		t.Fatalf("userinfo with DPoP: %d %v", code, body)
	}
	if code, _, _ := send(t, "GET", ui, nil, map[string]string{"Authorization": "Bearer " + uat}, "", ""); code != 401 {
		t.Fatalf("userinfo with the bound token as a bearer token: %d", code)
	}
	refresh := url.Values{"grant_type": {"refresh_token"}, "client_id": {"app"}, "refresh_token": {rt}}
	for name, hdr := range map[string]map[string]string{
		"without a proof": nil,
		"another key":     {"DPoP": other.proof("POST", tokenURL, nonce, "")},
	} {
		if code, _, body := send(t, "POST", tokenURL, refresh, hdr, "", ""); code != 400 || body["error"] != "invalid_dpop_proof" {
			t.Errorf("public client's refresh %s: %d %v", name, code, body)
		}
	}
	code, _, body = send(t, "POST", tokenURL, refresh, map[string]string{"DPoP": key.proof("POST", tokenURL, nonce, "")}, "", "")
	if code != 200 || body["token_type"] != "DPoP" {
		t.Fatalf("public client's refresh with its key: %d %v", code, body)
	}

	var meta map[string]any
	resp, _ := http.Get(iss + "/.well-known/openid-configuration")
	json.NewDecoder(resp.Body).Decode(&meta)
	resp.Body.Close()
	if !strings.Contains(toJSON(meta["dpop_signing_alg_values_supported"]), "ES256") {
		t.Fatalf("discovery: %v", meta["dpop_signing_alg_values_supported"])
	}
}

// The FAPI 2.0 Security Profile as one client setting: private_key_jwt only, PAR required,
// PKCE S256, DPoP-bound tokens, iss in the response; a front-channel request, a request without
// PKCE or for response_type token, and a token request without a proof are refused.
func TestFAPI2Profile(t *testing.T) {
	if _, _, err := NewClient(ClientSpec{ID: "x", RedirectURIs: []string{rpCallback}, Profile: ProfileFAPI2}); err == nil {
		t.Fatal("a fapi2 client with client_secret_basic was accepted")
	}
	f := newFixture(t)
	iss := f.srv.URL
	pk := newPKJWTClient(t, f, ClientSpec{ID: "ministry", RedirectURIs: []string{rpCallback}, Profile: ProfileFAPI2})
	rec, _ := f.db.Client(t.Context(), "ministry")
	if !rec.RequirePAR || rec.Policy.DPoP != DPoPRequired || rec.Policy.Profile != ProfileFAPI2 {
		t.Fatalf("fapi2 client: %+v", rec)
	}
	f.citizen(t, false)
	key := newDPoPKey()
	verifier := oauth2.GenerateVerifier()
	req := url.Values{"client_id": {"ministry"}, "response_type": {"code"}, "redirect_uri": {rpCallback}, "scope": {"openid"},
		"code_challenge": {oauth2.S256ChallengeFromVerifier(verifier)}, "code_challenge_method": {"S256"}, "state": {"state-12345678"}}
	auth := func() string {
		return pk.assertion(josejwt.Claims{Audience: josejwt.Audience{iss}, Expiry: inAMinute()})
	}

	// Front channel: refused.
	r := idptest.New(t, iss).Get(iss + "/oauth2/auth?" + req.Encode())
	if r.Status != http.StatusSeeOther || r.URL.Query().Get("error") != "invalid_request" {
		t.Fatalf("front-channel request of a fapi2 client: %d %s", r.Status, r.URL)
	}
	parURL := iss + "/oauth2/par"
	_, h, _ := send(t, "POST", parURL, pk.form(req, auth()), map[string]string{"DPoP": key.proof("POST", parURL, "", "")}, "", "")
	nonce := h.Get("DPoP-Nonce")
	bad := func(name string, edit func(url.Values)) {
		q := url.Values{}
		for k, v := range req {
			q[k] = v
		}
		edit(q)
		if code, _, body := send(t, "POST", parURL, pk.form(q, auth()), nil, "", ""); code != 400 {
			t.Errorf("PAR %s: %d %v", name, code, body)
		}
	}
	bad("without PKCE", func(q url.Values) { q.Del("code_challenge"); q.Del("code_challenge_method") })
	bad("with plain PKCE", func(q url.Values) { q.Set("code_challenge_method", "plain") })
	bad("response_type token", func(q url.Values) { q.Set("response_type", "token") })

	code, _, body := send(t, "POST", parURL, pk.form(req, auth()), map[string]string{"DPoP": key.proof("POST", parURL, nonce, "")}, "", "")
	if code != 201 {
		t.Fatalf("PAR: %d %v", code, body)
	}
	cb := idptest.New(t, iss).Login(iss+"/oauth2/auth?"+url.Values{"client_id": {"ministry"}, "request_uri": {body["request_uri"].(string)}}.Encode(),
		rpCallback, "1234567890", "correct horse battery", "")
	if cb.Query().Get("iss") != iss {
		t.Fatalf("no iss in the response: %s", cb)
	}
	tokenURL := iss + "/oauth2/token"
	redeem := func() url.Values {
		return pk.form(url.Values{"grant_type": {"authorization_code"}, "code": {cb.Query().Get("code")}, "redirect_uri": {rpCallback},
			"code_verifier": {verifier}}, auth())
	}
	if code, _, body := send(t, "POST", tokenURL, redeem(), nil, "", ""); code != 400 || body["error"] != "invalid_dpop_proof" {
		t.Fatalf("token request without a proof: %d %v", code, body)
	}
	code, _, body = send(t, "POST", tokenURL, redeem(), map[string]string{"DPoP": key.proof("POST", tokenURL, nonce, "")}, "", "")
	if code != 200 || body["token_type"] != "DPoP" || body["id_token"] == nil {
		t.Fatalf("fapi2 token: %d %v", code, body)
	}
}
