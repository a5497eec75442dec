// Package rp is the relying party's half of a login at Vula's own identity provider, shared by
// the pages that log people in (the signing portal, the registration desk), and the sessions
// those pages keep afterwards.
//
// The contract:
//   - A login is an OpenID Connect code flow with PKCE (S256) as a public client. Start parks
//     the verifier and a nonce in the ephemeral store under the hash of a random state, binds the
//     state to the browser with a cookie, asks for Config.ACR (acr_values) and sends the browser
//     to the provider. Finish takes the state (once), checks it against the cookie, exchanges the
//     code, verifies the ID token (signature, issuer, audience, expiry, through discovery) and the
//     nonce, and returns what the token says. The caller checks the level (acr) and who may in.
//   - A session is the caller's value, kept as JSON in the ephemeral store under the SHA-256 of
//     a random id that only the browser's cookie holds (HttpOnly, SameSite=Lax, Secure but in
//     development over http, scoped to Config.Path), so any replica serves any request.
//     Sessions does it for a page's session type (which embeds Session): it ends at its Expires
//     whatever the store keeps, and its Guard lets through only a live session, and a POST only
//     as a form carrying the session's CSRF token.
//   - Token and Same make and compare the forms' CSRF tokens (constant time).
package rp

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/vula-eid/vula/internal/store"
)

// Config is one relying party's setup.
type Config struct {
	Issuer   string // the identity provider's base URL (also the pages' own)
	ClientID string
	// Path is the pages' prefix ("/portal/"): the cookies' path; the redirect URI is
	// Issuer+Path+"callback".
	Path string
	// Name names the cookies (vula_<Name>, vula_<Name>_state) and the store keys (<Name>:...).
	Name string
	// ACR is the level asked for (acr_values).
	ACR    string
	Secure bool // cookies Secure; false only in development over http
	// HTTPClient reaches the identity provider; http.DefaultClient when nil.
	HTTPClient *http.Client
}

// RP logs people in for one set of pages.
type RP struct {
	cfg Config
	eph store.Ephemeral
	log *slog.Logger
	now func() time.Time

	mu       sync.Mutex
	verifier *oidc.IDTokenVerifier // made at the first login, by discovery
}

// loginTTL is how long a started login may take.
const loginTTL = 10 * time.Minute

// Errors of Finish, each a different page for the person.
var (
	// ErrState: the login expired, was finished already, or was started in another browser.
	ErrState = errors.New("rp: unknown or foreign login state")
	// ErrRefused: the identity provider answered with an error (cancelled, level unreachable).
	ErrRefused = errors.New("rp: the identity provider refused the login")
	// ErrExchange: the code exchange or the ID token failed its checks.
	ErrExchange = errors.New("rp: the identity provider's answer did not verify")
)

// New makes the relying party.
func New(cfg Config, eph store.Ephemeral, log *slog.Logger, now func() time.Time) *RP {
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = http.DefaultClient
	}
	return &RP{cfg: cfg, eph: eph, log: log, now: now}
}

// RedirectURI is where the identity provider sends the browser back.
func (p *RP) RedirectURI() string { return p.cfg.Issuer + p.cfg.Path + "callback" }

// Key is the store key of an entry of kind named by secret: a hash, so the store never holds
// what the browser's cookie holds.
func Key(name, kind, secret string) string {
	h := sha256.Sum256([]byte(secret))
	return name + ":" + kind + ":" + hex.EncodeToString(h[:])
}

// Key is Key under this relying party's name.
func (p *RP) Key(kind, secret string) string { return Key(p.cfg.Name, kind, secret) }

// Token is a random 256-bit token (session ids, CSRF tokens, states).
func Token() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// Same compares a form's token with the session's in constant time; an empty one never matches.
func Same(a, b string) bool {
	return a != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// Options tune one login.
type Options struct {
	Lang string // ui_locales, "" for none
	// Fresh asks for a new authentication (prompt=login), not single sign-on.
	Fresh bool
	// Resume is the caller's own note, returned by Finish (the store key of a session a
	// re-login refreshes); it stays in the store, never in the browser.
	Resume string
}

// loginState is what a login in progress keeps, under its state.
type loginState struct {
	Verifier string `json:"verifier"`
	Nonce    string `json:"nonce"`
	Resume   string `json:"resume,omitempty"`
}

func (p *RP) cookie(name, value string, maxAge time.Duration) *http.Cookie {
	age := int(maxAge / time.Second)
	if maxAge < 0 {
		age = -1
	}
	return &http.Cookie{Name: name, Value: value, Path: p.cfg.Path, MaxAge: age, HttpOnly: true, Secure: p.cfg.Secure, SameSite: http.SameSiteLaxMode}
}

func (p *RP) stateCookie() string   { return "vula_" + p.cfg.Name + "_state" }
func (p *RP) sessionCookie() string { return "vula_" + p.cfg.Name }

func (p *RP) oauth() oauth2.Config {
	return oauth2.Config{ClientID: p.cfg.ClientID, RedirectURL: p.RedirectURI(),
		Endpoint: oauth2.Endpoint{AuthURL: p.cfg.Issuer + "/oauth2/auth", TokenURL: p.cfg.Issuer + "/oauth2/token", AuthStyle: oauth2.AuthStyleInParams},
		Scopes:   []string{oidc.ScopeOpenID, "profile"}}
}

// Start sends the browser to the identity provider. An error is the store's: nothing was sent.
func (p *RP) Start(w http.ResponseWriter, r *http.Request, o Options) error {
	st := loginState{Verifier: oauth2.GenerateVerifier(), Nonce: oauth2.GenerateVerifier(), Resume: o.Resume}
	state := Token()
	b, _ := json.Marshal(st)
	if err := p.eph.Put(r.Context(), p.Key("login", state), b, loginTTL); err != nil {
		return err
	}
	// The state is also bound to this browser, so nobody can finish a login they did not start here.
	http.SetCookie(w, p.cookie(p.stateCookie(), state, loginTTL))
	conf := p.oauth()
	opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(st.Verifier), oidc.Nonce(st.Nonce),
		oauth2.SetAuthURLParam("acr_values", p.cfg.ACR)}
	if o.Lang != "" {
		opts = append(opts, oauth2.SetAuthURLParam("ui_locales", o.Lang))
	}
	if o.Fresh {
		opts = append(opts, oauth2.SetAuthURLParam("prompt", "login"))
	}
	http.Redirect(w, r, conf.AuthCodeURL(state, opts...), http.StatusSeeOther)
	return nil
}

