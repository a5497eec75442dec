// Package signingtest gives the signature formats' tests a real PKI to sign with: the
// platform's own CA hierarchy (certs.Authority) on software keys and SQLite in a temporary
// directory, an institution's seal key and certificate under seal-ca, an official's signing
// key and certificate under person-ca, the in-process timestamp authority, and the root as a
// PEM file for openssl, pdfsig and xmlsec1. The PKI is also served over HTTP on 127.0.0.1
// (Env.URL), where the certificates' AIA, CRL and OCSP URLs point, for tools that fetch.
package signingtest

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vula-eid/vula/hsm"
	"github.com/vula-eid/vula/hsm/software"
	"github.com/vula-eid/vula/internal/certs"
	"github.com/vula-eid/vula/internal/signing"
	"github.com/vula-eid/vula/internal/store/sqlstore"
	"github.com/vula-eid/vula/internal/tsa"
)

// Env is a PKI to sign with.
type Env struct {
	Keys hsm.Manager // instrumented: every signature goes to Options.Hook (default: a log hook)
	PKI  *certs.Authority
	DB   *sqlstore.DB
	TSA  *tsa.Responder
	// Seal is an institution's seal (legal person, EC P-256) and Official an official's
	// signing key (natural person, EC P-256).
	Seal, Official signing.Signer
	Root           *x509.Certificate
	// RootPEM, ChainPEM (the issuing CAs) and AllPEM (root + CAs + TSA) are files in Dir.
	RootPEM, ChainPEM, AllPEM string
	Dir                       string
	// URL is where the PKI is served (certs.Handlers: /pki/*.crt, *.crl, OCSP at /pki/ocsp).
	URL string
}

// Options changes what New makes.
type Options struct {
	// Algorithm of the seal and official keys; EC-P256 when empty.
	Algorithm hsm.Algorithm
	// Hook is given every signature of Keys; a log hook when nil.
	Hook hsm.AuditHook
}

// New makes an Env for t; everything is removed when t ends.
func New(t testing.TB, opts Options) *Env {
	t.Helper()
	if opts.Algorithm == "" {
		opts.Algorithm = hsm.ECP256
	}
	ctx := context.Background()
	dir := t.TempDir()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	kf := filepath.Join(dir, "master.key")
	if err := software.CreateKeyFile(kf); err != nil {
		t.Fatal(err)
	}
	raw, err := software.Open(ctx, software.Config{Dir: filepath.Join(dir, "keys"), KeyFile: kf}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := raw.Close(); err != nil {
			t.Errorf("close the keystore: %v", err)
		}
	})
	if opts.Hook == nil {
		opts.Hook = hsm.LogHook{Log: log}
	}
	keys := hsm.Instrument(raw, hsm.NewMetrics(prometheus.NewRegistry()), opts.Hook, time.Now)
	db, err := sqlstore.Open(ctx, "sqlite:"+filepath.Join(dir, "vula.db"), log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("close the database: %v", err)
		}
	})
	// The PKI is served on 127.0.0.1 and the certificates' AIA, CRL and OCSP URLs point there:
	// pdfsig checks the signer's certificate by OCSP at its AIA URL, and a soft failure
	// there leaves it printing "Unknown issue with Certificate" for a trusted chain.
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	cfg := certs.DefaultConfig()
	cfg.Policy = certs.Policy{BaseURL: srv.URL, PolicyOIDs: []asn1.ObjectIdentifier{{1, 3, 6, 1, 4, 1, 99999, 1, 1}},
		PDSURL: "https://vula.example/pds/en"}
	a, err := certs.Open(ctx, keys, db, cfg, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	certs.Handlers{A: a, Log: log}.Register(mux)
	tsu := a.TSA()
	sealCA, _ := a.Certificate(certs.NameSealCA)
	personCA, _ := a.Certificate(certs.NamePersonCA)
	root, _ := a.Certificate(certs.NameRoot)
	responder, err := tsa.New(tsa.Config{Policy: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 2, 1}, Qualified: true,
		Chain: []*x509.Certificate{sealCA}}, tsu.Cert, tsu.Signer, syncedClock{}, log)
	if err != nil {
		t.Fatal(err)
	}
	e := &Env{Keys: keys, PKI: a, DB: db, TSA: responder, Root: root, Dir: dir, URL: srv.URL}
	e.Seal = e.leaf(t, "seal-tax", hsm.SealPurpose("tax"), opts.Algorithm, certs.Request{Profile: certs.LegalPerson,
		Subject: certs.LegalPersonName("Tax Administration", "810000001", "XK")})
	e.Official = e.leaf(t, "sign-arta", hsm.SignPurpose("arta"), opts.Algorithm, certs.Request{Profile: certs.NaturalPerson,
		Subject: certs.NaturalPersonName("Arta", "Krasniqi", "1234567890", "XK")})
	e.RootPEM = writePEM(t, dir, "root.pem", root)
	e.ChainPEM = writePEM(t, dir, "chain.pem", sealCA, personCA)
	e.AllPEM = writePEM(t, dir, "all.pem", root, sealCA, personCA, tsu.Cert)
	return e
}

