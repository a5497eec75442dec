package validation_test

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vula-eid/vula/internal/certs"
	"github.com/vula-eid/vula/internal/signing"
	"github.com/vula-eid/vula/internal/signing/pades"
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
			doc := nssSign(t, nss, signingtest.PDF("signed by NSS"), tc.args...)
			// The test is about BER: the ContentInfo's SEQUENCE has an indefinite length (30 80).
			if m := regexp.MustCompile(`/Contents\s*<([0-9A-Fa-f]{4})`).FindSubmatch(doc); m == nil || !strings.EqualFold(string(m[1]), "3080") {
				t.Fatalf("pdfsig wrote no BER CMS (starts %q); the test checks nothing", m)
			}
			out := filepath.Join(t.TempDir(), "nss.pdf")
			if err := os.WriteFile(out, doc, 0o600); err != nil {
				t.Fatal(err)
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

// nssSign signs doc with pdfsig -add-signature and the key of nssSigner.
func nssSign(t *testing.T, nss string, doc []byte, args ...string) []byte {
	t.Helper()
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in.pdf"), filepath.Join(dir, "out.pdf")
	if err := os.WriteFile(in, doc, 0o600); err != nil {
		t.Fatal(err)
	}
	args = append([]string{"-nssdir", "sql:" + nss, "-add-signature", "-nick", "signer", "-reason", "BER"}, args...)
	// pdfsig 22.12 signs twice, the first time to size the placeholder; with an ECDSA key the
	// second signature is now and then a byte longer and it fails "unable update signature".
	// An RSA signature has one length.
	if msg, err := exec.Command("pdfsig", append(args, in, out)...).CombinedOutput(); err != nil {
		t.Fatalf("pdfsig -add-signature: %v\n%s", err, msg)
	}
	signed, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return signed
}

// nssSigner makes an NSS database with an RSA key made by certutil (RSA: see nssSign) and a certificate
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
	certutil("-R", "-s", "CN=NSS Signer", "-k", "rsa", "-g", "2048", "-z", noise, "-o", csrFile)
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

// TestNeedAppearancesCleared: a form with /NeedAppearances true signed first by poppler (which
// keeps the flag) and then by Vula's signer (which clears it, so that poppler does not redraw
// its seal away): the first signature still passes, with the cleared flag reported.
func TestNeedAppearancesCleared(t *testing.T) {
	for _, tool := range []string{"certutil", "pdfsig"} {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Missing(t, tool+" is not installed (test/deps.sh installs it)")
		}
	}
	env := signingtest.New(t, signingtest.Options{})
	form := appendUpdate(t, formPDF("Arta", "100"), map[int]string{
		6: "<< /Fields [7 0 R 8 0 R] /DA (/Helv 0 Tf 0 g) /DR << /Font << /Helv 5 0 R >> >> /NeedAppearances true >>"})
	first := nssSign(t, nssSigner(t, env), form)
	if !bytes.Contains(first[len(form):], []byte("/NeedAppearances true")) {
		t.Fatal("pdfsig dropped /NeedAppearances: the test checks nothing")
	}
	var out bytes.Buffer
	if err := pades.Sign(t.Context(), bytes.NewReader(first), int64(len(first)), &out, env.Seal, pades.Options{Level: signing.LevelB,
		Visible: &pades.Appearance{Page: 1, Rect: [4]float64{72, 400, 300, 460}, Text: "Оверено"}}); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(out.Bytes()[len(first):], []byte("NeedAppearances")) {
		t.Fatal("the seal left /NeedAppearances in the form")
	}
	rep := validate(t, out.Bytes(), validation.Options{TrustAnchors: anchors(env), Fetch: validation.RevocationFetcher{R: env.PKI}})
	expect(t, rep, validation.TotalPassed, "")
	if !laterUpdate(rep.Signatures[0], "/NeedAppearances was cleared") {
		t.Errorf("the cleared flag is not reported\n%s", rep.Text())
	}
	// Setting the flag after a signature is a change to the signed form.
	set := appendUpdate(t, out.Bytes(), map[int]string{6: strings.Replace(latestObject(t, out.Bytes(), "6"), "<<", "<< /NeedAppearances true", 1)})
	expectFailed(t, validate(t, set, validation.Options{TrustAnchors: anchors(env), Fetch: validation.RevocationFetcher{R: env.PKI}}),
		"/NeedAppearances was set")
}
