package validation_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vula-eid/vula/internal/signing"
	"github.com/vula-eid/vula/internal/signing/pades"
	"github.com/vula-eid/vula/internal/signing/signingtest"
	"github.com/vula-eid/vula/internal/testenv"
	"github.com/vula-eid/vula/internal/validation"
)

// appendUpdate appends an incremental update (classic xref) that defines objs (number ->
// body), as any PDF editor would save a change after the signature.
func appendUpdate(t testing.TB, doc []byte, objs map[int]string) []byte {
	t.Helper()
	prev := regexp.MustCompile(`startxref\s+(\d+)\s+%%EOF\s*$`).FindSubmatch(doc)
	i := bytes.LastIndex(doc, []byte("trailer"))
	if prev == nil || i < 0 {
		t.Fatal("not a PDF with a classic trailer")
	}
	sizeM := regexp.MustCompile(`/Size (\d+)`).FindSubmatch(doc[i:])
	rootM := regexp.MustCompile(`/Root (\d+ \d+ R)`).FindSubmatch(doc[i:])
	if sizeM == nil || rootM == nil {
		t.Fatal("the last trailer has no /Size or /Root")
	}
	last := [][]byte{nil, sizeM[1], rootM[1]}
	var b bytes.Buffer
	b.Write(doc)
	nums := make([]int, 0, len(objs))
	for n := range objs {
		nums = append(nums, n)
	}
	slices.Sort(nums)
	offs := map[int]int{}
	for _, n := range nums {
		offs[n] = b.Len()
		fmt.Fprintf(&b, "%d 0 obj\n%s\nendobj\n", n, objs[n])
	}
	xref := b.Len()
	b.WriteString("xref\n")
	size, _ := strconv.Atoi(string(last[1]))
	for _, n := range nums {
		fmt.Fprintf(&b, "%d 1\n%010d 00000 n\r\n", n, offs[n])
		size = max(size, n+1)
	}
	fmt.Fprintf(&b, "trailer\n<< /Size %d /Root %s /Prev %s >>\nstartxref\n%d\n%%%%EOF\n", size, last[2], prev[1], xref)
	return b.Bytes()
}

// signedRange returns the signature's /ByteRange numbers and where the array is.
func byteRange(t testing.TB, doc []byte) ([4]int64, []int) {
	t.Helper()
	m := regexp.MustCompile(`/ByteRange\s*\[\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*\]`).FindSubmatchIndex(doc)
	if m == nil {
		t.Fatal("no /ByteRange")
	}
	var br [4]int64
	for i := range 4 {
		br[i], _ = strconv.ParseInt(string(doc[m[2+2*i]:m[3+2*i]]), 10, 64)
	}
	return br, m
}

func expect(t testing.TB, rep validation.Report, ind validation.Indication, sub validation.SubIndication) {
	t.Helper()
	if rep.Indication != ind || rep.SubIndication != sub {
		t.Fatalf("%s/%s, want %s/%s\n%s", rep.Indication, rep.SubIndication, ind, sub, rep.Text())
	}
}

