package eid

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"
	"unicode"

	"github.com/vula-eid/vula/hsm"
	"github.com/vula-eid/vula/internal/auth"
	"github.com/vula-eid/vula/internal/rp"
	"github.com/vula-eid/vula/internal/store"
	"github.com/vula-eid/vula/internal/web"
)

// ClientID is the desk's client at the identity provider.
const ClientID = "desk"

// PagesConfig is the desk pages' setup.
type PagesConfig struct {
	Issuer string // the identity provider's (and the desk's) base URL
	Secure bool   // cookies Secure; false only in development over http
	// Printer makes the letter's PDF; nil shows the letter as a printable page instead.
	Printer Printer
	// HTTPClient reaches the identity provider; http.DefaultClient when nil.
	HTTPClient *http.Client
	// LoginKey seals the logins in progress in the browser's cookies (rp.Config.Key).
	LoginKey *[32]byte
}

// Pages are the registration desk's server-rendered pages under /desk/.
//
// The contract:
//   - Every page but the landing page needs a desk session, made only by an OpenID Connect
//     login at the identity provider (rp: code flow with PKCE, acr_values LoA high) whose ID
//     token verifies with acr high, of an active registrar. Anyone else gets a page saying why
//     (403) and no session. The session ends 30 minutes after the login.
//   - Every form carries the session's CSRF token and is refused without it (403). Bad input
//     is a message on the form (400) and changes nothing. A store that is down is a 503 page
//     with Retry-After.
//   - Every action goes through the Desk, which checks the registrar again and audits it.
//   - An issued letter (it holds the plaintext code) is kept only beside the registrar's
//     session, for at most 15 minutes; it is deleted once its PDF is fetched or the session
//     ends, and never logged.
type Pages struct {
	desk    *Desk
	web     *web.Renderer
	eph     store.Ephemeral
	rp      *rp.RP
	ss      *rp.Sessions[deskSession, *deskSession]
	printer Printer
	issuer  string
	log     *slog.Logger
	now     func() time.Time
}

const (
	deskSessionTTL = 30 * time.Minute
	letterTTL      = 15 * time.Minute
)

// NewPages makes the desk's pages over d.
func NewPages(d *Desk, cfg PagesConfig, r *web.Renderer, eph store.Ephemeral, log *slog.Logger, now func() time.Time) *Pages {
	login := rp.New(rp.Config{Issuer: cfg.Issuer, ClientID: ClientID, Path: "/desk/", Name: "desk", ACR: auth.LoAHigh,
		Secure: cfg.Secure, HTTPClient: cfg.HTTPClient, Key: cfg.LoginKey}, eph, log, now)
	p := &Pages{desk: d, web: r, eph: eph, rp: login, printer: cfg.Printer, issuer: cfg.Issuer, log: log, now: now}
	p.ss = rp.NewSessions[deskSession](login, rp.SessionPages{Refuse: p.refuse, Unavailable: p.unavailable})
	return p
}

// RedirectURI is where the identity provider sends the browser back.
func (p *Pages) RedirectURI() string { return p.rp.RedirectURI() }

// Register adds the pages to mux; all but the landing page and the login's need a session.
func (p *Pages) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /desk/{$}", p.home)
	mux.HandleFunc("GET /desk/login", p.login)
	mux.HandleFunc("GET /desk/callback", p.callback)
	mux.HandleFunc("POST /desk/logout", p.ss.Guard(p.logout))
	mux.HandleFunc("GET /desk/find", p.ss.Guard(p.findPage))
	mux.HandleFunc("POST /desk/find", p.ss.Guard(p.find))
	mux.HandleFunc("GET /desk/register", p.ss.Guard(p.registerPage))
	mux.HandleFunc("POST /desk/register", p.ss.Guard(p.register))
	mux.HandleFunc("GET /desk/person/{id}", p.ss.Guard(p.personPage))
	mux.HandleFunc("POST /desk/person/{id}/status", p.ss.Guard(p.status))
	mux.HandleFunc("GET /desk/person/{id}/revoke", p.ss.Guard(p.revokePage))
	mux.HandleFunc("POST /desk/person/{id}/revoke", p.ss.Guard(p.revoke))
	mux.HandleFunc("POST /desk/person/{id}/reset", p.ss.Guard(p.reset))
	mux.HandleFunc("GET /desk/letter", p.ss.Guard(p.letterPage))
	mux.HandleFunc("GET /desk/letter/print", p.ss.Guard(p.print))
}

