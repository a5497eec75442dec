package cades

import (
	"crypto"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/vula-eid/vula/internal/signing"
)

// The parsers alone, without a timestamp authority in the loop, so the fuzzer runs fast: CMS
// from outside (parseCMS) and tokens from a TSA (checkImprint) never panic, and a CMS that
// parses has a signature value and a known digest algorithm.
func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join("testdata", "*"))
	if len(seeds) == 0 {
		f.Fatal("no seeds in testdata/")
	}
	for _, p := range seeds {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, der []byte) {
		p, err := parseCMS(der)
		if err != nil {
			if !errors.Is(err, signing.ErrInvalid) && !errors.Is(err, signing.ErrUnsupported) {
				t.Fatalf("error not ErrInvalid/ErrUnsupported: %v", err)
			}
		} else if p.hash == 0 || len(p.head) == 0 || len(p.signerHead) == 0 {
			t.Fatalf("parsed without a digest algorithm or parts: %+v", p)
		}
		_ = checkImprint(der, crypto.SHA256, make([]byte, 32))
	})
}

// The archive timestamp reader a validator runs on untrusted signatures: Archives and each
// Imprint never panic, and an imprint is a digest of the hash asked for.
func FuzzArchives(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join("testdata", "*.p7s"))
	for _, p := range seeds {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, der []byte) {
		archives, err := Archives(der, func(h crypto.Hash) ([]byte, error) { return make([]byte, h.Size()), nil })
		if err != nil {
			return
		}
		for _, a := range archives {
			if d, err := a.Imprint(crypto.SHA256); err == nil && len(d) != 32 {
				t.Fatalf("an imprint of %d bytes", len(d))
			}
		}
	})
}