func TestAttacks(t *testing.T) {
	env := signingtest.New(t, signingtest.Options{})
	online := validation.Options{TrustAnchors: anchors(env), Fetch: validation.RevocationFetcher{R: env.PKI}}
	signed := signPDF(t, env, env.Seal, signingtest.PDF("Pay 100 EUR"), signing.LevelB)
	lt := signPDF(t, env, env.Seal, signingtest.PDF("Pay 100 EUR"), signing.LevelLT)

	t.Run("byte changed in the signed range", func(t *testing.T) {
		bad := bytes.Replace(signed, []byte("Pay 100 EUR"), []byte("Pay 900 EUR"), 1)
		expect(t, validate(t, bad, online), validation.TotalFailed, validation.HashFailure)
	})

	// The incremental saving attack: an update after the signature replaces the page's
	// content. The signature still verifies over its revision; the document shown is not the
	// one signed. EN 319 102-1 validates the signed data, and PAdES lets only validation data,
	// document timestamps and signatures follow a signature, so the report says the signature
	// covers revision 2 of 3 and fails it (FORMAT_FAILURE) for the document as a whole.
	for name, doc := range map[string][]byte{"B-B": signed, "B-LT": lt} {
		t.Run("incremental saving "+name, func(t *testing.T) {
			content := "BT /F1 24 Tf 72 720 Td (Pay 900 EUR) Tj ET"
			bad := appendUpdate(t, doc, map[int]string{4: fmt.Sprintf("<< /Length %d >>\nstream\n%s\nendstream", len(content), content)})
			rep := validate(t, bad, validation.Options{TrustAnchors: anchors(env), Fetch: online.Fetch})
			expect(t, rep, validation.TotalFailed, validation.FormatFailure)
			s := rep.Signatures[0]
			if s.CoversWholeDocument || s.Revision != 2 || rep.Revisions < 3 || !hasCheck(s, "signature", "PASSED") || !hasCheck(s, "modifications", "FAILED") {
				t.Fatalf("revision %d of %d, whole %v\n%s", s.Revision, rep.Revisions, s.CoversWholeDocument, dump(t, rep))
			}
			if !strings.Contains(s.LaterUpdates[len(s.LaterUpdates)-1], "other changes") {
				t.Errorf("later updates %v", s.LaterUpdates)
			}
		})
	}
	t.Run("incremental saving: a new annotation", func(t *testing.T) {
		page := regexp.MustCompile(`(?s)\n3 0 obj\n(<<.*?>>)\nendobj`).FindAllSubmatch(signed, -1)
		body := string(page[len(page)-1][1])
		body = strings.Replace(body, "/Annots [", "/Annots [99 0 R ", 1)
		bad := appendUpdate(t, signed, map[int]string{3: body,
			99: "<< /Type /Annot /Subtype /FreeText /Rect [72 700 400 740] /Contents (Pay 900 EUR) /DA (/Helv 24 Tf 0 g) >>"})
		expect(t, validate(t, bad, online), validation.TotalFailed, validation.FormatFailure)
	})
	t.Run("a second signature is an allowed update", func(t *testing.T) {
		two := signPDF(t, env, env.Official, signed, signing.LevelB)
		rep := validate(t, two, online)
		expect(t, rep, validation.TotalPassed, "")
		if len(rep.Signatures) != 2 || rep.Signatures[0].CoversWholeDocument || !rep.Signatures[1].CoversWholeDocument ||
			rep.Signatures[1].Qualification != "QESig" {
			t.Fatalf("%s", dump(t, rep))
		}
	})

	// Signature wrapping: the signed bytes stay where /ByteRange says, but the gap holds more
	// than the /Contents string (here an object after a shortened hex string), or the range
	// stops short of the end of its revision.
	t.Run("wrapping: data in the gap", func(t *testing.T) {
		// B-LT: the signature timestamp's reserve leaves room after the DER.
		br, _ := byteRange(t, lt)
		bad := slices.Clone(lt)
		gap := bad[br[1]:br[2]]
		end := bytes.LastIndexFunc(gap[:len(gap)-1], func(r rune) bool { return r != '0' }) + 1 // the DER's hex, less the zero padding
		end += (end - 1) % 2                                                                    // gap[0] is the "<": whole bytes of hex
		// The hex string ends early; an extra dictionary entry fills the rest of the gap, so
		// the PDF still parses and the signed bytes still hash to the signed digest.
		payload := []byte("> /X (injected)")
		if len(payload) > len(gap)-1-end {
			payload = []byte(">")
		}
		if len(gap)-1-end < 2 {
			t.Fatalf("no room in the gap (%d hex digits of padding)", len(gap)-1-end)
		}
		copy(gap[end:], payload)
		for i := end + len(payload); i < len(gap); i++ {
			gap[i] = ' '
		}
		rep := validate(t, bad, online)
		expect(t, rep, validation.TotalFailed, validation.FormatFailure)
		if !hasCheck(rep.Signatures[0], "byte-range", "FAILED") {
			t.Fatalf("not caught by the byte-range check\n%s", dump(t, rep))
		}
	})
	t.Run("wrapping: a range short of the revision", func(t *testing.T) {
		br, m := byteRange(t, signed)
		bad := slices.Clone(signed)
		old := bad[m[0]:m[1]]
		repl := fmt.Sprintf("/ByteRange [%d %d %d %d]", br[0], br[1], br[2], br[3]-7)
		repl += strings.Repeat(" ", len(old)-len(repl))
		copy(bad[m[0]:], repl)
		expect(t, validate(t, bad, online), validation.TotalFailed, validation.FormatFailure)
	})
	t.Run("wrapping: a range over another hex string", func(t *testing.T) {
		br, m := byteRange(t, signed)
		bad := slices.Clone(signed)
		repl := fmt.Sprintf("/ByteRange [%d %d %d %d]", br[0], br[1]+1, br[2], br[3])
		repl += strings.Repeat(" ", m[1]-m[0]-len(repl))
		copy(bad[m[0]:], repl)
		expect(t, validate(t, bad, online), validation.TotalFailed, validation.FormatFailure)
	})

	t.Run("not from a trust anchor", func(t *testing.T) {
		p := newOpenSSLPKI(t)
		expect(t, validate(t, signed, validation.Options{TrustAnchors: []*x509.Certificate{p.ca}, Fetch: online.Fetch}),
			validation.Indeterminate, validation.NoCertificateChainFound)
	})

	t.Run("revoked signer", func(t *testing.T) {
		env := signingtest.New(t, signingtest.Options{})
		online := validation.Options{TrustAnchors: anchors(env), Fetch: validation.RevocationFetcher{R: env.PKI}}
		before := signPDF(t, env, env.Seal, signingtest.PDF("before"), signing.LevelT)
		time.Sleep(1100 * time.Millisecond) // revocation times have whole seconds: after the timestamp's
		env.Revoke(t, env.Seal)
		afterT := signPDF(t, env, env.Seal, signingtest.PDF("after"), signing.LevelT)
		afterB := signPDF(t, env, env.Seal, signingtest.PDF("after"), signing.LevelB)
		// Timestamped after the revocation: TOTAL-FAILED, REVOKED.
		expect(t, validate(t, afterT, online), validation.TotalFailed, validation.Revoked)
		// No proof of existence: it may have been made before or after.
		expect(t, validate(t, afterB, online), validation.Indeterminate, validation.RevokedNoPOE)
		// Timestamped before the revocation: still valid (EN 319 102-1 §5.6.2.4).
		rep := validate(t, before, online)
		expect(t, rep, validation.TotalPassed, "")
		if s := rep.Signatures[0]; s.Revocation[0].Status != "revoked" || !s.ProofOfExistence.Before(*s.Revocation[0].RevokedAt) {
			t.Fatalf("%s", dump(t, rep))
		}
		// A later LT update cannot be made: the signer's OCSP response is no longer good.
		var out bytes.Buffer
		if err := signErr(env, before, &out); err == nil {
			t.Fatal("B-LT over a revoked signer was made")
		}
	})

	t.Run("not a signature", func(t *testing.T) {
		for name, doc := range map[string][]byte{"unsigned PDF": signingtest.PDF("x"), "text": []byte("hello"), "DER": {0x30, 0x03, 0x02, 0x01, 0x01}} {
			if _, err := validation.Validate(t.Context(), bytes.NewReader(doc), int64(len(doc)), online); err == nil || !isInvalid(err) {
				t.Errorf("%s: %v, want signing.ErrInvalid", name, err)
			}
		}
	})
}

