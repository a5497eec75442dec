package e2e

import (
	"context"
	"crypto/x509"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/vula-eid/vula/internal/idp/idptest"
)

// TestPasskeyMDS3: the platform takes its passkey trust list from a FIDO MDS3 blob file,
// signed under a metadata root of the test's own. Chromium's virtual authenticator (device
// bound, direct attestation) enrols a passkey at activation: listed in the blob under its
// attestation root, the passkey is high; the same model with a REVOKED status, or a blob out
// of date (a warning at start), gives substantial. A blob signed under another root stops the
// start, naming the setting.
func TestPasskeyMDS3(t *testing.T) {
	t.Parallel()
	vulaBinary(t)
	alloc := headlessChromium(t)
	top, aaguid := virtualAttestation(t, alloc)
	root, err := x509.ParseCertificate(top)
	if err != nil {
		t.Fatal(err)
	}
	mds := idptest.NewMDS3Signer(t)
	files := t.TempDir()
	mdsRoot := filepath.Join(files, "mds-root.pem")
	if err := os.WriteFile(mdsRoot, mds.RootPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	blob := func(name string, b []byte) string {
		p := filepath.Join(files, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	month, yesterday := time.Now().AddDate(0, 1, 0), time.Now().AddDate(0, 0, -1)
	model := idptest.MDS3Entry{AAGUID: aaguid, Roots: []*x509.Certificate{root}}
	revoked := model
	revoked.Status = "REVOKED"

	// Signed under a root that is not the configured one: the server does not start.
	t.Run("another root", func(t *testing.T) {
		other := idptest.NewMDS3Signer(t).Blob(t, month, model)
		data := t.TempDir()
		cmd := exec.Command(binPath, "serve", "--data-dir", data, "--listen", freePort(t))
		cmd.Env = append(cmd.Environ(), "VULA_IDP_DEMO=false", "VULA_IDP_PASSKEY_MDS3_FILE="+blob("other.jwt", other),
			"VULA_IDP_PASSKEY_MDS3_ROOT="+mdsRoot)
		done := make(chan []byte, 1)
		go func() { out, _ := cmd.CombinedOutput(); done <- out }()
		select {
		case out := <-done:
			if cmd.ProcessState.Success() || !strings.Contains(string(out), "idp.passkey_mds3_file") ||
				!strings.Contains(string(out), "not a FIDO MDS3 blob signed under the configured roots") {
				t.Fatalf("serve with a blob under another root: %v\n%s", cmd.ProcessState, out)
			}
		case <-time.After(60 * time.Second):
			cmd.Process.Kill()
			t.Fatal("serve with a blob under another root did not stop")
		}
	})

	for _, c := range []struct {
		name, file, want, log string
	}{
		{"listed", blob("listed.jwt", mds.Blob(t, month, model)), "level high", "passkey trust: FIDO MDS3 blob"},
		{"revoked", blob("revoked.jwt", mds.Blob(t, month, revoked)), "level substantial", "passkey trust: FIDO MDS3 blob"},
		{"out of date", blob("expired.jwt", mds.Blob(t, yesterday, model)), "level substantial", "idp.passkey_mds3_file is out of date"},
	} {
		t.Run(c.name, func(t *testing.T) {
			data := t.TempDir()
			addr := freePort(t)
			_, port, _ := net.SplitHostPort(addr)
			base := "http://localhost:" + port // WebAuthn needs a domain name
			env := []string{"VULA_DATA_DIR=" + data, "VULA_BASE_URL=" + base, "VULA_IDP_DEMO=false",
				"VULA_IDP_PASSKEY_MDS3_FILE=" + c.file, "VULA_IDP_PASSKEY_MDS3_ROOT=" + mdsRoot}
			vula(t, append(env, "REG_PW=a registrar's long passphrase"), "persons", "create", "9000000001", "--given-name", "Besa",
				"--family-name", "Gashi", "--password-env", "REG_PW", "--proofing", "high", "--role", "registrar")
			out := vula(t, env, "persons", "register", "5000000001", "--registrar", "9000000001", "--given-name", "Arta",
				"--family-name", "Krasniqi", "--birthdate", "1990-04-12", "--document", "P005000000001", "--document-expiry", "2031-01-01")
			m := regexp.MustCompile(`activation code (\S+)`).FindStringSubmatch(out)
			if m == nil {
				t.Fatalf("register printed %q", out)
			}
			srv := startReplicaAt(t, addr, data, env)
			srv.ready(t, http.StatusOK)
			if !strings.Contains(srv.logs.String(), c.log) {
				t.Errorf("the server's log has no %q:\n%s", c.log, srv.logs)
			}

			ctx, cancel := chromedp.NewContext(alloc)
			defer cancel()
			if err := chromedp.Do(ctx, virtualAuthenticator(false)); err != nil {
				t.Fatalf("start chromium: %v", err)
			}
			sctx, cancel := context.WithTimeout(ctx, 60*time.Second)
			defer cancel()
			const pw = "my own new passphrase"
			// The letter's QR code puts the code into the form: the citizen adds the rest.
			if err := chromedp.Do(sctx, chromedp.Navigate(base+"/activate?lang=en&code="+m[1]), chromedp.WaitVisible(chromedp.CSS("#code")),
				chromedp.SendKeys(chromedp.CSS("#number"), "5000000001"),
				chromedp.SendKeys(chromedp.CSS("#password"), pw), chromedp.SendKeys(chromedp.CSS("#password2"), pw),
				chromedp.Click(chromedp.CSS(`form[action="/activate"] button`)), chromedp.WaitVisible(chromedp.CSS("#activated")),
				chromedp.Navigate(base+"/account/passkeys"), chromedp.WaitVisible(chromedp.CSS("#passkey-name")),
				chromedp.SendKeys(chromedp.CSS("#passkey-name"), "my key"), chromedp.Click(chromedp.CSS("#passkey-add button")),
				chromedp.WaitVisible(chromedp.CSS("#passkey-done"))); err != nil {
				t.Fatalf("activate and enrol: %v\n%s", err, srv.logs)
			}
			got, err := chromedp.Run(sctx, chromedp.Text(chromedp.CSS("ul.passkeys")))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(got, "my key") || !strings.Contains(got, c.want) {
				t.Fatalf("passkeys page %q, want %q\n%s", got, c.want, srv.logs)
			}
		})
	}
}
