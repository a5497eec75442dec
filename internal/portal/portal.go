// Package portal is the officials' signing portal: server-rendered pages under /portal/ where an
// official logs in at Vula's identity provider, uploads PDFs, sees them, chooses where the
// visible signature goes, confirms with a one-time code and downloads the signed PDFs.
//
// The contract:
//   - Every page but the landing page (/portal/) needs a portal session, made only by an OpenID
//     Connect login (code flow with PKCE, as a public client) whose ID token verifies, whose
//     nonce matches, whose acr is at least LoA substantial (auth.AtLeast), and whose subject is an
//     official with a signing credential that is valid now. Anyone else gets a page saying they
//     cannot sign, and no session.
//   - The session (subject, acr, amr, auth_time, the documents, the position, the signed
//     results) is in the ephemeral store under the SHA-256 of a random id that only the
//     browser's cookie holds (HttpOnly, SameSite=Lax, Secure but in development over http). It
//     ends 30 minutes after the login, whatever happens meanwhile, so any replica can serve any
//     step. Every form carries the session's CSRF token and is refused without it.
//   - A confirmation the signing service refuses because the login is too old (older than its
//     Signer.LoginMaxAge: 15 minutes by default, shorter than the session)
//     sends the official through the login again (prompt=login, LoA substantial) and back to
//     the confirmation: the session keeps its documents and position, only acr, amr and
//     auth_time are refreshed, and its end does not move. If someone else logs in then, the
//     old session and its documents are deleted and they start afresh.
//   - Documents are inspected (Inspect) before anything is kept: a file that is not a PDF Vula
//     can sign is refused with its own message, and uploads past Limits are refused whole.
//   - Signing happens only through the remote signing service (Signer, which the composition
//     root satisfies with the CSC service): the one-time code the official types is the
//     credential authorization over exactly the uploaded documents' SHA-256 digests, and those
//     documents and nothing else are signed. A refused code signs nothing; the service writes
//     the refusal to the audit log.
//   - Pages carry no script and load nothing from elsewhere: previews are data: URIs.
package portal

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
	"strconv"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/vula-eid/vula/internal/auth"
	"github.com/vula-eid/vula/internal/signing"
	"github.com/vula-eid/vula/internal/store"
	"github.com/vula-eid/vula/internal/web"
)

// ClientID is the portal's client at the identity provider.
const ClientID = "portal"

// Config is the portal's setup.
type Config struct {
	Issuer string // the identity provider's (and the portal's) base URL
	Secure bool   // cookies Secure; false only in development over http
	Limits Limits
	// PreviewWidth is the previews' width in pixels; 360 when 0 (fits the page's column).
	PreviewWidth int
	// Level of the signatures; B-LT when empty.
	Level signing.Level
	// HTTPClient reaches the identity provider; http.DefaultClient when nil.
	HTTPClient *http.Client
}

// People reads the person behind a login.
type People interface {
	Person(ctx context.Context, subjectID string) (store.Person, error)
}

// Portal serves the pages.
type Portal struct {
	cfg     Config
	web     *web.Renderer
	eph     store.Ephemeral
	people  People
	signer  Signer
	preview Previewer
	log     *slog.Logger
	now     func() time.Time

	mu       sync.Mutex
	verifier *oidc.IDTokenVerifier // made at the first login, by discovery
}

const (
	sessionTTL = 30 * time.Minute
	loginTTL   = 10 * time.Minute
	cookieName = "vula_portal"
	stateName  = "vula_portal_state"
)

// New makes the portal. preview may be nil: no previews, and the pages say so.
func New(cfg Config, r *web.Renderer, eph store.Ephemeral, people People, signer Signer, preview Previewer, log *slog.Logger, now func() time.Time) *Portal {
	cfg.Limits = cfg.Limits.withDefaults()
	if cfg.PreviewWidth <= 0 {
		cfg.PreviewWidth = 360
	}
	if cfg.Level == "" {
		cfg.Level = signing.LevelLT
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = http.DefaultClient
	}
	return &Portal{cfg: cfg, web: r, eph: eph, people: people, signer: signer, preview: preview, log: log, now: now}
}

