package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestBrowserOfferPage: Chromium shows the registration desk's credential offer page in sq, sr
// and en — the QR code drawn (the page's CSP lets the data: image through), the same-device
// link the offer URI, the transaction code nowhere — and a used-up offer's page says so.
func TestBrowserOfferPage(t *testing.T) {
	vulaBinary(t)
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium is needed (test/deps.sh installs it): %v", err)
	}
	data := t.TempDir()
	addr := freePort(t)
	env := []string{"VULA_DATA_DIR=" + data, "VULA_IDP_DEMO=false", "VULA_BASE_URL=http://" + addr}
	vula(t, append(env, "CITIZEN_PW=a long and secret passphrase"), "persons", "create", "6677889900", "--given-name", "Arbër",
		"--family-name", "Hoxha", "--birthdate", "1979-07-07", "--password-env", "CITIZEN_PW")
	srv := startReplicaAt(t, addr, data, env)
	srv.ready(t, http.StatusOK)
	var offer struct {
		URI    string `json:"credential_offer_uri"`
		Page   string `json:"page"`
		TxCode string `json:"tx_code"`
	}
	if err := json.Unmarshal([]byte(vula(t, env, "pid", "offer", "6677889900", "-o", "json")), &offer); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(screenshotDir, 0o755)
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium), chromedp.NoSandbox,
		chromedp.WindowSize(900, 900), chromedp.Flag("lang", "en-US"))
	alloc, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(alloc)
	defer cancel()
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	for lang, title := range map[string]string{"sq": "Identiteti juaj për portofolin digjital", "sr": "Vaš identitet za digitalni novčanik",
		"en": "Your identity for your digital wallet"} {
		sctx, scancel := context.WithTimeout(ctx, 30*time.Second)
		err := chromedp.Do(sctx, chromedp.Navigate(offer.Page+"?lang="+lang), chromedp.WaitVisible(chromedp.CSS("#offer-qr")))
		h1, err1 := chromedp.Run(sctx, chromedp.Text(chromedp.CSS("h1")))
		link, err2 := chromedp.Run(sctx, chromedp.AttributeValue(chromedp.CSS("#offer-link"), "href"))
		width, err3 := chromedp.Run(sctx, chromedp.Evaluate[int](`document.getElementById("offer-qr").naturalWidth`))
		body, err4 := chromedp.Run(sctx, chromedp.Text(chromedp.CSS("body")))
		shot, err5 := chromedp.Run(sctx, chromedp.FullScreenshot(100))
		scancel()
		if err := errors.Join(err, err1, err2, err3, err4, err5); err != nil {
			t.Fatalf("%s: %v\n%s", lang, err, srv.logs)
		}
		href := link.Value
		os.WriteFile(filepath.Join(screenshotDir, fmt.Sprintf("%s-pid-offer.png", lang)), shot, 0o644)
		if h1 != title || href != offer.URI || width != 256 || strings.Contains(body, offer.TxCode) {
			t.Errorf("%s: h1 %q, link %q, QR width %d, tx code shown %v", lang, h1, href, width, strings.Contains(body, offer.TxCode))
		}
	}
	sctx, scancel := context.WithTimeout(ctx, 30*time.Second)
	defer scancel()
	if err := chromedp.Do(sctx, chromedp.Navigate(offer.Page[:strings.LastIndex(offer.Page, "/")+1]+"gone?lang=en"),
		chromedp.WaitVisible(chromedp.CSS("#message"))); err != nil {
		t.Fatal(err)
	}
	msg, err := chromedp.Run(sctx, chromedp.Text(chromedp.CSS("#message")))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(msg, "expired or was already used") {
		t.Errorf("an unknown offer's page says %q", msg)
	}
}
