package e2e

import (
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/vula-eid/vula/internal/testenv"
)

// TestActivationLetter: with the server up, a registrar registers a person with --letter; the
// letter is sealed with the agency's seal (seal.agency) at B-LT — pdfsig finds the seal valid,
// vula verify passes it at B-LT — pdftotext reads the code and the names in Serbian, the QR
// code opens the activation page with the code in its form, and the code activates; a reset
// writes a new letter whose code activates again. While
// seal.agency names no organization, no code is issued.
func TestActivationLetter(t *testing.T) {
	t.Parallel()
	vulaBinary(t)
	testenv.Need(t, "pdfsig", "pdftotext", "pdftoppm", "zbarimg")
	data := t.TempDir()
	addr := freePort(t)
	_, port, _ := net.SplitHostPort(addr)
	base := "http://localhost:" + port
	env := []string{"VULA_DATA_DIR=" + data, "VULA_BASE_URL=" + base, "VULA_IDP_DEMO=false", "VULA_SEAL_AGENCY=agency"}
	vula(t, append(env, "REG_PW=a registrar's long passphrase"), "persons", "create", "9000000001", "--given-name", "Besa",
		"--family-name", "Gashi", "--password-env", "REG_PW", "--proofing", "high", "--role", "registrar")
	srv := startReplicaAt(t, addr, data, env)
	srv.ready(t, http.StatusOK)
	register := func(env []string, number string, extra ...string) (string, string, error) {
		return vulaRun(env, append([]string{"persons", "register", number, "--registrar", "9000000001", "--given-name", "Dragiša",
			"--family-name", "Đorđević", "--birthdate", "1988-02-29", "--document", "P00" + number, "--document-expiry", "2031-01-01"}, extra...)...)
	}
	dir := t.TempDir()

	// The agency is not onboarded yet: refused before any code is issued.
	if out, errOut, err := register(env, "5000000001", "--letter", filepath.Join(dir, "none.pdf")); err == nil ||
		!strings.Contains(errOut, "seal.agency") || strings.Contains(out, "activation code") {
		t.Fatalf("a letter without seal.agency: %v\n%s%s", err, out, errOut)
	}
	if _, err := os.Stat(filepath.Join(dir, "none.pdf")); err == nil {
		t.Fatal("a letter was written without a seal")
	}

	vula(t, env, "orgs", "create", "agency", "--name", "Agencija za eID", "--registry-number", "810000009")
	letter := filepath.Join(dir, "letter.pdf")
	out, errOut, err := register(env, "5000000002", "--letter", letter, "--lang", "sr")
	if err != nil {
		t.Fatalf("register --letter: %v\n%s%s\n%s", err, out, errOut, srv.logs)
	}
	m := regexp.MustCompile(`activation code (\S+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("register printed %q", out)
	}
	code := m[1]
	if fi, err := os.Stat(letter); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the letter file: %v %v (want mode 0600: it holds a secret)", fi, err)
	}
	if got := pdfsig(t, letter); !strings.Contains(got, "Signature is Valid.") || !strings.Contains(got, "Agencija za eID") ||
		!strings.Contains(got, "ETSI.CAdES.detached") {
		t.Fatalf("pdfsig of the letter:\n%s", got)
	}
	if got := vula(t, env, "verify", letter); !strings.Contains(got, "Result: TOTAL-PASSED") || !strings.Contains(got, "B-LT") {
		t.Fatalf("vula verify of the letter:\n%s", got)
	}
	text, err := exec.Command("pdftotext", "-enc", "UTF-8", letter, "-").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{code, "Dragiša Đorđević", "Lični broj: 5000000002", base + "/activate", "Agencija za eID"} {
		if !strings.Contains(string(text), want) {
			t.Errorf("the letter's text has no %q:\n%s", want, text)
		}
	}

	// The QR code: the activation page, the code in its form.
	png := filepath.Join(dir, "page")
	if out, err := exec.Command("pdftoppm", "-r", "150", "-png", "-singlefile", letter, png).CombinedOutput(); err != nil {
		t.Fatalf("pdftoppm: %v\n%s", err, out)
	}
	qr, err := exec.Command("zbarimg", "-q", "--raw", png+".png").Output()
	if err != nil {
		t.Fatalf("zbarimg: %v", err)
	}
	u := strings.TrimSpace(string(qr))
	if want := base + "/activate?code=" + code + "&lang=sr"; u != want {
		t.Fatalf("the QR code reads %q, want %q", u, want)
	}
	res, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || !strings.Contains(string(page), `value="`+code+`"`) || !strings.Contains(string(page), `lang="sr"`) {
		t.Fatalf("the QR code's page: %d\n%s", res.StatusCode, page)
	}

	// The code activates, once.
	activate := func() int {
		res, err := http.PostForm(base+"/activate", url.Values{"number": {"5000000002"}, "code": {code},
			"password": {"my own new passphrase"}, "password2": {"my own new passphrase"}})
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if got := activate(); got != http.StatusOK {
		t.Fatalf("activation with the letter's code: %d", got)
	}
	if got := activate(); got != http.StatusUnauthorized {
		t.Fatalf("the letter's code a second time: %d", got)
	}

	// A reset at the desk: a new letter, in English, with a new code that activates.
	again := filepath.Join(dir, "reset.pdf")
	out = vula(t, env, "persons", "reset", "5000000002", "--registrar", "9000000001", "--letter", again, "--lang", "en")
	m = regexp.MustCompile(`activation code (\S+)`).FindStringSubmatch(out)
	if m == nil || m[1] == code {
		t.Fatalf("reset printed %q", out)
	}
	code = m[1]
	if text, err := exec.Command("pdftotext", "-enc", "UTF-8", again, "-").Output(); err != nil ||
		!strings.Contains(string(text), code) || !strings.Contains(string(text), "Your activation code") {
		t.Fatalf("the reset letter: %v\n%s", err, text)
	}
	if got := pdfsig(t, again); !strings.Contains(got, "Signature is Valid.") {
		t.Fatalf("pdfsig of the reset letter:\n%s", got)
	}
	if got := activate(); got != http.StatusOK {
		t.Fatalf("activation with the reset letter's code: %d", got)
	}
}
