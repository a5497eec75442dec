package pades_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/vula-eid/vula/internal/signing"
	"github.com/vula-eid/vula/internal/signing/pades"
	"github.com/vula-eid/vula/internal/signing/signingtest"
)

// TestSignRefusesLooping: the PDFs on which digitorus/pdf loops, recurses or allocates without
// end (internal/pdfsafe names the place of each) are refused at once, with nothing signed or
// written: ErrInvalid, or ErrUnsupported for those that name /Encrypt. They are also
// FuzzSign's corpus (testdata/fuzz/FuzzSign/loop-*), which go test replays.
func TestSignRefusesLooping(t *testing.T) {
	files, _ := filepath.Glob("testdata/fuzz/FuzzSign/loop-*")
	if len(files) < 13 {
		t.Fatalf("%d loop-* inputs in the corpus", len(files))
	}
	docs := map[string][]byte{
		// digitorus/pdf looks for %%EOF in quadratic time: over 20 s for 1 MiB.
		"no %%EOF": append([]byte("%PDF-1.4\n"), bytes.Repeat([]byte("0"), 1<<20)...),
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		lit := strings.TrimSuffix(strings.TrimSpace(strings.TrimPrefix(string(b), "go test fuzz v1\n[]byte(")), ")")
		s, err := strconv.Unquote(lit)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		docs[filepath.Base(f)] = []byte(s)
	}
	env := signingtest.New(t, signingtest.Options{})
	for name, doc := range docs {
		t.Run(name, func(t *testing.T) {
			var w bytes.Buffer
			err := pades.Sign(context.Background(), bytes.NewReader(doc), int64(len(doc)), &w, env.Seal, pades.Options{Level: signing.LevelB})
			want := signing.ErrInvalid
			if strings.Contains(name, "encr") {
				want = signing.ErrUnsupported
			}
			if !errors.Is(err, want) || w.Len() != 0 {
				t.Errorf("got %v (%d bytes written), want %v", err, w.Len(), want)
			}
		})
	}
}
