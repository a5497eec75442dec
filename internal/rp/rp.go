// Package rp is the relying party's half of a login at Vula's own identity provider, shared by
// the pages that log people in (the signing portal, the registration desk), and the sessions
// those pages keep afterwards.
//
// The contract:
//   - A login is an OpenID Connect code flow with PKCE (S256) as a public client. Start keeps
//     nothing on the server: the random state, the verifier and a nonce go to the browser in a
//     cookie of their own per login (so two tabs can log in at once), sealed with AES-256-GCM
//     under Config.Key and valid for 10 minutes; a browser holds at most maxPending of them, the
//     oldest dropped first. Anonymous requests to start a login therefore cost no memory and no
//     store entry. Start asks for Config.ACR (acr_values) and sends the browser to the provider.
//     Finish reads the cookie named by the returned state and clears it, checks the state
//     against it, exchanges the code, verifies the ID token (signature, issuer, audience,
//     expiry, through discovery) and the nonce, and returns what the token says. The caller
//     checks the level (acr) and who may in.
//   - A session is the caller's value, kept as JSON in the ephemeral store under the SHA-256 of
//     a random id that only the browser's cookie holds (HttpOnly, SameSite=Lax, Secure but in
//     development over http, scoped to Config.Path), so any replica serves any request.
//     Sessions does it for a page's session type (which embeds Session): it ends at its Expires
//     whatever the store keeps, and its Guard lets through only a live session, and a POST only
//     as a form carrying the session's CSRF token.
//   - Token and Same make and compare the forms' CSRF tokens (constant time).
package rp

import (
	"cmp"
	"context"
	"crypto/aes"
	"crypto/cipher"
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
	"slices"
	"strings"
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
	// Name names the cookies (vula_<Name>, and vula_<Name>_login_* for logins in progress) and
	// the store keys (<Name>:...).
	Name string
	// Key seals the logins in progress in their cookies; every replica needs the same. When
	// nil, a random key of this process: logins then finish only where they began.
	Key *[32]byte
	// ACR is the level asked for (acr_values).
	ACR    string
	Secure bool // cookies Secure; false only in development over http
	// HTTPClient reaches the identity provider; http.DefaultClient when nil.
	HTTPClient *http.Client
}

// RP logs people in for one set of pages.
type RP struct {
	cfg  Config
	aead cipher.AEAD // seals the logins in progress
	eph  store.Ephemeral
	log  *slog.Logger
	now  func() time.Time

	mu       sync.Mutex
	verifier *oidc.IDTokenVerifier // made at the first login, by discovery
}

const (
	// loginTTL is how long a started login may take.
	loginTTL = 10 * time.Minute
	// maxPending bounds the logins in progress one browser holds (its tabs).
	maxPending = 4
)

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
	key := cfg.Key
	if key == nil {
		key = new([32]byte)
		rand.Read(key[:])
	}
	// Neither fails for a 32-byte key.
	b, _ := aes.NewCipher(key[:])
	aead, _ := cipher.NewGCM(b)
	return &RP{cfg: cfg, aead: aead, eph: eph, log: log, now: now}
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
	// re-login refreshes); the browser holds it sealed, unreadable and unchangeable.
	Resume string
}

// loginState is what a login in progress keeps, sealed in its cookie.
type loginState struct {
	State    string `json:"s"`
	Verifier string `json:"v"`
	Nonce    string `json:"n"`
	Resume   string `json:"r,omitempty"`
	Expires  int64  `json:"e"` // Unix seconds
}

func (p *RP) cookie(name, value string, maxAge time.Duration) *http.Cookie {
	age := int(maxAge / time.Second)
	if maxAge < 0 {
		age = -1
	}
	return &http.Cookie{Name: name, Value: value, Path: p.cfg.Path, MaxAge: age, HttpOnly: true, Secure: p.cfg.Secure, SameSite: http.SameSiteLaxMode}
}

func (p *RP) sessionCookie() string { return "vula_" + p.cfg.Name }

// loginPrefix starts the names of the logins' cookies. Over HTTPS they are __Host- cookies
// (Secure, Path=/, no Domain: no subdomain can set or overwrite them); browsers refuse that
// prefix over plain http, which only development uses.
func (p *RP) loginPrefix() string {
	n := "vula_" + p.cfg.Name + "_login_"
	if p.cfg.Secure {
		n = "__Host-" + n
	}
	return n
}

