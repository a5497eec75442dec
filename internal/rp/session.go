package rp

import (
	"context"
	"net/http"
	"time"
)

// Session is what every page session holds; a page's own session type embeds it, and its
// other fields are the page's own.
type Session struct {
	ID      string    `json:"-"` // only the browser's cookie holds it; the store has its hash
	CSRF    string    `json:"csrf"`
	Expires time.Time `json:"expires"`
}

func (s *Session) base() *Session { return s }

// sessionOf is a pointer to a page's session type S, which embeds Session.
type sessionOf[S any] interface {
	*S
	base() *Session
}

// Refusal is why Sessions.Guard turned a request away.
type Refusal int

const (
	// Expired: no live session (no cookie, ended, expired) on a POST; a GET is sent to the
	// pages' landing page instead.
	Expired Refusal = iota
	// NotForm: a POST that is not a urlencoded form.
	NotForm
	// BadForm: a form that does not parse or is too large.
	BadForm
	// BadCSRF: a form without the session's CSRF token.
	BadCSRF
)

// Status is the HTTP status of the refusal.
func (why Refusal) Status() int {
	switch why {
	case Expired:
		return http.StatusUnauthorized
	case NotForm:
		return http.StatusUnsupportedMediaType
	case BadForm:
		return http.StatusBadRequest
	default:
		return http.StatusForbidden
	}
}

// maxForm bounds a guarded form's body: the pages' forms are small.
const maxForm = 64 << 10

// SessionPages tell Sessions how the pages answer what it refuses.
type SessionPages struct {
	// Refuse shows the person why the request was turned away, with why.Status().
	Refuse func(w http.ResponseWriter, r *http.Request, why Refusal)
	// Unavailable answers a store that cannot be read now (503).
	Unavailable func(w http.ResponseWriter, r *http.Request, err error)
	// Multipart is the one path ("" for none) whose POST may be a multipart form; its handler
	// checks the CSRF token itself after parsing.
	Multipart string
}

// Sessions keeps one set of pages' sessions of type S in the relying party's store: made at a
// login, read from the request's cookie, ended at their Expires whatever happens meanwhile.
type Sessions[S any, P sessionOf[S]] struct {
	rp    *RP
	pages SessionPages
}

// NewSessions makes the sessions of the pages of p.
func NewSessions[S any, P sessionOf[S]](p *RP, pages SessionPages) *Sessions[S, P] {
	return &Sessions[S, P]{rp: p, pages: pages}
}

// Load reads the request's session; nil when there is none or it has expired. An error is the
// store's.
func (ss *Sessions[S, P]) Load(r *http.Request) (P, error) {
	s := P(new(S))
	id, err := ss.rp.Load(r, s)
	if err != nil || id == "" || !ss.rp.now().Before(s.base().Expires) {
		return nil, err
	}
	s.base().ID = id
	return s, nil
}

// Save writes s back, until its Expires.
func (ss *Sessions[S, P]) Save(ctx context.Context, s P) error {
	b := s.base()
	return ss.rp.Save(ctx, b.ID, s, b.Expires)
}

// Begin makes s a new session, with a new id and CSRF token, for ttl from now, and gives the
// browser its cookie.
func (ss *Sessions[S, P]) Begin(ctx context.Context, w http.ResponseWriter, s P, ttl time.Duration) error {
	b := s.base()
	b.ID, b.CSRF, b.Expires = Token(), Token(), ss.rp.now().Add(ttl)
	if err := ss.Save(ctx, s); err != nil {
		return err
	}
	ss.rp.SetCookie(w, b.ID, b.Expires)
	return nil
}

// Guard lets through to h only a request with a live session, and a POST only as a small
// urlencoded form carrying the session's CSRF token (or a multipart one to the Multipart path).
func (ss *Sessions[S, P]) Guard(h func(http.ResponseWriter, *http.Request, P)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s, err := ss.Load(r)
		if err != nil {
			ss.pages.Unavailable(w, r, err)
			return
		}
		if s == nil {
			if r.Method == http.MethodGet {
				http.Redirect(w, r, ss.rp.cfg.Path, http.StatusSeeOther)
				return
			}
			ss.pages.Refuse(w, r, Expired)
			return
		}
		if r.Method == http.MethodPost {
			if why, ok := ss.checkForm(w, r, s.base()); !ok {
				ss.pages.Refuse(w, r, why)
				return
			}
		}
		h(w, r, s)
	}
}

func (ss *Sessions[S, P]) checkForm(w http.ResponseWriter, r *http.Request, s *Session) (Refusal, bool) {
	if r.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
		if ss.pages.Multipart != "" && r.URL.Path == ss.pages.Multipart {
			return 0, true
		}
		return NotForm, false
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	if err := r.ParseForm(); err != nil {
		return BadForm, false
	}
	if !Same(s.CSRF, r.PostForm.Get("csrf")) {
		return BadCSRF, false
	}
	return 0, true
}
