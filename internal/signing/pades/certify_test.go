package pades_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/digitorus/pdfsign/sign"

	"github.com/vula-eid/vula/internal/signing"
	"github.com/vula-eid/vula/internal/signing/pades"
	"github.com/vula-eid/vula/internal/signing/signingtest"
)

// TestCertifyFirst: CertifyFirst certifies a document no one signed and adds an approval
// signature to a signed one; the document keeps one certification.
func TestCertifyFirst(t *testing.T) {
	env := signingtest.New(t, signingtest.Options{})
	first := signBytes(t, env.Official, signingtest.PDF("three signers"), pades.Options{CertifyFirst: true})
	second := signBytes(t, env.Seal, first, pades.Options{CertifyFirst: true})
	third := signBytes(t, env.Official, second, pades.Options{CertifyFirst: true})
	if n := bytes.Count(third, []byte("/TransformMethod /DocMDP")); n != 1 {
		t.Fatalf("%d certifications, want 1", n)
	}
	if n := len(signatures(t, third)); n != 3 {
		t.Fatalf("%d signature fields, want 3", n)
	}
}

// TestCertifiedBySignatureReference: a document certified with DocMDP P=1 by a signer that
// writes the DocMDP transform only in the signature's /Reference, with no /Perms in the
// catalog (digitorus/pdfsign), permits no further signature: Sign refuses it with
// ErrUnsupported rather than breaking the certification.
func TestCertifiedBySignatureReference(t *testing.T) {
	env := signingtest.New(t, signingtest.Options{})
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in.pdf"), filepath.Join(dir, "p1.pdf")
	if err := os.WriteFile(in, signingtest.PDF("no changes"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := sign.SignFile(in, out, sign.SignData{Signer: env.Seal.Key, Certificate: env.Seal.Cert, DigestAlgorithm: crypto.SHA256,
		CertificateChains: [][]*x509.Certificate{append([]*x509.Certificate{env.Seal.Cert}, env.Seal.Chain...)},
		Signature:         sign.SignDataSignature{CertType: sign.CertificationSignature, DocMDPPerm: sign.DoNotAllowAnyChangesPerms}}); err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(doc, []byte("/Perms")) {
		t.Fatal("pdfsign wrote /Perms: this test no longer tests a certification by /Reference only")
	}
	for _, opts := range []pades.Options{{}, {CertifyFirst: true}} {
		err := pades.Sign(context.Background(), bytes.NewReader(doc), int64(len(doc)), &bytes.Buffer{}, env.Official, opts)
		if !errors.Is(err, signing.ErrUnsupported) {
			t.Fatalf("%+v: %v, want ErrUnsupported", opts, err)
		}
	}
}
