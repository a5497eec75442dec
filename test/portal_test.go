package e2e

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"
	"github.com/pquerna/otp/totp"

	"github.com/vula-eid/vula/internal/signing/signingtest"
	"github.com/vula-eid/vula/internal/testenv"
)

// TestBrowserPortal has headless Chromium use the officials' signing portal against the real
// binary: in English an official logs in (password and one-time code), uploads two PDFs, sees
// their names, sizes, page counts and first pages, places the signature by clicking on the
// preview, is refused a wrong code (nothing signed, the refusal in the audit log), confirms
// with a fresh code and downloads a zip whose PDFs pass pdfsig (valid, signed by the official)
// and qpdf --check; in Albanian another official signs one PDF at a radio-button position and
// downloads it directly; a citizen is told they cannot sign. Every step is a screenshot
// (test/screenshots/portal-*.png).
func TestBrowserPortal(t *testing.T) {
	t.Parallel()
	vulaBinary(t)
	testenv.Need(t, "pdfsig", "qpdf", "pdftoppm")
	if _, err := exec.LookPath("chromium"); err != nil {
		testenv.Missing(t, "chromium is needed (test/deps.sh installs it)")
	}
	data := t.TempDir()
	env := []string{"VULA_DATA_DIR=" + data, "VULA_IDP_DEMO=false"}
	drita := newOfficial(t, env, "1300000001", "Drita", "Berisha")
	luan := newOfficial(t, env, "1300000002", "Luan", "Hoxha")
	citizenPW, citizenSeed := citizen(t, env, "1300000009")
	srv := startReplicaAt(t, freePort(t), data, env)
	srv.ready(t, http.StatusOK)
	base := "http://" + srv.addr
	os.MkdirAll(screenshotDir, 0o755)

	docs := t.TempDir()
	one := filepath.Join(docs, "Vendim nr. 12.pdf")
	os.WriteFile(one, signingtest.PDF("Vendim nr. 12 / Decision no. 12"), 0o644)
	latex, err := os.ReadFile("../internal/signing/pades/testdata/realworld/latex.pdf")
	if err != nil {
		t.Fatal(err)
	}
	two := filepath.Join(docs, "Raport çështje.pdf")
	os.WriteFile(two, latex, 0o644)

	alloc := headlessChromium(t)

	t.Run("en", func(t *testing.T) {
		b := newPortalBrowser(t, alloc, "en", srv)
		b.login(base+"/portal/?lang=en", drita.number, drita.pw, drita.seed, drita.used)
		b.upload([]string{one, two})
		b.checkReview([]string{one, two})
		b.do("choose the first page", chromedp.Click(chromedp.CSS(`input[name="page"][value="first"]`)))
		b.shot("5-position")
		// A click on the preview's centre places the box there.
		b.do("click on the preview", chromedp.Click(chromedp.CSS("#preview-0")), chromedp.WaitVisible(chromedp.CSS("#code")))
		b.shot("6-confirm")
		if where := b.text("#where"); !strings.Contains(where, "50%") && !strings.Contains(where, "49%") {
			t.Errorf("the confirmation says the signature goes %q, want the preview's centre", where)
		}
		b.do("a wrong code", chromedp.SendKeys(chromedp.CSS("#code"), wrongCode(t, drita.seed)), chromedp.Click(chromedp.CSS("#sign")),
			chromedp.WaitVisible(chromedp.CSS(`#form-error[role="alert"]`)))
		b.shot("7-wrong-code")
		if msg := b.text("#form-error"); !strings.Contains(msg, "Nothing was signed") {
			t.Errorf("a wrong code: the page says %q", msg)
		}
		b.do("the right code", chromedp.SendKeys(chromedp.CSS("#code"), drita.otp(t)), chromedp.Click(chromedp.CSS("#sign")),
			chromedp.WaitVisible(chromedp.CSS("#download-all")))
		b.shot("8-done")
		name, body := b.download("#download-all")
		if !strings.HasSuffix(name, ".zip") {
			t.Errorf("the zip came as %q", name)
		}
		zr, err := zip.NewReader(bytes.NewReader(body), int64(len(body)))
		if err != nil {
			t.Fatalf("the download is not a zip: %v", err)
		}
		var names []string
		for _, f := range zr.File {
			names = append(names, f.Name)
			rc, err := f.Open()
			if err != nil {
				t.Fatal(err)
			}
			var signed bytes.Buffer
			signed.ReadFrom(rc)
			rc.Close()
			checkSignedPDF(t, filepath.Join(t.TempDir(), "signed.pdf"), signed.Bytes(), "Drita Berisha")
		}
		if strings.Join(names, "|") != "Vendim nr. 12-signed.pdf|Raport çështje-signed.pdf" {
			t.Errorf("the zip holds %q", names)
		}
	})

	t.Run("sq", func(t *testing.T) {
		b := newPortalBrowser(t, alloc, "sq", srv)
		b.login(base+"/portal/?lang=sq", luan.number, luan.pw, luan.seed, luan.used)
		b.upload([]string{two})
		b.checkReview([]string{two})
		b.do("choose the last page, bottom centre", chromedp.Click(chromedp.CSS(`input[name="page"][value="last"]`)),
			chromedp.Click(chromedp.CSS(`input[name="place"][value="bottom-center"]`)))
		b.shot("5-position")
		b.do("continue", chromedp.Click(chromedp.CSS("#position-continue")), chromedp.WaitVisible(chromedp.CSS("#code")))
		b.shot("6-confirm")
		if where := b.text("#where"); !strings.Contains(where, "Faqja e fundit") || !strings.Contains(where, "Poshtë në mes") {
			t.Errorf("the confirmation says %q", where)
		}
		b.do("the code", chromedp.SendKeys(chromedp.CSS("#code"), luan.otp(t)), chromedp.Click(chromedp.CSS("#sign")),
			chromedp.WaitVisible(chromedp.CSS("#download-0")))
		b.shot("8-done")
		if h1 := b.text("h1"); h1 != "U nënshkrua" {
			t.Errorf("the done page's heading is %q", h1)
		}
		name, body := b.download("#download-0")
		if name != "Raport çështje-signed.pdf" {
			t.Errorf("the signed PDF came as %q", name)
		}
		checkSignedPDF(t, filepath.Join(t.TempDir(), name), body, "Luan Hoxha")
	})

	t.Run("citizen", func(t *testing.T) {
		b := newPortalBrowser(t, alloc, "en", srv)
		b.login(base+"/portal/?lang=en", "1300000009", citizenPW, citizenSeed, map[int64]bool{})
		b.do("refused", chromedp.WaitVisible(chromedp.CSS("#message")))
		b.shot("9-citizen-refused")
		if h1, msg := b.text("h1"), b.text("#message"); h1 != "You cannot sign here" || !strings.Contains(msg, "Only officials") {
			t.Errorf("a citizen sees %q: %q", h1, msg)
		}
		b.do("no session", chromedp.Navigate(base+"/portal/documents"), chromedp.WaitVisible(chromedp.CSS("#portal-login")))
	})

	// The audit log: each official's one granted authorization lists exactly their documents'
	// SHA-256 digests; Drita's wrong code is a refused authorization; each document was
	// signed once by its official's key.
	srv.cmd.Process.Signal(os.Interrupt)
	srv.cmd.Wait()
	digest := func(path string) string {
		b, _ := os.ReadFile(path)
		h := sha256.Sum256(b)
		return hex.EncodeToString(h[:])
	}
	type tally struct{ granted, refused, signed int }
	got := map[string]*tally{drita.key: {}, luan.key: {}}
	for _, line := range strings.Split(strings.TrimSpace(vula(t, env, "audit", "export")), "\n") {
		var r struct{ Action, Key, Result, Detail string }
		json.Unmarshal([]byte(line), &r)
		c, ok := got[r.Key]
		if !ok {
			continue
		}
		detail, _ := hex.DecodeString(r.Detail)
		switch {
		case r.Action == "sign":
			c.signed++
		case r.Action == "csc.authorize" && r.Result == "ok":
			c.granted++
			want := []string{digest(one), digest(two)}
			if r.Key == luan.key {
				want = want[1:]
			}
			for _, d := range want {
				if !strings.Contains(string(detail), d) {
					t.Errorf("the authorization lacks the document digest %s: %s", d, detail)
				}
			}
		case r.Action == "csc.authorize":
			c.refused++
		}
	}
	if d, l := *got[drita.key], *got[luan.key]; d != (tally{1, 1, 2}) || l != (tally{1, 0, 1}) {
		t.Errorf("audit (granted, refused, signed): Drita %v, want {1 1 2}; Luan %v, want {1 0 1}", d, l)
	}
	vula(t, env, "audit", "verify")
}

