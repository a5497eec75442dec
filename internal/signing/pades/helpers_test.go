package pades_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/digitorus/pdf"
	"golang.org/x/crypto/cryptobyte"

	"github.com/vula-eid/vula/internal/signing"
	"github.com/vula-eid/vula/internal/signing/pades"
	"github.com/vula-eid/vula/internal/signing/signingtest"
	"github.com/vula-eid/vula/internal/testenv"
)

// pdfOpts says what makePDF writes.
type pdfOpts struct {
	pages int
	form  bool // an AcroForm with a text field and a check box
	// needAppearances sets the form's /NeedAppearances true (the viewer is to redraw fields).
	needAppearances bool
	big             int    // bytes of an extra stream on page 1 (for the large inputs)
	version         string // "1.4" when empty
}

// makePDF writes a small, valid PDF with a classic xref table, made here so that the tests
// know each byte of their input.
func makePDF(w io.Writer, o pdfOpts) error {
	if o.pages == 0 {
		o.pages = 1
	}
	if o.version == "" {
		o.version = "1.4"
	}
	cw := &countWriter{w: w}
	var offsets []int64
	obj := func(body string) int {
		offsets = append(offsets, cw.n)
		fmt.Fprintf(cw, "%d 0 obj\n%s\nendobj\n", len(offsets), body)
		return len(offsets)
	}
	fmt.Fprintf(cw, "%%PDF-%s\n%%\xe2\xe3\xcf\xd3\n", o.version)
	// 1 catalog, 2 pages, 3 font; then per page: page, content.
	first := 4
	kids := []string{}
	for i := range o.pages {
		kids = append(kids, fmt.Sprintf("%d 0 R", first+2*i))
	}
	cat := "<< /Type /Catalog /Pages 2 0 R >>"
	if o.form {
		n := first + 2*o.pages
		need := ""
		if o.needAppearances {
			need = " /NeedAppearances true"
		}
		cat = fmt.Sprintf("<< /Type /Catalog /Pages 2 0 R /AcroForm << /Fields [%d 0 R %d 0 R] /DA (/Helv 0 Tf 0 g) /DR << /Font << /Helv 3 0 R >> >>%s >> >>", n, n+1, need)
	}
	obj(cat)
	obj(fmt.Sprintf("<< /Type /Pages /Kids [%s] /Count %d >>", strings.Join(kids, " "), o.pages))
	obj("<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
	for i := range o.pages {
		annots := ""
		if o.form && i == 0 {
			n := first + 2*o.pages
			annots = fmt.Sprintf(" /Annots [%d 0 R %d 0 R]", n, n+1)
		}
		obj(fmt.Sprintf("<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R%s >>", first+2*i+1, annots))
		content := fmt.Sprintf("BT /F1 24 Tf 72 760 Td (Vula test page %d) Tj ET", i+1)
		if i == 0 && o.big > 0 {
			// A comment line of o.big bytes: a large but valid content stream.
			offsets = append(offsets, cw.n)
			fmt.Fprintf(cw, "%d 0 obj\n<< /Length %d >>\nstream\n%s\n%%", len(offsets), len(content)+2+o.big, content)
			chunk := bytes.Repeat([]byte("x"), 1<<20)
			for left := o.big - 1; left > 0; {
				n := min(left, len(chunk))
				cw.Write(chunk[:n])
				left -= n
			}
			fmt.Fprintf(cw, "\n\nendstream\nendobj\n")
			continue
		}
		obj(fmt.Sprintf("<< /Length %d >>\nstream\n%s\nendstream", len(content), content))
	}
	if o.form {
		p := first
		obj(fmt.Sprintf("<< /Type /Annot /Subtype /Widget /FT /Tx /T (name) /V (Arta) /DA (/Helv 12 Tf 0 g) /Rect [72 600 300 624] /P %d 0 R /F 4 >>", p))
		obj(fmt.Sprintf("<< /Type /Annot /Subtype /Widget /FT /Btn /T (agree) /V /Off /AS /Off /Rect [72 560 90 578] /P %d 0 R /F 4 /MK << >> >>", p))
	}
	xref := cw.n
	fmt.Fprintf(cw, "xref\n0 %d\n0000000000 65535 f\r\n", len(offsets)+1)
	for _, off := range offsets {
		fmt.Fprintf(cw, "%010d 00000 n\r\n", off)
	}
	fmt.Fprintf(cw, "trailer\n<< /Size %d /Root 1 0 R /ID [<0123456789ABCDEF0123456789ABCDEF> <0123456789ABCDEF0123456789ABCDEF>] >>\nstartxref\n%d\n%%%%EOF\n", len(offsets)+1, xref)
	return cw.err
}

type countWriter struct {
	w   io.Writer
	n   int64
	err error
}

func (c *countWriter) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.w.Write(p)
	c.n += int64(n)
	c.err = err
	return n, err
}

