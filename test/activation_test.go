package e2e

import (
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/pquerna/otp/totp"
)

// TestBrowserActivation: a registrar registers a person at the desk (proofed at high, ID
// document checked) and the letter's code comes out; the citizen, in Chromium with a
// device-bound virtual authenticator, activates in each language with the code and a new
// password, enrols an authenticator app and a passkey, and logs in at the demo relying party
// at high with the passkey. The code does not work twice.
func TestBrowserActivation(t *testing.T) {
	t.Parallel()
	vulaBinary(t)
	alloc := headlessChromium(t)
	data, addr, base, env := passkeyPlatform(t, alloc)
	vula(t, append(env, "REG_PW=a registrar's long passphrase"), "persons", "create", "9000000001", "--given-name", "Besa",
		"--family-name", "Gashi", "--password-env", "REG_PW", "--proofing", "high", "--role", "registrar")
	codeRE := regexp.MustCompile(`activation code (\S+)`)
	codes := map[string]string{}
	for i, lang := range []string{"sq", "sr", "en"} {
		number := "500000000" + string(rune('1'+i))
		out := vula(t, env, "persons", "register", number, "--registrar", "9000000001", "--given-name", "Arta", "--family-name", "Krasniqi",
			"--birthdate", "1990-04-12", "--document", "P00"+number, "--document-expiry", "2031-01-01")
		m := codeRE.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("register printed %q", out)
		}
		codes[lang] = m[1]
	}
	srv := startReplicaAt(t, addr, data, env)
	srv.ready(t, http.StatusOK)

	for i, lang := range []string{"sq", "sr", "en"} {
		number := "500000000" + string(rune('1'+i))
		t.Run(lang, func(t *testing.T) {
			b := newTab(t, alloc, srv, virtualAuthenticator(false))
			const pw = "my own new passphrase"
			activate := func(code string) {
				b.do("activate", chromedp.Navigate(base+"/activate?lang="+lang), chromedp.WaitVisible(chromedp.CSS(`html[lang="`+lang+`"] #code`)),
					chromedp.SendKeys(chromedp.CSS("#number"), number), chromedp.SendKeys(chromedp.CSS("#code"), code),
					chromedp.SendKeys(chromedp.CSS("#password"), pw), chromedp.SendKeys(chromedp.CSS("#password2"), pw),
					chromedp.Click(chromedp.CSS(`form[action="/activate"] button`)), chromedp.WaitVisible(chromedp.CSS("#activated, #form-error")))
			}
			activate(strings.ToLower(codes[lang]))
			if b.count("#activated") != 1 {
				t.Fatalf("activation refused: %s", b.text("main"))
			}
			// The authenticator app.
			b.do("enrol TOTP", chromedp.Click(chromedp.CSS("#enrol-totp")), chromedp.WaitVisible(chromedp.CSS("code.key")))
			secret := strings.TrimSpace(b.text("code.key"))
			code, err := totp.GenerateCode(secret, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			b.do("confirm TOTP", chromedp.SendKeys(chromedp.CSS("#code"), code), chromedp.Click(chromedp.CSS(`form[action="/account/totp"] button`)),
				chromedp.WaitVisible(chromedp.CSS(".alert.ok")))
			// A passkey, in the session of the activation.
			b.do("enrol a passkey", chromedp.Navigate(base+"/account/passkeys"), chromedp.WaitVisible(chromedp.CSS("#passkey-name")),
				chromedp.SendKeys(chromedp.CSS("#passkey-name"), "my key"), chromedp.Click(chromedp.CSS("#passkey-add button")),
				chromedp.WaitVisible(chromedp.CSS("#passkey-done")))
			if got := b.text("ul.passkeys"); !strings.Contains(got, "my key") {
				t.Fatalf("passkeys page: %q", got)
			}
			// Logged in at high with it.
			b.do("ask for high", chromedp.Navigate(base+"/demo/?acr=high"), chromedp.WaitVisible(chromedp.CSS("#passkey-button")),
				chromedp.Click(chromedp.CSS("#passkey-button")), chromedp.WaitVisible(chromedp.CSS(`button[value="allow"], body > p`)))
			if b.count(`button[value="allow"]`) > 0 {
				b.do("consent", chromedp.Click(chromedp.CSS(`button[value="allow"]`)), chromedp.WaitVisible(chromedp.CSS("body > p")))
			}
			if got := b.text("body"); !strings.Contains(got, "http://eidas.europa.eu/LoA/high") || !strings.Contains(got, "hwk") {
				t.Fatalf("the relying party got %q, want acr high with hwk", got)
			}
			// The code is spent.
			activate(codes[lang])
			if b.count("#form-error") != 1 {
				t.Fatalf("a used code: %s", b.text("main"))
			}
		})
	}
}
