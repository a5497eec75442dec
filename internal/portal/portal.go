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
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/vula-eid/vula/internal/auth"
	"github.com/vula-eid/vula/internal/rp"
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
	// LoginKey seals the logins in progress in the browser's cookies (rp.Config.Key).
	LoginKey *[32]byte
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
	rp      *rp.RP // the login at the identity provider and the session's cookie
	ss      *rp.Sessions[session, *session]
}

const (
	sessionTTL = 30 * time.Minute
	cookieName = "vula_portal"
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
	login := rp.New(rp.Config{Issuer: cfg.Issuer, ClientID: ClientID, Path: "/portal/", Name: "portal", ACR: auth.LoASubstantial,
		Secure: cfg.Secure, HTTPClient: cfg.HTTPClient, Key: cfg.LoginKey}, eph, log, now)
	p := &Portal{cfg: cfg, web: r, eph: eph, people: people, signer: signer, preview: preview, log: log, now: now, rp: login}
	// Uploads are multipart: their handler checks the CSRF token after parsing.
	p.ss = rp.NewSessions[session](login, rp.SessionPages{Refuse: p.refuse, Unavailable: p.unavailable, Multipart: "/portal/documents"})
	return p
}

// RedirectURI is where the identity provider sends the browser back.
func (p *Portal) RedirectURI() string { return p.rp.RedirectURI() }

// Register adds the pages to mux; all but the landing page and the login's need a session.
func (p *Portal) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /portal/{$}", p.home)
	mux.HandleFunc("GET /portal/login", p.login)
	mux.HandleFunc("GET /portal/callback", p.callback)
	mux.HandleFunc("POST /portal/logout", p.ss.Guard(p.logout))
	mux.HandleFunc("GET /portal/documents", p.ss.Guard(p.uploadPage))
	mux.HandleFunc("POST /portal/documents", p.ss.Guard(p.upload))
	mux.HandleFunc("GET /portal/review", p.ss.Guard(p.reviewPage))
	mux.HandleFunc("POST /portal/position", p.ss.Guard(p.position))
	mux.HandleFunc("GET /portal/confirm", p.ss.Guard(p.confirmPage))
	mux.HandleFunc("POST /portal/sign", p.ss.Guard(p.sign))
	mux.HandleFunc("GET /portal/done", p.ss.Guard(p.donePage))
	mux.HandleFunc("GET /portal/download", p.ss.Guard(p.downloadAll))
	mux.HandleFunc("GET /portal/download/{i}", p.ss.Guard(p.downloadOne))
}