func isInvalid(err error) bool { return errors.Is(err, signing.ErrInvalid) }

func signErr(env *signingtest.Env, doc []byte, out *bytes.Buffer) error {
	return pades.Sign(context.Background(), bytes.NewReader(doc), int64(len(doc)), out, env.Seal,
		pades.Options{Level: signing.LevelLT, Timestamper: env.TSA, Revocation: env.PKI})
}

// addDSS appends an LT-style update: a DSS with the given OCSP responses and CRLs, and the
// catalog pointing at it.
func addDSS(t testing.TB, doc []byte, ocsps, crls [][]byte) []byte {
	t.Helper()
	i := bytes.LastIndex(doc, []byte("trailer"))
	root := regexp.MustCompile(`/Root (\d+) 0 R`).FindSubmatch(doc[i:])
	cats := regexp.MustCompile(`(?s)\n`+string(root[1])+` 0 obj\n<<(.*?)>>\nendobj`).FindAllSubmatch(doc, -1)
	if root == nil || cats == nil {
		t.Fatal("no catalog")
	}
	objs := map[int]string{}
	n := 900
	list := func(items [][]byte) string {
		var refs []string
		for _, b := range items {
			objs[n] = fmt.Sprintf("<< /Length %d >>\nstream\n%s\nendstream", len(b), b)
			refs = append(refs, fmt.Sprintf("%d 0 R", n))
			n++
		}
		return "[" + strings.Join(refs, " ") + "]"
	}
	objs[899] = fmt.Sprintf("<< /Type /DSS /OCSPs %s /CRLs %s >>", list(ocsps), list(crls))
	num, _ := strconv.Atoi(string(root[1]))
	objs[num] = "<< /DSS 899 0 R " + string(cats[len(cats)-1][1]) + ">>"
	return appendUpdate(t, doc, objs)
}

