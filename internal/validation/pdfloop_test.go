package validation_test

import (
	"bytes"
	"compress/zlib"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"testing"

	"github.com/vula-eid/vula/internal/pdfsafe/pdftest"
	"github.com/vula-eid/vula/internal/signing"
	"github.com/vula-eid/vula/internal/validation"
)

// TestValidateRefusesLooping: the PDFs on which digitorus/pdf loops, recurses or allocates
// without end (internal/pdfsafe names the place of each; before pdfsafe, each kept
// POST /api/v1/validate's goroutine spinning or crashed the process) are refused at once:
// ErrInvalid, or ErrUnsupported for those that name /Encrypt. They are also FuzzValidate's
// corpus (testdata/fuzz/FuzzValidate/loop-*), which go test replays.
func TestValidateRefusesLooping(t *testing.T) {
	for _, in := range pdftest.Hostile(t, "testdata/fuzz/FuzzValidate") {
		t.Run(in.Name, func(t *testing.T) {
			_, err := validation.Validate(context.Background(), bytes.NewReader(in.Data), int64(len(in.Data)),
				validation.Options{TrustAnchors: []*x509.Certificate{{Raw: []byte{0x30, 0}}}, MaxSize: 2 << 20})
			if !errors.Is(err, in.Want) {
				t.Errorf("got %v, want %v", err, in.Want)
			}
		})
	}
}

// TestValidateHugePredictorColumns: a DSS stream whose PNG predictor claims 2^40 columns made
// digitorus/pdf allocate 1+Columns bytes, a fatal out-of-memory of the whole process through
// POST /api/v1/validate. Now the stream is refused and the document still gets its answer.
func TestValidateHugePredictorColumns(t *testing.T) {
	var z bytes.Buffer
	zw := zlib.NewWriter(&z)
	zw.Write([]byte{2, 0, 0, 0, 0})
	zw.Close()
	doc := pdftest.Classic(
		"<< /Type /Catalog /Pages 2 0 R /DSS 4 0 R >>",
		"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
		"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 10 10] >>",
		"<< /Type /DSS /OCSPs [5 0 R] /CRLs [5 0 R] /Certs [5 0 R] >>",
		fmt.Sprintf("<< /Length %d /Filter /FlateDecode /DecodeParms << /Predictor 12 /Columns 1099511627776 >> >>\nstream\n%s\nendstream", z.Len(), z.String()),
	)
	_, err := validation.Validate(context.Background(), bytes.NewReader(doc), int64(len(doc)),
		validation.Options{TrustAnchors: []*x509.Certificate{{Raw: []byte{0x30, 0}}}})
	if !errors.Is(err, signing.ErrInvalid) {
		t.Fatalf("got %v, want ErrInvalid (no signature)", err)
	}
}
