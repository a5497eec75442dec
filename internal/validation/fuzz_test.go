package validation_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vula-eid/vula/internal/signing"
	"github.com/vula-eid/vula/internal/signing/pades"
	"github.com/vula-eid/vula/internal/signing/signingtest"
	"github.com/vula-eid/vula/internal/validation"
)

var update = flag.Bool("update", false, "rewrite the fuzz seeds in testdata/")

// TestSeeds writes the fuzz seeds with -update: Vula's PAdES at B-B and B-LTA, a certified form
// filled in, a CAdES and a timestamp reply from openssl. Without -update it checks that they
// are there.
func TestSeeds(t *testing.T) {
	if !*update {
		m, _ := filepath.Glob("testdata/seed-*")
		if len(m) < 4 {
			t.Fatalf("testdata has %d seeds; run go test -run TestSeeds -update", len(m))
		}
		return
	}
	env := signingtest.New(t, signingtest.Options{})
	write := func(name string, b []byte) {
		if err := os.WriteFile(filepath.Join("testdata", name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("seed-bb.pdf", signPDF(t, env, env.Seal, signingtest.PDF("seed"), signing.LevelB))
	write("seed-blta.pdf", signPDF(t, env, env.Seal, signingtest.PDF("seed"), signing.LevelLTA))
	// A certified form filled in afterwards: the DocMDP/FieldMDP comparison's input.
	var cert bytes.Buffer
	form := formPDF("Arta", "100")
	if err := pades.Sign(context.Background(), bytes.NewReader(form), int64(len(form)), &cert, env.Seal, pades.Options{Certify: true}); err != nil {
		t.Fatal(err)
	}
	write("seed-form-filled.pdf", fillIn(t, cert.Bytes(), 7, "Arta Krasniqi", 50))
	p := newOpenSSLPKI(t)
	if err := os.WriteFile(p.path("c.txt"), []byte("seed\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p.run("cms", "-sign", "-binary", "-cades", "-in", "c.txt", "-signer", "leaf.pem", "-inkey", "leaf.key", "-outform", "DER", "-out", "s.der")
	p.run("ts", "-query", "-data", "c.txt", "-sha256", "-cert", "-out", "q.tsq")
	p.run("ts", "-reply", "-config", "tsa.cnf", "-queryfile", "q.tsq", "-out", "r.tsr")
	write("seed-cades.der", p.read("s.der"))
	write("seed-reply.tsr", p.read("r.tsr"))
}

// FuzzValidate feeds mutated documents to Validate: it must return a report or an error
// wrapping signing.ErrInvalid / ErrUnsupported / ErrTooLarge, never panic or hang.
func FuzzValidate(f *testing.F) {
	shortMinimize(f)
	seeds, _ := filepath.Glob("testdata/seed-*")
	var anchor *x509.Certificate
	for _, s := range seeds {
		b, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("%PDF-1.7\n"))
	// Any certificate will do as the anchor: the fuzzer looks for crashes, not verdicts.
	anchor = &x509.Certificate{Raw: []byte{0x30, 0}}
	when := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, doc []byte) {
		opts := validation.Options{TrustAnchors: []*x509.Certificate{anchor}, Time: func() time.Time { return when },
			Content: bytes.NewReader([]byte("seed\n")), ContentSize: 5, MaxSize: 1 << 20}
		rep, err := validation.Validate(context.Background(), bytes.NewReader(doc), int64(len(doc)), opts)
		if err != nil {
			if !errors.Is(err, signing.ErrInvalid) && !errors.Is(err, signing.ErrUnsupported) && !errors.Is(err, signing.ErrTooLarge) {
				t.Fatalf("an error of no kind: %v", err)
			}
			return
		}
		if rep.Indication == validation.TotalPassed {
			t.Fatalf("passed with a bogus anchor:\n%s", rep.Text())
		}
		if _, err := json.Marshal(rep); err != nil {
			t.Fatal(err)
		}
		_ = rep.Text()
	})
}

// shortMinimize sets -test.fuzzminimizetime to 1s unless the command line set it: Go's
// minimizer is quadratic in the input's length, and on these 1-24 KB seeds the default minute
// per new input left a one-minute run with a dozen executions.
func shortMinimize(f *testing.F) {
	set := false
	flag.Visit(func(fl *flag.Flag) { set = set || fl.Name == "test.fuzzminimizetime" })
	if !set {
		if err := flag.Set("test.fuzzminimizetime", "1s"); err != nil {
			f.Fatal(err)
		}
	}
}
