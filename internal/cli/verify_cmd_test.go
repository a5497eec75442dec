package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/vula-eid/vula/internal/signing"
	"github.com/vula-eid/vula/internal/signing/pades"
	"github.com/vula-eid/vula/internal/signing/signingtest"
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
