package e2e

import (
	"bytes"
	"compress/zlib"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
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
	"github.com/go-jose/go-jose/v3"
	"github.com/pquerna/otp/totp"
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

// TestBrowserCredentialsPage: a citizen logged in at Vula (password and one-time code, through
// the demo relying party) sees the PIDs issued to them on /pid/credentials in sq, sr and en,
// revokes one after the confirmation, and the status list shows that one revoked at once and
// the other not; the form with another person's credential is refused (404), and revoking all
// leaves nothing valid.
func TestBrowserCredentialsPage(t *testing.T) {
	t.Parallel()
	vulaBinary(t)
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium is needed (test/deps.sh installs it): %v", err)
	}
	data := t.TempDir()
	addr := freePort(t)
	base := "http://" + addr
	env := []string{"VULA_DATA_DIR=" + data, "VULA_BASE_URL=" + base}
	type person struct {
		number, pw, seed string
		idx              []int // the status list indexes of their two credentials
	}
	langs := []string{"sq", "sr", "en"}
	people := map[string]*person{}
	for i, lang := range langs {
		p := &person{number: fmt.Sprintf("445566778%d", i)}
		p.pw, p.seed = citizen(t, env, p.number)
		people[lang] = p
	}
	srv := startReplicaAt(t, addr, data, env)
	srv.ready(t, http.StatusOK)
	for _, lang := range langs {
		p := people[lang]
		for range 2 {
			p.idx = append(p.idx, issueByOffer(t, env, base, p.number))
		}
	}
	status := func(idx int) int {
		t.Helper()
		resp, err := http.Get(base + "/pid/status/1")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		parts := strings.Split(string(b), ".")
		var c struct {
			StatusList struct {
				Lst string `json:"lst"`
			} `json:"status_list"`
		}
		if len(parts) != 3 || json.Unmarshal(mustB64(t, parts[1]), &c) != nil {
			t.Fatalf("status list: %d %s", resp.StatusCode, b)
		}
		r, err := zlib.NewReader(bytes.NewReader(mustB64(t, c.StatusList.Lst)))
		if err != nil {
			t.Fatal(err)
		}
		bits, _ := io.ReadAll(r)
		return int(bits[idx/8]>>(idx%8)) & 1
	}

	os.MkdirAll(screenshotDir, 0o755)
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium), chromedp.NoSandbox,
		chromedp.WindowSize(1000, 900), chromedp.Flag("lang", "en-US"))
	alloc, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	titles := map[string]string{"sq": "Kredencialet tuaja të identitetit digjital", "sr": "Vaši akreditivi digitalnog identiteta",
		"en": "Your digital identity credentials"}
	var firstID string // a credential of the first person, which the others must not revoke
	for i, lang := range langs {
		p := people[lang]
		t.Run(lang, func(t *testing.T) {
			ctx, cancel := chromedp.NewContext(alloc)
			defer cancel()
			if err := chromedp.Do(ctx); err != nil {
				t.Fatalf("start chromium: %v", err)
			}
			do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
				t.Helper()
				sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				defer cancel()
				if err := chromedp.Do(sctx, steps...); err != nil {
					t.Fatalf("%s: %v\n%s", what, err, srv.logs)
				}
			}
			text := func(sel string) string {
				t.Helper()
				sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				defer cancel()
				v, err := chromedp.Run(sctx, chromedp.Text(chromedp.CSS(sel)))
				if err != nil {
					t.Fatalf("text of %s: %v", sel, err)
				}
				return v
			}
			shot := func(page string) {
				buf, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
				if err == nil {
					os.WriteFile(filepath.Join(screenshotDir, fmt.Sprintf("%s-pid-%s.png", lang, page)), buf, 0o644)
				}
			}
			do("the page before a login", chromedp.Navigate(base+"/pid/credentials?lang="+lang), chromedp.WaitVisible(chromedp.CSS("#message")))
			code, err := totp.GenerateCode(p.seed, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			do("log in", chromedp.Navigate(base+"/demo/?acr=substantial"), chromedp.WaitVisible(chromedp.CSS("#identifier")),
				chromedp.SendKeys(chromedp.CSS("#identifier"), p.number), chromedp.SendKeys(chromedp.CSS("#password"), p.pw),
				chromedp.Click(chromedp.CSS(`form[action="/login"] button`)), chromedp.WaitVisible(chromedp.CSS("#code")),
				chromedp.SendKeys(chromedp.CSS("#code"), code), chromedp.Click(chromedp.CSS(`form[action="/login/totp"] button`)),
				chromedp.WaitVisible(chromedp.CSS(`button[value="allow"]`)), chromedp.Click(chromedp.CSS(`button[value="allow"]`)),
				chromedp.WaitVisible(chromedp.CSS("body > p")))
			do("the page", chromedp.Navigate(base+"/pid/credentials?lang="+lang), chromedp.WaitVisible(chromedp.CSS("#credentials")))
			shot("1-credentials")
			if h1 := text("h1"); h1 != titles[lang] {
				t.Errorf("h1 %q, want %q", h1, titles[lang])
			}
			ids, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('#credentials li[data-status="valid"]')].map(li => li.id.slice(5))`))
			if err != nil || len(ids) != 2 {
				t.Fatalf("valid credentials listed: %v %v", ids, err)
			}
			if body := text("body"); strings.Contains(body, "Krasniqi") || strings.Contains(body, p.number) || strings.Contains(body, "1990-04-12") {
				t.Errorf("the page shows claim values: %s", body)
			}
			if i == 0 {
				firstID = ids[0]
			} else {
				// Another person's credential in this person's form: refused, nothing revoked.
				st, err := chromedp.Run(ctx, chromedp.Evaluate[int](`(async () => {
					const f = document.querySelector('#credentials form');
					const body = new URLSearchParams(new FormData(f));
					body.set('credential', '`+firstID+`'); body.set('confirm', 'yes');
					return (await fetch('/pid/credentials/revoke', { method: 'POST', body })).status;
				})()`, chromedp.EvalAwaitPromise))
				if err != nil || st != 404 {
					t.Errorf("revoking another person's credential: %d %v", st, err)
				}
			}
			do("revoke the first", chromedp.Click(chromedp.CSS(`#cred-`+ids[0]+` button`)), chromedp.WaitVisible(chromedp.CSS("#revoke-yes")))
			shot("2-confirm")
			do("confirm", chromedp.Click(chromedp.CSS("#revoke-yes")), chromedp.WaitVisible(chromedp.CSS("#done")))
			shot("3-revoked")
			st, err := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.CSS(`#cred-`+ids[0]), "data-status"))
			if err != nil || st.Value != "revoked" || !strings.Contains(text(`#cred-`+ids[0]), map[string]string{"sq": "i revokuar", "sr": "opozvan", "en": "revoked"}[lang]) {
				t.Errorf("the revoked credential shows as %q %v", st.Value, err)
			}
			if got := status(p.idx[0]) + status(p.idx[1]); got != 1 {
				t.Errorf("the status list shows %d of the person's two credentials revoked, want 1", got)
			}
			if lang == "en" {
				do("revoke all", chromedp.Click(chromedp.CSS("#revoke-all")), chromedp.WaitVisible(chromedp.CSS("#revoke-yes")),
					chromedp.Click(chromedp.CSS("#revoke-yes")), chromedp.WaitVisible(chromedp.CSS("#done")))
				if status(p.idx[0])+status(p.idx[1]) != 2 {
					t.Error("after revoking all, a credential is still valid in the status list")
				}
				if n, _ := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('#credentials li[data-status="valid"]').length`)); n != 0 {
					t.Errorf("%d credentials still listed as valid", n)
				}
			}
		})
	}
	if status(people["sq"].idx[0])+status(people["sq"].idx[1]) != 1 {
		t.Error("the first person's credentials changed after the others' attempts")
	}
}

// issueByOffer gets one SD-JWT VC PID for number by the pre-authorized code flow (vula pid
// offer, its offer by reference, token, nonce, credential) and returns its status list index.
func issueByOffer(t *testing.T, env []string, base, number string) int {
	t.Helper()
	var offer struct {
		Ref    string `json:"credential_offer_uri"`
		TxCode string `json:"tx_code"`
	}
	if err := json.Unmarshal([]byte(vula(t, env, "pid", "offer", number, "-o", "json")), &offer); err != nil {
		t.Fatal(err)
	}
	var co struct {
		Grants map[string]struct {
			Code string `json:"pre-authorized_code"`
		} `json:"grants"`
	}
	getJSONPlain(t, offer.Ref, &co)
	code, tok := post(t, base+"/pid/token", url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:pre-authorized_code"},
		"pre-authorized_code": {co.Grants["urn:ietf:params:oauth:grant-type:pre-authorized_code"].Code}, "tx_code": {offer.TxCode}})
	if code != 200 {
		t.Fatalf("token: %d %v", code, tok)
	}
	code, n := post(t, base+"/pid/nonce", url.Values{})
	if code != 200 {
		t.Fatalf("nonce: %d %v", code, n)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	s, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key},
		(&jose.SignerOptions{}).WithType("openid4vci-proof+jwt").WithHeader("jwk", jose.JSONWebKey{Key: key.Public()}))
	claims, _ := json.Marshal(map[string]any{"aud": base, "iat": time.Now().Unix(), "nonce": n["c_nonce"]})
	o, _ := s.Sign(claims)
	proof, _ := o.CompactSerialize()
	body, _ := json.Marshal(map[string]any{"credential_configuration_id": "eu.europa.ec.eudi.pid.1.dc+sd-jwt", "proofs": map[string]any{"jwt": []string{proof}}})
	req, _ := http.NewRequest("POST", base+"/pid/credential", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+tok["access_token"].(string))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Credentials []struct {
			Credential string `json:"credential"`
		} `json:"credentials"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != 200 || len(out.Credentials) != 1 {
		t.Fatalf("credential: %d %v", resp.StatusCode, err)
	}
	var payload struct {
		Status struct {
			StatusList struct {
				Idx int `json:"idx"`
			} `json:"status_list"`
		} `json:"status"`
	}
	if err := json.Unmarshal(mustB64(t, strings.Split(out.Credentials[0].Credential, ".")[1]), &payload); err != nil {
		t.Fatal(err)
	}
	return payload.Status.StatusList.Idx
}

func mustB64(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatalf("base64url %q: %v", s, err)
	}
	return b
}
