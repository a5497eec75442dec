package eid

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vula-eid/vula/internal/auth"
	"github.com/vula-eid/vula/internal/rp/rptest"
	"github.com/vula-eid/vula/internal/store"
	"github.com/vula-eid/vula/internal/store/memstore"
	"github.com/vula-eid/vula/internal/web"
)

// pagesEnv is the desk's pages on a real SQLite store and audit log (newEnv), beside a small
// OpenID provider that logs in whoever the test names at the level it names: what the real
// provider would refuse earlier (a login below high reaching the callback) is exactly what the
// desk must refuse again. The real path is test/desk_test.go's TestBrowserDesk.
type pagesEnv struct {
	*env
	t       *testing.T
	srv     *httptest.Server
	eph     *memstore.Store
	mu      sync.Mutex
	who     string // the subject the next login is
	acr     string // its level
	refuse  string // an error the provider answers instead, "" for none
	printed []Letter
	offset  time.Duration // how far the desk's clock (and its store's) is ahead of the real one
}

func (e *pagesEnv) now() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	return time.Now().Add(e.offset)
}

// pdfPrinter stands in for internal/letter (another package, wired in internal/app): the seam's
// contract is what is tested here, the real PDF in test/desk_test.go.
type pdfPrinter struct{ e *pagesEnv }

func (p pdfPrinter) Print(_ context.Context, l Letter, lang string) ([]byte, error) {
	p.e.mu.Lock()
	defer p.e.mu.Unlock()
	p.e.printed = append(p.e.printed, l)
	return []byte("%PDF-1.7 " + lang + " " + l.Code), nil
}

var _ Printer = pdfPrinter{}

func newPagesEnv(t *testing.T, withPrinter bool) *pagesEnv {
	e := &pagesEnv{env: newEnv(t), t: t, who: "reg", acr: auth.LoAHigh}
	mux := http.NewServeMux()
	e.srv = httptest.NewServer(mux)
	t.Cleanup(e.srv.Close)
	e.eph = memstore.New(e.now)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	rw, err := web.New(log, false)
	if err != nil {
		t.Fatal(err)
	}
	cfg := PagesConfig{Issuer: e.srv.URL}
	if withPrinter {
		cfg.Printer = pdfPrinter{e}
	}
	NewPages(e.desk, cfg, rw, e.eph, log, e.now).Register(mux)
	rptest.Register(t, mux, e.srv.URL, ClientID, func(q url.Values) rptest.Login {
		if q.Get("acr_values") != auth.LoAHigh || q.Get("code_challenge_method") != "S256" || q.Get("client_id") != ClientID {
			t.Errorf("authorization request %v", q)
		}
		e.mu.Lock()
		defer e.mu.Unlock()
		return rptest.Login{Subject: e.who, ACR: e.acr, AMR: []string{"hwk", "user"}, Error: e.refuse}
	})
	return e
}

type deskBrowser struct {
	t   *testing.T
	c   *http.Client
	e   *pagesEnv
	csr string
}