// deskSession is a logged-in registrar's desk state.
type deskSession struct {
	rp.Session
	Subject string `json:"sub"`
	Name    string `json:"name"`
	ACR     string `json:"acr"`
}

// refuse answers a request rp.Sessions.Guard turned away.
func (p *Pages) refuse(w http.ResponseWriter, r *http.Request, why rp.Refusal) {
	switch why {
	case rp.Expired:
		p.message(w, r, why.Status(), "desk.expired.title", "desk.expired", "/desk/")
	case rp.BadCSRF:
		p.message(w, r, why.Status(), "error.title", "error.csrf", "/desk/find")
	default:
		p.message(w, r, why.Status(), "error.title", "error.request", "/desk/find")
	}
}

type deskMessage struct {
	Title, Message string
	Back           string // a link to go on, "" for none
	OK             bool   // a confirmation (role=status), not an error
}

func (p *Pages) message(w http.ResponseWriter, r *http.Request, status int, title, msg, back string) {
	p.web.Render(w, r, status, "desk_message", deskMessage{Title: title, Message: msg, Back: back})
}

func (p *Pages) unavailable(w http.ResponseWriter, r *http.Request, err error) {
	p.log.ErrorContext(r.Context(), "desk", "path", r.URL.Path, "err", err)
	w.Header().Set("Retry-After", "30")
	p.message(w, r, http.StatusServiceUnavailable, "error.title", "error.unavailable", "")
}

// failed answers a desk error: the registrar lost the role (the session ends), the person is
// unknown, the means is revoked, or the store is down.
func (p *Pages) failed(w http.ResponseWriter, r *http.Request, s *deskSession, err error) {
	switch {
	case errors.Is(err, ErrNotRegistrar):
		if err := p.end(r.Context(), w, s); err != nil {
			p.log.WarnContext(r.Context(), "desk: ending the session of a former registrar", "err", err)
		}
		p.message(w, r, http.StatusForbidden, "desk.refused.title", "desk.refused.role", "")
	case errors.Is(err, store.ErrNotFound):
		p.message(w, r, http.StatusNotFound, "desk.notfound.title", "desk.notfound", "/desk/find")
	case errors.Is(err, ErrRevoked):
		p.message(w, r, http.StatusConflict, "desk.revoked.title", "desk.revoked", "/desk/find")
	default:
		p.unavailable(w, r, err)
	}
}

// home is the landing page, the only one without a login.
func (p *Pages) home(w http.ResponseWriter, r *http.Request) {
	if s, err := p.ss.Load(r); err == nil && s != nil {
		http.Redirect(w, r, "/desk/find", http.StatusSeeOther)
		return
	}
	p.web.Render(w, r, http.StatusOK, "desk_home", nil)
}

func (p *Pages) login(w http.ResponseWriter, r *http.Request) {
	p.rp.Start(w, r, rp.Options{Lang: p.web.Lang(w, r)})
}

// callback finishes the login and makes the session: only for an active registrar at high.
func (p *Pages) callback(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	l, err := p.rp.Finish(w, r)
	switch {
	case errors.Is(err, rp.ErrState):
		p.message(w, r, http.StatusBadRequest, "desk.login.failed", "portal.login.state", "/desk/")
		return
	case errors.Is(err, rp.ErrRefused):
		// Cancelled, or the provider found no way for this person to reach high.
		p.message(w, r, http.StatusForbidden, "desk.refused.title", "desk.refused.level", "/desk/")
		return
	case errors.Is(err, rp.ErrExchange):
		p.message(w, r, http.StatusBadGateway, "desk.login.failed", "portal.login.exchange", "/desk/")
		return
	case err != nil:
		p.unavailable(w, r, err)
		return
	}
	if !auth.AtLeast(l.ACR, auth.LoAHigh) {
		p.log.InfoContext(ctx, "desk: login below high refused", "acr", l.ACR)
		p.message(w, r, http.StatusForbidden, "desk.refused.title", "desk.refused.level", "/desk/")
		return
	}
	if err := p.desk.registrar(ctx, l.Subject); errors.Is(err, ErrNotRegistrar) {
		p.message(w, r, http.StatusForbidden, "desk.refused.title", "desk.refused.role", "")
		return
	} else if err != nil {
		p.unavailable(w, r, err)
		return
	}
	name := l.Name
	if me, err := p.desk.db.Person(ctx, l.Subject); err == nil && name == "" {
		name = me.GivenName + " " + me.FamilyName
	}
	s := &deskSession{Subject: l.Subject, Name: name, ACR: l.ACR}
	if err := p.ss.Begin(ctx, w, s, deskSessionTTL); err != nil {
		p.unavailable(w, r, err)
		return
	}
	http.Redirect(w, r, "/desk/find", http.StatusSeeOther)
}