// Login is what a verified ID token says.
type Login struct {
	Subject  string
	ACR      string
	AMR      []string
	AuthTime time.Time
	Name     string
	Resume   string // Options.Resume of the Start this login came from
}

func (p *RP) idTokenVerifier(ctx context.Context) (*oidc.IDTokenVerifier, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.verifier != nil {
		return p.verifier, nil
	}
	provider, err := oidc.NewProvider(oidc.ClientContext(ctx, p.cfg.HTTPClient), p.cfg.Issuer)
	if err != nil {
		return nil, err
	}
	// go-oidc keeps only the HTTP client of this context for fetching the key set later.
	p.verifier = provider.Verifier(&oidc.Config{ClientID: p.cfg.ClientID})
	return p.verifier, nil
}

// Finish checks the provider's answer at the callback and returns the login. Its errors are
// ErrState, ErrRefused, ErrExchange, or the store's (the login cannot be read now).
func (p *RP) Finish(w http.ResponseWriter, r *http.Request) (Login, error) {
	ctx := r.Context()
	q := r.URL.Query()
	state := q.Get("state")
	c, err := r.Cookie(p.stateCookie())
	http.SetCookie(w, p.cookie(p.stateCookie(), "", -1))
	if err != nil || state == "" || !Same(c.Value, state) {
		return Login{}, ErrState
	}
	b, err := p.eph.Take(ctx, p.Key("login", state))
	if errors.Is(err, store.ErrNotFound) {
		return Login{}, ErrState
	}
	if err != nil {
		return Login{}, err
	}
	var st loginState
	if err := json.Unmarshal(b, &st); err != nil {
		return Login{}, fmt.Errorf("rp: a login state in the store: %w", err)
	}
	if e := q.Get("error"); e != "" {
		p.log.InfoContext(ctx, "rp: login refused by the identity provider", "client", p.cfg.ClientID, "error", e)
		return Login{}, ErrRefused
	}
	hctx := oidc.ClientContext(ctx, p.cfg.HTTPClient)
	conf := p.oauth()
	tok, err := conf.Exchange(hctx, q.Get("code"), oauth2.VerifierOption(st.Verifier))
	if err != nil {
		p.log.WarnContext(ctx, "rp: code exchange", "client", p.cfg.ClientID, "err", err)
		return Login{}, ErrExchange
	}
	raw, _ := tok.Extra("id_token").(string)
	v, err := p.idTokenVerifier(ctx)
	var idt *oidc.IDToken
	if err == nil {
		idt, err = v.Verify(hctx, raw)
	}
	if err == nil && !Same(idt.Nonce, st.Nonce) {
		err = errors.New("nonce mismatch")
	}
	var claims struct {
		ACR      string   `json:"acr"`
		AMR      []string `json:"amr"`
		AuthTime int64    `json:"auth_time"`
		Name     string   `json:"name"`
	}
	if err == nil {
		err = idt.Claims(&claims)
	}
	if err != nil {
		p.log.WarnContext(ctx, "rp: ID token", "client", p.cfg.ClientID, "err", err)
		return Login{}, ErrExchange
	}
	return Login{Subject: idt.Subject, ACR: claims.ACR, AMR: claims.AMR, AuthTime: time.Unix(claims.AuthTime, 0).UTC(),
		Name: claims.Name, Resume: st.Resume}, nil
}

// Save keeps v as session id's value until expires.
func (p *RP) Save(ctx context.Context, id string, v any, expires time.Time) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	// At least a second, so the store takes it.
	return p.eph.Put(ctx, p.Key("session", id), b, max(expires.Sub(p.now()), time.Second))
}

// Load reads the request's session into v and returns its id; "" when there is none (no cookie,
// ended, deleted). An error is the store's.
func (p *RP) Load(r *http.Request, v any) (string, error) {
	c, err := r.Cookie(p.sessionCookie())
	if err != nil || len(c.Value) < 32 || len(c.Value) > 64 {
		return "", nil
	}
	b, err := p.eph.Get(r.Context(), p.Key("session", c.Value))
	if errors.Is(err, store.ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return "", fmt.Errorf("rp: a session in the store: %w", err)
	}
	return c.Value, nil
}

// Delete ends session id in the store.
func (p *RP) Delete(ctx context.Context, id string) error {
	return p.eph.Delete(ctx, p.Key("session", id))
}

// SetCookie gives the browser session id until expires.
func (p *RP) SetCookie(w http.ResponseWriter, id string, expires time.Time) {
	http.SetCookie(w, p.cookie(p.sessionCookie(), id, expires.Sub(p.now())))
}

// ClearCookie removes the session's cookie from the browser.
func (p *RP) ClearCookie(w http.ResponseWriter) {
	http.SetCookie(w, p.cookie(p.sessionCookie(), "", -1))
}