// TestRevokedInDSS: the signer's certificate is revoked, the document is timestamped after
// that, and a later LT update's DSS holds the OCSP response saying so: TOTAL-FAILED/REVOKED
// from the embedded data alone.
func TestRevokedInDSS(t *testing.T) {
	env := signingtest.New(t, signingtest.Options{})
	ctx := context.Background()
	env.Revoke(t, env.Seal)
	time.Sleep(1100 * time.Millisecond) // the timestamp strictly after the revocation's second
	doc := signPDF(t, env, env.Seal, signingtest.PDF("revoked"), signing.LevelT)
	tsa := env.PKI.TSA().Cert
	vd, err := signing.Collect(ctx, env.PKI, env.PKI.Chain(tsa), append([]*x509.Certificate{tsa}, env.PKI.Chain(tsa)...))
	if err != nil {
		t.Fatal(err)
	}
	revoked, err := env.PKI.OCSP(ctx, env.Seal.Cert)
	if err != nil {
		t.Fatal(err)
	}
	lt := addDSS(t, doc, append(vd.OCSPs, revoked), vd.CRLs)
	rep := validate(t, lt, validation.Options{TrustAnchors: anchors(env)})
	expect(t, rep, validation.TotalFailed, validation.Revoked)
	s := rep.Signatures[0]
	if !hasCheck(s, "modifications", "PASSED") || s.Revocation[0].Source != "DSS" || s.Revocation[0].Status != "revoked" {
		t.Fatalf("%s", dump(t, rep))
	}
	// The same without the revoked response: the signer's status is unknown offline, which
	// EN 319 102-1 (5.2.5, 5.2.6) calls TRY_LATER.
	rep = validate(t, addDSS(t, doc, vd.OCSPs, vd.CRLs), validation.Options{TrustAnchors: anchors(env)})
	expect(t, rep, validation.Indeterminate, validation.TryLater)
}

