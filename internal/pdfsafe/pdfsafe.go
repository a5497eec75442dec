// Package pdfsafe opens untrusted PDFs with github.com/digitorus/pdf (v0.1.2) only after
// refusing the inputs on which that library loops without end, allocates without bound or
// recurses until the stack overflows. The contract: Open either returns an error wrapping
// signing.ErrInvalid, signing.ErrUnsupported (an encrypted PDF) or signing.ErrTooLarge, or a
// *pdf.Reader on which resolving any object terminates — every object stream it may read has
// been checked. Walks over the object graph (page trees, form fields) remain the caller's to
// bound: digitorus/pdf's Resolve reads one object and never follows references by itself.
//
// Where digitorus/pdf v0.1.2 loops (read.go, lex.go in the module cache), each refused here:
//   - read.go NewReaderEncrypted, the EOFDetect loop: it looks for %%EOF in windows growing by
//     200 bytes from the end, re-reading and re-trimming each, so a file without %%EOF near
//     its end costs time quadratic in its size (1 MiB: over 20 s; 10 MiB: about 40 min).
//     This is what the portal's FuzzInspect found. Refused: %%EOF must be within maxTail.
//   - read.go readXrefTableData / readXrefStreamData: the table grows to the highest object
//     number declared, and /W sizes a buffer: bounded by checkXref.
//   - read.go (*Reader).resolve, for an object in an object stream: an /Extends cycle loops
//     for ever; a huge /N spins at the stream's end; an object stream inside an object stream,
//     or one whose /Length, /N, /First, /Filter, /DecodeParms... is stored in an object
//     stream, recurses without end (a fatal stack overflow, which no recover catches).
//   - lex.go readArray, readLiteralString, readHexString: in an object stream the lexer
//     returns '\n' for ever at the end of the data, so an array or a string still open there
//     loops for ever (an array or a literal string while growing memory).
//   - read.go applyFilter: a PNG predictor's buffers are 1+/Columns bytes, allocated without
//     a bound (a fatal out-of-memory): refused in the cross-reference and object streams, and
//     by Reader for any other stream.
//   - read.go NewReaderEncrypted resolves the trailer's /Encrypt before returning, so an
//     /Encrypt in a hostile object stream loops inside NewReader: an /Encrypt in the newest
//     cross-reference stream's dictionary is refused (Vula reads no encrypted PDF anyway).
//
// Why not a timeout: a goroutine cannot be stopped from outside, so one that spins keeps its
// core for ever. Why not a fork of digitorus/pdf: pdfsign uses the upstream package's types.
package pdfsafe

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/digitorus/pdf"

	"github.com/vula-eid/vula/internal/signing"
)

// ErrEncrypted is an encrypted PDF, which Vula neither signs nor validates: a
// signing.ErrUnsupported. Its text names no detail of the encryption (digitorus/pdf calls an
// AES-256 key "malformed").
var ErrEncrypted = fmt.Errorf("%w: the PDF is encrypted", signing.ErrUnsupported)

// maxTail is how far before the end of the file the last %%EOF may be.
const maxTail = 64 << 10

// Limits on the object streams' decoded data: each one, and all together.
const (
	maxObjStm      = 64 << 20
	maxObjStmTotal = 256 << 20
)

// Open checks the PDF in r (size bytes) and opens it with digitorus/pdf. digitorus/pdf
// reports much malformed input by panicking; Open recovers those panics as ErrInvalid.
func Open(r io.ReaderAt, size int64) (pr *pdf.Reader, err error) {
	defer func() {
		if p := recover(); p != nil {
			pr, err = nil, fmt.Errorf("%w: malformed PDF: %v", signing.ErrInvalid, p)
		}
	}()
	head := make([]byte, 8)
	if n, _ := r.ReadAt(head, 0); n < 8 || !bytes.HasPrefix(head, []byte("%PDF-")) {
		return nil, fmt.Errorf("%w: not a PDF (no %%PDF- header)", signing.ErrInvalid)
	}
	startxref, err := findStartxref(r, size)
	if err != nil {
		return nil, err
	}
	if err := checkXref(r, size, startxref); err != nil {
		return nil, err
	}
	pr, err = pdf.NewReader(r, size)
	if err != nil {
		if IsEncryptionError(err) {
			return nil, ErrEncrypted
		}
		return nil, fmt.Errorf("%w: cannot read the PDF's cross-reference data: %v", signing.ErrInvalid, err)
	}
	if err := checkObjectStreams(pr); err != nil {
		return nil, err
	}
	return pr, nil
}

