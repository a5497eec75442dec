package csc

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/digitorus/pdfsign/sign"

	"github.com/vula-eid/vula/hsm"
	"github.com/vula-eid/vula/internal/certs"
	"github.com/vula-eid/vula/internal/signing"
	"github.com/vula-eid/vula/internal/signing/signingtest"
	"github.com/vula-eid/vula/internal/validation"
)

// TestSignDocThreeOfficials: three officials sign one PDF in turn through signDoc, each with
// the envelope property left to its default (CSC: Certification). The first signature
// certifies (DocMDP P=2, which permits further signatures); the second and third are approval
// signatures in new fields, each an incremental update of what the previous official returned.
// pdfsig finds three valid signatures (RSA keys: pdfsig's ECDSA check is unreliable), and
// Vula's validator passes all three with the later revisions listed as permitted.
func TestSignDocThreeOfficials(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	s := e.docReplica(t)
	s.cfg.Algorithm = hsm.RSA3072
	officials := []official{e.official(t, s, "1100000011"), e.official(t, s, "1100000012"), e.official(t, s, "1100000013")}
	doc := signingtest.PDF("Vendim i këshillit komunal")
	for i, o := range officials {
		sad := e.authorizeDocs(t, s, o, doc)
		res, err := s.SignDoc(ctx, o.sub, DocRequest{CredentialID: o.cred.ID, SAD: sad, HashOID: oidSHA256,
			Documents: []Document{{Data: doc, Format: FormatPAdES, Level: signing.LevelT}}})
		if err != nil {
			t.Fatalf("official %d: %s", i+1, cscCode(err))
		}
		if !bytes.HasPrefix(res.Documents[0], doc) {
			t.Fatalf("official %d: the output is not an incremental update of the input", i+1)
		}
		doc = res.Documents[0]
	}
	if n := bytes.Count(doc, []byte("/TransformMethod /DocMDP")); n != 1 {
		t.Errorf("%d certification signatures, want the first only", n)
	}

	root, _ := e.pki.Certificate(certs.NameRoot)
	rep, err := validation.Validate(ctx, bytes.NewReader(doc), int64(len(doc)), validation.Options{TrustAnchors: []*x509.Certificate{root},
		Fetch: validation.RevocationFetcher{R: e.pki}, Time: e.now})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Indication != validation.TotalPassed || len(rep.Signatures) != 3 {
		t.Fatalf("%s\n%s", rep.Indication, rep.Text())
	}
	for i, sig := range rep.Signatures {
		if sig.Indication != validation.TotalPassed || sig.Signer == nil || sig.Signer.Serial != officials[i].cred.Cert.SerialNumber.Text(16) {
			t.Errorf("signature %d: %s by %+v\n%s", i+1, sig.Indication, sig.Signer, rep.Text())
		}
		if want := 2 - i; len(sig.LaterUpdates) < want {
			t.Errorf("signature %d: later updates %v, want at least %d", i+1, sig.LaterUpdates, want)
		}
	}

	if _, err := exec.LookPath("pdfsig"); err != nil {
		t.Skip("pdfsig is not installed (test/deps.sh installs it)")
	}
	file := filepath.Join(t.TempDir(), "signed.pdf")
	if err := os.WriteFile(file, doc, 0o600); err != nil {
		t.Fatal(err)
	}
	out, _ := exec.Command("pdfsig", file).CombinedOutput()
	if n := strings.Count(string(out), "Signature is Valid."); n != 3 {
		t.Fatalf("pdfsig: %d valid signatures, want 3\n%s", n, out)
	}
}

// TestSignDocCertifiedNoChanges: a PDF certified with DocMDP P=1 (by another tool) permits no
// further signature: signDoc refuses it with a 400 that says why, and the key signs nothing.
func TestSignDocCertifiedNoChanges(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	s := e.docReplica(t)
	o := e.official(t, s, "1100000021")
	certifier := e.official(t, s, "1100000022")
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in.pdf"), filepath.Join(dir, "p1.pdf")
	if err := os.WriteFile(in, signingtest.PDF("certified, no changes"), 0o600); err != nil {
		t.Fatal(err)
	}
	key, err := e.keys.Signer(ctx, certifier.cred.KeyURI, hsm.SignPurpose(certifier.sub))
	if err != nil {
		t.Fatal(err)
	}
	if err := sign.SignFile(in, out, sign.SignData{Signer: key, Certificate: certifier.cred.Cert, DigestAlgorithm: crypto.SHA256,
		Signature: sign.SignDataSignature{CertType: sign.CertificationSignature, DocMDPPerm: sign.DoNotAllowAnyChangesPerms}}); err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, pack := range []string{"", Revision} {
		sad := e.authorizeDocs(t, s, o, doc)
		_, err = s.SignDoc(ctx, o.sub, DocRequest{CredentialID: o.cred.ID, SAD: sad, HashOID: oidSHA256,
			Documents: []Document{{Data: doc, Format: FormatPAdES, Packaging: pack}}})
		var ce *Error
		if !errors.As(err, &ce) || ce.Status != 400 || !strings.Contains(ce.Description, "DocMDP P=1") {
			t.Fatalf("envelope property %q: %v", pack, cscCode(err))
		}
	}
	if n := e.signDocSignatures(t, o); n != 0 {
		t.Fatalf("%d signatures of the official's key", n)
	}
}
