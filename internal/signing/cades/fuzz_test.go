package cades_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/vula-eid/vula/internal/signing"
	"github.com/vula-eid/vula/internal/signing/cades"
	"github.com/vula-eid/vula/internal/signing/signingtest"
)

// AddTimestamp parses CMS from outside (a PDF's /Contents, an uploaded .p7s): whatever it is
// given, it returns a B-T signature whose token openssl-style parsing finds, or ErrInvalid /
// ErrUnsupported, and never panics.
func FuzzAddTimestamp(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join("testdata", "*"))
	for _, p := range seeds {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	if len(seeds) == 0 {
		f.Fatal("no seeds in testdata/")
	}
	e := signingtest.New(f, signingtest.Options{})
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, cms []byte) {
		out, err := cades.AddTimestamp(ctx, cms, e.TSA)
		if err != nil {
			if !errors.Is(err, signing.ErrInvalid) && !errors.Is(err, signing.ErrUnsupported) {
				t.Fatalf("error not ErrInvalid/ErrUnsupported: %v", err)
			}
			return
		}
		// What was accepted got a timestamp, and a second one is refused.
		if _, err := cades.AddTimestamp(ctx, out, e.TSA); !errors.Is(err, signing.ErrInvalid) {
			t.Fatalf("a second timestamp on the output: %v", err)
		}
	})
}
