package validation_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/vula-eid/vula/internal/signing"
	"github.com/vula-eid/vula/internal/validation"
)

// TestValidateRefusesLooping: the PDFs on which digitorus/pdf loops, recurses or allocates
// without end (internal/pdfsafe names the place of each; before pdfsafe, each kept
// POST /api/v1/validate's goroutine spinning or crashed the process) are refused at once:
// ErrInvalid, or ErrUnsupported for those that name /Encrypt. They are also FuzzValidate's
// corpus (testdata/fuzz/FuzzValidate/loop-*), which go test replays.
func TestValidateRefusesLooping(t *testing.T) {
	files, _ := filepath.Glob("testdata/fuzz/FuzzValidate/loop-*")
	if len(files) < 13 {
		t.Fatalf("%d loop-* inputs in the corpus", len(files))
	}
	docs := map[string][]byte{
		// digitorus/pdf looks for %%EOF in quadratic time: over 20 s for 1 MiB.
		"no %%EOF": append([]byte("%PDF-1.4\n"), bytes.Repeat([]byte("0"), 1<<20)...),
	}
	for _, f := range files {
		docs[filepath.Base(f)] = corpusBytes(t, f)
	}
	for name, doc := range docs {
		t.Run(name, func(t *testing.T) {
			_, err := validation.Validate(context.Background(), bytes.NewReader(doc), int64(len(doc)),
				validation.Options{TrustAnchors: []*x509.Certificate{{Raw: []byte{0x30, 0}}}, MaxSize: 2 << 20})
			want := signing.ErrInvalid
			if strings.Contains(name, "encr") {
				want = signing.ErrUnsupported
			}
			if !errors.Is(err, want) {
				t.Errorf("got %v, want %v", err, want)
			}
			t.Log(err)
		})
	}
}

// corpusBytes reads the []byte of a one-argument fuzz corpus file.
func corpusBytes(t *testing.T, path string) []byte {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lit := strings.TrimSuffix(strings.TrimSpace(strings.TrimPrefix(string(b), "go test fuzz v1\n[]byte(")), ")")
	s, err := strconv.Unquote(lit)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return []byte(s)
}
