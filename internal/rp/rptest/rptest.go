// Package rptest is a small OpenID provider for the unit tests of the pages that log in through
// internal/rp (the portal, the desk): discovery, its key set, an authorization endpoint that
// answers at once with a code for the login the test decides (or with the error it decides),
// and a token endpoint that checks PKCE and returns an ES256 ID token with the request's nonce.
// It stands in for what the real provider would refuse earlier, so that the pages' own checks
// can be seen; the real path is in test/ (TestBrowserPortal*, TestBrowserDesk).
package rptest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v3"
	"github.com/go-jose/go-jose/v3/jwt"

	"github.com/vula-eid/vula/internal/rp"
)

// Login is what the provider answers an authorization request with.
type Login struct {
	Subject  string
	ACR      string
	AMR      []string
	AuthTime time.Time // the ID token's auth_time; now when zero
	// Error, when set, is the OAuth error the browser is sent back with instead of a code.
	Error string
}

// OP is the provider.
type OP struct {
	issuer, clientID string
	key              *ecdsa.PrivateKey
	login            func(url.Values) Login

	mu       sync.Mutex
	codes    map[string]codeState
	requests []url.Values
}

type codeState struct {
	challenge, nonce string
	login            Login
}

// Register puts the provider's endpoints on mux, served at issuer, for clientID; login decides
// each authorization request's answer from its query.
func Register(t testing.TB, mux *http.ServeMux, issuer, clientID string, login func(url.Values) Login) *OP {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	op := &OP{issuer: issuer, clientID: clientID, key: key, login: login, codes: map[string]codeState{}}
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]any{"issuer": issuer, "authorization_endpoint": issuer + "/oauth2/auth",
			"token_endpoint": issuer + "/oauth2/token", "jwks_uri": issuer + "/jwks.json",
			"id_token_signing_alg_values_supported": []string{"ES256"}})
	})
	mux.HandleFunc("GET /jwks.json", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k", Algorithm: "ES256", Use: "sig"}}})
	})
	mux.HandleFunc("GET /oauth2/auth", op.authorize)
	mux.HandleFunc("POST /oauth2/token", func(w http.ResponseWriter, r *http.Request) { op.token(t, w, r) })
	return op
}

// Requests are the authorization requests the provider has seen, in order.
func (op *OP) Requests() []url.Values {
	op.mu.Lock()
	defer op.mu.Unlock()
	return append([]url.Values(nil), op.requests...)
}

func (op *OP) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	l := op.login(q)
	op.mu.Lock()
	op.requests = append(op.requests, q)
	op.mu.Unlock()
	back := url.Values{"state": {q.Get("state")}}
	if l.Error != "" {
		back.Set("error", l.Error)
	} else {
		code := rp.Token()
		op.mu.Lock()
		op.codes[code] = codeState{challenge: q.Get("code_challenge"), nonce: q.Get("nonce"), login: l}
		op.mu.Unlock()
		back.Set("code", code)
	}
	http.Redirect(w, r, q.Get("redirect_uri")+"?"+back.Encode(), http.StatusSeeOther)
}

func (op *OP) token(t testing.TB, w http.ResponseWriter, r *http.Request) {
	op.mu.Lock()
	c, ok := op.codes[r.PostFormValue("code")]
	delete(op.codes, r.PostFormValue("code"))
	op.mu.Unlock()
	sum := sha256.Sum256([]byte(r.PostFormValue("code_verifier")))
	if !ok || base64.RawURLEncoding.EncodeToString(sum[:]) != c.challenge {
		http.Error(w, `{"error":"invalid_grant"}`, http.StatusBadRequest)
		return
	}
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: op.key}, (&jose.SignerOptions{}).WithHeader("kid", "k"))
	if err != nil {
		t.Error(err)
		return
	}
	// go-oidc checks exp and iat against the real time, whatever clock the pages have.
	now := time.Now()
	authTime := c.login.AuthTime
	if authTime.IsZero() {
		authTime = now
	}
	idt, err := jwt.Signed(sig).Claims(map[string]any{"iss": op.issuer, "aud": op.clientID, "sub": c.login.Subject,
		"nonce": c.nonce, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
		"acr": c.login.ACR, "amr": c.login.AMR, "auth_time": authTime.Unix()}).CompactSerialize()
	if err != nil {
		t.Error(err)
		return
	}
	writeJSON(w, map[string]any{"access_token": "at", "token_type": "Bearer", "expires_in": 300, "id_token": idt})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
