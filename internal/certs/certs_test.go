package certs

import (
	"context"
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vula-eid/vula/hsm"
	"github.com/vula-eid/vula/hsm/software"
)

var pol = Policy{BaseURL: "http://127.0.0.1:8080", PolicyOIDs: []asn1.ObjectIdentifier{{1, 3, 6, 1, 4, 1, 99999, 1, 1}}, PDSURL: "https://vula.example/pds/en"}

type hierarchy struct {
	root, person, seal *Issuer
	keys               hsm.Manager
	linter             *Linter
}

func newKey(t *testing.T, m hsm.Manager, label string, alg hsm.Algorithm, p hsm.Purpose) crypto.Signer {
	t.Helper()
	ctx := context.Background()
	k, err := m.CreateKey(ctx, hsm.KeySpec{Label: label, Algorithm: alg, Purpose: p})
	if err != nil {
		t.Fatal(err)
	}
	s, err := m.Signer(ctx, k.URI, p)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newHierarchy(t *testing.T) hierarchy {
	t.Helper()
	dir := t.TempDir()
	kf := filepath.Join(dir, "k")
	software.CreateKeyFile(kf)
	m, err := software.Open(context.Background(), software.Config{Dir: filepath.Join(dir, "keys"), KeyFile: kf}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	l, err := NewLinter()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	rootKey := newKey(t, m, "root", hsm.ECP384, hsm.PurposeCA)
	rootCert, err := Issue(Request{Profile: Root, Subject: pkix.Name{Country: []string{"XK"}, Organization: []string{"Vula"}, CommonName: "Vula Root CA"},
		PublicKey: rootKey.Public(), NotBefore: now, NotAfter: now.AddDate(20, 0, 0)}, nil, rootKey, pol, l)
	if err != nil {
		t.Fatal(err)
	}
	h := hierarchy{root: &Issuer{Name: "root", Cert: rootCert, Signer: rootKey}, keys: m, linter: l}
	for _, ca := range []struct {
		name string
		dst  **Issuer
	}{{"person-ca", &h.person}, {"seal-ca", &h.seal}} {
		k := newKey(t, m, ca.name, hsm.ECP384, hsm.PurposeCA)
		c, err := Issue(Request{Profile: IssuingCA, Subject: pkix.Name{Country: []string{"XK"}, Organization: []string{"Vula"}, CommonName: "Vula " + ca.name},
			PublicKey: k.Public(), NotBefore: now, NotAfter: now.AddDate(10, 0, 0)}, h.root, nil, pol, l)
		if err != nil {
			t.Fatalf("%s: %v", ca.name, err)
		}
		*ca.dst = &Issuer{Name: ca.name, Cert: c, Signer: k}
	}
	return h
}

func writePEM(t *testing.T, dir, name string, certs ...*x509.Certificate) string {
	t.Helper()
	var b strings.Builder
	for _, c := range certs {
		pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	p := filepath.Join(dir, name)
	os.WriteFile(p, []byte(b.String()), 0o600)
	return p
}

// TestProfilesVerifyWithOpenSSL issues one certificate of each profile and has openssl, not our
// code, verify the chain and the purpose, and print what the extensions say.
func TestProfilesVerifyWithOpenSSL(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Fatal("openssl is needed (test/deps.sh installs it)")
	}
	h := newHierarchy(t)
	now := time.Now()
	dir := t.TempDir()
	rootPEM := writePEM(t, dir, "root.pem", h.root.Cert)
	for _, tc := range []struct {
		name    string
		req     Request
		issuer  *Issuer
		purpose string // openssl verify -purpose
		want    []string
	}{
		{"natural person", Request{Profile: NaturalPerson, Subject: NaturalPersonName("Arta", "Krasniqi", "1234567890", "XK")}, h.person, "",
			[]string{"serialNumber = PNOXK-1234567890", "Non Repudiation", "qcStatements:", "OCSP - URI:http://127.0.0.1:8080/pki/ocsp", "URI:http://127.0.0.1:8080/pki/person-ca.crl", "CA Issuers - URI:http://127.0.0.1:8080/pki/person-ca.crt",
				"X509v3 Certificate Policies", "Policy: 1.3.6.1.4.1.99999.1.1"}},
		{"legal person", Request{Profile: LegalPerson, Subject: LegalPersonName("Tax Administration", "810000001", "XK")}, h.seal, "",
			[]string{"organizationIdentifier = NTRXK-810000001", "Non Repudiation", "qcStatements:", "Policy: 1.3.6.1.4.1.99999.1.1"}},
		{"timestamping unit", Request{Profile: TSA, Subject: pkix.Name{Country: []string{"XK"}, Organization: []string{"Vula"}, CommonName: "Vula TSU 1"}}, h.seal, "timestampsign",
			[]string{"X509v3 Extended Key Usage: critical", "Time Stamping", "Digital Signature"}},
		{"OCSP responder", Request{Profile: OCSPResponder, Subject: pkix.Name{Country: []string{"XK"}, Organization: []string{"Vula"}, CommonName: "Vula person-ca OCSP"}}, h.person, "ocsphelper",
			[]string{"OCSP Signing", "OCSP No Check"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := newKey(t, h.keys, strings.ReplaceAll(tc.name, " ", "-"), hsm.ECP256, hsm.PurposeTSA)
			tc.req.PublicKey, tc.req.NotBefore, tc.req.NotAfter = k.Public(), now, now.AddDate(2, 0, 0)
			c, err := Issue(tc.req, tc.issuer, nil, pol, h.linter)
			if err != nil {
				t.Fatal(err)
			}
			leaf := writePEM(t, dir, "leaf.pem", c)
			args := []string{"verify", "-CAfile", rootPEM, "-untrusted", writePEM(t, dir, "ca.pem", tc.issuer.Cert)}
			if tc.purpose != "" {
				args = append(args, "-purpose", tc.purpose)
			}
			out, err := exec.Command("openssl", append(args, leaf)...).CombinedOutput()
			if err != nil || !strings.Contains(string(out), ": OK") {
				t.Fatalf("openssl verify: %v\n%s", err, out)
			}
			text, err := exec.Command("openssl", "x509", "-in", leaf, "-noout", "-text").CombinedOutput()
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				if !strings.Contains(string(text), w) {
					t.Errorf("openssl x509 -text lacks %q:\n%s", w, text)
				}
			}
			if tc.req.Profile == TSA && strings.Contains(string(text), "Certificate Sign") {
				t.Error("a TSA certificate carries keyCertSign")
			}
		})
	}
}

// TestLintBlocks shows that a certificate zlint finds wrong is never signed by the CA key.
func TestLintBlocks(t *testing.T) {
	h := newHierarchy(t)
	k := newKey(t, h.keys, "leaf", hsm.ECP256, hsm.PurposeTSA)
	now := time.Now()
	// An empty subject and no subjectAltName break RFC 5280.
	_, err := Issue(Request{Profile: NaturalPerson, Subject: pkix.Name{}, PublicKey: k.Public(), NotBefore: now, NotAfter: now.AddDate(1, 0, 0)}, h.person, nil, pol, h.linter)
	if err == nil || !strings.Contains(err.Error(), "lint refused") {
		t.Fatalf("err = %v, want a lint refusal", err)
	}
	t.Log(err)
}
