package portal

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vula-eid/vula/internal/rp/rptest"
	"github.com/vula-eid/vula/internal/signing/signingtest"
	"github.com/vula-eid/vula/internal/store"
	"github.com/vula-eid/vula/internal/store/memstore"
	"github.com/vula-eid/vula/internal/web"
)

// reloginEnv is the portal on an in-memory store and the test's clock, beside a small OpenID
// provider (discovery, keys, an authorization endpoint that logs in whoever the test says, a
// token endpoint checking PKCE) and a signing service that refuses, as csc.Service does, a
// login older than reloginMaxAge (its LoginMaxAge, which the portal asks). The real path (the
// binary's IdP and CSC service with csc.login_max_age of seconds, a re-login that keeps the
// document, a valid signature) is test/portal_test.go's TestBrowserPortalRelogin. The
// stand-ins remain for what that test cannot see from outside the binary: the request's
// prompt and acr_values, the unchanged CSRF token and position, that only the uploaded
// documents' digests are authorized, and that another person logging in at the re-login gets
// a fresh session while the first one's records are deleted from the ephemeral store.
type reloginEnv struct {
	t      *testing.T
	srv    *httptest.Server
	eph    *memstore.Store
	broken atomic.Bool // the store the portal sees fails every Delete
	op     *rptest.OP
	mu     sync.Mutex
	clock  time.Time
	who    string     // the subject the next login is
	signed [][][]byte // the hashes of each authorization that passed
}

// reloginMaxAge is not the CSC service's default, so that the portal is seen to use its Signer's.
const reloginMaxAge = 10 * time.Minute

func (e *reloginEnv) now() time.Time { e.mu.Lock(); defer e.mu.Unlock(); return e.clock }
func (e *reloginEnv) advance(d time.Duration) {
	e.mu.Lock()
	e.clock = e.clock.Add(d)
	e.mu.Unlock()
}

func (e *reloginEnv) Person(_ context.Context, sub string) (store.Person, error) {
	if sub != "drita" && sub != "luan" {
		return store.Person{}, store.ErrNotFound
	}
	return store.Person{SubjectID: sub, GivenName: sub, FamilyName: "Official", Official: true}, nil
}

func (e *reloginEnv) Credentials(_ context.Context, sub string) ([]Credential, error) {
	n := e.now()
	return []Credential{{ID: "c-" + sub, Cert: &x509.Certificate{NotBefore: n.Add(-time.Hour), NotAfter: n.Add(time.Hour)}}}, nil
}

func (e *reloginEnv) Sign(_ context.Context, sub string, r SignRequest) ([][]byte, error) {
	if age := e.now().Sub(r.Login.AuthTime); age > reloginMaxAge || !slices.Contains(r.Login.AMR, "otp") {
		return nil, &Refusal{Status: 403, Code: "access_denied", Description: "log in again"}
	}
	if r.OTP != "123456" {
		return nil, &Refusal{Status: 400, Code: "invalid_otp", Description: "wrong"}
	}
	if r.CredentialID != "c-"+sub {
		return nil, &Refusal{Status: 400, Code: "invalid_request", Description: "credential"}
	}
	var hashes, out [][]byte
	for _, d := range r.Documents {
		h := sha256.Sum256(d.Data)
		hashes = append(hashes, h[:])
		out = append(out, append(slices.Clone(d.Data), "%signed"...))
	}
	e.mu.Lock()
	e.signed = append(e.signed, hashes)
	e.mu.Unlock()
	return out, nil
}

func (e *reloginEnv) LoginMaxAge() time.Duration { return reloginMaxAge }

var _ Signer = (*reloginEnv)(nil)

func newReloginEnv(t *testing.T) *reloginEnv {
	e := &reloginEnv{t: t, clock: time.Now(), who: "drita"}
	mux := http.NewServeMux()
	e.srv = httptest.NewServer(mux)
	t.Cleanup(e.srv.Close)
	e.eph = memstore.New(e.now)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	rw, err := web.New(log, false)
	if err != nil {
		t.Fatal(err)
	}
	New(Config{Issuer: e.srv.URL}, rw, deletesFail{e.eph, &e.broken}, e, e, nil, log, e.now).Register(mux)
	// auth_time is the portal's clock.
	e.op = rptest.Register(t, mux, e.srv.URL, ClientID, func(q url.Values) rptest.Login {
		e.mu.Lock()
		defer e.mu.Unlock()
		return rptest.Login{Subject: e.who, ACR: q.Get("acr_values"), AMR: []string{"pwd", "otp"}, AuthTime: e.clock}
	})
	return e
}

