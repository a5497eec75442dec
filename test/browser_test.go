package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/pquerna/otp/totp"
)

// screenshotDir keeps each page's screenshot, per language, for people to look at
// as PNG (test/screenshots, ignored by git; copies of a run are in docs/screenshots).
const screenshotDir = "screenshots"

// TestBrowserLogin has headless Chromium log in at the demo relying party in each language:
// it switches the language with the page's own switcher, types the personal number and
// password, the one-time code, allows the consent, and lands back at the relying party with an
// ID token at the substantial level. Every page is saved as a screenshot.
func TestBrowserLogin(t *testing.T) {
	t.Parallel()
	vulaBinary(t)
	data := t.TempDir()
	// One citizen per language: a one-time code counts once, and consent is remembered.
	type person struct{ number, pw, seed string }
	people := map[string]person{}
	for i, lang := range []string{"sq", "sr", "en"} {
		number := fmt.Sprintf("123456789%d", i)
		pw, seed := citizen(t, []string{"VULA_DATA_DIR=" + data}, number)
		people[lang] = person{number, pw, seed}
	}
	srv := startReplicaAt(t, freePort(t), data, nil)
	srv.ready(t, http.StatusOK)
	base := "http://" + srv.addr
	os.MkdirAll(screenshotDir, 0o755)

	alloc := headlessChromium(t)
	for _, lang := range []string{"sq", "sr", "en"} {
		p := people[lang]
		t.Run(lang, func(t *testing.T) { browserLogin(t, alloc, base, lang, p.number, p.pw, p.seed, srv) })
	}
}

// browserLogin is one language's walk through the pages, in a fresh browser profile.
func browserLogin(t *testing.T, alloc context.Context, base, lang, number, pw, seed string, srv *replica) {
	b := newTab(t, alloc, srv)
	do, text := b.do, b.text
	shot := func(page string) {
		t.Helper()
		buf, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("%s: screenshot %s: %v", lang, page, err)
		}
		os.WriteFile(filepath.Join(screenshotDir, fmt.Sprintf("%s-%s.png", lang, page)), buf, 0o644)
	}
	do("open the relying party", chromedp.Navigate(base+"/demo/?acr=substantial"), chromedp.WaitVisible(chromedp.CSS("#identifier")))
	do("switch language", chromedp.Click(chromedp.CSS(`nav.langs a[hreflang="`+lang+`"]`)),
		chromedp.WaitVisible(chromedp.CSS(`html[lang="`+lang+`"] #identifier`)))
	shot("1-login")
	do("log in", chromedp.SendKeys(chromedp.CSS("#identifier"), number), chromedp.SendKeys(chromedp.CSS("#password"), pw),
		chromedp.Click(chromedp.CSS(`button[type="submit"]`)), chromedp.WaitVisible(chromedp.CSS("#code")))
	shot("2-one-time-code")
	code, err := totp.GenerateCode(seed, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	do("one-time code", chromedp.SendKeys(chromedp.CSS("#code"), code), chromedp.Click(chromedp.CSS(`button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`button[value="allow"]`)))
	shot("3-consent")
	do("consent", chromedp.Click(chromedp.CSS(`button[value="allow"]`)), chromedp.WaitVisible(chromedp.CSS("body > p")))
	shot("4-back-at-the-relying-party")
	if claims := text("body"); !strings.Contains(claims, "You are logged in") || !strings.Contains(claims, "http://eidas.europa.eu/LoA/substantial") ||
		!strings.Contains(claims, "personal_number") || strings.Contains(claims, "did not work") {
		t.Errorf("%s: the relying party got: %s", lang, claims)
	}
	do("logout page", chromedp.Navigate(base+"/logout?lang="+lang), chromedp.WaitVisible(chromedp.CSS("h1")))
	shot("5-logout")
	if want := map[string]string{"sq": "Dil", "sr": "Odjava", "en": "Log out"}[lang]; text("h1") != want {
		t.Errorf("%s: logout page says %q, want %q", lang, text("h1"), want)
	}
	do("log out", chromedp.Click(chromedp.CSS(`button[type="submit"]`)), chromedp.WaitVisible(chromedp.CSS(".alert.ok")))
	shot("6-logged-out")
	do("an expired login", chromedp.Navigate(base+"/login?flow=expired"), chromedp.WaitVisible(chromedp.CSS("h1")))
	shot("7-error")
}
