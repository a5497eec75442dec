package signingtest_test

import (
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"os/exec"
	"testing"

	"github.com/vula-eid/vula/internal/signing"
	"github.com/vula-eid/vula/internal/signing/signingtest"
)

// The in-process TSA gives tokens openssl accepts, and Collect finds every piece of validation
// data for a seal and a TSA chain.
func TestEnv(t *testing.T) {
	e := signingtest.New(t, signingtest.Options{})
	ctx := context.Background()
	d := sha256.Sum256([]byte("x"))
	tok, err := e.TSA.Timestamp(ctx, crypto.SHA256, d[:])
	if err != nil {
		t.Fatal(err)
	}
	tc, err := signing.TokenCerts(tok)
	if err != nil {
		t.Fatal(err)
	}
	vd, err := signing.Collect(ctx, e.PKI, append([]*x509.Certificate{e.Seal.Cert}, e.Seal.Chain...), tc)
	if err != nil {
		t.Fatal(err)
	}
	// The seal, seal-ca, root, the seal-ca responder and the TSA; OCSP on the seal and the TSA;
	// the root's CRL over seal-ca (shared by both chains).
	if len(vd.Certs) != 5 || len(vd.OCSPs) != 2 || len(vd.CRLs) != 1 {
		t.Fatalf("validation data: %d certificates, %d OCSP, %d CRL; want 5, 2, 1", len(vd.Certs), len(vd.OCSPs), len(vd.CRLs))
	}
	if !tc[0].Equal(e.PKI.TSA().Cert) {
		t.Fatalf("TokenCerts does not start with the TSA: %s", tc[0].Subject)
	}
	e.Revoke(t, e.Seal)
	if _, err := signing.Collect(ctx, e.PKI, append([]*x509.Certificate{e.Seal.Cert}, e.Seal.Chain...)); !errors.Is(err, signing.ErrRevoked) {
		t.Fatalf("Collect on a revoked seal: %v, want ErrRevoked", err)
	}
	p := e.WriteFile(t, "tok.der", tok)
	out, err := exec.Command("openssl", "ts", "-verify", "-token_in", "-in", p, "-digest", fmt.Sprintf("%x", d), "-CAfile", e.AllPEM).CombinedOutput()
	if err != nil {
		t.Fatal(string(out))
	}
}
