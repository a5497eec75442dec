// Package pdftest gives tests of the packages that read untrusted PDFs (portal, pades,
// validation) the same hostile inputs and a plain way to write small PDFs by hand.
package pdftest

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/vula-eid/vula/internal/signing"
)

// Classic writes objects 1..n with a classic cross-reference table; object 1 is the catalog.
func Classic(objs ...string) []byte {
	var b bytes.Buffer
	b.WriteString("%PDF-1.4\n")
	offs := make([]int, len(objs))
	for i, o := range objs {
		offs[i] = b.Len()
		fmt.Fprintf(&b, "%d 0 obj\n%s\nendobj\n", i+1, o)
	}
	at := b.Len()
	fmt.Fprintf(&b, "xref\n0 %d\n0000000000 65535 f \n", len(objs)+1)
	for _, o := range offs {
		fmt.Fprintf(&b, "%010d 00000 n \n", o)
	}
	fmt.Fprintf(&b, "trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n", len(objs)+1, at)
	return b.Bytes()
}

// CorpusInput reads the []byte of a one-argument fuzz corpus file (testdata/fuzz/FuzzX/name).
func CorpusInput(t testing.TB, path string) []byte {
	t.Helper()
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

// Input is a PDF on which digitorus/pdf loops, recurses or allocates without end, and the error
// a reader must refuse it with.
type Input struct {
	Name string
	Data []byte
	Want error // signing.ErrInvalid, or signing.ErrUnsupported for those that name /Encrypt
}

// Hostile is the loop-* inputs of the fuzz corpus dir (internal/pdfsafe names the place in
// digitorus/pdf each one loops at; there are at least 13) and a 1 MiB file without %%EOF
// (digitorus/pdf looks for it in quadratic time: over 20 s).
func Hostile(t testing.TB, dir string) []Input {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "loop-*"))
	if len(files) < 13 {
		t.Fatalf("%d loop-* inputs in %s", len(files), dir)
	}
	in := []Input{{Name: "no %%EOF", Data: append([]byte("%PDF-1.4\n"), bytes.Repeat([]byte("0"), 1<<20)...), Want: signing.ErrInvalid}}
	for _, f := range files {
		want := signing.ErrInvalid
		if strings.Contains(f, "encr") {
			want = signing.ErrUnsupported
		}
		in = append(in, Input{Name: filepath.Base(f), Data: CorpusInput(t, f), Want: want})
	}
	return in
}