// TestUniversalSignatureForgery: signature dictionaries whose /ByteRange or /Contents are
// missing, empty or null (Mladenov et al. 2019) are failures, never skipped checks.
func TestUniversalSignatureForgery(t *testing.T) {
	env := signingtest.New(t, signingtest.Options{})
	opts := validation.Options{TrustAnchors: anchors(env), Fetch: validation.RevocationFetcher{R: env.PKI}}
	signed := signPDF(t, env, env.Seal, signingtest.PDF("usf"), signing.LevelB)
	br, m := byteRange(t, signed)
	same := func(old, repl string) func([]byte) []byte { // an in-place edit of the same length
		return func(doc []byte) []byte {
			if len(repl) < len(old) {
				repl += strings.Repeat(" ", len(old)-len(repl))
			}
			return bytes.Replace(doc, []byte(old), []byte(repl), 1)
		}
	}
	brText := string(signed[m[0]:m[1]])
	// contents replaces the /Contents hex string (and no byte else) by v, padded with spaces.
	contents := func(v string) func([]byte) []byte {
		return func(doc []byte) []byte {
			bad := slices.Clone(doc)
			copy(bad[br[1]:br[2]], v+strings.Repeat(" ", int(br[2]-br[1])-len(v)))
			return bad
		}
	}
	for name, edit := range map[string]func([]byte) []byte{
		"no /ByteRange":        same("/ByteRange", "/ByteRangX"),
		"/ByteRange null":      same(brText, "/ByteRange null"),
		"/ByteRange []":        same(brText, "/ByteRange []"),
		"/ByteRange [0 0 0 0]": same(brText, "/ByteRange [0 0 0 0]"),
		"no /Contents":         same("/Contents <", "/Contentx <"),
		// The rest of the variants of Mladenov et al. 2019: /Contents null or empty, and
		// /ByteRange values that are malformed, overlapping, negative or out of the file.
		"/Contents null":                    contents("null"),
		"/Contents <>":                      contents("<>"),
		"/Contents ()":                      contents("()"),
		"/Contents an indirect reference":   contents("1 0 R"),
		"/ByteRange three values":           same(brText, fmt.Sprintf("/ByteRange [0 %d %d]", br[1], br[2])),
		"/ByteRange six values":             same(brText, fmt.Sprintf("/ByteRange [0 %d %d %d %d 0]", br[1], br[2], br[3], br[2]+br[3])),
		"/ByteRange a name":                 same(brText, fmt.Sprintf("/ByteRange [0 %d /X %d]", br[1], br[3])),
		"/ByteRange reals":                  same(brText, fmt.Sprintf("/ByteRange [0 %d.0 %d.0 %d]", br[1], br[2], br[3])),
		"/ByteRange a dictionary":           same(brText, "/ByteRange << /A 0 >>"),
		"/ByteRange overlapping":            same(brText, fmt.Sprintf("/ByteRange [0 %d %d %d]", br[2], br[1], br[3]+(br[2]-br[1]))),
		"/ByteRange gap of zero":            same(brText, fmt.Sprintf("/ByteRange [0 %d %d %d]", br[1], br[1], br[3]+(br[2]-br[1]))),
		"/ByteRange negative start":         same(brText, fmt.Sprintf("/ByteRange [-1 %d %d %d]", br[1]+1, br[2], br[3])),
		"/ByteRange negative length":        same(brText, fmt.Sprintf("/ByteRange [0 -%d %d %d]", br[1], br[2], br[3])),
		"/ByteRange negative second length": same(brText, fmt.Sprintf("/ByteRange [0 %d %d -%d]", br[1], br[2], br[3])),
		"/ByteRange not from 0":             same(brText, fmt.Sprintf("/ByteRange [1 %d %d %d]", br[1]-1, br[2], br[3])),
		"/ByteRange out of the file":        same(brText, fmt.Sprintf("/ByteRange [0 %d %d %d]", br[1], br[2], br[3]+1000)),
		"/ByteRange far out of the file":    same(brText, fmt.Sprintf("/ByteRange [0 %d %d %d]", br[1], br[2]+1<<40, br[3])),
		"/ByteRange overflowing":            same(brText, fmt.Sprintf("/ByteRange [0 %d %d 9223372036854775807]", br[1], br[2])),
		"/ByteRange the whole file":         same(brText, fmt.Sprintf("/ByteRange [0 %d 0 0]", br[2]+br[3])),
		"/Contents all zeros": func(doc []byte) []byte {
			bad := slices.Clone(doc)
			for i := br[1] + 1; i < br[2]-1; i++ {
				bad[i] = '0'
			}
			return bad
		},
	} {
		t.Run(name, func(t *testing.T) {
			bad := edit(signed)
			if bytes.Equal(bad, signed) || len(bad) != len(signed) {
				t.Fatal("the edit did not apply")
			}
			rep, err := validation.Validate(t.Context(), bytes.NewReader(bad), int64(len(bad)), opts)
			if err != nil {
				if !isInvalid(err) {
					t.Fatalf("%v", err)
				}
				return // refused as malformed: not passed either
			}
			if rep.Indication != validation.TotalFailed {
				t.Fatalf("%s/%s\n%s", rep.Indication, rep.SubIndication, rep.Text())
			}
		})
	}
}