type reloginBrowser struct {
	t *testing.T
	c *http.Client
	e *reloginEnv
}

func (e *reloginEnv) browser() *reloginBrowser {
	jar, _ := cookiejar.New(nil)
	return &reloginBrowser{t: e.t, c: &http.Client{Jar: jar}, e: e}
}

// do sends req, follows the redirects, and gives the path it ended on and the page.
func (b *reloginBrowser) do(req *http.Request) (string, string) {
	b.t.Helper()
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.Request.URL.Path, string(body)
}

func (b *reloginBrowser) get(path string) (string, string) {
	req, _ := http.NewRequest("GET", b.e.srv.URL+path, nil)
	return b.do(req)
}

func (b *reloginBrowser) post(path string, form url.Values) (string, string) {
	req, _ := http.NewRequest("POST", b.e.srv.URL+path, bytes.NewBufferString(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func csrfOf(t *testing.T, page string) string {
	t.Helper()
	m := csrfField.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no csrf field in %s", page)
	}
	return m[1]
}

// loginAndUpload logs in, uploads docs and picks the first page, bottom left; it returns the
// CSRF token and ends on the confirmation page.
func (b *reloginBrowser) loginAndUpload(docs map[string][]byte) string {
	b.t.Helper()
	path, page := b.get("/portal/login")
	if path != "/portal/documents" {
		b.t.Fatalf("login ended at %s: %s", path, page)
	}
	csrf := csrfOf(b.t, page)
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	mw.WriteField("csrf", csrf)
	for name, data := range docs {
		w, _ := mw.CreateFormFile("documents", name)
		w.Write(data)
	}
	mw.Close()
	req, _ := http.NewRequest("POST", b.e.srv.URL+"/portal/documents", &body)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	if path, page = b.do(req); path != "/portal/review" {
		b.t.Fatalf("upload ended at %s: %s", path, page)
	}
	if path, page = b.post("/portal/position", url.Values{"csrf": {csrf}, "page": {"first"}, "place": {PlaceBottomLeft}}); path != "/portal/confirm" {
		b.t.Fatalf("position ended at %s: %s", path, page)
	}
	return csrf
}

// An official who confirms more than reloginMaxAge after logging in logs in again (a fresh
// authentication at LoA substantial) and comes back to the confirmation with the same
// documents and position, and signs them; someone else logging in then starts afresh, and the
// first session's documents are gone from the store.
func TestReloginKeepsDocuments(t *testing.T) {
	e := newReloginEnv(t)
	b := e.browser()
	docs := map[string][]byte{"a.pdf": signingtest.PDF("a"), "b.pdf": signingtest.PDF("b")}
	csrf := b.loginAndUpload(docs)
	if auths := e.op.Requests(); len(auths) != 1 || auths[0].Get("prompt") != "" || auths[0].Get("acr_values") != "http://eidas.europa.eu/LoA/substantial" {
		t.Fatalf("first login: %v", auths)
	}

	e.advance(reloginMaxAge + time.Minute)
	_, page := b.get("/portal/confirm")
	path, page := b.post("/portal/sign", confirmForm(page, csrf, "123456"))
	if path != "/portal/confirm" {
		t.Fatalf("a confirmation with an old login ended at %s: %s", path, page)
	}
	if auths := e.op.Requests(); len(auths) != 2 || auths[1].Get("prompt") != "login" || auths[1].Get("acr_values") != "http://eidas.europa.eu/LoA/substantial" {
		t.Fatalf("no fresh login at LoA substantial: %v", auths)
	}
	for _, want := range []string{"a.pdf", "b.pdf", "First page, Bottom left"} {
		if !bytes.Contains([]byte(page), []byte(want)) {
			t.Errorf("the confirmation after the re-login lacks %q", want)
		}
	}
	if len(e.signed) != 0 {
		t.Fatalf("signed with the old login: %v", e.signed)
	}
	if got := csrfOf(t, page); got != csrf {
		t.Errorf("csrf changed: %s, was %s", got, csrf)
	}
	if path, page = b.post("/portal/sign", confirmForm(page, csrf, "123456")); path != "/portal/done" {
		t.Fatalf("signing after the re-login ended at %s: %s", path, page)
	}
	if len(e.signed) != 1 || len(e.signed[0]) != 2 {
		t.Fatalf("authorizations: %v", e.signed)
	}
	var want [][]byte
	for _, d := range docs {
		want = append(want, digest(d))
	}
	for _, h := range e.signed[0] {
		if !slices.ContainsFunc(want, func(w []byte) bool { return bytes.Equal(w, h) }) {
			t.Errorf("authorized a hash of no uploaded document: %x", h)
		}
	}
	for i := range 2 {
		if _, got := b.get("/portal/download/" + string(rune('0'+i))); !bytes.HasSuffix([]byte(got), []byte("%signed")) {
			t.Errorf("download %d is not the signed copy", i)
		}
	}

	// Another person at the re-login.
	b = e.browser()
	csrf = b.loginAndUpload(map[string][]byte{"c.pdf": signingtest.PDF("c")})
	old := sessionKeys(t, b)
	e.advance(reloginMaxAge + time.Minute)
	e.who = "luan"
	_, page = b.get("/portal/confirm")
	if path, page = b.post("/portal/sign", confirmForm(page, csrf, "123456")); path != "/portal/documents" {
		t.Fatalf("another person's re-login ended at %s: %s", path, page)
	}
	if bytes.Contains([]byte(page), []byte("c.pdf")) || !bytes.Contains([]byte(page), []byte("Logged in as luan Official")) {
		t.Errorf("another person's page: %s", page)
	}
	if path, _ = b.get("/portal/review"); path != "/portal/documents" {
		t.Errorf("the new session has documents: review at %s", path)
	}
	for _, k := range old {
		if _, err := e.eph.Get(context.Background(), k); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("the first person's %s is still in the store (%v)", k, err)
		}
	}
	if len(e.signed) != 1 {
		t.Errorf("signed in another person's session: %v", e.signed)
	}
}

// sessionKeys are the store keys of the browser's session and its first document.
func sessionKeys(t *testing.T, b *reloginBrowser) []string {
	u, _ := url.Parse(b.e.srv.URL + "/portal/")
	for _, c := range b.c.Jar.Cookies(u) {
		if c.Name == cookieName {
			raw, err := b.e.eph.Get(context.Background(), storeKey("session", c.Value))
			if err != nil {
				t.Fatal(err)
			}
			var s session
			json.Unmarshal(raw, &s)
			s.ID = c.Value
			return []string{s.key(), s.part("doc", 0)}
		}
	}
	t.Fatal("no session cookie")
	return nil
}

var shownField = regexp.MustCompile(`name="shown" value="([^"]*)"`)

// confirmForm is the confirmation page's form as a browser would send it with code.
func confirmForm(page, csrf, code string) url.Values {
	v := url.Values{"csrf": {csrf}, "code": {code}}
	if m := shownField.FindStringSubmatch(page); m != nil {
		v.Set("shown", m[1])
	}
	return v
}

// A code typed on a confirmation page authorizes the documents and position that page showed:
// when another tab of the same session uploads other documents (or moves the signature)
// meanwhile, the first page's code signs nothing.
func TestConfirmSignsOnlyWhatWasShown(t *testing.T) {
	e := newReloginEnv(t)
	b := e.browser()
	csrf := b.loginAndUpload(map[string][]byte{"a.pdf": signingtest.PDF("a")})
	_, shown := b.get("/portal/confirm")

	// Another tab: other documents, reviewed and placed.
	other := signingtest.PDF("other")
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	mw.WriteField("csrf", csrf)
	w, _ := mw.CreateFormFile("documents", "other.pdf")
	w.Write(other)
	mw.Close()
	req, _ := http.NewRequest("POST", e.srv.URL+"/portal/documents", &body)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	if path, page := b.do(req); path != "/portal/review" {
		t.Fatalf("second upload ended at %s: %s", path, page)
	}
	if path, page := b.post("/portal/position", url.Values{"csrf": {csrf}, "page": {"first"}, "place": {PlaceBottomLeft}}); path != "/portal/confirm" {
		t.Fatalf("position ended at %s: %s", path, page)
	}

	path, page := b.post("/portal/sign", confirmForm(shown, csrf, "123456"))
	if len(e.signed) != 0 {
		t.Fatalf("the code typed on the page showing a.pdf authorized %d other digests (ended at %s)", len(e.signed[0]), path)
	}
	if path != "/portal/sign" || !bytes.Contains([]byte(page), []byte("other.pdf")) {
		t.Errorf("the refusal ended at %s and does not show what is there now: %s", path, page)
	}
	// The page that shows other.pdf signs it.
	if path, page = b.post("/portal/sign", confirmForm(page, csrf, "123456")); path != "/portal/done" {
		t.Fatalf("signing what is shown ended at %s: %s", path, page)
	}
	if len(e.signed) != 1 || len(e.signed[0]) != 1 || !bytes.Equal(e.signed[0][0], digest(other)) {
		t.Fatalf("authorizations: %x", e.signed)
	}
}

func digest(b []byte) []byte { h := sha256.Sum256(b); return h[:] }