// NewSeal makes another institution's seal, named name (a certificate's organisation and
// common name), with its key under label.
func (e *Env) NewSeal(t testing.TB, label, name string) signing.Signer {
	t.Helper()
	return e.leaf(t, label, hsm.SealPurpose(label), hsm.ECP256, certs.Request{Profile: certs.LegalPerson,
		Subject: certs.LegalPersonName(name, "810000002", "RS")})
}

// leaf makes a key in the key layer and a certificate for it.
func (e *Env) leaf(t testing.TB, label string, p hsm.Purpose, alg hsm.Algorithm, req certs.Request) signing.Signer {
	t.Helper()
	ctx := context.Background()
	k, err := e.Keys.CreateKey(ctx, hsm.KeySpec{Label: label, Algorithm: alg, Purpose: p})
	if err != nil {
		t.Fatal(err)
	}
	s, err := e.Keys.Signer(ctx, k.URI, p)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	req.PublicKey, req.NotBefore, req.NotAfter = s.Public(), now.Add(-time.Minute), now.AddDate(2, 0, 0)
	c, err := e.PKI.IssueLeaf(ctx, req, k.URI)
	if err != nil {
		t.Fatal(err)
	}
	return signing.Signer{Key: s, Cert: c, Chain: e.PKI.Chain(c)}
}

// Revoke revokes s's certificate at its CA.
func (e *Env) Revoke(t testing.TB, s signing.Signer) {
	t.Helper()
	ca := certs.NameSealCA
	if pc, _ := e.PKI.Certificate(certs.NamePersonCA); pc.Equal(s.Chain[0]) {
		ca = certs.NamePersonCA
	}
	if err := e.PKI.Revoke(context.Background(), ca, s.Cert.SerialNumber, 1); err != nil {
		t.Fatal(err)
	}
}

// WriteFile writes b to a file named name in Dir and returns its path.
func (e *Env) WriteFile(t testing.TB, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(e.Dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func writePEM(t testing.TB, dir, name string, cs ...*x509.Certificate) string {
	t.Helper()
	var b []byte
	for _, c := range cs {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// syncedClock is the system clock, taken as synchronised: the tests check signatures, not the
// host's NTP state (internal/tsa tests the clock checks).
type syncedClock struct{}

func (syncedClock) Now() time.Time               { return time.Now() }
func (syncedClock) Synced(context.Context) error { return nil }

// PDF is a one-page PDF 1.7 showing text, with a classic xref table at the right offsets: the
// smallest input a PDF signer must take.
func PDF(text string) []byte {
	var b bytes.Buffer
	var offs []int
	obj := func(s string) {
		offs = append(offs, b.Len())
		b.WriteString(s)
	}
	b.WriteString("%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
	content := "BT /F1 24 Tf 72 720 Td (" + text + ") Tj ET"
	obj("1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n")
	obj("2 0 obj\n<< /Type /Pages /Kids [3 0 R] /Count 1 >>\nendobj\n")
	obj("3 0 obj\n<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>\nendobj\n")
	obj(fmt.Sprintf("4 0 obj\n<< /Length %d >>\nstream\n%s\nendstream\nendobj\n", len(content), content))
	obj("5 0 obj\n<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>\nendobj\n")
	xref := b.Len()
	b.WriteString("xref\n0 6\n0000000000 65535 f \n")
	for _, o := range offs {
		fmt.Fprintf(&b, "%010d 00000 n \n", o)
	}
	fmt.Fprintf(&b, "trailer\n<< /Size 6 /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n", xref)
	return b.Bytes()
}
