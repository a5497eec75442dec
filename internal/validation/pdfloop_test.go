package validation_test

import (
	"bytes"
	"compress/zlib"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
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

// TestValidateHugePredictorColumns: a DSS stream whose PNG predictor claims 2^40 columns made
// digitorus/pdf allocate 1+Columns bytes, a fatal out-of-memory of the whole process through
// POST /api/v1/validate. Now the stream is refused and the document still gets its answer.
func TestValidateHugePredictorColumns(t *testing.T) {
	var z bytes.Buffer
	zw := zlib.NewWriter(&z)
	zw.Write([]byte{2, 0, 0, 0, 0})
	zw.Close()
	objs := []string{
		"<< /Type /Catalog /Pages 2 0 R /DSS 4 0 R >>",
		"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
		"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 10 10] >>",
		"<< /Type /DSS /OCSPs [5 0 R] /CRLs [5 0 R] /Certs [5 0 R] >>",
		fmt.Sprintf("<< /Length %d /Filter /FlateDecode /DecodeParms << /Predictor 12 /Columns 1099511627776 >> >>\nstream\n%s\nendstream", z.Len(), z.String()),
	}
	var b bytes.Buffer
	b.WriteString("%PDF-1.7\n")
	offs := make([]int, len(objs))
	for i, o := range objs {
		offs[i] = b.Len()
		fmt.Fprintf(&b, "%d 0 obj\n%s\nendobj\n", i+1, o)
	}
	xref := b.Len()
	fmt.Fprintf(&b, "xref\n0 %d\n0000000000 65535 f\r\n", len(objs)+1)
	for _, off := range offs {
		fmt.Fprintf(&b, "%010d 00000 n\r\n", off)
	}
	fmt.Fprintf(&b, "trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n", len(objs)+1, xref)
	doc := b.Bytes()
	_, err := validation.Validate(context.Background(), bytes.NewReader(doc), int64(len(doc)),
		validation.Options{TrustAnchors: []*x509.Certificate{{Raw: []byte{0x30, 0}}}})
	if !errors.Is(err, signing.ErrInvalid) {
		t.Fatalf("got %v, want ErrInvalid (no signature)", err)
	}
}