// RedirectURI is where the identity provider sends the browser back.
func (p *Portal) RedirectURI() string { return p.cfg.Issuer + "/portal/callback" }

// Register adds the pages to mux.
func (p *Portal) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /portal/{$}", p.home)
	mux.HandleFunc("GET /portal/login", p.login)
	mux.HandleFunc("GET /portal/callback", p.callback)
	mux.HandleFunc("POST /portal/logout", p.withSession(p.logout))
	mux.HandleFunc("GET /portal/documents", p.withSession(p.uploadPage))
	mux.HandleFunc("POST /portal/documents", p.withSession(p.upload))
	mux.HandleFunc("GET /portal/review", p.withSession(p.reviewPage))
	mux.HandleFunc("POST /portal/position", p.withSession(p.position))
	mux.HandleFunc("GET /portal/confirm", p.withSession(p.confirmPage))
	mux.HandleFunc("POST /portal/sign", p.withSession(p.sign))
	mux.HandleFunc("GET /portal/done", p.withSession(p.donePage))
	mux.HandleFunc("GET /portal/download", p.withSession(p.downloadAll))
	mux.HandleFunc("GET /portal/download/{i}", p.withSession(p.downloadOne))
}

// session is a logged-in official's portal state.
type session struct {
	id       string
	Subject  string    `json:"sub"`
	Name     string    `json:"name"`
	ACR      string    `json:"acr"`
	AMR      []string  `json:"amr"`
	AuthTime time.Time `json:"auth_time"`
	CSRF     string    `json:"csrf"`
	Expires  time.Time `json:"expires"`
	Docs     []docMeta `json:"docs,omitempty"`
	// Batch names this upload's documents in the store, so a new upload never mixes with an
	// older one's parts.
	Batch    string    `json:"batch,omitempty"`
	Position *Position `json:"position,omitempty"`
	Signed   bool      `json:"signed,omitempty"`
}

// docMeta is what the session keeps of a document; its bytes, preview and signed copy are
// separate entries.
type docMeta struct {
	Name     string `json:"name"`
	Size     int    `json:"size"`
	Info     Info   `json:"info"`
	Preview  bool   `json:"preview"`
	PreviewW int    `json:"pw,omitempty"`
	PreviewH int    `json:"ph,omitempty"`
	// NoPreview is why there is no preview: "missing" (no pdftoppm), "failed".
	NoPreview string `json:"no_preview,omitempty"`
}

func storeKey(kind, secret string) string {
	h := sha256.Sum256([]byte(secret))
	return "portal:" + kind + ":" + hex.EncodeToString(h[:])
}

func (s *session) key() string { return storeKey("session", s.id) }

// part names a document's entry of kind (doc, png, out) in the store.
func (s *session) part(kind string, i int) string {
	return storeKey(kind, s.id+"/"+s.Batch+"/"+strconv.Itoa(i))
}

func randomToken() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func sameToken(a, b string) bool {
	return a != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// ttl is what is left of the session's life; at least a second so the store takes it.
func (p *Portal) ttl(s *session) time.Duration { return max(s.Expires.Sub(p.now()), time.Second) }

func (p *Portal) save(ctx context.Context, s *session) error {
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	return p.eph.Put(ctx, s.key(), b, p.ttl(s))
}

// load reads the request's session; nil when there is none or it ended.
func (p *Portal) load(r *http.Request) (*session, error) {
	c, err := r.Cookie(cookieName)
	if err != nil || len(c.Value) < 32 || len(c.Value) > 64 {
		return nil, nil
	}
	b, err := p.eph.Get(r.Context(), storeKey("session", c.Value))
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var s session
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("portal: a session in the store: %w", err)
	}
	if !p.now().Before(s.Expires) {
		return nil, nil
	}
	s.id = c.Value
	return &s, nil
}

