package e2e

import (
	"context"
	"encoding/base64"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/pquerna/otp/totp"
)

// TestBrowserDesk is the registration desk end to end, in Chromium, against the real binary.
// A registrar (proofed at high, with the registrar role) who has only a password and an
// authenticator app gets no desk session: the provider asks for high; after enrolling a device-bound passkey they log in
// at high, register a person, and print the activation letter (a PDF sealed with the agency's
// seal: pdfsig finds it valid, pdftotext reads the code). The citizen, in another browser,
// activates with the letter's code, enrols an authenticator app and a passkey, and logs in at
// high; the desk refuses them (not a registrar). The registrar suspends the person (who then
// cannot log in), resumes, and revokes after confirming; the person's history shows each step,
// and each time the registrar found or viewed the record, with the registrar as the actor. The run is in English; the key pages are checked in
// Albanian and Serbian too.
func TestBrowserDesk(t *testing.T) {
	t.Parallel()
	vulaBinary(t)
	alloc := headlessChromium(t)
	data, addr, base, env := passkeyPlatform(t, alloc)
	env = append(env, "VULA_SEAL_AGENCY=agency")
	vula(t, env, "orgs", "create", "agency", "--name", "Agjencia e eID", "--registry-number", "810000009")
	const regNumber, regPW = "9000000001", "a registrar's long passphrase"
	vula(t, append(env, "REG_PW="+regPW), "persons", "create", regNumber, "--given-name", "Besa", "--family-name", "Gashi",
		"--password-env", "REG_PW", "--proofing", "high", "--role", "registrar")
	regSeed := enrolTOTP(t, env, regNumber)
	srv := startReplicaAt(t, addr, data, env)
	srv.ready(t, http.StatusOK)

	type browser struct {
		ctx  context.Context
		do   func(what string, steps ...chromedp.Action[chromedp.Void])
		text func(sel string) string
		has  func(sel string) bool
	}
	open := func() browser {
		ctx, cancel := chromedp.NewContext(alloc)
		t.Cleanup(cancel)
		if err := chromedp.Do(ctx, virtualAuthenticator(false)); err != nil {
			t.Fatalf("start chromium: %v", err)
		}
		b := browser{ctx: ctx}
		b.do = func(what string, steps ...chromedp.Action[chromedp.Void]) {
			t.Helper()
			sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			if err := chromedp.Do(sctx, steps...); err != nil {
				page, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
				t.Fatalf("%s: %v\npage: %s\n%s", what, err, page, srv.logs)
			}
		}
		b.text = func(sel string) string {
			t.Helper()
			sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			v, err := chromedp.Run(sctx, chromedp.Text(chromedp.CSS(sel)))
			if err != nil {
				t.Fatalf("text of %s: %v", sel, err)
			}
			return v
		}
		b.has = func(sel string) bool {
			n, _ := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll(`+"`"+sel+"`"+`).length`))
			return n > 0
		}
		return b
	}
	consent := func(b browser, done string) {
		t.Helper()
		b.do("after the login", chromedp.WaitVisible(chromedp.CSS(`button[value="allow"], `+done)))
		if b.has(`button[value="allow"]`) {
			b.do("consent", chromedp.Click(chromedp.CSS(`button[value="allow"]`)), chromedp.WaitVisible(chromedp.CSS(done)))
		}
	}

	// The registrar with a password and an authenticator app only: substantial, refused.
	reg := open()
	code, _ := totp.GenerateCode(regSeed, time.Now())
	reg.do("registrar logs in at substantial", chromedp.Navigate(base+"/demo/?acr=substantial&lang=en"), chromedp.WaitVisible(chromedp.CSS("#identifier")),
		chromedp.SendKeys(chromedp.CSS("#identifier"), regNumber), chromedp.SendKeys(chromedp.CSS("#password"), regPW),
		chromedp.Click(chromedp.CSS(`form[action="/login"] button`)), chromedp.WaitVisible(chromedp.CSS("#code")),
		chromedp.SendKeys(chromedp.CSS("#code"), code), chromedp.Click(chromedp.CSS(`form[action="/login/totp"] button`)))
	consent(reg, "body > p")
	reg.do("the desk at substantial", chromedp.Navigate(base+"/desk/?lang=en"), chromedp.WaitVisible(chromedp.CSS("#desk-login")),
		chromedp.Click(chromedp.CSS("#desk-login")), chromedp.WaitVisible(chromedp.CSS("#message, #passkey-button")))
	// The provider steps up rather than answer below high: it asks for a passkey or the card,
	// which this registrar does not have, and the desk gives no session meanwhile. (The desk's
	// own refusal of an ID token below high is TestDeskLoginRefused in internal/eid.)
	if got := reg.text("main"); !strings.Contains(got, "asks for the high level") || reg.has("#identifier") {
		t.Fatalf("a registrar at substantial got: %s", got)
	}
	reg.do("no desk session at substantial", chromedp.Navigate(base+"/desk/find"), chromedp.WaitVisible(chromedp.CSS("#desk-login")))
	// A device-bound passkey (its attestation chains to the trust list): high from now on.
	reg.do("registrar enrols a passkey", chromedp.Navigate(base+"/account/passkeys"), chromedp.WaitVisible(chromedp.CSS("#passkey-name")),
		chromedp.SendKeys(chromedp.CSS("#passkey-name"), "desk key"), chromedp.Click(chromedp.CSS("#passkey-add button")),
		chromedp.WaitVisible(chromedp.CSS("#passkey-done")))
	reg.do("the desk at high", chromedp.Navigate(base+"/desk/login"), chromedp.WaitVisible(chromedp.CSS("#passkey-button")),
		chromedp.Click(chromedp.CSS("#passkey-button")))
	consent(reg, "#number")
	if got := reg.text(".who"); !strings.Contains(got, "Besa Gashi") {
		t.Fatalf("the desk's header: %q", got)
	}

	// Register a person: first a bad date, then right.
	const number = "7000000001"
	fill := func(birth string) {
		reg.do("the registration form", chromedp.Navigate(base+"/desk/register"), chromedp.WaitVisible(chromedp.CSS("#number")),
			chromedp.SendKeys(chromedp.CSS("#number"), number), chromedp.SendKeys(chromedp.CSS("#given"), "Arta"),
			chromedp.SendKeys(chromedp.CSS("#family"), "Krasniqi"), chromedp.SendKeys(chromedp.CSS("#birth"), birth),
			chromedp.SendKeys(chromedp.CSS("#document"), "P7000000001"), chromedp.SendKeys(chromedp.CSS("#expiry"), "2031-01-01"),
			chromedp.Click(chromedp.CSS("#register")), chromedp.WaitVisible(chromedp.CSS("#form-error, #issued")))
	}
	fill("12.04.1990")
	if !reg.has("#birth-error") || !reg.has(`#birth[aria-invalid="true"]`) {
		t.Fatalf("a bad birth date: %s", reg.text("main"))
	}
	fill("1990-04-12")
	if !reg.has("#issued") {
		t.Fatalf("registration: %s", reg.text("main"))
	}
	// The letter is a PDF sealed with the agency's seal (seal.agency): fetched as the link
	// would, in the registrar's session, then checked with poppler.
	if href, _ := chromedp.Run(reg.ctx, chromedp.Evaluate[string](`document.querySelector("#print-letter").getAttribute("href")`)); href != "/desk/letter/print" {
		t.Fatalf("the print link goes to %q", href)
	}
	b64, err := chromedp.Run(reg.ctx, chromedp.Evaluate[string](`(async () => {
  const r = await fetch("/desk/letter/print");
  if (r.status != 200 || r.headers.get("Content-Type") != "application/pdf") return "status " + r.status;
  return btoa(String.fromCharCode(...new Uint8Array(await r.arrayBuffer())));
})()`, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatal(err)
	}
	pdf, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		t.Fatalf("the letter: %s\n%s", b64, srv.logs)
	}
	letterFile := filepath.Join(t.TempDir(), "letter.pdf")
	if err := os.WriteFile(letterFile, pdf, 0o600); err != nil {
		t.Fatal(err)
	}
	if got := pdfsig(t, letterFile); !strings.Contains(got, "Signature is Valid.") || !strings.Contains(got, "Agjencia e eID") {
		t.Fatalf("pdfsig of the letter:\n%s", got)
	}
	text, err := exec.Command("pdftotext", "-enc", "UTF-8", letterFile, "-").Output()
	if err != nil {
		t.Fatal(err)
	}
	activation := regexp.MustCompile(`[A-Z2-7]{4}(-[A-Z2-7]{4}){5}`).FindString(string(text))
	if activation == "" || !strings.Contains(string(text), "Arta Krasniqi") || !strings.Contains(string(text), base+"/activate") {
		t.Fatalf("the letter's text:\n%s", text)
	}
	// Fetched once: the code is no longer kept at the desk.
	reg.do("the letter again", chromedp.Navigate(base+"/desk/letter/print"), chromedp.WaitVisible(chromedp.CSS("#message")))

	// The citizen activates, enrols an authenticator app and a passkey, logs in at high.
	cit := open()
	const pw = "my own new passphrase"
	cit.do("activate", chromedp.Navigate(base+"/activate?lang=en"), chromedp.WaitVisible(chromedp.CSS("#code")),
		chromedp.SendKeys(chromedp.CSS("#number"), number), chromedp.SendKeys(chromedp.CSS("#code"), activation),
		chromedp.SendKeys(chromedp.CSS("#password"), pw), chromedp.SendKeys(chromedp.CSS("#password2"), pw),
		chromedp.Click(chromedp.CSS(`form[action="/activate"] button`)), chromedp.WaitVisible(chromedp.CSS("#activated")))
	cit.do("enrol TOTP", chromedp.Click(chromedp.CSS("#enrol-totp")), chromedp.WaitVisible(chromedp.CSS("code.key")))
	seed := strings.TrimSpace(cit.text("code.key"))
	code, _ = totp.GenerateCode(seed, time.Now())
	cit.do("confirm TOTP", chromedp.SendKeys(chromedp.CSS("#code"), code), chromedp.Click(chromedp.CSS(`form[action="/account/totp"] button`)),
		chromedp.WaitVisible(chromedp.CSS(".alert.ok")))
	cit.do("enrol a passkey", chromedp.Navigate(base+"/account/passkeys"), chromedp.WaitVisible(chromedp.CSS("#passkey-name")),
		chromedp.SendKeys(chromedp.CSS("#passkey-name"), "my key"), chromedp.Click(chromedp.CSS("#passkey-add button")),
		chromedp.WaitVisible(chromedp.CSS("#passkey-done")))
	loginHigh := func() string {
		cit.do("log out", chromedp.Navigate(base+"/logout"), chromedp.WaitVisible(chromedp.CSS(`button[type="submit"]`)),
			chromedp.Click(chromedp.CSS(`button[type="submit"]`)), chromedp.WaitVisible(chromedp.CSS(".alert.ok")))
		cit.do("ask for high", chromedp.Navigate(base+"/demo/?acr=high"), chromedp.WaitVisible(chromedp.CSS("#passkey-button")),
			chromedp.Click(chromedp.CSS("#passkey-button")), chromedp.WaitVisible(chromedp.CSS(`button[value="allow"], body > p, #form-error, [role="alert"]`)))
		if cit.has(`button[value="allow"]`) {
			cit.do("consent", chromedp.Click(chromedp.CSS(`button[value="allow"]`)), chromedp.WaitVisible(chromedp.CSS("body > p")))
		}
		time.Sleep(300 * time.Millisecond) // a refusal's message is written by the page's script
		return cit.text("body")
	}
	if got := loginHigh(); !strings.Contains(got, "http://eidas.europa.eu/LoA/high") || !strings.Contains(got, "hwk") {
		t.Fatalf("the citizen's login: %q, want acr high with hwk", got)
	}
	// Not a registrar: refused by the desk, with no session.
	cit.do("the citizen at the desk", chromedp.Navigate(base+"/desk/login"), chromedp.WaitVisible(chromedp.CSS(`#message, #passkey-button, button[value="allow"]`)))
	if cit.has("#passkey-button") {
		cit.do("passkey", chromedp.Click(chromedp.CSS("#passkey-button")))
	}
	consent(cit, "#message")
	if got := cit.text("#message"); !strings.Contains(got, "Only registrars") {
		t.Fatalf("a citizen at the desk: %q", got)
	}
	cit.do("no desk session", chromedp.Navigate(base+"/desk/find"), chromedp.WaitVisible(chromedp.CSS("#desk-login")))

	// Suspend: the citizen cannot log in; resume: they can.
	person := func() {
		reg.do("find the person", chromedp.Navigate(base+"/desk/find"), chromedp.WaitVisible(chromedp.CSS("#number")),
			chromedp.SendKeys(chromedp.CSS("#number"), number), chromedp.Click(chromedp.CSS("#find")), chromedp.WaitVisible(chromedp.CSS("#person-status")))
	}
	person()
	if got := reg.text("#person-proofing"); !strings.Contains(got, "High") || !strings.Contains(got, "Besa Gashi") {
		t.Fatalf("proofing shown as %q", got)
	}
	if got := reg.text("#credentials"); !strings.Contains(got, "Password set") || !strings.Contains(got, "Passkeys: 1") {
		t.Fatalf("credentials shown as %q", got)
	}
	reg.do("suspend", chromedp.Click(chromedp.CSS("#suspend")), chromedp.WaitVisible(chromedp.CSS("#done")))
	if got := reg.text("#person-status"); got != "Suspended" {
		t.Fatalf("status after suspending: %q", got)
	}
	if got := loginHigh(); strings.Contains(got, "LoA/high") || !(strings.Contains(got, "suspended") || strings.Contains(got, "access_denied")) {
		t.Fatalf("a suspended person's login: %q", got)
	}
	reg.do("resume", chromedp.Click(chromedp.CSS("#resume")), chromedp.WaitVisible(chromedp.CSS("#done")))
	if got := loginHigh(); !strings.Contains(got, "http://eidas.europa.eu/LoA/high") {
		t.Fatalf("a resumed person's login: %q", got)
	}
	// Revoke asks first.
	reg.do("revoke, unconfirmed", chromedp.Click(chromedp.CSS("#revoke-link")), chromedp.WaitVisible(chromedp.CSS("#confirm")),
		chromedp.Click(chromedp.CSS("#revoke")))
	time.Sleep(200 * time.Millisecond) // the browser may hold the form back (required box)
	if reg.has(`#person-status`) {
		t.Fatal("revoked without the confirmation")
	}
	reg.do("revoke, confirmed", chromedp.Click(chromedp.CSS("#confirm")), chromedp.Click(chromedp.CSS("#revoke")), chromedp.WaitVisible(chromedp.CSS("#done")))
	if got := reg.text("#person-status"); got != "Revoked" {
		t.Fatalf("status after revoking: %q", got)
	}
	history := reg.text("#history")
	for _, want := range []string{"Registered, identity checked in person", "Activation letter issued", "Activated with the letter's code",
		"Logged in", "Passkey added", "Suspended", "Resumed", "Revoked", "Found by personal number", "Record viewed"} {
		if !strings.Contains(history, want) {
			t.Errorf("the history lacks %q:\n%s", want, history)
		}
	}
	rows, _ := chromedp.Run(reg.ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll("#history tbody tr")].filter(r => /Registered|letter issued|Suspended|Resumed|Revoked/.test(r.cells[1].innerText)).map(r => r.cells[2].innerText)`))
	if len(rows) != 5 {
		t.Errorf("the registrar's steps in the history: %q", rows)
	}
	for _, actor := range rows {
		if !strings.Contains(actor, "Besa Gashi (9000000001)") {
			t.Errorf("a registrar's step by %q", actor)
		}
	}

	// The key pages in Albanian and Serbian.
	for _, tc := range []struct{ lang, find, person, register string }{
		{"sq", "Gjeni një person", "I revokuar", "Regjistroni një person"},
		{"sr", "Pronađite osobu", "Opozvano", "Registrujte osobu"},
	} {
		reg.do(tc.lang+" find", chromedp.Navigate(base+"/desk/find?lang="+tc.lang), chromedp.WaitVisible(chromedp.CSS(`html[lang="`+tc.lang+`"] #number`)))
		if got := reg.text("h1"); got != tc.find {
			t.Errorf("%s: the find page's heading %q", tc.lang, got)
		}
		reg.do(tc.lang+" person", chromedp.SendKeys(chromedp.CSS("#number"), number), chromedp.Click(chromedp.CSS("#find")),
			chromedp.WaitVisible(chromedp.CSS("#person-status")))
		if got := reg.text("#person-status"); got != tc.person {
			t.Errorf("%s: the person's status %q", tc.lang, got)
		}
		reg.do(tc.lang+" register", chromedp.Navigate(base+"/desk/register"), chromedp.WaitVisible(chromedp.CSS("#number")),
			chromedp.Click(chromedp.CSS("#register")), chromedp.WaitVisible(chromedp.CSS("#form-error")))
		if got := reg.text("h1"); got != tc.register || !reg.has(`#number[aria-invalid="true"]`) {
			t.Errorf("%s: the empty registration form: %q", tc.lang, got)
		}
	}
}
