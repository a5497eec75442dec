package certs

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vula-eid/vula/hsm"
	"github.com/vula-eid/vula/hsm/software"
	"github.com/vula-eid/vula/internal/store/sqlstore"
	"github.com/vula-eid/vula/internal/testenv"
)

func openAuthority(t testing.TB, dir string, baseURL string) (*Authority, hsm.Manager, *sqlstore.DB) {
	t.Helper()
	ctx := context.Background()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	kf := filepath.Join(dir, "k")
	software.CreateKeyFile(kf)
	m, err := software.Open(ctx, software.Config{Dir: filepath.Join(dir, "keys"), KeyFile: kf}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	db, err := sqlstore.Open(ctx, "sqlite:"+filepath.Join(dir, "vula.db"), quiet)
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Policy = pol
	cfg.Policy.BaseURL = baseURL
	a, err := Open(ctx, m, db, cfg, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	return a, m, db
}

func pemFile(t testing.TB, dir, name string, der []byte) string {
	p := filepath.Join(dir, name)
	os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	return p
}

// TestOCSPAndCRLWithOpenSSL runs the PKI behind a real HTTP server and asks openssl: the
// leaf verifies, OCSP says good, then revoked after Revoke, and the CRL lists the serial.
func TestOCSPAndCRLWithOpenSSL(t *testing.T) {
	dir := t.TempDir()
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	defer srv.Close()
	a, m, db := openAuthority(t, dir, srv.URL)
	Handlers{A: a, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}.Register(mux)
	ctx := context.Background()

	k := newKey(t, m, "arta", hsm.ECP256, hsm.SignPurpose("arta"))
	now := time.Now()
	leaf, err := a.IssueLeaf(ctx, Request{Profile: NaturalPerson, Subject: NaturalPersonName("Arta", "Krasniqi", "1234567890", "XK"),
		PublicKey: k.Public(), NotBefore: now, NotAfter: now.AddDate(2, 0, 0)}, "software:object=arta")
	if err != nil {
		t.Fatal(err)
	}
	get := func(path string) []byte {
		resp, err := http.Get(srv.URL + path)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET %s: %v %v", path, err, resp.Status)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return b
	}
	rootPEM := pemFile(t, dir, "root.pem", get("/pki/root.crt"))
	caPEM := pemFile(t, dir, "person-ca.pem", get("/pki/person-ca.crt"))
	leafPEM := pemFile(t, dir, "leaf.pem", leaf.Raw)
	if out, err := exec.Command("openssl", "verify", "-CAfile", rootPEM, "-untrusted", caPEM, leafPEM).CombinedOutput(); err != nil {
		t.Fatalf("openssl verify: %v\n%s", err, out)
	}
	ocspStatus := func() string {
		out, err := exec.Command("openssl", "ocsp", "-issuer", caPEM, "-cert", leafPEM, "-url", srv.URL+"/pki/ocsp",
			"-CAfile", rootPEM, "-resp_text").CombinedOutput()
		if err != nil {
			t.Fatalf("openssl ocsp: %v\n%s", err, out)
		}
		if !strings.Contains(string(out), "Response verify OK") || !strings.Contains(string(out), "OCSP Nonce") {
			t.Fatalf("openssl ocsp did not verify the response or its nonce:\n%s", out)
		}
		return string(out)
	}
	if out := ocspStatus(); !strings.Contains(out, leafPEM+": good") {
		t.Fatalf("before revocation:\n%s", out)
	}
	nssOCSP(t, dir, rootPEM, get("/pki/person-ca.crt"), leaf.Raw)
	if err := a.Revoke(ctx, NamePersonCA, leaf.SerialNumber, 1); err != nil {
		t.Fatal(err)
	}
	if out := ocspStatus(); !strings.Contains(out, leafPEM+": revoked") {
		t.Fatalf("after revocation:\n%s", out)
	}
	crl := filepath.Join(dir, "person-ca.crl")
	os.WriteFile(crl, get("/pki/person-ca.crl"), 0o600)
	out, err := exec.Command("openssl", "crl", "-inform", "DER", "-in", crl, "-noout", "-text").CombinedOutput()
	if err != nil {
		t.Fatalf("openssl crl: %v\n%s", err, out)
	}
	if !strings.Contains(strings.ToUpper(strings.ReplaceAll(string(out), ":", "")), strings.ToUpper(leaf.SerialNumber.Text(16))) ||
		!strings.Contains(string(out), "X509v3 CRL Number") || !strings.Contains(string(out), "Key Compromise") {
		t.Fatalf("CRL does not list the revoked serial %x:\n%s", leaf.SerialNumber, out)
	}
	if o, err := exec.Command("openssl", "crl", "-inform", "DER", "-in", crl, "-noout", "-CAfile", caPEM).CombinedOutput(); err != nil || !strings.Contains(string(o), "verify OK") {
		t.Fatalf("CRL signature: %v %s", err, o)
	}

	// Bad requests get OCSP's own answers, never a 500.
	for name, tc := range map[string]struct {
		body   []byte
		status int
	}{
		"garbage": {[]byte("not an OCSP request"), 200},
		"too big": {make([]byte, maxOCSPRequest+1), http.StatusRequestEntityTooLarge},
		"empty":   {nil, 200},
	} {
		resp, err := http.Post(srv.URL+"/pki/ocsp", "application/ocsp-request", strings.NewReader(string(tc.body)))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("%s: status %d", name, resp.StatusCode)
		}
		if tc.status == 200 && string(b) != string([]byte{0x30, 0x03, 0x0a, 0x01, 0x01}) {
			t.Errorf("%s: not malformedRequest: %x", name, b)
		}
	}
	if resp, _ := http.Get(srv.URL + "/pki/nope.crl"); resp.StatusCode != 404 {
		t.Errorf("unknown CRL: %d", resp.StatusCode)
	}
	db.Close()
	m.Close()

	// A second start loads the same hierarchy instead of making a new one.
	a2, m2, db2 := openAuthority(t, dir, srv.URL)
	defer m2.Close()
	defer db2.Close()
	r1, _ := a.Certificate(NameRoot)
	r2, _ := a2.Certificate(NameRoot)
	if !r1.Equal(r2) {
		t.Fatal("the root changed across a restart")
	}
}

// TestKeyMismatchRefusesStart binds the person CA's certificate to another key in the store:
// the authority must refuse to start rather than sign with a key its certificate does not name.
func TestKeyMismatchRefusesStart(t *testing.T) {
	dir := t.TempDir()
	_, m, db := openAuthority(t, dir, "http://127.0.0.1:8080")
	defer m.Close()
	defer db.Close()
	ctx := context.Background()
	newKey(t, m, "intruder", hsm.ECP384, hsm.PurposeCA)
	const intruderURI = "software:object=intruder"
	recs, _ := db.KeyRecords(ctx)
	for _, r := range recs {
		if r.Owner != NamePersonCA {
			continue
		}
		certs, _ := db.CertificatesByCA(ctx, NameRoot)
		for _, c := range certs {
			if c.KeyURI == r.URI {
				c.Serial, c.KeyURI = c.Serial+"00", intruderURI
				if err := db.CreateCertificate(ctx, c); err != nil {
					t.Fatal(err)
				}
			}
		}
		r.URI = intruderURI
		if err := db.PutKeyRecord(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	cfg := DefaultConfig()
	cfg.Policy = pol
	_, err := Open(ctx, m, db, cfg, time.Now)
	if err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("err = %v, want a refusal", err)
	}
}

// TestRSAHierarchy builds the hierarchy on RSA keys, which the configuration allows.
func TestRSAHierarchy(t *testing.T) {
	dir := t.TempDir()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	kf := filepath.Join(dir, "k")
	software.CreateKeyFile(kf)
	m, err := software.Open(context.Background(), software.Config{Dir: filepath.Join(dir, "keys"), KeyFile: kf}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	db, err := sqlstore.Open(context.Background(), "sqlite:"+filepath.Join(dir, "vula.db"), quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	cfg := DefaultConfig()
	cfg.Policy = pol
	cfg.CAAlgorithm, cfg.ServiceAlgorithm = hsm.RSA3072, hsm.RSA3072
	a, err := Open(context.Background(), m, db, cfg, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	root, _ := a.Certificate(NameRoot)
	tsa, _ := a.Certificate(NameTSA)
	seal, _ := a.Certificate(NameSealCA)
	pool, inter := x509.NewCertPool(), x509.NewCertPool()
	pool.AddCert(root)
	inter.AddCert(seal)
	if _, err := tsa.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageTimeStamping}}); err != nil {
		t.Fatal(err)
	}
}

// nssOCSP has NSS validate leaf for the email-signer usage (what pdfsig asks) with OCSP
// required on the leaf: NSS fetches the answer from the leaf's AIA URL and refuses one whose
// thisUpdate is after its producedAt (SEC_ERROR_OCSP_FUTURE_RESPONSE), which openssl accepts.
func nssOCSP(t *testing.T, dir, rootPEM string, ca, leaf []byte) {
	t.Helper()
	testenv.Need(t, "certutil", "vfychain")
	nss := filepath.Join(dir, "nss")
	os.MkdirAll(nss, 0o700)
	if out, err := exec.Command("certutil", "-N", "-d", "sql:"+nss, "--empty-password").CombinedOutput(); err != nil {
		t.Fatalf("certutil -N: %v\n%s", err, out)
	}
	if out, err := exec.Command("certutil", "-A", "-d", "sql:"+nss, "-n", "root", "-t", "CT,C,C", "-i", rootPEM).CombinedOutput(); err != nil {
		t.Fatalf("certutil -A: %v\n%s", err, out)
	}
	leafDER, caDER := filepath.Join(dir, "leaf.der"), filepath.Join(dir, "ca.der")
	os.WriteFile(leafDER, leaf, 0o600)
	os.WriteFile(caDER, ca, 0o600)
	out, err := exec.Command("vfychain", "-d", "sql:"+nss, "-pp", "-u", "4", "-g", "leaf", "-h", "requireFreshInfo",
		"-m", "ocsp", "-s", "failIfNoInfo", leafDER, caDER).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Chain is good!") {
		t.Fatalf("vfychain with OCSP required: %v\n%s", err, out)
	}
}
