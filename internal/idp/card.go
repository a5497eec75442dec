package idp

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/vula-eid/vula/internal/audit"
	"github.com/vula-eid/vula/internal/store"
)

// The ID card login: the card holds a key and an X.509 certificate under a card-issuer CA, and
// the browser presents it to a second TLS listener that asks for a client certificate. The
// login page links there with the flow and its CSRF token; the card listener checks the chain,
// the card's revocation (a CRL file of its issuer, or OCSP from the certificate's AIA) and maps
// the certificate's subject serialNumber to a person, then sends the browser back to the main
// listener with a one-use ticket. The main listener accepts the ticket only from the browser
// that started the flow (a cookie set at the authorization endpoint), so a card login cannot be
// grafted onto a flow someone else started. The login reaches high, amr sc and hwk (RFC 8176).

const (
	cardTicketTTL = 2 * time.Minute
	cardCookie    = "vula_card_"
	// maxOCSPResponse bounds what is read from a responder.
	maxOCSPResponse = 64 << 10
	// ocspSkew is how far in the future a response's thisUpdate may lie (clocks differ).
	ocspSkew = 5 * time.Minute
)

// Recorder appends events to the audit log (audit.Log).
type Recorder interface {
	Append(ctx context.Context, ev audit.Event) (store.AuditRecord, error)
}

var _ Recorder = (*audit.Log)(nil)

// CardConfig configures the ID card login.
type CardConfig struct {
	// URL is the card listener's origin as browsers reach it (https://card.eid.example:8444).
	URL string
	// Issuers are the card-issuer CAs a card's chain must end in.
	Issuers []*x509.Certificate
	// CRLFiles are CRLs of the card issuers, read again when the file changes. A card whose
	// issuer has one is checked against it; otherwise OCSP at the certificate's AIA is asked.
	CRLFiles []string
	// SerialPrefix is taken off the subject serialNumber to give the personal number
	// (ETSI EN 319 412-1 semantics identifiers such as "PNOXK-"); when set, a serialNumber
	// without it is refused.
	SerialPrefix string
	// OCSPTimeout bounds an OCSP request (default 5s).
	OCSPTimeout time.Duration
	// HTTP is the client OCSP requests go through (default http.DefaultClient).
	HTTP *http.Client
	// Audit records each card login.
	Audit Recorder
}

// Card is the ID card login.
type Card struct {
	g     *Pages
	cfg   CardConfig
	roots *x509.CertPool

	mu   sync.Mutex
	crls map[string]cachedCRL
}

type cachedCRL struct {
	mod time.Time
	crl *x509.RevocationList
}

// NewCard adds the ID card login to the pages: the login page offers it and the return from
// the card listener is accepted. Its own routes go on the card listener (Register).
func NewCard(g *Pages, cfg CardConfig) (*Card, error) {
	if len(cfg.Issuers) == 0 {
		return nil, errors.New("no card-issuer CA")
	}
	if _, err := url.Parse(cfg.URL); err != nil || !strings.HasPrefix(cfg.URL, "https://") {
		return nil, fmt.Errorf("card URL %q is not an https URL", cfg.URL)
	}
	cfg.URL = strings.TrimSuffix(cfg.URL, "/")
	if cfg.OCSPTimeout <= 0 {
		cfg.OCSPTimeout = 5 * time.Second
	}
	if cfg.HTTP == nil {
		cfg.HTTP = http.DefaultClient
	}
	c := &Card{g: g, cfg: cfg, roots: x509.NewCertPool(), crls: map[string]cachedCRL{}}
	for _, ca := range cfg.Issuers {
		c.roots.AddCert(ca)
	}
	for _, f := range cfg.CRLFiles {
		if _, err := c.crl(f); err != nil {
			return nil, err
		}
	}
	g.card = c
	g.AddMethod(LoginMethod{ID: "card", Reaches: LoAHigh, Href: "/login/card/start"})
	return c, nil
}

