package xades

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/vula-eid/vula/internal/testenv"
)

// TestDocC14NAgainstXmllint compares the canonical form of every test document with libxml2's
// (xmllint --exc-c14n, the same code xmlsec1 verifies with). xmllint keeps comments, so the
// comparison is of the with-comments form; the signatures (without comments) are checked by
// xmlsec1 in TestSign and TestCanonicalCorners. The c14n-*.xml files hold the
// corners where goxmldsig's transform alone goes wrong: prefixed attributes in namespace-URI
// order, a redundant xmlns="" and processing instructions around the root.
func TestDocC14NAgainstXmllint(t *testing.T) {
	if _, err := exec.LookPath("xmllint"); err != nil {
		testenv.Missing(t, "xmllint is not installed (libxml2-utils; test/deps.sh installs it)")
	}
	files, _ := filepath.Glob(filepath.Join("testdata", "*.xml"))
	if len(files) < 4 {
		t.Fatalf("only %d test documents", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			doc, err := parseXML(data)
			if err != nil {
				t.Fatal(err)
			}
			got, err := docC14NWith(doc, true)
			if err != nil {
				t.Fatal(err)
			}
			want, err := exec.Command("xmllint", "--exc-c14n", f).Output()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("exc-c14n differs from xmllint's:\n got %q\nwant %q", got, want)
			}
			// The document written out (as the enveloped output is) canonicalizes the same.
			out, err := writeDoc(doc)
			if err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(t.TempDir(), "out.xml")
			os.WriteFile(p, out, 0o600)
			again, err := exec.Command("xmllint", "--exc-c14n", p).Output()
			if err != nil || !bytes.Equal(again, want) {
				t.Errorf("the written document canonicalizes differently: %q (%v)", again, err)
			}
		})
	}
}