// TestShadowHideAndReplace: the signed revision holds a second, unused content stream; an
// update after the signature points the page at it (Mladenov et al. 2021). The page is not as
// signed: TOTAL-FAILED.
func TestShadowHideAndReplace(t *testing.T) {
	env := signingtest.New(t, signingtest.Options{})
	opts := validation.Options{TrustAnchors: anchors(env), Fetch: validation.RevocationFetcher{R: env.PKI}}
	hidden := "BT /F1 24 Tf 72 720 Td (Pay 900 EUR) Tj ET"
	base := appendUpdate(t, signingtest.PDF("Pay 100 EUR"), map[int]string{6: fmt.Sprintf("<< /Length %d >>\nstream\n%s\nendstream", len(hidden), hidden)})
	signed := signPDF(t, env, env.Seal, base, signing.LevelB)
	expect(t, validate(t, signed, opts), validation.TotalPassed, "")
	pages := regexp.MustCompile(`(?s)\n3 0 obj\n(<<.*?>>)\nendobj`).FindAllSubmatch(signed, -1)
	page := strings.Replace(string(pages[len(pages)-1][1]), "/Contents 4 0 R", "/Contents 6 0 R", 1)
	if !strings.Contains(page, "6 0 R") {
		t.Fatalf("page %s", page)
	}
	rep := validate(t, appendUpdate(t, signed, map[int]string{3: page}), opts)
	expect(t, rep, validation.TotalFailed, validation.FormatFailure)
	if !strings.Contains(rep.Text(), "page 1 changed") {
		t.Fatalf("%s", rep.Text())
	}
}

// TestByteRangeAgreesWithPdfsig: poppler's pdfsig reads the same signed ranges and the same
// "total document signed" verdict as the report, on an honest file and on the incremental
// saving attack.
func TestByteRangeAgreesWithPdfsig(t *testing.T) {
	testenv.Need(t, "pdfsig")
	env := signingtest.New(t, signingtest.Options{})
	opts := validation.Options{TrustAnchors: anchors(env), Fetch: validation.RevocationFetcher{R: env.PKI}}
	signed := signPDF(t, env, env.Seal, signingtest.PDF("Pay 100 EUR"), signing.LevelB)
	content := "BT /F1 24 Tf 72 720 Td (Pay 900 EUR) Tj ET"
	isa := appendUpdate(t, signed, map[int]string{4: fmt.Sprintf("<< /Length %d >>\nstream\n%s\nendstream", len(content), content)})
	re := regexp.MustCompile(`Signed Ranges: \[(\d+) - (\d+)\], \[(\d+) - (\d+)\]`)
	for name, doc := range map[string][]byte{"honest": signed, "incremental saving": isa} {
		t.Run(name, func(t *testing.T) {
			out, err := exec.Command("pdfsig", "-nocert", env.WriteFile(t, "doc.pdf", doc)).CombinedOutput()
			if err != nil {
				t.Fatalf("pdfsig: %v\n%s", err, out)
			}
			m := re.FindSubmatch(out)
			if m == nil {
				t.Fatalf("pdfsig printed no ranges:\n%s", out)
			}
			s := validate(t, doc, opts).Signatures[0]
			n := func(i int) int64 { x, _ := strconv.ParseInt(string(m[i]), 10, 64); return x }
			if want := []int64{n(1), n(2), n(3), n(4) - n(3)}; !slices.Equal(s.ByteRange, want) {
				t.Errorf("byte range %v, pdfsig %v", s.ByteRange, want)
			}
			if total := bytes.Contains(out, []byte("- Total document signed")); total != s.CoversWholeDocument {
				t.Errorf("covers the whole document: %v, pdfsig %v\n%s", s.CoversWholeDocument, total, out)
			}
		})
	}
}

