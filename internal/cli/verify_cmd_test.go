package cli

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vula-eid/vula/internal/signing"
	"github.com/vula-eid/vula/internal/signing/pades"
	"github.com/vula-eid/vula/internal/signing/signingtest"
	"github.com/vula-eid/vula/internal/signing/xades"
	"github.com/vula-eid/vula/internal/trustlist"
	tt "github.com/vula-eid/vula/internal/trustlist/trustlisttest"
	"github.com/vula-eid/vula/internal/validation"
)

func TestVerify(t *testing.T) {
	env := signingtest.New(t, signingtest.Options{})
	doc := signingtest.PDF("verify")
	var out bytes.Buffer
	if err := pades.Sign(context.Background(), bytes.NewReader(doc), int64(len(doc)), &out, env.Seal,
		pades.Options{Level: signing.LevelLTA, Timestamper: env.TSA, Revocation: env.PKI}); err != nil {
		t.Fatal(err)
	}
	file := env.WriteFile(t, "signed.pdf", out.Bytes())
	code, text, errs := run(t, nil, "verify", file, "--ca", env.RootPEM)
	if code != 0 || !strings.Contains(text, "Result: TOTAL-PASSED") || !strings.Contains(text, "PAdES-BASELINE B-LTA") ||
		!strings.Contains(text, "signature sig1") || !strings.Contains(text, "document-timestamp doc-ts1") {
		t.Fatalf("%d %q %q", code, text, errs)
	}
	code, js, _ := run(t, nil, "verify", file, "--ca", env.RootPEM, "--output", "json")
	var rep validation.Report
	if code != 0 || json.Unmarshal([]byte(js), &rep) != nil || rep.Signatures[0].Level != signing.LevelLTA {
		t.Fatalf("%d %q", code, js)
	}
	bad := env.WriteFile(t, "bad.pdf", bytes.Replace(out.Bytes(), []byte("(verify) Tj"), []byte("(verifx) Tj"), 1))
	if code, text, _ := run(t, nil, "verify", bad, "--ca", env.RootPEM); code == 0 || !strings.Contains(text, "TOTAL-FAILED / HASH_FAILURE") {
		t.Fatalf("tampered: %d %q", code, text)
	}
	// Without --ca the platform's root comes from the store: this document is not under it.
	data := t.TempDir()
	if code, out, errs := run(t, nil, "pki", "init", "--data-dir", data); code != 0 {
		t.Fatalf("pki init: %d %q %q", code, out, errs)
	}
	if code, text, errs := run(t, nil, "verify", file, "--data-dir", data); code == 0 || !strings.Contains(text, "NO_CERTIFICATE_CHAIN_FOUND") ||
		!strings.Contains(text, "Vula Demo Root CA") {
		t.Fatalf("platform root: %d %q %q", code, text, errs)
	}
	// An empty data directory has no root.
	if code, _, errs := run(t, nil, "verify", file, "--data-dir", t.TempDir()); code == 0 || !strings.Contains(errs, "--ca") {
		t.Fatalf("no anchors: %d %q", code, errs)
	}
}

// TestVerifyTrustedLists: vula verify trusts the trusted lists of the configuration
// (validation.trusted_lists), as the server's validation does: a signature of a foreign QTSP the
// list names is chained to it and qualified by it, with no --ca and no platform root; a list
// that does not verify stops the command.
func TestVerifyTrustedLists(t *testing.T) {
	f := tt.NewQTSP(t)
	dir := t.TempDir()
	tl := tt.SignWithXmlsec(t, tt.ListXML("ZZ", trustlist.TypeEUGeneric, 1, []tt.Service{{
		Name: "ZZ QC", Type: trustlist.TypeCAQC, Status: trustlist.StatusGranted, Since: time.Now().AddDate(-1, 0, 0), Cert: f.CA.Cert,
	}}, nil), f.TLSigner)
	list, signers := filepath.Join(dir, "zz.xml"), filepath.Join(dir, "zz-signers.pem")
	if err := os.WriteFile(list, tl, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(signers, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.TLSigner.Cert.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	signed, err := xades.Sign(context.Background(), strings.NewReader(`<?xml version="1.0"?><doc>Fatura 12</doc>`),
		signing.Signer{Key: f.Signer.Key, Cert: f.Signer.Cert, Chain: []*x509.Certificate{f.CA.Cert}},
		xades.Options{Level: signing.LevelB, Packaging: xades.Enveloped})
	if err != nil {
		t.Fatal(err)
	}
	doc := filepath.Join(dir, "signed.xml")
	if err := os.WriteFile(doc, signed, 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"VULA_VALIDATION_TRUSTED_LISTS=" + list, "VULA_VALIDATION_TRUSTED_LIST_SIGNERS=" + signers}
	_, js, errs := run(t, env, "verify", doc, "--data-dir", t.TempDir(), "--output", "json")
	var rep validation.Report
	if err := json.Unmarshal([]byte(js), &rep); err != nil || len(rep.Signatures) != 1 {
		t.Fatalf("verify with a trusted list: %q %q", js, errs)
	}
	if s := rep.Signatures[0]; s.QualificationSource != "trusted list" || s.TrustedService == nil || s.TrustedService.Territory != "ZZ" {
		t.Fatalf("the configured list was not used: %s", js)
	}
	// A list its signers do not verify stops the command, as it stops the server.
	other := filepath.Join(dir, "other.pem")
	os.WriteFile(other, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.CA.Cert.Raw}), 0o600)
	env[1] = "VULA_VALIDATION_TRUSTED_LIST_SIGNERS=" + other
	if code, _, errs := run(t, env, "verify", doc, "--data-dir", t.TempDir()); code == 0 || !strings.Contains(errs, "validation") {
		t.Fatalf("a list that does not verify: %d %q", code, errs)
	}
}