// ClientCAs are the card issuers, for the card listener's TLS configuration (the browser is
// told which issuers to pick a certificate of).
func (c *Card) ClientCAs() *x509.CertPool { return c.roots }

// Register adds the card listener's route.
func (c *Card) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /login/card", c.login)
}

// link is where the login page sends a browser to log in with its card.
func (c *Card) link(f *flow) string {
	return c.cfg.URL + "/login/card?" + url.Values{"flow": {f.ID}, "csrf": {f.CSRF}}.Encode()
}

// cardTicket is what the card listener hands the main listener.
type cardTicket struct {
	Flow     string    `json:"flow"`
	Subject  string    `json:"subject"`
	AuthTime time.Time `json:"auth_time"`
}

// The reasons a card is refused, each with its page's message.
var (
	errCardNone        = errors.New("no card certificate")
	errCardUntrusted   = errors.New("card certificate not issued by a card issuer")
	errCardExpired     = errors.New("card certificate expired or not yet valid")
	errCardRevoked     = errors.New("card certificate revoked")
	errCardStatus      = errors.New("card issuer does not know the certificate")
	errCardNoCheck     = errors.New("no means to check the card's revocation")
	errCardUnknown     = errors.New("no person has the card's personal number")
	errCardUnavailable = errors.New("card revocation status unavailable")
)

var cardMessages = map[error]struct {
	status int
	msg    string
}{
	errCardNone:      {http.StatusUnauthorized, "card.none"},
	errCardUntrusted: {http.StatusForbidden, "card.untrusted"},
	errCardExpired:   {http.StatusForbidden, "card.expired"},
	errCardRevoked:   {http.StatusForbidden, "card.revoked"},
	errCardStatus:    {http.StatusForbidden, "card.status"},
	errCardNoCheck:   {http.StatusForbidden, "card.status"},
	errCardUnknown:   {http.StatusForbidden, "card.unknown"},
}

// login is the card listener's page: it checks the card and sends the browser back with a
// ticket.
func (c *Card) login(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	g := c.g
	f, ok := g.loadFlow(r)
	if !ok || f.Subject != "" || !sameToken(f.CSRF, r.URL.Query().Get("csrf")) {
		g.fail(w, r, http.StatusBadRequest, "error.flow")
		return
	}
	var chain []*x509.Certificate
	if r.TLS != nil {
		chain = r.TLS.PeerCertificates
	}
	p, leaf, err := c.person(ctx, chain)
	if err != nil {
		if m, ok := cardMessages[unwrapCard(err)]; ok {
			g.p.log.InfoContext(ctx, "card login refused", "reason", err.Error())
			g.fail(w, r, m.status, m.msg)
			return
		}
		g.unavailable(w, r, err)
		return
	}
	now := g.p.now().UTC().Truncate(time.Second)
	detail, _ := json.Marshal(map[string]string{"client": f.Client, "serial": leaf.SerialNumber.Text(16), "issuer": leaf.Issuer.String()})
	if c.cfg.Audit != nil {
		if _, err := c.cfg.Audit.Append(ctx, audit.Event{Actor: p.SubjectID, Action: "idp.login.card", Result: "ok", Detail: detail, Subject: p.SubjectID}); err != nil {
			g.unavailable(w, r, err)
			return
		}
	}
	ticket := randomID()
	b, _ := json.Marshal(cardTicket{Flow: f.ID, Subject: p.SubjectID, AuthTime: now})
	if err := g.p.eph.Put(ctx, "idp:card:"+ticket, b, cardTicketTTL); err != nil {
		g.unavailable(w, r, err)
		return
	}
	http.Redirect(w, r, g.p.cfg.Issuer+"/login/card/done?"+url.Values{"flow": {f.ID}, "ticket": {ticket}}.Encode(), http.StatusSeeOther)
}

// unwrapCard finds which card refusal err is.
func unwrapCard(err error) error {
	for e := range cardMessages {
		if errors.Is(err, e) {
			return e
		}
	}
	return nil
}

