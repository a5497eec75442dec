package certs

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	zx509 "github.com/zmap/zcrypto/x509"
	"github.com/zmap/zlint/v3"
	"github.com/zmap/zlint/v3/lint"
	"golang.org/x/crypto/ocsp"

	"github.com/vula-eid/vula/hsm"
	"github.com/vula-eid/vula/internal/testenv"
)

type pkiServer struct {
	a    *Authority
	keys hsm.Manager
	srv  *httptest.Server
	ca   *x509.Certificate
}

func newPKIServer(t testing.TB) pkiServer {
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	a, m, db := openAuthority(t, t.TempDir(), srv.URL)
	t.Cleanup(func() { srv.Close(); db.Close(); m.Close() })
	Handlers{A: a, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}.Register(mux)
	ca, _ := a.Certificate(NamePersonCA)
	return pkiServer{a: a, keys: m, srv: srv, ca: ca}
}

func (p pkiServer) issue(t testing.TB, label string) *x509.Certificate {
	ctx := context.Background()
	k, err := p.keys.CreateKey(ctx, hsm.KeySpec{Label: label, Algorithm: hsm.ECP256, Purpose: hsm.SignPurpose(label)})
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := p.keys.PublicKey(ctx, k.URI)
	now := time.Now()
	c, err := p.a.IssueLeaf(ctx, Request{Profile: NaturalPerson, Subject: NaturalPersonName("A", "B", label, "XK"), PublicKey: pub,
		NotBefore: now, NotAfter: now.AddDate(1, 0, 0)}, k.URI)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (p pkiServer) post(t testing.TB, req []byte) []byte {
	resp, err := http.Post(p.srv.URL+"/pki/ocsp", "application/ocsp-request", bytes.NewReader(req))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return b
}

// TestCaches: the same nonce-less OCSP request gets the same signed bytes, until a revocation;
// the CRL is remade only when a revocation happened.
func TestCaches(t *testing.T) {
	p := newPKIServer(t)
	leaf := p.issue(t, "cache")
	req, err := ocsp.CreateRequest(leaf, p.ca, nil) // no nonce
	if err != nil {
		t.Fatal(err)
	}
	first, second := p.post(t, req), p.post(t, req)
	if !bytes.Equal(first, second) {
		t.Fatal("a nonce-less request was signed afresh")
	}
	crl1, _ := p.a.CRL(context.Background(), NamePersonCA)
	crl2, _ := p.a.CRL(context.Background(), NamePersonCA)
	if !bytes.Equal(crl1, crl2) {
		t.Fatal("the CRL was remade without a revocation")
	}
	if err := p.a.Revoke(context.Background(), NamePersonCA, leaf.SerialNumber, 4); err != nil {
		t.Fatal(err)
	}
	r, err := ocsp.ParseResponseForCert(p.post(t, req), leaf, p.ca)
	if err != nil || r.Status != ocsp.Revoked || r.RevocationReason != 4 {
		t.Fatalf("after revocation: %+v %v", r, err)
	}
	crl3, _ := p.a.CRL(context.Background(), NamePersonCA)
	list, err := x509.ParseRevocationList(crl3)
	if err != nil || len(list.RevokedCertificateEntries) != 1 || list.RevokedCertificateEntries[0].SerialNumber.Cmp(leaf.SerialNumber) != 0 {
		t.Fatalf("CRL after revocation: %v", err)
	}
	// An unknown serial and a CA this responder does not serve.
	other := *leaf
	other.SerialNumber = other.SerialNumber.Add(other.SerialNumber, other.SerialNumber)
	unk, _ := ocsp.CreateRequest(&other, p.ca, nil)
	if r, err := ocsp.ParseResponseForCert(p.post(t, unk), &other, p.ca); err != nil || r.Status != ocsp.Unknown {
		t.Fatalf("unknown serial: %+v %v", r, err)
	}
	root, _ := p.a.Certificate(NameRoot)
	foreign, _ := ocsp.CreateRequest(leaf, root, nil)
	if _, err := ocsp.ParseResponse(p.post(t, foreign), nil); err == nil || err.Error() != "ocsp: error from server: unauthorized" {
		t.Fatalf("foreign issuer: %v", err)
	}
}

// BenchmarkOCSP measures OCSP answers per second over HTTP on loopback: cached (no nonce) and
// uncached (the cache emptied before every request, so every answer is signed, as for requests
// with a nonce).
func BenchmarkOCSP(b *testing.B) {
	p := newPKIServer(b)
	leaf := p.issue(b, "bench")
	plain, _ := ocsp.CreateRequest(leaf, p.ca, nil)
	for _, mode := range []string{"cached", "uncached"} {
		b.Run(mode, func(b *testing.B) {
			testenv.Parallel(b, 8, "answers/s", func(int) error {
				if mode == "uncached" {
					p.a.mu.Lock()
					clear(p.a.ocsp)
					p.a.mu.Unlock()
				}
				if len(p.post(b, plain)) < 100 {
					return fmt.Errorf("short answer")
				}
				return nil
			})
		})
	}
}

// BenchmarkIssue measures certificates issued per second (lint included).
func BenchmarkIssue(b *testing.B) {
	p := newPKIServer(b)
	ctx := context.Background()
	k, _ := p.keys.CreateKey(ctx, hsm.KeySpec{Label: "subject", Algorithm: hsm.ECP256, Purpose: hsm.SignPurpose("s")})
	pub, _ := p.keys.PublicKey(ctx, k.URI)
	now := time.Now()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := p.a.IssueLeaf(ctx, Request{Profile: NaturalPerson, Subject: NaturalPersonName("A", "B", fmt.Sprint(i), "XK"),
			PublicKey: pub, NotBefore: now, NotAfter: now.AddDate(1, 0, 0)}, k.URI); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "certs/s")
}

// TestZlintOnIssued lints the real certificates (not the pre-signing copies): the whole
// hierarchy and a leaf of each kind.
func TestZlintOnIssued(t *testing.T) {
	p := newPKIServer(t)
	var all []*x509.Certificate
	for _, n := range p.a.Names() {
		c, _ := p.a.Certificate(n)
		all = append(all, c)
	}
	all = append(all, p.issue(t, "zlint"))
	for _, c := range all {
		zc, err := zx509.ParseCertificate(c.Raw)
		if err != nil {
			t.Fatal(err)
		}
		res := zlint.LintCertificateEx(zc, p.a.linter.registry)
		for name, r := range res.Results {
			if r.Status == lint.Error || r.Status == lint.Fatal {
				t.Errorf("%s: %s: %s", c.Subject.CommonName, name, r.Details)
			}
		}
	}
}