// session is a logged-in official's portal state.
type session struct {
	rp.Session
	Subject  string    `json:"sub"`
	Name     string    `json:"name"`
	ACR      string    `json:"acr"`
	AMR      []string  `json:"amr"`
	AuthTime time.Time `json:"auth_time"`
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

func storeKey(kind, secret string) string { return rp.Key("portal", kind, secret) }

func (s *session) key() string { return storeKey("session", s.ID) }

// part names a document's entry of kind (doc, png, out) in the store.
func (s *session) part(kind string, i int) string {
	return storeKey(kind, s.ID+"/"+s.Batch+"/"+strconv.Itoa(i))
}

// ttl is what is left of the session's life; at least a second so the store takes it.
func (p *Portal) ttl(s *session) time.Duration { return max(s.Expires.Sub(p.now()), time.Second) }

func (p *Portal) save(ctx context.Context, s *session) error { return p.ss.Save(ctx, s) }

// refuse answers a request rp.Sessions.Guard turned away.
func (p *Portal) refuse(w http.ResponseWriter, r *http.Request, why rp.Refusal) {
	switch why {
	case rp.Expired:
		p.message(w, r, why.Status(), "portal.expired.title", "portal.expired", "")
	case rp.BadCSRF:
		p.message(w, r, why.Status(), "error.title", "error.csrf", "")
	default:
		p.message(w, r, why.Status(), "error.title", "error.request", "")
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
	if s, err := p.ss.Load(r); err == nil && s != nil {
		http.Redirect(w, r, "/portal/documents", http.StatusSeeOther)
		return
	}
	p.web.Render(w, r, http.StatusOK, "portal_home", nil)
}

// login starts the code flow with PKCE at LoA substantial.
func (p *Portal) login(w http.ResponseWriter, r *http.Request) { p.startLogin(w, r, nil) }

// startLogin sends the browser to the identity provider; for a re-login of resume (a session
// whose login is too old to sign) it asks for a fresh authentication, not single sign-on.
func (p *Portal) startLogin(w http.ResponseWriter, r *http.Request, resume *session) {
	o := rp.Options{Lang: p.web.Lang(w, r)}
	if resume != nil {
		// The key, not the id: the id stays in the browser's cookie only.
		o.Resume, o.Fresh = resume.key(), true
	}
	p.rp.Start(w, r, o)
}

// callback finishes the login and makes the session, for officials who can sign only.
func (p *Portal) callback(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	l, err := p.rp.Finish(w, r)
	switch {
	case errors.Is(err, rp.ErrState):
		p.message(w, r, http.StatusBadRequest, "portal.login.failed", "portal.login.state", "/portal/")
		return
	case errors.Is(err, rp.ErrRefused):
		// The identity provider refused (the person cancelled, or cannot reach the level).
		p.message(w, r, http.StatusForbidden, "portal.login.failed", "portal.login.refused", "/portal/")
		return
	case errors.Is(err, rp.ErrExchange):
		p.message(w, r, http.StatusBadGateway, "portal.login.failed", "portal.login.exchange", "/portal/")
		return
	case err != nil:
		p.unavailable(w, r, err)
		return
	}
	// A re-login: the session it was started from, if the browser still holds it; another
	// person's login ends it, documents and all.
	var resume *session
	if l.Resume != "" {
		old, err := p.ss.Load(r)
		if err != nil {
			p.unavailable(w, r, err)
			return
		}
		if old != nil && old.key() == l.Resume {
			if old.Subject == l.Subject {
				resume = old
			} else {
				p.log.InfoContext(ctx, "portal: another person logged in on a re-login; the old session is ended")
				if err := p.end(ctx, old); err != nil {
					p.unavailable(w, r, err)
					return
				}
				p.rp.ClearCookie(w)
			}
		}
	}
	if !auth.AtLeast(l.ACR, auth.LoASubstantial) {
		p.message(w, r, http.StatusForbidden, "portal.refused.title", "portal.refused.level", "/portal/")
		return
	}
	person, err := p.people.Person(ctx, l.Subject)
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
	if _, err := p.credential(ctx, l.Subject); errors.Is(err, errNoCredential) {
		p.message(w, r, http.StatusForbidden, "portal.refused.title", "portal.refused.credential", "")
		return
	} else if err != nil {
		p.unavailable(w, r, err)
		return
	}
	if resume != nil {
		resume.ACR, resume.AMR, resume.AuthTime = l.ACR, l.AMR, l.AuthTime
		if err := p.save(ctx, resume); err != nil {
			p.unavailable(w, r, err)
			return
		}
		http.Redirect(w, r, "/portal/confirm", http.StatusSeeOther)
		return
	}
	name := l.Name
	if name == "" {
		name = person.GivenName + " " + person.FamilyName
	}
	s := &session{Subject: l.Subject, Name: name, ACR: l.ACR, AMR: l.AMR, AuthTime: l.AuthTime}
	if err := p.ss.Begin(ctx, w, s, sessionTTL); err != nil {
		p.unavailable(w, r, err)
		return
	}
	http.Redirect(w, r, "/portal/documents", http.StatusSeeOther)
}

func (p *Portal) logout(w http.ResponseWriter, r *http.Request, s *session) {
	// Not "logged out" while the session or its documents live on.
	if err := p.end(r.Context(), s); err != nil {
		p.unavailable(w, r, err)
		return
	}
	p.rp.ClearCookie(w)
	p.web.Render(w, r, http.StatusOK, "portal_message", messageData{Title: "portal.logout.title", Message: "portal.logout.done", Back: "/portal/"})
}

// end removes the session and its documents from the store.
func (p *Portal) end(ctx context.Context, s *session) error {
	if err := p.forget(ctx, s); err != nil {
		return err
	}
	return p.rp.Delete(ctx, s.ID)
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
