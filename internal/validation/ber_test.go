package validation_test

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vula-eid/vula/certs"
	"github.com/vula-eid/vula/internal/signing/signingtest"
	"github.com/vula-eid/vula/internal/testenv"
	"github.com/vula-eid/vula/internal/validation"
)

// TestPDFSignedByNSS: poppler's pdfsig signs with a key in an NSS database (made with
// certutil, certified by the test PKI) and NSS writes the CMS in BER with indefinite lengths;
// the validator accepts it and passes it with the signer's CA trusted, as pdfsig does.
// (pdfsig 22.12 refuses -etsi with -add-signature, so only adbe.pkcs7.detached is made.)
func TestPDFSignedByNSS(t *testing.T) {
	for _, tool := range []string{"certutil", "pdfsig"} {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Missing(t, tool+" is not installed (test/deps.sh installs it)")
		}
	}
	env := signingtest.New(t, signingtest.Options{})
	nss := nssSigner(t, env)
	for _, tc := range []struct {
		name, format string
		args         []string
	}{
		{"adbe.pkcs7.detached", "PKCS#7", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := env.WriteFile(t, "in.pdf", signingtest.PDF("signed by NSS"))
			out := filepath.Join(t.TempDir(), "nss.pdf")
			args := append([]string{"-nssdir", "sql:" + nss, "-add-signature", "-nick", "signer", "-reason", "BER"}, tc.args...)
			// pdfsig 22.12 now and then fails "unable update signature" (it sizes the
			// placeholder before NSS signs, and an ECDSA signature's DER varies in length): retry.
			for try := 1; ; try++ {
				msg, err := exec.Command("pdfsig", append(args, in, out)...).CombinedOutput()
				if err == nil {
					break
				}
				if try == 5 || !strings.Contains(string(msg), "unable update signature") {
					t.Fatalf("pdfsig -add-signature: %v\n%s", err, msg)
				}
			}
			doc, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			// The test is about BER: the ContentInfo's SEQUENCE has an indefinite length (30 80).
			if m := regexp.MustCompile(`/Contents\s*<([0-9A-Fa-f]{4})`).FindSubmatch(doc); m == nil || !strings.EqualFold(string(m[1]), "3080") {
				t.Fatalf("pdfsig wrote no BER CMS (starts %q); the test checks nothing", m)
			}
			if msg, err := exec.Command("pdfsig", "-nssdir", "sql:"+nss, "-no-ocsp", out).CombinedOutput(); !strings.Contains(string(msg), "Signature is Valid") {
				t.Fatalf("pdfsig does not verify its own signature: %v\n%s", err, msg)
			}
			rep := validate(t, doc, validation.Options{TrustAnchors: anchors(env), Fetch: validation.RevocationFetcher{R: env.PKI}})
			if rep.Indication != validation.TotalPassed || len(rep.Signatures) != 1 {
				t.Fatalf("indication %s/%s, want TOTAL_PASSED\n%s", rep.Indication, rep.SubIndication, rep.Text())
			}
			sig := rep.Signatures[0]
			if sig.Format != tc.format || sig.Signer == nil || !strings.Contains(sig.Signer.Subject, "NSS Signer") {
				t.Errorf("format %s signer %+v, want %s by NSS Signer", sig.Format, sig.Signer, tc.format)
			}
		})
	}
}

// nssSigner makes an NSS database with an EC P-256 key made by certutil and a certificate
// for it issued by env's seal CA, under the nickname "signer", and returns its directory.
func nssSigner(t *testing.T, env *signingtest.Env) string {
	t.Helper()
	dir := t.TempDir()
	certutil := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("certutil", append([]string{"-d", "sql:" + dir}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("certutil %s: %v\n%s", args[0], err, out)
		}
	}
	certutil("-N", "--empty-password")
	noise := filepath.Join(dir, "noise")
	if err := os.WriteFile(noise, []byte(strings.Repeat("vula noise for certutil ", 10)), 0o600); err != nil {
		t.Fatal(err)
	}
	csrFile := filepath.Join(dir, "req.der")
	certutil("-R", "-s", "CN=NSS Signer", "-k", "ec", "-q", "nistp256", "-z", noise, "-o", csrFile)
	der, err := os.ReadFile(csrFile)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	cert, err := env.PKI.IssueLeaf(t.Context(), certs.Request{Profile: certs.LegalPerson,
		Subject: certs.LegalPersonName("NSS Signer", "810000003", "RS"), PublicKey: csr.PublicKey,
		NotBefore: now.Add(-time.Minute), NotAfter: now.AddDate(1, 0, 0)}, "nss:signer")
	if err != nil {
		t.Fatal(err)
	}
	add := func(nick, trust string, c *x509.Certificate) {
		p := filepath.Join(dir, nick+".pem")
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}), 0o600); err != nil {
			t.Fatal(err)
		}
		certutil("-A", "-n", nick, "-t", trust, "-a", "-i", p)
	}
	add("root", "CT,C,C", env.Root)
	for i, c := range env.PKI.Chain(cert) {
		if !c.Equal(env.Root) {
			add("ca"+string(rune('1'+i)), ",,", c)
		}
	}
	add("signer", "u,u,u", cert)
	return dir
}
