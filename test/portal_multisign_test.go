package e2e

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/vula-eid/vula/internal/signing/signingtest"
	"github.com/vula-eid/vula/internal/testenv"
	"github.com/vula-eid/vula/internal/validation"
)

// TestBrowserPortalThreeOfficials: three officials sign one PDF in turn through the portal in
// headless Chromium, each uploading what the previous one downloaded and placing the signature
// at another corner; the result holds three signatures, each an incremental update (the
// earlier bytes unchanged), which pdfsig finds valid and the platform's validator passes.
func TestBrowserPortalThreeOfficials(t *testing.T) {
	t.Parallel()
	vulaBinary(t)
	testenv.Need(t, "pdfsig", "qpdf", "pdftoppm")
	if _, err := exec.LookPath("chromium"); err != nil {
		testenv.Missing(t, "chromium is needed (test/deps.sh installs it)")
	}
	data := t.TempDir()
	env := []string{"VULA_DATA_DIR=" + data, "VULA_IDP_DEMO=false"}
	officials := []*officialUser{
		newOfficial(t, env, "1400000001", "Drita", "Berisha"),
		newOfficial(t, env, "1400000002", "Luan", "Hoxha"),
		newOfficial(t, env, "1400000003", "Teuta", "Gashi"),
	}
	names := []string{"Drita Berisha", "Luan Hoxha", "Teuta Gashi"}
	srv := startReplicaAt(t, freePort(t), data, env)
	srv.ready(t, http.StatusOK)
	base := "http://" + srv.addr
	os.MkdirAll(screenshotDir, 0o755)

	alloc := headlessChromium(t)

	doc := signingtest.PDF("Vendim i përbashkët / Joint decision")
	for i, o := range officials {
		file := filepath.Join(t.TempDir(), "Vendim i përbashkët.pdf")
		if err := os.WriteFile(file, doc, 0o644); err != nil {
			t.Fatal(err)
		}
		b := newPortalBrowser(t, alloc, "three-"+string(rune('1'+i)), srv)
		b.login(base+"/portal/?lang=en", o.number, o.pw, o.seed, o.used)
		b.upload([]string{file})
		b.do("a corner of its own", chromedp.Click(chromedp.CSS(`input[name="page"][value="first"]`)),
			chromedp.Click(chromedp.CSS(`input[name="place"][value="`+[]string{"bottom-left", "bottom-center", "bottom-right"}[i]+`"]`)),
			chromedp.Click(chromedp.CSS("#position-continue")), chromedp.WaitVisible(chromedp.CSS("#code")))
		b.do("the code", chromedp.SendKeys(chromedp.CSS("#code"), o.otp(t)), chromedp.Click(chromedp.CSS("#sign")),
			chromedp.WaitVisible(chromedp.CSS("#download-0")))
		_, signed := b.download("#download-0")
		if !bytes.HasPrefix(signed, doc) {
			t.Fatalf("official %d: the signed PDF is not an incremental update of the one uploaded", i+1)
		}
		doc = signed
	}

	path := filepath.Join(t.TempDir(), "signed.pdf")
	checkSignedPDF(t, path, doc, names[2])
	out := pdfsig(t, path)
	if n := strings.Count(out, "Signature is Valid."); n != 3 {
		t.Fatalf("pdfsig: %d valid signatures, want 3\n%s", n, out)
	}
	for _, n := range names {
		if !strings.Contains(out, "Signer Certificate Common Name: "+n) {
			t.Errorf("pdfsig does not name %s\n%s", n, out)
		}
	}
	resp, body := postDoc(t, http.DefaultClient, base+"/api/v1/validate", "application/pdf", doc)
	var rep validation.Report
	if resp.StatusCode != 200 || json.Unmarshal(body, &rep) != nil || rep.Indication != validation.TotalPassed || len(rep.Signatures) != 3 {
		t.Fatalf("validate: %d %s", resp.StatusCode, body)
	}
}