// withSession lets only a logged-in official through; POSTs must carry the session's CSRF
// token (multipart uploads check theirs after parsing).
func (p *Portal) withSession(h func(http.ResponseWriter, *http.Request, *session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s, err := p.load(r)
		if err != nil {
			p.unavailable(w, r, err)
			return
		}
		if s == nil {
			if r.Method == http.MethodGet {
				http.Redirect(w, r, "/portal/", http.StatusSeeOther)
				return
			}
			p.message(w, r, http.StatusUnauthorized, "portal.expired.title", "portal.expired", "")
			return
		}
		if r.Method == http.MethodPost && r.Header.Get("Content-Type") == "application/x-www-form-urlencoded" {
			r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
			if !sameToken(s.CSRF, r.PostFormValue("csrf")) {
				p.message(w, r, http.StatusForbidden, "error.title", "error.csrf", "")
				return
			}
		} else if r.Method == http.MethodPost && r.URL.Path != "/portal/documents" {
			p.message(w, r, http.StatusBadRequest, "error.title", "error.request", "")
			return
		}
		h(w, r, s)
	}
}

type messageData struct {
	Title, Message, Detail string
	Back                   string // a link to go on, "" for none
	LoggedIn               bool
	CSRF                   string
}

func (p *Portal) message(w http.ResponseWriter, r *http.Request, status int, title, msg, back string) {
	p.web.Render(w, r, status, "portal_message", messageData{Title: title, Message: msg, Back: back})
}

func (p *Portal) unavailable(w http.ResponseWriter, r *http.Request, err error) {
	p.log.ErrorContext(r.Context(), "portal", "path", r.URL.Path, "err", err)
	p.message(w, r, http.StatusServiceUnavailable, "error.title", "error.unavailable", "")
}

// home is the landing page, the only one without a login.
func (p *Portal) home(w http.ResponseWriter, r *http.Request) {
	if s, err := p.load(r); err == nil && s != nil {
		http.Redirect(w, r, "/portal/documents", http.StatusSeeOther)
		return
	}
	p.web.Render(w, r, http.StatusOK, "portal_home", nil)
}

// loginState is what a login in progress keeps, under its state.
type loginState struct {
	Verifier string `json:"verifier"`
	Nonce    string `json:"nonce"`
	// Resume is the store key of the session a re-login refreshes, "" for a first login. The
	// key, not the id: the id stays in the browser's cookie only.
	Resume string `json:"resume,omitempty"`
}

func (p *Portal) oauth() oauth2.Config {
	return oauth2.Config{ClientID: ClientID, RedirectURL: p.RedirectURI(),
		Endpoint: oauth2.Endpoint{AuthURL: p.cfg.Issuer + "/oauth2/auth", TokenURL: p.cfg.Issuer + "/oauth2/token", AuthStyle: oauth2.AuthStyleInParams},
		Scopes:   []string{oidc.ScopeOpenID, "profile"}}
}

// login starts the code flow with PKCE at LoA substantial.
func (p *Portal) login(w http.ResponseWriter, r *http.Request) { p.startLogin(w, r, nil) }

