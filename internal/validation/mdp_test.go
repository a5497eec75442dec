package validation_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/digitorus/pdfsign/sign"

	"github.com/vula-eid/vula/internal/signing"
	"github.com/vula-eid/vula/internal/signing/cades"
	"github.com/vula-eid/vula/internal/signing/pades"
	"github.com/vula-eid/vula/internal/signing/signingtest"
	"github.com/vula-eid/vula/internal/testenv"
	"github.com/vula-eid/vula/internal/validation"
)

// formPDF is a one-page PDF with an AcroForm (its own object, 6) of two text fields, "name"
// (object 7) and "amount" (object 8), whose widgets show their values through appearance
// streams (objects 9 and 10).
func formPDF(name, amount string) []byte {
	var b bytes.Buffer
	var offs []int
	obj := func(s string) {
		offs = append(offs, b.Len())
		fmt.Fprintf(&b, "%d 0 obj\n%s\nendobj\n", len(offs), s)
	}
	b.WriteString("%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
	content := "BT /F1 18 Tf 72 720 Td (Refund request) Tj ET"
	obj("<< /Type /Catalog /Pages 2 0 R /AcroForm 6 0 R >>")
	obj("<< /Type /Pages /Kids [3 0 R] /Count 1 >>")
	obj("<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> /Annots [7 0 R 8 0 R] >>")
	obj(stream(content))
	obj("<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
	obj("<< /Fields [7 0 R 8 0 R] /DA (/Helv 0 Tf 0 g) /DR << /Font << /Helv 5 0 R >> >> >>")
	obj(textField("name", name, 600, 9))
	obj(textField("amount", amount, 560, 10))
	obj(appearance(name))
	obj(appearance(amount))
	xref := b.Len()
	fmt.Fprintf(&b, "xref\n0 %d\n0000000000 65535 f \n", len(offs)+1)
	for _, o := range offs {
		fmt.Fprintf(&b, "%010d 00000 n \n", o)
	}
	fmt.Fprintf(&b, "trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n", len(offs)+1, xref)
	return b.Bytes()
}

func stream(s string) string {
	return fmt.Sprintf("<< /Length %d >>\nstream\n%s\nendstream", len(s), s)
}

func textField(name, value string, y, ap int) string {
	return fmt.Sprintf("<< /Type /Annot /Subtype /Widget /FT /Tx /T (%s) /V (%s) /DA (/Helv 12 Tf 0 g) /Rect [72 %d 300 %d] /P 3 0 R /F 4 /AP << /N %d 0 R >> >>",
		name, value, y, y+24, ap)
}

func appearance(value string) string {
	s := fmt.Sprintf("/Tx BMC BT /Helv 12 Tf 2 6 Td (%s) Tj ET EMC", value)
	return fmt.Sprintf("<< /Type /XObject /Subtype /Form /BBox [0 0 228 24] /Resources << /Font << /Helv 5 0 R >> >> /Length %d >>\nstream\n%s\nendstream", len(s), s)
}

// fillIn is what a PDF editor saves when a user types value into field (7: name, 8: amount):
// the field's new /V and a new appearance stream (object ap).
func fillIn(t testing.TB, doc []byte, field int, value string, ap int) []byte {
	t.Helper()
	name, y := "name", 600
	if field == 8 {
		name, y = "amount", 560
	}
	return appendUpdate(t, doc, map[int]string{field: textField(name, value, y, ap), ap: appearance(value)})
}

func laterUpdate(s validation.SignatureReport, sub string) bool {
	for _, u := range s.LaterUpdates {
		if strings.Contains(u, sub) {
			return true
		}
	}
	return false
}

func expectFailed(t testing.TB, rep validation.Report, msg string) {
	t.Helper()
	expect(t, rep, validation.TotalFailed, validation.FormatFailure)
	if !strings.Contains(rep.Text(), msg) {
		t.Fatalf("the report does not say %q\n%s", msg, rep.Text())
	}
}

// TestDocMDPForm: after a certification signature with DocMDP P=2 (pades.Options.Certify), form
// filling and further signatures are allowed and reported; page content, other annotations,
// new pages and appearances changed without a value are not.
func TestDocMDPForm(t *testing.T) {
	env := signingtest.New(t, signingtest.Options{})
	opts := validation.Options{TrustAnchors: anchors(env), Fetch: validation.RevocationFetcher{R: env.PKI}}
	var out bytes.Buffer
	form := formPDF("Arta", "100")
	if err := pades.Sign(context.Background(), bytes.NewReader(form), int64(len(form)), &out, env.Seal,
		pades.Options{Level: signing.LevelB, Certify: true}); err != nil {
		t.Fatal(err)
	}
	certified := out.Bytes()
	if !bytes.Contains(certified, []byte("/DocMDP")) {
		t.Fatal("not a certification signature")
	}
	expect(t, validate(t, certified, opts), validation.TotalPassed, "")

	filled := fillIn(t, certified, 7, "Arta Krasniqi", 50)
	t.Run("form filled in", func(t *testing.T) {
		rep := validate(t, filled, opts)
		expect(t, rep, validation.TotalPassed, "")
		if s := rep.Signatures[0]; !laterUpdate(s, `form field "name" filled in`) || s.CoversWholeDocument {
			t.Fatalf("the filling is not reported\n%s", dump(t, rep))
		}
	})
	t.Run("qpdf reads the filled form", func(t *testing.T) {
		testenv.Need(t, "qpdf")
		if out, err := exec.Command("qpdf", "--check", env.WriteFile(t, "filled.pdf", filled)).CombinedOutput(); err != nil {
			t.Fatalf("qpdf --check: %v\n%s", err, out)
		}
	})
	t.Run("pdfsig: the certification's bytes still verify, not the whole file", func(t *testing.T) {
		testenv.Need(t, "pdfsig")
		out, err := exec.Command("pdfsig", "-nocert", env.WriteFile(t, "filled.pdf", filled)).CombinedOutput()
		if err != nil || !bytes.Contains(out, []byte("Signature is Valid")) || bytes.Contains(out, []byte("Total document signed")) {
			t.Fatalf("pdfsig: %v\n%s", err, out)
		}
	})
	t.Run("filled in, then signed", func(t *testing.T) {
		rep := validate(t, signPDF(t, env, env.Official, filled, signing.LevelB), opts)
		expect(t, rep, validation.TotalPassed, "")
		if len(rep.Signatures) != 2 {
			t.Fatalf("%s", dump(t, rep))
		}
	})
	for name, tc := range map[string]struct {
		doc []byte
		msg string
	}{
		"page content changed": {appendUpdate(t, filled, map[int]string{4: stream("BT /F1 18 Tf 72 720 Td (Refund 9000 EUR) Tj ET")}), "page 1 changed: /Contents"},
		"a new annotation": {appendUpdate(t, certified, map[int]string{
			3:  regexp.MustCompile(`/Annots \[([^\]]*)\]`).ReplaceAllString(latestObject(t, certified, "3"), "/Annots [$1 60 0 R]"),
			60: "<< /Type /Annot /Subtype /FreeText /Rect [72 700 400 740] /Contents (Refund 9000 EUR) /DA (/Helv 24 Tf 0 g) >>"}),
			"new /FreeText annotation"},
		"a page added": {appendUpdate(t, certified, map[int]string{
			2:  "<< /Type /Pages /Kids [3 0 R 61 0 R] /Count 2 >>",
			61: "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>"}),
			"the page count changed from 1 to 2"},
		"a field's appearance changed, not its value": {appendUpdate(t, certified, map[int]string{
			7:  textField("name", "Arta", 600, 62),
			62: appearance("Refund 9000 EUR")}), `form field "name" on page 1 changed its appearance without its value`},
		"a field moved": {appendUpdate(t, certified, map[int]string{7: textField("name", "Bob", 200, 9)}), `form field "name" changed beyond its value and appearance`},
	} {
		t.Run(name, func(t *testing.T) {
			expectFailed(t, validate(t, tc.doc, opts), tc.msg)
		})
	}
}

// TestFieldMDP: an approval signature whose field locks fields (a /Lock dictionary in the
// signature field and the FieldMDP transform in the signature's /Reference, which pades does
// not write, so the signature is made here over the bytes with cades): a locked field changed
// afterwards fails the signature; a field left free may be filled in.
func TestFieldMDP(t *testing.T) {
	env := signingtest.New(t, signingtest.Options{})
	opts := validation.Options{TrustAnchors: anchors(env), Fetch: validation.RevocationFetcher{R: env.PKI}}
	sign := func(t *testing.T, action, fields string) []byte {
		lock := fmt.Sprintf("/Action /%s", action)
		if fields != "" {
			lock += " /Fields [" + fields + "]"
		}
		entries := "/Type /Sig /Filter /Adobe.PPKLite /SubFilter /ETSI.CAdES.detached /M (D:20260101000000Z) " +
			"/Reference [<< /Type /SigRef /TransformMethod /FieldMDP /TransformParams << /Type /TransformParams " + lock + " /V /1.2 >> >>]"
		return appendSignature(t, formPDF("Arta", "100"), "Signature1", "/Lock << /Type /SigFieldLock "+lock+" >>", nil, entries, func(covered []byte) []byte {
			cms, err := cades.Sign(context.Background(), env.Seal, bytes.NewReader(covered), cades.Options{})
			if err != nil {
				t.Fatal(err)
			}
			return cms
		})
	}
	for _, tc := range []struct {
		action, fields string
		name, amount   bool // may be filled in
	}{
		{"Include", "(amount)", true, false},
		{"Exclude", "(amount)", false, true},
		{"All", "", false, false},
	} {
		t.Run(tc.action+" "+tc.fields, func(t *testing.T) {
			signed := sign(t, tc.action, tc.fields)
			rep := validate(t, signed, opts)
			expect(t, rep, validation.TotalPassed, "")
			if rep.Signatures[0].Format != "PAdES-BASELINE" {
				t.Fatalf("%s", dump(t, rep))
			}
			for _, f := range []struct {
				num  int
				name string
				ok   bool
			}{{7, "name", tc.name}, {8, "amount", tc.amount}} {
				rep := validate(t, fillIn(t, signed, f.num, "9000", 70), opts)
				if f.ok {
					expect(t, rep, validation.TotalPassed, "")
					if !laterUpdate(rep.Signatures[0], fmt.Sprintf("form field %q filled in", f.name)) {
						t.Fatalf("%s", dump(t, rep))
					}
				} else {
					expectFailed(t, rep, fmt.Sprintf(`form field %q changed locked by the FieldMDP of signature field "Signature1"`, f.name))
				}
			}
		})
	}
}

// TestDocMDPP3: a certification with P=3 (made by pdfsign, nothing of Vula's) also permits
// annotations: a new comment afterwards passes and is reported; a page's content does not.
func TestDocMDPP3(t *testing.T) {
	env := signingtest.New(t, signingtest.Options{})
	opts := validation.Options{TrustAnchors: anchors(env), Fetch: validation.RevocationFetcher{R: env.PKI}}
	in := env.WriteFile(t, "in.pdf", signingtest.PDF("certified P=3"))
	outPath := filepath.Join(env.Dir, "p3.pdf")
	if err := sign.SignFile(in, outPath, sign.SignData{Signature: sign.SignDataSignature{CertType: sign.CertificationSignature,
		DocMDPPerm: sign.AllowFillingExistingFormFieldsAndSignaturesAndCRUDAnnotationsPerms, Info: sign.SignDataSignatureInfo{Name: "certifier"}},
		Signer: env.Seal.Key, Certificate: env.Seal.Cert, DigestAlgorithm: crypto.SHA256,
		CertificateChains: [][]*x509.Certificate{append([]*x509.Certificate{env.Seal.Cert}, env.Seal.Chain...)}}); err != nil {
		t.Fatal(err)
	}
	certified, err := os.ReadFile(outPath)
	if err != nil {
		t.Fatal(err)
	}
	expect(t, validate(t, certified, opts), validation.TotalPassed, "")
	pageObj := latestObject(t, certified, "3")
	withAnnot := pageObj
	if strings.Contains(pageObj, "/Annots [") {
		withAnnot = regexp.MustCompile(`/Annots \[([^\]]*)\]`).ReplaceAllString(pageObj, "/Annots [$1 60 0 R]")
	} else {
		withAnnot = strings.TrimSuffix(strings.TrimSpace(pageObj), ">>") + " /Annots [60 0 R] >>"
	}
	commented := appendUpdate(t, certified, map[int]string{3: withAnnot,
		60: "<< /Type /Annot /Subtype /Text /Rect [72 700 92 720] /Contents (checked) >>"})
	rep := validate(t, commented, opts)
	expect(t, rep, validation.TotalPassed, "")
	if !laterUpdate(rep.Signatures[0], "a new /Text annotation (DocMDP P=3 permits it)") {
		t.Fatalf("%s", dump(t, rep))
	}
	expectFailed(t, validate(t, appendUpdate(t, commented, map[int]string{4: stream("BT /F1 24 Tf 72 720 Td (changed) Tj ET")}), opts), "page 1 changed: /Contents")
}

// TestDocMDPFieldWithKids: a field whose widget is its kid (as form editors often write them):
// filling it in changes the parent's /V and the kid's appearance, which is allowed; the kid's
// appearance alone is not.
func TestDocMDPFieldWithKids(t *testing.T) {
	env := signingtest.New(t, signingtest.Options{})
	opts := validation.Options{TrustAnchors: anchors(env), Fetch: validation.RevocationFetcher{R: env.PKI}}
	parent := func(v string) string {
		return fmt.Sprintf("<< /FT /Tx /T (amount) /V (%s) /DA (/Helv 12 Tf 0 g) /Kids [11 0 R] >>", v)
	}
	kid := func(ap int) string {
		return fmt.Sprintf("<< /Type /Annot /Subtype /Widget /Parent 8 0 R /Rect [72 560 300 584] /P 3 0 R /F 4 /AP << /N %d 0 R >> >>", ap)
	}
	form := appendUpdate(t, formPDF("Arta", "100"), map[int]string{8: parent("100"), 11: kid(10),
		3: "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> /Annots [7 0 R 11 0 R] >>"})
	var out bytes.Buffer
	if err := pades.Sign(context.Background(), bytes.NewReader(form), int64(len(form)), &out, env.Seal, pades.Options{Certify: true}); err != nil {
		t.Fatal(err)
	}
	certified := out.Bytes()
	expect(t, validate(t, certified, opts), validation.TotalPassed, "")
	rep := validate(t, appendUpdate(t, certified, map[int]string{8: parent("9000"), 11: kid(70), 70: appearance("9000")}), opts)
	expect(t, rep, validation.TotalPassed, "")
	if !laterUpdate(rep.Signatures[0], `form field "amount" filled in`) {
		t.Fatalf("%s", dump(t, rep))
	}
	expectFailed(t, validate(t, appendUpdate(t, certified, map[int]string{11: kid(70), 70: appearance("9000")}), opts),
		"changed its appearance without its value")
}