func pdfBytes(t testing.TB, o pdfOpts) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := makePDF(&b, o); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// need skips (or fails under CI=true) when a tool is missing.
func need(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Missing(t, tool+" is not installed (test/deps.sh installs it)")
		}
	}
}

func run(t testing.TB, name string, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	return string(out), err
}

// signBytes signs in with opts.
func signBytes(t testing.TB, s signing.Signer, in []byte, opts pades.Options) []byte {
	t.Helper()
	var out bytes.Buffer
	if err := pades.Sign(context.Background(), bytes.NewReader(in), int64(len(in)), &out, s, opts); err != nil {
		t.Fatalf("Sign: %v", err)
	}
	if !bytes.HasPrefix(out.Bytes(), in) {
		t.Fatal("the signed PDF does not begin with the original bytes")
	}
	return out.Bytes()
}

// nssDir makes an NSS database that trusts env's root.
func nssDir(t testing.TB, env *signingtest.Env) string {
	t.Helper()
	need(t, "certutil")
	dir := t.TempDir()
	if out, err := run(t, "certutil", "-N", "-d", "sql:"+dir, "--empty-password"); err != nil {
		t.Fatalf("certutil -N: %v\n%s", err, out)
	}
	if out, err := run(t, "certutil", "-A", "-d", "sql:"+dir, "-n", "root", "-t", "CT,C,C", "-i", env.RootPEM); err != nil {
		t.Fatalf("certutil -A: %v\n%s", err, out)
	}
	return dir
}

// sigInfo is a signature of a signed PDF, read back with digitorus/pdf.
type sigInfo struct {
	field, subFilter, typ string
	byteRange             []int64
	contents              []byte // the DER, padding cut
}

func signatures(t testing.TB, file []byte) []sigInfo {
	t.Helper()
	r, err := pdf.NewReader(bytes.NewReader(file), int64(len(file)))
	if err != nil {
		t.Fatalf("reading the signed PDF: %v", err)
	}
	fields := r.Trailer().Key("Root").Key("AcroForm").Key("Fields")
	var out []sigInfo
	for i := range fields.Len() {
		f := fields.Index(i)
		if f.Key("FT").Name() != "Sig" {
			continue
		}
		v := f.Key("V")
		si := sigInfo{field: f.Key("T").Text(), subFilter: v.Key("SubFilter").Name(), typ: v.Key("Type").Name()}
		br := v.Key("ByteRange")
		for j := range br.Len() {
			si.byteRange = append(si.byteRange, br.Index(j).Int64())
		}
		c := cryptobyte.String(v.Key("Contents").RawString())
		var der cryptobyte.String
		if !c.ReadASN1Element(&der, 0x30) {
			t.Fatalf("%s: /Contents is not DER", si.field)
		}
		si.contents = der
		out = append(out, si)
	}
	return out
}

// ranges returns the bytes a signature's /ByteRange covers.
func ranges(t testing.TB, file []byte, br []int64) []byte {
	t.Helper()
	if len(br) != 4 || br[0] != 0 || br[1] > br[2] || br[2]+br[3] > int64(len(file)) {
		t.Fatalf("bad /ByteRange %v for %d bytes", br, len(file))
	}
	return append(bytes.Clone(file[:br[1]]), file[br[2]:br[2]+br[3]]...)
}

// dssStreams returns the data of the streams in the DSS array key (Certs, OCSPs, CRLs).
func dssStreams(t testing.TB, file []byte, key string) [][]byte {
	t.Helper()
	r, err := pdf.NewReader(bytes.NewReader(file), int64(len(file)))
	if err != nil {
		t.Fatal(err)
	}
	dss := r.Trailer().Key("Root").Key("DSS")
	a := dss.Key(key)
	var out [][]byte
	for i := range a.Len() {
		b, err := io.ReadAll(a.Index(i).Reader())
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

func writeTemp(t testing.TB, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func errorIs(err, target error) bool { return errors.Is(err, target) }

// nssTrusts checks with NSS's vfychain that the signer certificate of the CMS der chains, through
// the certificates the CMS carries, to a root the NSS database nss trusts, for email signing
// (the usage pdfsig validates for).
func nssTrusts(t testing.TB, nss string, der []byte) {
	t.Helper()
	need(t, "vfychain", "openssl")
	in := writeTemp(t, "cms.der", der)
	out, err := run(t, "openssl", "pkcs7", "-inform", "DER", "-in", in, "-print_certs")
	if err != nil {
		t.Fatalf("openssl pkcs7: %v\n%s", err, out)
	}
	var leaf string
	var others []string
	rest := []byte(out)
	for {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		f := writeTemp(t, "c.der", blk.Bytes)
		if c.IsCA {
			others = append(others, "-r", f)
		} else {
			leaf = f
		}
	}
	args := append([]string{"-d", "sql:" + nss, "-pp", "-u", "4", "-r", leaf}, others...)
	if out, err := run(t, "vfychain", args...); err != nil || !strings.Contains(out, "Chain is good!") {
		t.Errorf("vfychain: the signer's chain is not trusted: %v\n%s", err, out)
	}
}