// end deletes the session and its letter; failures are logged (the entries expire anyway).
func (p *Pages) end(ctx context.Context, w http.ResponseWriter, s *deskSession) error {
	err := errors.Join(p.eph.Delete(ctx, p.rp.Key("letter", s.ID)), p.rp.Delete(ctx, s.ID))
	p.rp.ClearCookie(w)
	return err
}

func (p *Pages) logout(w http.ResponseWriter, r *http.Request, s *deskSession) {
	if err := p.end(r.Context(), w, s); err != nil {
		p.unavailable(w, r, err)
		return
	}
	p.web.Render(w, r, http.StatusOK, "desk_message", deskMessage{Title: "desk.logout.title", Message: "desk.logout.done", Back: "/desk/", OK: true})
}

// page is what the logged-in pages share.
type page struct {
	Name, CSRF string
}

type findData struct {
	page
	Number, Error string
}

func (p *Pages) findPage(w http.ResponseWriter, r *http.Request, s *deskSession) {
	p.web.Render(w, r, http.StatusOK, "desk_find", findData{page: page{s.Name, s.CSRF}})
}

// validText is a short field of printable characters.
func validText(v string, max int) bool {
	if strings.TrimSpace(v) == "" || len(v) > max {
		return false
	}
	for _, c := range v {
		if !unicode.IsPrint(c) {
			return false
		}
	}
	return true
}

func (p *Pages) find(w http.ResponseWriter, r *http.Request, s *deskSession) {
	number := strings.TrimSpace(r.PostForm.Get("number"))
	d := findData{page: page{s.Name, s.CSRF}, Number: number}
	if !validText(number, 32) {
		d.Error = "desk.find.bad"
		p.web.Render(w, r, http.StatusBadRequest, "desk_find", d)
		return
	}
	rec, err := p.desk.Find(r.Context(), s.Subject, number)
	if errors.Is(err, store.ErrNotFound) {
		d.Error = "desk.find.none"
		p.web.Render(w, r, http.StatusNotFound, "desk_find", d)
		return
	}
	if err != nil {
		p.failed(w, r, s, err)
		return
	}
	http.Redirect(w, r, "/desk/person/"+rec.Person.SubjectID, http.StatusSeeOther)
}

type registerData struct {
	page
	In     Registration
	Errors map[string]string // field → text key
}

func (p *Pages) registerPage(w http.ResponseWriter, r *http.Request, s *deskSession) {
	p.web.Render(w, r, http.StatusOK, "desk_register", registerData{page: page{s.Name, s.CSRF}})
}

// checkRegistration names each field that is wrong, by the text key of its message.
func checkRegistration(in Registration, today time.Time) map[string]string {
	errs := map[string]string{}
	for field, v := range map[string]string{"number": in.PersonalNumber, "given": in.GivenName, "family": in.FamilyName, "document": in.DocumentNumber} {
		if !validText(v, 100) {
			errs[field] = "desk.register.required"
		}
	}
	if b, err := time.Parse("2006-01-02", in.BirthDate); err != nil {
		errs["birth"] = "desk.register.date"
	} else if b.After(today) {
		errs["birth"] = "desk.register.birth_future"
	}
	if e, err := time.Parse("2006-01-02", in.DocumentExpiry); err != nil {
		errs["expiry"] = "desk.register.date"
	} else if e.Before(today.Truncate(24 * time.Hour)) {
		errs["expiry"] = "desk.register.expired"
	}
	return errs
}

func (p *Pages) register(w http.ResponseWriter, r *http.Request, s *deskSession) {
	f := r.PostForm
	in := Registration{PersonalNumber: strings.TrimSpace(f.Get("number")), GivenName: strings.TrimSpace(f.Get("given")),
		FamilyName: strings.TrimSpace(f.Get("family")), BirthDate: strings.TrimSpace(f.Get("birth")),
		DocumentNumber: strings.TrimSpace(f.Get("document")), DocumentExpiry: strings.TrimSpace(f.Get("expiry"))}
	if errs := checkRegistration(in, p.now().UTC()); len(errs) > 0 {
		p.web.Render(w, r, http.StatusBadRequest, "desk_register", registerData{page: page{s.Name, s.CSRF}, In: in, Errors: errs})
		return
	}
	l, err := p.desk.Register(r.Context(), s.Subject, in)
	if errors.Is(err, ErrInvalid) {
		p.web.Render(w, r, http.StatusBadRequest, "desk_register", registerData{page: page{s.Name, s.CSRF}, In: in,
			Errors: map[string]string{"number": "desk.register.invalid"}})
		return
	}
	if err != nil {
		p.failed(w, r, s, err)
		return
	}
	p.issued(w, r, s, l)
}