// startLogin sends the browser to the identity provider; for a re-login of resume (a session
// whose login is too old to sign) it asks for a fresh authentication, not single sign-on.
func (p *Portal) startLogin(w http.ResponseWriter, r *http.Request, resume *session) {
	st := loginState{Verifier: oauth2.GenerateVerifier(), Nonce: oauth2.GenerateVerifier()}
	if resume != nil {
		st.Resume = resume.key()
	}
	state := randomToken()
	b, _ := json.Marshal(st)
	if err := p.eph.Put(r.Context(), storeKey("login", state), b, loginTTL); err != nil {
		p.unavailable(w, r, err)
		return
	}
	// The state is also bound to this browser, so nobody can finish a login they did not start here.
	http.SetCookie(w, &http.Cookie{Name: stateName, Value: state, Path: "/portal/", MaxAge: int(loginTTL / time.Second),
		HttpOnly: true, Secure: p.cfg.Secure, SameSite: http.SameSiteLaxMode})
	conf := p.oauth()
	opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(st.Verifier), oidc.Nonce(st.Nonce),
		oauth2.SetAuthURLParam("acr_values", auth.LoASubstantial)}
	if l := p.web.Lang(w, r); l != "" {
		opts = append(opts, oauth2.SetAuthURLParam("ui_locales", l))
	}
	if resume != nil {
		opts = append(opts, oauth2.SetAuthURLParam("prompt", "login"))
	}
	http.Redirect(w, r, conf.AuthCodeURL(state, opts...), http.StatusSeeOther)
}

func (p *Portal) idTokenVerifier(ctx context.Context) (*oidc.IDTokenVerifier, error) {
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
	p.verifier = provider.Verifier(&oidc.Config{ClientID: ClientID})
	return p.verifier, nil
}