// embeddedToken finds the signature timestamp token inside a CMS: the second ContentInfo of
// signedData (the first is the CMS itself), with a two-byte DER length as the TSA's tokens have.
func embeddedToken(cms []byte) (int, int, bool) {
	oid := []byte{0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02}
	first := bytes.Index(cms, oid)
	if first < 0 {
		return 0, 0, false
	}
	i := bytes.Index(cms[first+1:], oid)
	if i < 0 {
		return 0, 0, false
	}
	start := first + 1 + i - 4
	if start < 0 || cms[start] != 0x30 || cms[start+1] != 0x82 {
		return 0, 0, false
	}
	n := int(cms[start+2])<<8 | int(cms[start+3])
	return start, start + 4 + n, start+4+n <= len(cms)
}

// TestTimestampOfAnotherSignature: the signature timestamp of one PDF put into another's CMS
// (unsigned attributes are not covered by the signature): its imprint is another signature
// value's digest, so the signature fails with HASH_FAILURE, never passes on a borrowed time.
func TestTimestampOfAnotherSignature(t *testing.T) {
	env := signingtest.New(t, signingtest.Options{})
	opts := validation.Options{TrustAnchors: anchors(env), Fetch: validation.RevocationFetcher{R: env.PKI}}
	contents := func(doc []byte) (int64, []byte) {
		br, _ := byteRange(t, doc)
		hexs := doc[br[1]+1 : br[2]-1]
		der := make([]byte, len(hexs)/2)
		if _, err := hex.Decode(der, hexs); err != nil {
			t.Fatal(err)
		}
		return br[1] + 1, der
	}
	// Tokens differ in length by a byte or two (ECDSA values, serials, the time's fraction): keep
	// one signature's token for each length seen, and move it into the first later signature
	// whose token is as long (any earlier length may match, so a match comes within a few).
	seen := map[int][]byte{}
	for i := range 40 {
		b := signPDF(t, env, env.Seal, signingtest.PDF(fmt.Sprintf("B%d", i)), signing.LevelT)
		at, cmsB := contents(b)
		sB, eB, ok := embeddedToken(cmsB)
		if !ok {
			t.Fatal("no token in a signature")
		}
		other, found := seen[eB-sB]
		if !found {
			seen[eB-sB] = slices.Clone(cmsB[sB:eB])
			continue
		}
		expect(t, validate(t, b, opts), validation.TotalPassed, "")
		copy(cmsB[sB:eB], other)
		bad := slices.Clone(b)
		hex.Encode(bad[at:], cmsB)
		rep := validate(t, bad, opts)
		expect(t, rep, validation.TotalFailed, validation.HashFailure)
		if ts := rep.Signatures[0].Timestamps; len(ts) != 1 || !hasCheck(ts[0], "message-imprint", "FAILED") || !hasCheck(rep.Signatures[0], "signature", "PASSED") {
			t.Fatalf("%s", dump(t, rep))
		}
		return
	}
	t.Fatal("no two tokens of the same length in 40 signatures")
}