func (e *pagesEnv) browser() *deskBrowser {
	jar, _ := cookiejar.New(nil)
	return &deskBrowser{t: e.t, c: &http.Client{Jar: jar}, e: e}
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// do sends req, follows the redirects, and gives the status, the path it ended on and the page.
func (b *deskBrowser) do(req *http.Request) (int, string, string) {
	b.t.Helper()
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if m := csrfRE.FindStringSubmatch(string(body)); m != nil {
		b.csr = m[1]
	}
	return resp.StatusCode, resp.Request.URL.Path, string(body)
}

func (b *deskBrowser) get(path string) (int, string, string) {
	req, _ := http.NewRequest("GET", b.e.srv.URL+path, nil)
	return b.do(req)
}

// post sends a form with the session's CSRF token, unless the form names its own.
func (b *deskBrowser) post(path string, form url.Values) (int, string, string) {
	if _, ok := form["csrf"]; !ok {
		form.Set("csrf", b.csr)
	}
	req, _ := http.NewRequest("POST", b.e.srv.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

func (b *deskBrowser) hasSession() bool {
	u, _ := url.Parse(b.e.srv.URL + "/desk/")
	for _, c := range b.c.Jar.Cookies(u) {
		if c.Name == "vula_desk" {
			return true
		}
	}
	return false
}

func TestDeskLoginRefused(t *testing.T) {
	e := newPagesEnv(t, false)
	for _, tc := range []struct {
		name, who, acr, refuse, want string
		status                       int
	}{
		{"a registrar at substantial", "reg", auth.LoASubstantial, "", "needs a login at level high", 403},
		{"not a registrar", "clerk", auth.LoAHigh, "", "Only registrars", 403},
		{"an unknown subject", "nobody", auth.LoAHigh, "", "Only registrars", 403},
		{"the provider cannot reach high", "reg", auth.LoAHigh, "unmet_authentication_requirements", "needs a login at level high", 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.mu.Lock()
			e.who, e.acr, e.refuse = tc.who, tc.acr, tc.refuse
			e.mu.Unlock()
			b := e.browser()
			status, _, page := b.get("/desk/login?lang=en")
			if status != tc.status || !strings.Contains(page, tc.want) || !strings.Contains(page, `role="alert"`) {
				t.Fatalf("status %d, page %s", status, page)
			}
			if b.hasSession() {
				t.Fatal("a refused login got a session cookie")
			}
			if status, path, _ := b.get("/desk/find"); status != 200 || path != "/desk/" {
				t.Fatalf("after a refusal /desk/find ended at %s (%d)", path, status)
			}
		})
	}
	// A callback the browser did not start.
	b := e.browser()
	if status, _, page := b.get("/desk/callback?state=forged&code=x"); status != 400 || !strings.Contains(page, "Start again") {
		t.Fatalf("a forged callback: %d %s", status, page)
	}
}

func TestDeskPages(t *testing.T) {
	for _, withPrinter := range []bool{false, true} {
		name := map[bool]string{false: "letter as a page", true: "letter as a PDF"}[withPrinter]
		t.Run(name, func(t *testing.T) { deskPages(t, withPrinter) })
	}
}

func deskPages(t *testing.T, withPrinter bool) {
	ctx := context.Background()
	e := newPagesEnv(t, withPrinter)
	b := e.browser()
	if status, path, page := b.get("/desk/login?lang=en"); status != 200 || path != "/desk/find" || !strings.Contains(page, "Registrar: Besa Gashi") {
		t.Fatalf("login ended at %s (%d): %s", path, status, page)
	}
	// CSRF: a form without the token, or with another, changes nothing.
	for _, token := range []string{"", "forged-token-forged-token-forged-token"} {
		if status, _, _ := b.post("/desk/find", url.Values{"csrf": {token}, "number": {"9000000002"}}); status != 403 {
			t.Fatalf("a form with csrf %q: %d", token, status)
		}
	}
	if status, _, _ := b.post("/desk/register", url.Values{"csrf": {""}, "number": {"7000000001"}, "given": {"A"}, "family": {"B"},
		"birth": {"1990-01-01"}, "document": {"D1"}, "expiry": {"2031-01-01"}}); status != 403 {
		t.Fatalf("a registration without csrf: %d", status)
	}
	if _, err := e.db.PersonByPersonalNumber(ctx, "7000000001"); err == nil {
		t.Fatal("a registration without csrf registered")
	}
	// Unknown and empty personal numbers.
	if status, _, page := b.post("/desk/find", url.Values{"number": {"1234567890"}}); status != 404 || !strings.Contains(page, "No person has this personal number") {
		t.Fatalf("unknown number: %d %s", status, page)
	}
	if status, _, page := b.post("/desk/find", url.Values{"number": {"  "}}); status != 400 || !strings.Contains(page, `aria-invalid="true"`) {
		t.Fatalf("empty number: %d %s", status, page)
	}
	if status, _, _ := b.get("/desk/person/0123456789abcdef"); status != 404 {
		t.Fatalf("unknown person page: %d", status)
	}
	if status, _, _ := b.get("/desk/person/..%2F..%2Fetc"); status != 404 {
		t.Fatalf("a bad id: %d", status)
	}
	// Bad dates: a message on the form, named field, nothing registered.
	reg := url.Values{"number": {"7000000001"}, "given": {"Arta"}, "family": {"Krasniqi"}, "birth": {"12.04.1990"},
		"document": {"P7000000001"}, "expiry": {"2031-01-01"}}
	status, _, page := b.post("/desk/register", reg)
	if status != 400 || !strings.Contains(page, `id="birth-error"`) || !strings.Contains(page, "Enter a date as YYYY-MM-DD") ||
		!strings.Contains(page, `value="Arta"`) {
		t.Fatalf("bad birth date: %d %s", status, page)
	}
	reg.Set("birth", "1990-04-12")
	reg.Set("expiry", "2020-01-01")
	if status, _, page := b.post("/desk/register", reg); status != 400 || !strings.Contains(page, "The ID document has expired") {
		t.Fatalf("expired document: %d %s", status, page)
	}
	if _, err := e.db.PersonByPersonalNumber(ctx, "7000000001"); err == nil {
		t.Fatal("a refused registration registered")
	}
	// Registered: the confirmation, then the letter.
	reg.Set("expiry", "2031-01-01")
	status, path, page := b.post("/desk/register", reg)
	if status != 200 || path != "/desk/letter" || !strings.Contains(page, "Print the activation letter") {
		t.Fatalf("registered: %d %s %s", status, path, page)
	}
	p, err := e.db.PersonByPersonalNumber(ctx, "7000000001")
	if err != nil || p.Proofing != store.ProofingHigh || p.ProofedBy != "reg" {
		t.Fatalf("registered person %+v %v", p, err)
	}
	c, _ := e.db.Credential(ctx, p.SubjectID)
	codeOf := func(body string) string {
		m := regexp.MustCompile(`[A-Z2-7]{4}(-[A-Z2-7]{4}){5}`).FindString(body)
		if m == "" {
			t.Fatalf("no code in %s", body)
		}
		return m
	}
	if withPrinter {
		status, _, pdf := b.get("/desk/letter/print?lang=sq")
		if status != 200 || !strings.HasPrefix(pdf, "%PDF-1.7 sq ") {
			t.Fatalf("the PDF: %d %q", status, pdf)
		}
		if !bytes.Equal(store.HashActivationCode(codeOf(pdf)), c.ActivationHash) {
			t.Fatal("the PDF's code is not the stored one")
		}
		b.get("/desk/find?lang=en")
		// Fetched once: the letter (and its code) is gone from the session.
		if status, _, _ := b.get("/desk/letter/print"); status != 404 {
			t.Fatalf("the letter printed twice: %d", status)
		}
	} else {
		status, _, letter := b.get("/desk/letter/print")
		if status != 200 || !strings.Contains(letter, e.srv.URL+"/activate") || !strings.Contains(letter, "Arta Krasniqi") {
			t.Fatalf("the letter page: %d %s", status, letter)
		}
		if !bytes.Equal(store.HashActivationCode(codeOf(letter)), c.ActivationHash) {
			t.Fatal("the letter's code is not the stored one")
		}
	}
	// The person's page, suspend, resume, revoke (confirmed only), history.
	status, path, page = b.post("/desk/find", url.Values{"number": {"7000000001"}})
	if status != 200 || path != "/desk/person/"+p.SubjectID || !strings.Contains(page, "High (checked in person)") {
		t.Fatalf("found: %d %s %s", status, path, page)
	}
	if _, _, page := b.post("/desk/person/"+p.SubjectID+"/status", url.Values{"to": {"suspended"}}); !strings.Contains(page, `id="person-status">Suspended`) {
		t.Fatalf("suspended: %s", page)
	}
	if status, _, _ := b.post("/desk/person/"+p.SubjectID+"/status", url.Values{"to": {"revoked"}}); status != 400 {
		t.Fatalf("revoked through the status form: %d", status)
	}
	if _, _, page := b.post("/desk/person/"+p.SubjectID+"/status", url.Values{"to": {"active"}}); !strings.Contains(page, `id="person-status">Active`) {
		t.Fatalf("resumed: %s", page)
	}
	if status, _, page := b.post("/desk/person/"+p.SubjectID+"/revoke", url.Values{}); status != 400 || !strings.Contains(page, "Nothing was revoked") {
		t.Fatalf("an unconfirmed revocation: %d %s", status, page)
	}
	if q, _ := e.db.Person(ctx, p.SubjectID); q.Status != store.EIDActive {
		t.Fatalf("an unconfirmed revocation changed the status to %s", q.Status)
	}
	status, _, page = b.post("/desk/person/"+p.SubjectID+"/revoke", url.Values{"confirm": {"yes"}})
	if status != 200 || !strings.Contains(page, `id="person-status">Revoked`) {
		t.Fatalf("revoked: %d %s", status, page)
	}
	if status, _, _ := b.post("/desk/person/"+p.SubjectID+"/reset", url.Values{}); status != 409 {
		t.Fatalf("a reset of a revoked means: %d", status)
	}
	for _, want := range []string{"Registered, identity checked in person", "Activation letter issued", "Suspended", "Resumed", "Revoked", "Besa Gashi (9000000001)"} {
		if !strings.Contains(page, want) {
			t.Errorf("the history lacks %q", want)
		}
	}
	// Logged out: the session is gone.
	if status, _, _ := b.post("/desk/logout", url.Values{}); status != 200 {
		t.Fatalf("logout: %d", status)
	}
	if status, _, _ := b.post("/desk/find", url.Values{"number": {"7000000001"}}); status != 401 {
		t.Fatalf("after logout: %d", status)
	}
}

// The letter (with its code) is kept for 15 minutes at most, then the desk says it is gone.
func TestDeskLetterExpires(t *testing.T) {
	e := newPagesEnv(t, false)
	b := e.browser()
	if _, path, _ := b.get("/desk/login?lang=en"); path != "/desk/find" {
		t.Fatalf("login ended at %s", path)
	}
	if status, path, _ := b.post("/desk/register", url.Values{"number": {"7000000002"}, "given": {"Arta"}, "family": {"Krasniqi"},
		"birth": {"1990-04-12"}, "document": {"P2"}, "expiry": {"2031-01-01"}}); status != 200 || path != "/desk/letter" {
		t.Fatalf("registered: %d %s", status, path)
	}
	if status, _, _ := b.get("/desk/letter/print"); status != 200 {
		t.Fatalf("the letter at once: %d", status)
	}
	e.mu.Lock()
	e.offset = 15*time.Minute + time.Second
	e.mu.Unlock()
	status, _, page := b.get("/desk/letter/print")
	if status != 404 || !strings.Contains(page, "more than 15 minutes passed") || regexp.MustCompile(`[A-Z2-7]{4}-[A-Z2-7]{4}-`).MatchString(page) {
		t.Fatalf("the letter after 15 minutes: %d %s", status, page)
	}
	if status, _, _ := b.get("/desk/find"); status != 200 {
		t.Fatalf("the session itself lasts longer: %d", status)
	}
}

// FuzzRegistrationForm: whatever a form holds, checking it does not panic, and what it lets
// through is what Register accepts as well-formed.
func FuzzRegistrationForm(f *testing.F) {
	f.Add("7000000001", "Arta", "Krasniqi", "1990-04-12", "P7000000001", "2031-01-01")
	f.Add("", " ", "\x00", "12.04.1990", "P", "2020-02-30")
	f.Add("  ", "Arta", "Krasniqi", "1990-04-12", "P7000000001", "2031-01-01")
	f.Add("7000000001", "Zoë", "Đorđević", "2999-01-01", "Ж123", "9999-12-31")
	today := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, number, given, family, birth, doc, expiry string) {
		in := Registration{PersonalNumber: number, GivenName: given, FamilyName: family, BirthDate: birth, DocumentNumber: doc, DocumentExpiry: expiry}
		if len(checkRegistration(in, today)) > 0 {
			return
		}
		if checkDate("birth date", birth) != nil || checkDate("document expiry", expiry) != nil || strings.TrimSpace(number) == "" {
			t.Fatalf("accepted %+v", in)
		}
	})
}