// person checks the presented chain and finds whose card it is.
func (c *Card) person(ctx context.Context, chain []*x509.Certificate) (store.Person, *x509.Certificate, error) {
	if len(chain) == 0 {
		return store.Person{}, nil, errCardNone
	}
	leaf := chain[0]
	inter := x509.NewCertPool()
	for _, ca := range chain[1:] {
		inter.AddCert(ca)
	}
	chains, err := leaf.Verify(x509.VerifyOptions{Roots: c.roots, Intermediates: inter, CurrentTime: c.g.p.now(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	var invalid x509.CertificateInvalidError
	switch {
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		return store.Person{}, nil, fmt.Errorf("%w: %v", errCardExpired, err)
	case err != nil:
		return store.Person{}, nil, fmt.Errorf("%w: %v", errCardUntrusted, err)
	case len(chains[0]) < 2:
		return store.Person{}, nil, fmt.Errorf("%w: the certificate is itself a card issuer", errCardUntrusted)
	}
	if err := c.revocation(ctx, leaf, chains[0][1]); err != nil {
		return store.Person{}, nil, err
	}
	number, ok := strings.CutPrefix(leaf.Subject.SerialNumber, c.cfg.SerialPrefix)
	if !ok || number == "" {
		return store.Person{}, nil, fmt.Errorf("%w: subject serialNumber %q", errCardUnknown, leaf.Subject.SerialNumber)
	}
	p, err := c.g.p.db.PersonByPersonalNumber(ctx, number)
	if errors.Is(err, store.ErrNotFound) {
		return store.Person{}, nil, errCardUnknown
	}
	return p, leaf, err
}

// revocation checks the card against its issuer's CRL file when there is one, else asks OCSP.
// Nothing is ever taken as good for want of an answer.
func (c *Card) revocation(ctx context.Context, leaf, issuer *x509.Certificate) error {
	now := c.g.p.now()
	for _, f := range c.cfg.CRLFiles {
		crl, err := c.crl(f)
		if err != nil {
			return fmt.Errorf("%w: %v", errCardUnavailable, err)
		}
		if !bytes.Equal(crl.RawIssuer, issuer.RawSubject) || crl.CheckSignatureFrom(issuer) != nil {
			continue
		}
		if now.After(crl.NextUpdate) {
			return fmt.Errorf("%w: the CRL %s is out of date (next update %s)", errCardUnavailable, f, crl.NextUpdate)
		}
		for _, e := range crl.RevokedCertificateEntries {
			if e.SerialNumber.Cmp(leaf.SerialNumber) == 0 {
				return errCardRevoked
			}
		}
		return nil
	}
	if len(leaf.OCSPServer) == 0 {
		return errCardNoCheck
	}
	return c.ocsp(ctx, leaf, issuer, leaf.OCSPServer[0])
}

// ocsp asks the responder at u (RFC 6960, POST), within the timeout.
func (c *Card) ocsp(ctx context.Context, leaf, issuer *x509.Certificate, u string) error {
	req, err := ocsp.CreateRequest(leaf, issuer, nil)
	if err != nil {
		return fmt.Errorf("%w: %v", errCardUntrusted, err)
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.OCSPTimeout)
	defer cancel()
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(req))
	if err != nil {
		return fmt.Errorf("%w: %v", errCardNoCheck, err)
	}
	hr.Header.Set("Content-Type", "application/ocsp-request")
	resp, err := c.cfg.HTTP.Do(hr)
	if err != nil {
		return fmt.Errorf("%w: %v", errCardUnavailable, err)
	}
	defer func() { _ = resp.Body.Close() }() // read in full below
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxOCSPResponse))
	if err != nil || resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%w: responder %s answered %d %v", errCardUnavailable, u, resp.StatusCode, err)
	}
	r, err := ocsp.ParseResponseForCert(body, leaf, issuer)
	if err != nil {
		return fmt.Errorf("%w: response of %s: %v", errCardUnavailable, u, err)
	}
	now := c.g.p.now()
	if r.ThisUpdate.After(now.Add(ocspSkew)) || (!r.NextUpdate.IsZero() && now.After(r.NextUpdate)) {
		return fmt.Errorf("%w: response of %s is not current (%s to %s)", errCardUnavailable, u, r.ThisUpdate, r.NextUpdate)
	}
	switch r.Status {
	case ocsp.Good:
		return nil
	case ocsp.Revoked:
		return errCardRevoked
	default:
		return errCardStatus
	}
}