// IsEncryptionError tells whether an error of digitorus/pdf's NewReader is about encryption:
// its encryption errors carry no type, their text names encryption, the password, or the /ID
// that only an encrypted file needs.
func IsEncryptionError(err error) bool {
	s := err.Error()
	return errors.Is(err, pdf.ErrInvalidPassword) || strings.Contains(s, "encrypt") || strings.Contains(s, "missing ID in trailer")
}

// findStartxref finds the offset digitorus/pdf will read the newest cross-reference section
// at, the way it does: after the last "startxref" line in the 200 bytes before the last
// %%EOF. It returns -1 when it finds none; digitorus/pdf then refuses the file itself.
func findStartxref(r io.ReaderAt, size int64) (int64, error) {
	// Most files end in %%EOF: the last few KiB first, all of maxTail only when they do not
	// hold it with the 200 bytes before it (reading and scanning 64 KiB at every signature was
	// 2 % of a 100 KB seal). Either way the same bytes decide.
	tail := lastBytes(r, size, min(size, smallTail))
	e := bytes.LastIndex(tail, []byte("%%EOF"))
	if (e < 0 || e+5 < 200) && int64(len(tail)) < min(size, maxTail) {
		tail = lastBytes(r, size, min(size, maxTail))
		e = bytes.LastIndex(tail, []byte("%%EOF"))
	}
	if e < 0 {
		return -1, fmt.Errorf("%w: cannot read the PDF's cross-reference data: no %%%%EOF in its last %d bytes", signing.ErrInvalid, maxTail)
	}
	buf := tail[max(0, e+5-200) : e+5]
	i := findLastLine(buf, "startxref")
	if i < 0 {
		return -1, nil
	}
	toks := newLexer(buf[i+len("startxref"):])
	t, ok := toks.next()
	if !ok || t.kind != tokWord {
		return -1, nil
	}
	off, isInt := parseInt(t.text)
	if !isInt {
		return -1, nil
	}
	return off, nil
}

// smallTail is the first look at the end of a file (findStartxref).
const smallTail = 4 << 10

// lastBytes reads the last n bytes of r (size bytes), fewer if a read fails.
func lastBytes(r io.ReaderAt, size, n int64) []byte {
	b := make([]byte, n)
	got, _ := r.ReadAt(b, size-n)
	return b[:got]
}

// findLastLine is digitorus/pdf's: the last s with a line break on both sides.
func findLastLine(buf []byte, s string) int {
	end := len(buf)
	for {
		i := bytes.LastIndex(buf[:end], []byte(s))
		if i <= 0 || i+len(s) >= len(buf) {
			return -1
		}
		if (buf[i-1] == '\n' || buf[i-1] == '\r') && (buf[i+len(s)] == '\n' || buf[i+len(s)] == '\r') {
			return i
		}
		end = i
	}
}

// Reader returns the decoded data of stream v, as v.Reader() does, after refusing a PNG
// predictor's /Columns above maxColumns: digitorus/pdf allocates 1+Columns bytes for it, so
// /Columns 1099511627776 in a 600-byte PDF ends the process (fatal: out of memory, which no
// recover catches). Call it instead of v.Reader() on any stream of an untrusted PDF.
func Reader(v pdf.Value) (io.ReadCloser, error) {
	if v.Kind() != pdf.Stream {
		return nil, fmt.Errorf("%w: not a stream", signing.ErrInvalid)
	}
	if err := checkColumns(v.Key("DecodeParms")); err != nil {
		return nil, err
	}
	return v.Reader(), nil
}

// checkColumns refuses a /DecodeParms dictionary, or an array of them, with a /Columns out of
// bounds.
func checkColumns(dp pdf.Value) error {
	for i := -1; i < dp.Len(); i++ {
		p := dp
		if i >= 0 {
			p = dp.Index(i)
		}
		if cols := p.Key("Columns").Int64(); cols < 0 || cols > maxColumns {
			return fmt.Errorf("%w: a predictor of %d columns", signing.ErrInvalid, cols)
		}
	}
	return nil
}
