package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
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
	t.Parallel()
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
		URI    string `json:"offer"`
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

// TestBrowserVerifyPage: Chromium shows the verifier's page of a relying party's presentation
// request in sq, sr and en — the QR code drawn, the same-device link the deep link — framable
// only by the relying party's origin; once the wallet has answered (here: the person declined),
// the page moves on by itself to the relying party's redirect URI with its state.
func TestBrowserVerifyPage(t *testing.T) {
	t.Parallel()
	vulaBinary(t)
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium is needed (test/deps.sh installs it): %v", err)
	}
	data := t.TempDir()
	addr := freePort(t)
	base := "http://" + addr
	env := []string{"VULA_DATA_DIR=" + data, "VULA_IDP_DEMO=false", "VULA_BASE_URL=" + base}
	var cc struct {
		Secret string `json:"client_secret"`
	}
	if err := json.Unmarshal([]byte(vula(t, env, "clients", "create", "shop", "--grant-type", "client_credentials", "--scope", "verify",
		"-o", "json")), &cc); err != nil || cc.Secret == "" {
		t.Fatalf("clients create: %v", err)
	}
	srv := startReplicaAt(t, addr, data, env)
	srv.ready(t, http.StatusOK)
	back := make(chan string, 1)
	rp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case back <- r.URL.String():
		default:
		}
		w.Write([]byte("<h1>back at the shop</h1>"))
	}))
	defer rp.Close()

	tokReq, _ := http.NewRequest("POST", base+"/oauth2/token", strings.NewReader("grant_type=client_credentials&scope=verify"))
	tokReq.SetBasicAuth("shop", cc.Secret)
	tokReq.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	doJSON(t, tokReq, 200, &tok)
	body := `{"dcql_query":{"credentials":[{"id":"pid","format":"dc+sd-jwt","meta":{"vct_values":["urn:eudi:pid:1"]},"claims":[{"path":["age_equal_or_over","18"]}]}]},
		"response_mode":"direct_post","redirect_uri":"` + rp.URL + `/back","state":"basket-7"}`
	req, _ := http.NewRequest("POST", base+"/api/v1/presentations", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	req.Header.Set("Content-Type", "application/json")
	var tx struct {
		PageURI     string `json:"page_uri"`
		DeepLink    string `json:"deep_link"`
		RequestURI  string `json:"request_uri"`
		ResponseURI string `json:"response_uri"`
	}
	doJSON(t, req, 201, &tx)

	resp, err := http.Get(tx.PageURI)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors "+rp.URL+";") || resp.Header.Get("X-Frame-Options") != "" {
		t.Errorf("the page's CSP %q does not let the relying party's origin %s frame it", csp, rp.URL)
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
	for _, lang := range []string{"sq", "sr", "en"} {
		title := map[string]string{"sq": "Tregoni identitetin tuaj nga portofoli", "sr": "Pokažite svoj identitet iz novčanika",
			"en": "Show your identity from your wallet"}[lang]
		sctx, scancel := context.WithTimeout(ctx, 30*time.Second)
		err := chromedp.Do(sctx, chromedp.Navigate(tx.PageURI+"?lang="+lang), chromedp.WaitVisible(chromedp.CSS("#verify-qr")))
		h1, err1 := chromedp.Run(sctx, chromedp.Text(chromedp.CSS("h1")))
		link, err2 := chromedp.Run(sctx, chromedp.AttributeValue(chromedp.CSS("#verify-link"), "href"))
		width, err3 := chromedp.Run(sctx, chromedp.Evaluate[int](`document.getElementById("verify-qr").naturalWidth`))
		shot, err4 := chromedp.Run(sctx, chromedp.FullScreenshot(100))
		scancel()
		if err := errors.Join(err, err1, err2, err3, err4); err != nil {
			t.Fatalf("%s: %v\n%s", lang, err, srv.logs)
		}
		os.WriteFile(filepath.Join(screenshotDir, fmt.Sprintf("%s-verify.png", lang)), shot, 0o644)
		if h1 != title || link.Value != tx.DeepLink || width != 256 {
			t.Errorf("%s: h1 %q, link %q (want %q), QR width %d", lang, h1, link.Value, tx.DeepLink, width)
		}
	}

	// The person declines in the wallet: the wallet posts an error response with the request's state.
	r, err := http.Get(tx.RequestURI)
	if err != nil {
		t.Fatal(err)
	}
	jwt, _ := io.ReadAll(r.Body)
	r.Body.Close()
	var claims struct {
		State string `json:"state"`
	}
	payload, _ := base64.RawURLEncoding.DecodeString(strings.Split(string(jwt), ".")[1])
	json.Unmarshal(payload, &claims)
	// The browser is on the page (en) while the wallet answers.
	sctx, scancel := context.WithTimeout(ctx, 30*time.Second)
	defer scancel()
	if err := chromedp.Do(sctx, chromedp.Navigate(tx.PageURI+"?lang=en"), chromedp.WaitVisible(chromedp.CSS("#verify-qr"))); err != nil {
		t.Fatal(err)
	}
	ans, err := http.PostForm(tx.ResponseURI, url.Values{"error": {"access_denied"}, "state": {claims.State}})
	if err != nil {
		t.Fatal(err)
	}
	ans.Body.Close()
	if ans.StatusCode != 200 {
		t.Fatalf("the wallet's error response: %d", ans.StatusCode)
	}
	select {
	case u := <-back:
		if !strings.HasPrefix(u, "/back?") || !strings.Contains(u, "state=basket-7") || strings.Contains(u, "response_code") {
			t.Errorf("the page sent the browser to %s", u)
		}
	case <-sctx.Done():
		t.Fatal("the page did not move on to the relying party")
	}
}

func doJSON(t *testing.T, req *http.Request, want int, v any) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("%s %s: %d %s", req.Method, req.URL, resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatal(err)
	}
}