// crl reads a CRL file (DER or PEM), again only when it changed.
func (c *Card) crl(path string) (*x509.RevocationList, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.crls[path]; ok && e.mod.Equal(st.ModTime()) {
		return e.crl, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	crl, err := x509.ParseRevocationList(pemOrDER(b, "X509 CRL"))
	if err != nil {
		return nil, fmt.Errorf("CRL %s: %w", path, err)
	}
	c.crls[path] = cachedCRL{mod: st.ModTime(), crl: crl}
	return crl, nil
}

// cardStart sends the browser from the login page to the card listener, with the flow's CSRF
// token.
func (g *Pages) cardStart(w http.ResponseWriter, r *http.Request) {
	f, ok := g.loadFlow(r)
	if g.card == nil || !ok || f.Subject != "" {
		g.fail(w, r, http.StatusBadRequest, "error.flow")
		return
	}
	http.Redirect(w, r, g.card.link(f), http.StatusSeeOther)
}

// cardDone is the main listener's end of a card login: the ticket, from the browser that
// started the flow.
func (g *Pages) cardDone(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	f, ok := g.loadFlow(r)
	if g.card == nil || !ok || f.Subject != "" {
		g.fail(w, r, http.StatusBadRequest, "error.flow")
		return
	}
	ticket := r.URL.Query().Get("ticket")
	b, err := g.p.eph.Take(ctx, "idp:card:"+ticket)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		g.unavailable(w, r, err)
		return
	}
	var t cardTicket
	if err != nil || ticket == "" || json.Unmarshal(b, &t) != nil || t.Flow != f.ID {
		g.fail(w, r, http.StatusBadRequest, "error.flow")
		return
	}
	if ck, err := r.Cookie(cardCookie + f.ID); err != nil || !sameToken(f.Binding, ck.Value) {
		g.fail(w, r, http.StatusForbidden, "card.browser")
		return
	}
	http.SetCookie(w, &http.Cookie{Name: cardCookie + f.ID, Path: "/login/card/done", MaxAge: -1, HttpOnly: true, Secure: g.secure, SameSite: http.SameSiteLaxMode})
	p, err := g.p.db.Person(ctx, t.Subject)
	if err != nil {
		g.unavailable(w, r, err)
		return
	}
	if levelOf(proofingLoA(p.Proofing)) < levelOf(f.Required) {
		g.finishError(w, r, f, errUnmet("This person's identity was proofed at a lower level than "+f.Required+"."))
		return
	}
	f.Subject, f.AMR, f.AuthTime, f.AuthLevel = t.Subject, []string{"sc", "hwk"}, t.AuthTime, LoAHigh
	g.authenticated(w, r, f)
}

// bindCard gives the flow a secret that the browser starting it keeps in a cookie, for
// cardDone to check.
func (g *Pages) bindCard(w http.ResponseWriter, f *flow) {
	if g.card == nil {
		return
	}
	f.Binding = randomID()
	http.SetCookie(w, &http.Cookie{Name: cardCookie + f.ID, Value: f.Binding, Path: "/login/card/done", MaxAge: int(flowTTL.Seconds()),
		HttpOnly: true, Secure: g.secure, SameSite: http.SameSiteLaxMode})
}

// pemOrDER is the DER of the first PEM block of type typ in b, or b itself when it is not PEM.
func pemOrDER(b []byte, typ string) []byte {
	for rest := b; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			return b
		}
		if blk.Type == typ {
			return blk.Bytes
		}
	}
}