// loginCookie names the cookie of the login with this state: the state's first 16 characters
// (96 random bits), so the callback finds its own login among the tabs'.
func (p *RP) loginCookie(state string) string { return p.loginPrefix() + state[:16] }

func (p *RP) setLoginCookie(w http.ResponseWriter, name, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: value, Path: "/", MaxAge: maxAge, HttpOnly: true, Secure: p.cfg.Secure, SameSite: http.SameSiteLaxMode})
}

// seal encrypts a login in progress for the cookie called name (the associated data, so a
// sealed login does not open under another cookie's name).
func (p *RP) seal(name string, st loginState) string {
	b, _ := json.Marshal(st)
	nonce := make([]byte, p.aead.NonceSize())
	rand.Read(nonce)
	return base64.RawURLEncoding.EncodeToString(p.aead.Seal(nonce, nonce, b, []byte(name)))
}

// open reads a login cookie; false when it was not sealed here for that name, or has expired.
func (p *RP) open(c *http.Cookie) (loginState, bool) {
	var st loginState
	b, err := base64.RawURLEncoding.DecodeString(c.Value)
	n := p.aead.NonceSize()
	if err != nil || len(b) < n+p.aead.Overhead() {
		return st, false
	}
	plain, err := p.aead.Open(nil, b[:n], b[n:], []byte(c.Name))
	if err != nil || json.Unmarshal(plain, &st) != nil {
		return st, false
	}
	return st, p.now().Unix() < st.Expires
}

// prune drops this browser's logins in progress beyond maxPending-1, the oldest (and any that do
// not open) first, so that a new one fits.
func (p *RP) prune(w http.ResponseWriter, r *http.Request) {
	type pending struct {
		name    string
		expires int64
	}
	var logins []pending
	for _, c := range r.Cookies() {
		if !strings.HasPrefix(c.Name, p.loginPrefix()) {
			continue
		}
		st, ok := p.open(c)
		if !ok {
			p.setLoginCookie(w, c.Name, "", -1)
			continue
		}
		logins = append(logins, pending{c.Name, st.Expires})
	}
	slices.SortFunc(logins, func(a, b pending) int { return cmp.Compare(a.expires, b.expires) })
	for len(logins) >= maxPending {
		p.setLoginCookie(w, logins[0].name, "", -1)
		logins = logins[1:]
	}
}

func (p *RP) oauth() oauth2.Config {
	return oauth2.Config{ClientID: p.cfg.ClientID, RedirectURL: p.RedirectURI(),
		Endpoint: oauth2.Endpoint{AuthURL: p.cfg.Issuer + "/oauth2/auth", TokenURL: p.cfg.Issuer + "/oauth2/token", AuthStyle: oauth2.AuthStyleInParams},
		Scopes:   []string{oidc.ScopeOpenID, "profile"}}
}

// Start sends the browser to the identity provider, the login in progress in a cookie.
func (p *RP) Start(w http.ResponseWriter, r *http.Request, o Options) {
	st := loginState{State: Token(), Verifier: oauth2.GenerateVerifier(), Nonce: oauth2.GenerateVerifier(), Resume: o.Resume,
		Expires: p.now().Add(loginTTL).Unix()}
	p.prune(w, r)
	// The login lives in this browser only, so nobody can finish a login they did not start here.
	name := p.loginCookie(st.State)
	p.setLoginCookie(w, name, p.seal(name, st), int(loginTTL/time.Second))
	conf := p.oauth()
	opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(st.Verifier), oidc.Nonce(st.Nonce),
		oauth2.SetAuthURLParam("acr_values", p.cfg.ACR)}
	if o.Lang != "" {
		opts = append(opts, oauth2.SetAuthURLParam("ui_locales", o.Lang))
	}
	if o.Fresh {
		opts = append(opts, oauth2.SetAuthURLParam("prompt", "login"))
	}
	http.Redirect(w, r, conf.AuthCodeURL(st.State, opts...), http.StatusSeeOther)
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
// ErrState, ErrRefused and ErrExchange.
func (p *RP) Finish(w http.ResponseWriter, r *http.Request) (Login, error) {
	ctx := r.Context()
	q := r.URL.Query()
	state := q.Get("state")
	if len(state) < 16 {
		return Login{}, ErrState
	}
	name := p.loginCookie(state)
	c, err := r.Cookie(name)
	if err != nil {
		return Login{}, ErrState
	}
	// Once only: the cookie goes whatever the answer.
	p.setLoginCookie(w, name, "", -1)
	st, ok := p.open(c)
	if !ok || !Same(st.State, state) {
		return Login{}, ErrState
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