// issued keeps the letter beside the session and shows the confirmation.
func (p *Pages) issued(w http.ResponseWriter, r *http.Request, s *deskSession, l Letter) {
	b, _ := json.Marshal(l)
	ttl := min(letterTTL, s.Expires.Sub(p.now()))
	if err := p.eph.Put(r.Context(), p.rp.Key("letter", s.ID), b, max(ttl, time.Second)); err != nil {
		// The code is in the store as a hash already; the registrar issues another letter.
		p.unavailable(w, r, err)
		return
	}
	http.Redirect(w, r, "/desk/letter", http.StatusSeeOther)
}

type historyRow struct {
	Time, Action, Actor, Result string
}

type personData struct {
	page
	R         Record
	ProofedBy string
	Created   string
	Expires   string
	History   []historyRow
	Done      string // the action just done, a text key
	Suspended bool
	Revoked   bool
}

const timeLayout = "2006-01-02 15:04 UTC"

// names gives the registrars' (or anyone's) names for subject ids, asking the store once each.
func (p *Pages) names(ctx context.Context) func(string) string {
	seen := map[string]string{}
	return func(id string) string {
		if n, ok := seen[id]; ok {
			return n
		}
		n := id
		if q, err := p.desk.db.Person(ctx, id); err == nil {
			n = q.GivenName + " " + q.FamilyName + " (" + q.PersonalNumber + ")"
		}
		seen[id] = n
		return n
	}
}