// callback finishes the login and makes the session, for officials who can sign only.
func (p *Portal) callback(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	q := r.URL.Query()
	state := q.Get("state")
	c, err := r.Cookie(stateName)
	http.SetCookie(w, &http.Cookie{Name: stateName, Path: "/portal/", MaxAge: -1, HttpOnly: true, Secure: p.cfg.Secure, SameSite: http.SameSiteLaxMode})
	if err != nil || state == "" || !sameToken(c.Value, state) {
		p.message(w, r, http.StatusBadRequest, "portal.login.failed", "portal.login.state", "/portal/")
		return
	}
	b, err := p.eph.Take(ctx, storeKey("login", state))
	if errors.Is(err, store.ErrNotFound) {
		p.message(w, r, http.StatusBadRequest, "portal.login.failed", "portal.login.state", "/portal/")
		return
	}
	if err != nil {
		p.unavailable(w, r, err)
		return
	}
	var st loginState
	if err := json.Unmarshal(b, &st); err != nil {
		p.unavailable(w, r, err)
		return
	}
	if e := q.Get("error"); e != "" {
		// The identity provider refused (the person cancelled, or cannot reach the level).
		p.log.InfoContext(ctx, "portal: login refused by the identity provider", "error", e)
		p.message(w, r, http.StatusForbidden, "portal.login.failed", "portal.login.refused", "/portal/")
		return
	}
	hctx := oidc.ClientContext(ctx, p.cfg.HTTPClient)
	conf := p.oauth()
	tok, err := conf.Exchange(hctx, q.Get("code"), oauth2.VerifierOption(st.Verifier))
	if err != nil {
		p.log.WarnContext(ctx, "portal: code exchange", "err", err)
		p.message(w, r, http.StatusBadGateway, "portal.login.failed", "portal.login.exchange", "/portal/")
		return
	}
	raw, _ := tok.Extra("id_token").(string)
	v, err := p.idTokenVerifier(ctx)
	var idt *oidc.IDToken
	if err == nil {
		idt, err = v.Verify(hctx, raw)
	}
	if err == nil && !sameToken(idt.Nonce, st.Nonce) {
		err = errors.New("nonce mismatch")
	}
	if err != nil {
		p.log.WarnContext(ctx, "portal: ID token", "err", err)
		p.message(w, r, http.StatusBadGateway, "portal.login.failed", "portal.login.exchange", "/portal/")
		return
	}
	var claims struct {
		ACR      string   `json:"acr"`
		AMR      []string `json:"amr"`
		AuthTime int64    `json:"auth_time"`
		Name     string   `json:"name"`
	}
	if err := idt.Claims(&claims); err != nil {
		p.message(w, r, http.StatusBadGateway, "portal.login.failed", "portal.login.exchange", "/portal/")
		return
	}
	// A re-login: the session it was started from, if the browser still holds it; another
	// person's login ends it, documents and all.
	var resume *session
	if st.Resume != "" {
		old, err := p.load(r)
		if err != nil {
			p.unavailable(w, r, err)
			return
		}
		if old != nil && old.key() == st.Resume {
			if old.Subject == idt.Subject {
				resume = old
			} else {
				p.log.InfoContext(ctx, "portal: another person logged in on a re-login; the old session is ended")
				if err := p.end(ctx, old); err != nil {
					p.unavailable(w, r, err)
					return
				}
				http.SetCookie(w, &http.Cookie{Name: cookieName, Path: "/portal/", MaxAge: -1, HttpOnly: true, Secure: p.cfg.Secure, SameSite: http.SameSiteLaxMode})
			}
		}
	}
	if !auth.AtLeast(claims.ACR, auth.LoASubstantial) {
		p.message(w, r, http.StatusForbidden, "portal.refused.title", "portal.refused.level", "/portal/")
		return
	}
	person, err := p.people.Person(ctx, idt.Subject)
	if errors.Is(err, store.ErrNotFound) {
		p.message(w, r, http.StatusForbidden, "portal.refused.title", "portal.refused.citizen", "")
		return
	}
	if err != nil {
		p.unavailable(w, r, err)
		return
	}
	if !person.Official {
		p.message(w, r, http.StatusForbidden, "portal.refused.title", "portal.refused.citizen", "")
		return
	}
	if _, err := p.credential(ctx, idt.Subject); errors.Is(err, errNoCredential) {
		p.message(w, r, http.StatusForbidden, "portal.refused.title", "portal.refused.credential", "")
		return
	} else if err != nil {
		p.unavailable(w, r, err)
		return
	}
	if resume != nil {
		resume.ACR, resume.AMR, resume.AuthTime = claims.ACR, claims.AMR, time.Unix(claims.AuthTime, 0).UTC()
		if err := p.save(ctx, resume); err != nil {
			p.unavailable(w, r, err)
			return
		}
		http.Redirect(w, r, "/portal/confirm", http.StatusSeeOther)
		return
	}
	name := claims.Name
	if name == "" {
		name = person.GivenName + " " + person.FamilyName
	}
	s := &session{id: randomToken(), Subject: idt.Subject, Name: name, ACR: claims.ACR, AMR: claims.AMR,
		AuthTime: time.Unix(claims.AuthTime, 0).UTC(), CSRF: randomToken(), Expires: p.now().Add(sessionTTL)}
	if err := p.save(ctx, s); err != nil {
		p.unavailable(w, r, err)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: s.id, Path: "/portal/", MaxAge: int(sessionTTL / time.Second),
		HttpOnly: true, Secure: p.cfg.Secure, SameSite: http.SameSiteLaxMode})
	http.Redirect(w, r, "/portal/documents", http.StatusSeeOther)
}

func (p *Portal) logout(w http.ResponseWriter, r *http.Request, s *session) {
	// Not "logged out" while the session or its documents live on.
	if err := p.end(r.Context(), s); err != nil {
		p.unavailable(w, r, err)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: cookieName, Path: "/portal/", MaxAge: -1, HttpOnly: true, Secure: p.cfg.Secure, SameSite: http.SameSiteLaxMode})
	p.web.Render(w, r, http.StatusOK, "portal_message", messageData{Title: "portal.logout.title", Message: "portal.logout.done", Back: "/portal/"})
}

// end removes the session and its documents from the store.
func (p *Portal) end(ctx context.Context, s *session) error {
	if err := p.forget(ctx, s); err != nil {
		return err
	}
	return p.eph.Delete(ctx, s.key())
}

// forget removes the session's documents, previews and signed copies from the store.
func (p *Portal) forget(ctx context.Context, s *session) error {
	var errs []error
	for i := range s.Docs {
		for _, kind := range []string{"doc", "png", "out"} {
			errs = append(errs, p.eph.Delete(ctx, s.part(kind, i)))
		}
	}
	return errors.Join(errs...)
}
