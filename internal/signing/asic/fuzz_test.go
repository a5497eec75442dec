package asic

import (
	"bytes"
	"encoding/xml"
	"errors"
	"os"
	"path"
	"strings"
	"testing"

	"github.com/vula-eid/vula/internal/signing"
)

// What the XML signer returns is parsed to find its root: any input gives ErrInvalid or a
// well-formed asic:XAdESSignatures document that still holds the signature's bytes.
func FuzzWrapXAdES(f *testing.F) {
	for _, name := range []string{"testdata/signature.xml", "testdata/wrapped.xml"} {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, sig []byte) {
		out, err := wrapXAdES(sig)
		if err != nil {
			if !errors.Is(err, signing.ErrInvalid) {
				t.Fatalf("error not ErrInvalid: %v", err)
			}
			return
		}
		// Kept whole, or wrapped with the signature's end (at least) kept as it was.
		tail := bytes.TrimSpace(sig)
		tail = tail[max(0, len(tail)-64):]
		if !bytes.Equal(out, sig) && !bytes.HasSuffix(out, append(tail, "</asic:XAdESSignatures>\n"...)) {
			t.Fatalf("the signature's bytes were changed:\n%q\n%q", sig, out)
		}
		// When the input was a well-formed document, so is the output.
		if wellFormed(sig) && !wellFormed(out) {
			t.Fatalf("not well formed:\n%s", out)
		}
	})
}

func wellFormed(b []byte) bool {
	d := xml.NewDecoder(bytes.NewReader(b))
	for {
		if _, err := d.Token(); err != nil {
			return err.Error() == "EOF"
		}
	}
}

// Names that pass checkName are clean relative paths outside META-INF.
func FuzzCheckName(f *testing.F) {
	b, err := os.ReadFile("testdata/names.txt")
	if err != nil {
		f.Fatal(err)
	}
	for _, n := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f.Add(n)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if err := checkName(name); err != nil {
			if !errors.Is(err, signing.ErrInvalid) {
				t.Fatalf("error not ErrInvalid: %v", err)
			}
			return
		}
		if path.IsAbs(name) || path.Clean(name) != name || strings.HasPrefix(name, "../") || name == ".." ||
			strings.HasPrefix(strings.ToUpper(name), "META-INF") && (len(name) == 8 || name[8] == '/') ||
			strings.ContainsAny(name, "\\:") {
			t.Fatalf("accepted %q", name)
		}
	})
}