// validID is the shape of a subject id in a path.
func validID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, c := range id {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

var doneKeys = map[string]string{"suspended": "desk.done.suspended", "active": "desk.done.resumed", "revoked": "desk.done.revoked"}

func (p *Pages) personPage(w http.ResponseWriter, r *http.Request, s *deskSession) {
	ctx := r.Context()
	id := r.PathValue("id")
	if !validID(id) {
		p.failed(w, r, s, store.ErrNotFound)
		return
	}
	rec, err := p.desk.Look(ctx, s.Subject, id)
	if err != nil {
		p.failed(w, r, s, err)
		return
	}
	hist, err := p.desk.History(ctx, s.Subject, id)
	if err != nil {
		p.failed(w, r, s, err)
		return
	}
	name := p.names(ctx)
	d := personData{page: page{s.Name, s.CSRF}, R: rec, Created: rec.Person.Created.UTC().Format(timeLayout),
		Suspended: rec.Person.Status == store.EIDSuspended, Revoked: rec.Person.Status == store.EIDRevoked,
		Done: doneKeys[r.URL.Query().Get("done")]}
	if rec.Person.ProofedBy != "" {
		d.ProofedBy = name(rec.Person.ProofedBy)
		if !rec.Person.ProofedAt.IsZero() {
			d.ProofedBy += ", " + rec.Person.ProofedAt.UTC().Format(timeLayout)
		}
	}
	if rec.ActivationPending {
		d.Expires = rec.ActivationExpires.UTC().Format(timeLayout)
	}
	for i := len(hist) - 1; i >= 0; i-- { // newest first
		h := hist[i]
		d.History = append(d.History, historyRow{Time: h.Time.UTC().Format(timeLayout), Action: "desk.action." + h.Action, Actor: name(h.Actor), Result: h.Result})
	}
	p.web.Render(w, r, http.StatusOK, "desk_person", d)
}

// status suspends or resumes.
func (p *Pages) status(w http.ResponseWriter, r *http.Request, s *deskSession) {
	id := r.PathValue("id")
	to := r.PostForm.Get("to")
	if !validID(id) {
		p.failed(w, r, s, store.ErrNotFound)
		return
	}
	if to != store.EIDSuspended && to != store.EIDActive {
		p.message(w, r, http.StatusBadRequest, "error.title", "error.request", "/desk/person/"+id)
		return
	}
	if err := p.desk.SetStatus(r.Context(), s.Subject, id, to); err != nil {
		p.failed(w, r, s, err)
		return
	}
	http.Redirect(w, r, "/desk/person/"+id+"?done="+to, http.StatusSeeOther)
}

type revokeData struct {
	page
	R     Record
	Error string
}

func (p *Pages) revokePage(w http.ResponseWriter, r *http.Request, s *deskSession) {
	id := r.PathValue("id")
	if !validID(id) {
		p.failed(w, r, s, store.ErrNotFound)
		return
	}
	p.revokeForm(w, r, s, id, http.StatusOK, "")
}

// revokeForm shows the confirmation step of a revocation, with msg when it was not confirmed.
func (p *Pages) revokeForm(w http.ResponseWriter, r *http.Request, s *deskSession, id string, status int, msg string) {
	rec, err := p.desk.Look(r.Context(), s.Subject, id)
	if err != nil {
		p.failed(w, r, s, err)
		return
	}
	p.web.Render(w, r, status, "desk_revoke", revokeData{page: page{s.Name, s.CSRF}, R: rec, Error: msg})
}

func (p *Pages) revoke(w http.ResponseWriter, r *http.Request, s *deskSession) {
	id := r.PathValue("id")
	if !validID(id) {
		p.failed(w, r, s, store.ErrNotFound)
		return
	}
	if r.PostForm.Get("confirm") != "yes" {
		p.revokeForm(w, r, s, id, http.StatusBadRequest, "desk.revoke.unconfirmed")
		return
	}
	if err := p.desk.SetStatus(r.Context(), s.Subject, id, store.EIDRevoked); err != nil {
		p.failed(w, r, s, err)
		return
	}
	http.Redirect(w, r, "/desk/person/"+id+"?done=revoked", http.StatusSeeOther)
}

func (p *Pages) reset(w http.ResponseWriter, r *http.Request, s *deskSession) {
	id := r.PathValue("id")
	if !validID(id) {
		p.failed(w, r, s, store.ErrNotFound)
		return
	}
	l, err := p.desk.Reset(r.Context(), s.Subject, id)
	if err != nil {
		p.failed(w, r, s, err)
		return
	}
	p.issued(w, r, s, l)
}

// pending reads the session's letter; ok false when there is none (fetched, expired).
func (p *Pages) pending(ctx context.Context, s *deskSession) (Letter, bool, error) {
	b, err := p.eph.Get(ctx, p.rp.Key("letter", s.ID))
	if errors.Is(err, store.ErrNotFound) {
		return Letter{}, false, nil
	}
	if err != nil {
		return Letter{}, false, err
	}
	var l Letter
	if err := json.Unmarshal(b, &l); err != nil {
		return Letter{}, false, errors.New("eid: a letter in the store does not read")
	}
	return l, true, nil
}

type letterData struct {
	page
	Person  store.Person
	Code    string
	Expires string
	PDF     bool
	// Activate is where the citizen uses the code.
	Activate string
}

func (p *Pages) letterData(s *deskSession, l Letter) letterData {
	return letterData{page: page{s.Name, s.CSRF}, Person: l.Person, Code: l.Code, Expires: l.Expires.UTC().Format("2006-01-02"), PDF: p.printer != nil,
		Activate: p.issuer + "/activate"}
}

// letterPage confirms the letter was issued, with the link to print it.
func (p *Pages) letterPage(w http.ResponseWriter, r *http.Request, s *deskSession) {
	l, ok, err := p.pending(r.Context(), s)
	if err != nil {
		p.unavailable(w, r, err)
		return
	}
	if !ok {
		p.message(w, r, http.StatusNotFound, "desk.letter.title", "desk.letter.gone", "/desk/find")
		return
	}
	d := p.letterData(s, l)
	d.Code = "" // shown only on the letter itself
	p.web.Render(w, r, http.StatusOK, "desk_letter", d)
}

// print answers the letter: the sealed PDF (then forgotten), or the printable page.
func (p *Pages) print(w http.ResponseWriter, r *http.Request, s *deskSession) {
	ctx := r.Context()
	l, ok, err := p.pending(ctx, s)
	if err != nil {
		p.unavailable(w, r, err)
		return
	}
	if !ok {
		p.message(w, r, http.StatusNotFound, "desk.letter.title", "desk.letter.gone", "/desk/find")
		return
	}
	if p.printer == nil {
		p.web.Render(w, r, http.StatusOK, "desk_letter_print", p.letterData(s, l))
		return
	}
	// The letter's seal is audited with the registrar as its actor.
	pdf, err := p.printer.Print(hsm.WithActor(ctx, s.Subject), l, p.web.Lang(w, r))
	if err != nil {
		p.unavailable(w, r, err)
		return
	}
	if err := p.eph.Delete(ctx, p.rp.Key("letter", s.ID)); err != nil {
		p.unavailable(w, r, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/pdf")
	h.Set("Content-Disposition", `inline; filename="activation-letter.pdf"`)
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.Write(pdf)
}