// portalBrowser is one browser profile walking the portal, with its screenshots.
type portalBrowser struct {
	*tab
	lang string
	dl   string // the download folder
}

func newPortalBrowser(t *testing.T, alloc context.Context, lang string, srv *replica) *portalBrowser {
	return &portalBrowser{tab: newTab(t, alloc, srv), lang: lang, dl: t.TempDir()}
}

func (b *portalBrowser) shot(page string) {
	b.t.Helper()
	buf, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("%s: screenshot %s: %v", b.lang, page, err)
	}
	name := fmt.Sprintf("portal-%s-%s.png", b.lang, page)
	if strings.Contains(page, "citizen") {
		name = fmt.Sprintf("portal-%s.png", page)
	}
	os.WriteFile(filepath.Join(screenshotDir, name), buf, 0o644)
}

// login goes from the portal's landing page through the identity provider's pages (password,
// one-time code of the current time step, consent) back to the portal.
func (b *portalBrowser) login(start, number, pw, seed string, used map[int64]bool) {
	b.t.Helper()
	b.do("landing page", chromedp.Navigate(start), chromedp.WaitVisible(chromedp.CSS("#portal-login")))
	b.shot("1-home")
	b.do("log in", chromedp.Click(chromedp.CSS("#portal-login")), chromedp.WaitVisible(chromedp.CSS("#identifier")))
	b.shot("2-login")
	b.do("password", chromedp.SendKeys(chromedp.CSS("#identifier"), number), chromedp.SendKeys(chromedp.CSS("#password"), pw),
		chromedp.Click(chromedp.CSS(`button[type="submit"]`)), chromedp.WaitVisible(chromedp.CSS("#code")))
	now := time.Now()
	used[now.Unix()/30] = true
	code, err := totp.GenerateCode(seed, now)
	if err != nil {
		b.t.Fatal(err)
	}
	b.do("one-time code", chromedp.SendKeys(chromedp.CSS("#code"), code), chromedp.Click(chromedp.CSS(`button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`button[value="allow"]`)))
	b.do("consent", chromedp.Click(chromedp.CSS(`button[value="allow"]`)), chromedp.WaitVisible(chromedp.CSS("h1")))
}

func (b *portalBrowser) upload(files []string) {
	b.t.Helper()
	b.do("the upload page", chromedp.WaitVisible(chromedp.CSS("#documents")))
	b.shot("3-upload")
	b.do("upload", chromedp.SetUploadFiles(chromedp.CSS("#documents"), files), chromedp.Click(chromedp.CSS("#upload")),
		chromedp.WaitVisible(chromedp.CSS("#position-continue")))
	b.shot("4-review")
}

// checkReview compares what the review page shows with the files: names, sizes, the page
// counts qpdf reads, and first-page images that decoded.
func (b *portalBrowser) checkReview(files []string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	for i, f := range files {
		out, err := exec.Command("qpdf", "--show-npages", f).Output()
		if err != nil {
			b.t.Fatal(err)
		}
		sec := fmt.Sprintf(`section.doc:nth-of-type(%d) `, i+1)
		if name := b.text(sec + ".doc-name"); name != filepath.Base(f) {
			b.t.Errorf("%s: document %d is named %q, want %q", b.lang, i, name, filepath.Base(f))
		}
		if pages := b.text(sec + ".doc-pages"); pages != strings.TrimSpace(string(out)) {
			b.t.Errorf("%s: %s has %s pages on the page, qpdf says %s", b.lang, filepath.Base(f), pages, out)
		}
		if size := b.text(sec + ".doc-size"); !regexp.MustCompile(`^[0-9.]+ (B|KB|MB)$`).MatchString(size) {
			b.t.Errorf("%s: size %q", b.lang, size)
		}
		// The first document's preview is an image button; its picture is decoded anew to
		// read its natural size.
		w, err := chromedp.Run(ctx, chromedp.Evaluate[int](fmt.Sprintf(`new Promise(done => { const i = new Image();
			i.onload = () => done(i.naturalWidth); i.onerror = () => done(0); i.src = document.querySelector('#preview-%d').src; })`, i),
			chromedp.EvalAwaitPromise))
		if err != nil || w <= 0 {
			b.t.Errorf("%s: the preview of %s did not load: width %d, %v", b.lang, filepath.Base(f), w, err)
		}
	}
}

// download clicks the link and returns the file the browser saved, by the name it chose.
func (b *portalBrowser) download(sel string) (string, []byte) {
	b.t.Helper()
	b.do("allow downloads", chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		_, err := chromedp.Call(ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
			Behavior: browser.SetDownloadBehaviorBehaviorAllow, DownloadPath: b.dl})
		return err
	}), chromedp.Click(chromedp.CSS(sel)))
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		ents, _ := os.ReadDir(b.dl)
		if len(ents) == 1 && !strings.HasSuffix(ents[0].Name(), ".crdownload") {
			body, err := os.ReadFile(filepath.Join(b.dl, ents[0].Name()))
			if err != nil {
				b.t.Fatal(err)
			}
			return ents[0].Name(), body
		}
	}
	b.t.Fatalf("%s: no download from %s", b.lang, sel)
	return "", nil
}

// checkSignedPDF checks a signed PDF with poppler and qpdf.
func checkSignedPDF(t *testing.T, path string, pdf []byte, signer string) {
	t.Helper()
	os.WriteFile(path, pdf, 0o644)
	out := pdfsig(t, path)
	if !strings.Contains(out, "Signature is Valid.") || !strings.Contains(out, "Signer Certificate Common Name: "+signer) {
		t.Errorf("pdfsig %s:\n%s", filepath.Base(path), out)
	}
	if out, err := exec.Command("qpdf", "--check", path).CombinedOutput(); err != nil {
		t.Errorf("qpdf --check %s: %v\n%s", filepath.Base(path), err, out)
	}
}

// wrongCode is a code that is none of those the server accepts now.
func wrongCode(t *testing.T, seed string) string {
	valid := map[string]bool{}
	for _, d := range []time.Duration{-30 * time.Second, 0, 30 * time.Second, 60 * time.Second} {
		c, err := totp.GenerateCode(seed, time.Now().Add(d))
		if err != nil {
			t.Fatal(err)
		}
		valid[c] = true
	}
	for _, c := range []string{"123456", "654321", "111111"} {
		if !valid[c] {
			return c
		}
	}
	return "222222"
}

// TestBrowserPortalRelogin runs the binary with csc.login_max_age of 30 seconds
// (VULA_CSC_LOGIN_MAX_AGE): an official logs in, uploads a PDF, waits past the age and confirms
// with a fresh code; the CSC service refuses the old login, so the browser goes through the
// identity provider's login again (password and one-time code), comes back to the confirmation
// with the same document, confirms with another fresh code and downloads a PDF pdfsig finds
// valid. The audit log has the refusal (nothing signed under it) and one granted authorization
// over the document's digest.
func TestBrowserPortalRelogin(t *testing.T) {
	vulaBinary(t)
	testenv.Need(t, "pdfsig", "qpdf", "pdftoppm")
	if _, err := exec.LookPath("chromium"); err != nil {
		testenv.Missing(t, "chromium is needed (test/deps.sh installs it)")
	}
	// Long enough for the re-login and the last confirmation on a loaded machine (the
	// browser's steps between them, and a wait of at most 5 s for a fresh one-time code).
	const maxAge = 30 * time.Second
	data := t.TempDir()
	env := []string{"VULA_DATA_DIR=" + data, "VULA_IDP_DEMO=false", "VULA_CSC_LOGIN_MAX_AGE=" + maxAge.String()}
	drita := newOfficial(t, env, "1300000001", "Drita", "Berisha")
	srv := startReplicaAt(t, freePort(t), data, env)
	srv.ready(t, http.StatusOK)
	doc := filepath.Join(t.TempDir(), "Vendim nr. 13.pdf")
	os.WriteFile(doc, signingtest.PDF("Vendim nr. 13 / Decision no. 13"), 0o644)

	alloc := headlessChromium(t)
	b := newPortalBrowser(t, alloc, "en-relogin", srv)
	os.MkdirAll(screenshotDir, 0o755)

	b.login("http://"+srv.addr+"/portal/?lang=en", drita.number, drita.pw, drita.seed, drita.used)
	loggedIn := time.Now() // after the login: auth_time is earlier
	var loginStep int64
	for s := range drita.used {
		loginStep = max(loginStep, s)
	}
	b.upload([]string{doc})
	b.do("continue", chromedp.Click(chromedp.CSS("#position-continue")), chromedp.WaitVisible(chromedp.CSS("#code")))

	// Past the login's age (auth_time is in whole seconds: a second more). And the three codes
	// still to come (the first confirmation, the re-login, the last confirmation) are each
	// taken when typed, from the steps the server accepts then (officialUser.otp): from the
	// second window after the login's, those three are all unspent, so no step of the re-login
	// waits more than a few seconds for a code, however slow the browser.
	time.Sleep(time.Until(later(loggedIn.Add(maxAge+time.Second), time.Unix((loginStep+2)*30, 0))))
	b.do("a fresh code on an old login", chromedp.SendKeys(chromedp.CSS("#code"), drita.otp(t)), chromedp.Click(chromedp.CSS("#sign")),
		chromedp.WaitVisible(chromedp.CSS("#identifier")))
	b.shot("10-relogin")
	b.do("the password again", chromedp.Clear(chromedp.CSS("#identifier")), chromedp.SendKeys(chromedp.CSS("#identifier"), drita.number),
		chromedp.SendKeys(chromedp.CSS("#password"), drita.pw), chromedp.Click(chromedp.CSS(`button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS("#code")))
	relogin := time.Now()
	// Consent was given at the first login; should the provider ask again, allow.
	b.do("the one-time code again", chromedp.SendKeys(chromedp.CSS("#code"), drita.otp(t)), chromedp.Click(chromedp.CSS(`button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#sign, button[value="allow"]`)))
	if loc, _ := chromedp.Run(b.ctx, chromedp.Location()); !strings.Contains(loc, "/portal/confirm") {
		b.do("consent", chromedp.Click(chromedp.CSS(`button[value="allow"]`)), chromedp.WaitVisible(chromedp.CSS("#sign")))
	}
	b.shot("11-confirm-again")
	if loc, _ := chromedp.Run(b.ctx, chromedp.Location()); !strings.HasSuffix(loc, "/portal/confirm") {
		t.Errorf("after the re-login the browser is at %s, want the confirmation", loc)
	}
	if name := b.text(".doc-name"); name != filepath.Base(doc) {
		t.Errorf("the confirmation after the re-login shows %q, want %q", name, filepath.Base(doc))
	}
	code := drita.otp(t)
	if age := time.Since(relogin); age >= maxAge-time.Second {
		t.Fatalf("the re-login is %v old at the last confirmation: the machine is too slow for a login age of %v", age, maxAge)
	}
	b.do("confirm after the re-login", chromedp.SendKeys(chromedp.CSS("#code"), code), chromedp.Click(chromedp.CSS("#sign")),
		chromedp.WaitVisible(chromedp.CSS("#download-0")))
	name, body := b.download("#download-0")
	if name != "Vendim nr. 13-signed.pdf" {
		t.Errorf("the signed PDF came as %q", name)
	}
	checkSignedPDF(t, filepath.Join(t.TempDir(), name), body, "Drita Berisha")

	srv.cmd.Process.Signal(os.Interrupt)
	srv.cmd.Wait()
	raw, _ := os.ReadFile(doc)
	h := sha256.Sum256(raw)
	var granted, refused, signed int
	for _, line := range strings.Split(strings.TrimSpace(vula(t, env, "audit", "export")), "\n") {
		var r struct{ Action, Key, Result, Detail string }
		json.Unmarshal([]byte(line), &r)
		if r.Key != drita.key {
			continue
		}
		detail, _ := hex.DecodeString(r.Detail)
		switch {
		case r.Action == "sign":
			signed++
		case r.Action == "csc.authorize" && r.Result == "ok":
			granted++
			if !strings.Contains(string(detail), hex.EncodeToString(h[:])) {
				t.Errorf("the authorization lacks the document's digest: %s", detail)
			}
		case r.Action == "csc.authorize":
			refused++
			if !strings.HasPrefix(r.Result, "access_denied: ") || !strings.Contains(string(detail), `"authorization":"session"`) {
				t.Errorf("the refusal is not the old login's: %s %s", r.Result, detail)
			}
		}
	}
	if granted != 1 || refused != 1 || signed != 1 {
		t.Errorf("audit: %d granted, %d refused, %d signed; want 1 each", granted, refused, signed)
	}
	vula(t, env, "audit", "verify")
}

// later is the later of two times.
func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
