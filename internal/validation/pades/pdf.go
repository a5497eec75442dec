package pades

import (
	"bytes"
	"cmp"
	"crypto"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/digitorus/pdf"

	"github.com/vula-eid/vula/internal/cms"
	"github.com/vula-eid/vula/internal/pdfsafe"
	"github.com/vula-eid/vula/internal/signing"
	"github.com/vula-eid/vula/internal/validation/cades"
	"github.com/vula-eid/vula/internal/validation/core"
)

// pdfSig is a signature dictionary found through the AcroForm.
type pdfSig struct {
	field     string
	typ       string // Sig, DocTimeStamp
	subFilter string
	byteRange []int64
	contents  []byte
	m         string
}

// Validate validates every signature and document timestamp of the PDF of size bytes in data,
// read where it lies.
//
// digitorus/pdf reports much malformed input by panicking, so the reading runs under recover:
// a panic there is bad input, signing.ErrInvalid.
func Validate(v *core.Validator, data io.ReaderAt, size int64, rep *core.Report) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: validation: malformed PDF: %v", signing.ErrInvalid, p)
		}
	}()
	// pdfsafe refuses what digitorus/pdf would loop on (ErrInvalid, or ErrUnsupported when
	// encrypted).
	r, err := pdfsafe.Open(data, size)
	if err != nil {
		return fmt.Errorf("validation: %w", err)
	}
	if !r.Trailer().Key("Encrypt").IsNull() {
		return fmt.Errorf("%w: validation: an encrypted PDF", signing.ErrUnsupported)
	}
	root := r.Trailer().Key("Root")
	if root.Kind() != pdf.Dict {
		return fmt.Errorf("%w: validation: the PDF has no catalog", signing.ErrInvalid)
	}
	ends, err := revisionEnds(data, size)
	if err != nil {
		return err
	}
	rep.Revisions = len(ends)
	v = v.With(readDSS(root.Key("DSS")))
	sigs := findSignatures(root.Key("AcroForm").Key("Fields"))
	if len(sigs) == 0 {
		return fmt.Errorf("%w: validation: the PDF has no signature", signing.ErrInvalid)
	}
	// dssAfter is where the first DSS after offset end begins (-1: none): B-LTA needs a
	// document timestamp over the validation data added after the signature.
	dssAfter := func(end int64) int64 { return findFrom(data, end, size, reDSS) }
	type done struct {
		s          pdfSig
		rep        core.SignatureReport
		end        int64
		signedData cades.Imprint
		ok         bool // the byte range is sound: the rest of the checks apply
		proves     bool // a document timestamp that passed: a proof of existence of what it covers
		embed      bool
		ts         bool
	}
	results := make([]done, 0, len(sigs))
	nSig, nTS := 0, 0
	for _, s := range sigs {
		var sr core.SignatureReport
		if s.typ == "DocTimeStamp" || s.subFilter == "ETSI.RFC3161" {
			nTS++
			sr = core.SignatureReport{ID: fmt.Sprintf("doc-ts%d", nTS), Kind: "document-timestamp", Format: "PAdES document timestamp (ETSI.RFC3161)"}
		} else {
			nSig++
			sr = core.SignatureReport{ID: fmt.Sprintf("sig%d", nSig), Kind: "signature"}
		}
		sr.Info("field", "field %q, /SubFilter /%s", s.field, s.subFilter)
		end, signedData, ok := checkByteRange(&sr, data, size, s, ends)
		results = append(results, done{s: s, rep: sr, end: end, signedData: signedData, ok: ok})
	}
	// later is the proof of existence a passed document timestamp gives to what ends at or
	// before end (its range covers it): the earliest such timestamp's time.
	later := func(end int64) core.Proof {
		var p core.Proof
		for _, d := range results {
			if d.proves && d.end > end {
				p = p.Earlier(core.Proof{At: d.rep.ProofOfExistence, By: "the document timestamp " + d.rep.ID})
			}
		}
		return p
	}
	// Document timestamps from the last to the first: each may live on the proof a later one
	// gives it once its own TSA certificate has expired (the LTA chain of EN 319 102-1 §5.6.3).
	order := make([]int, 0, len(results))
	for i := range results {
		order = append(order, i)
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(results[b].end, results[a].end) })
	for _, i := range order {
		d := &results[i]
		if !d.ok || d.rep.Kind != "document-timestamp" {
			continue
		}
		t := cades.Timestamp(v, d.s.contents, "document-timestamp", d.rep.ID, d.signedData, later(d.end))
		t.Checks = append(d.rep.Checks, t.Checks...)
		t.Format, t.ByteRange, t.Revision, t.CoversWholeDocument = d.rep.Format, d.rep.ByteRange, d.rep.Revision, d.rep.CoversWholeDocument
		d.rep = t
		d.proves = t.Indication == core.TotalPassed
	}
	for i := range results {
		d := &results[i]
		if d.ok && d.rep.Kind == "signature" {
			d.embed, d.ts = pdfSignature(v, &d.rep, d.s, d.signedData, later(d.end))
		}
		if d.ok {
			laterUpdates(&d.rep, data, size, d.end, ends, sigs)
		}
		d.rep.Conclude()
	}
	// Levels: B-LTA needs a passed document timestamp whose range covers the DSS.
	for i := range results {
		s := &results[i].rep
		if s.Kind != "signature" || s.Format != "PAdES-BASELINE" || s.Indication == core.TotalFailed {
			continue
		}
		s.Level = signing.LevelB
		if !results[i].ts {
			continue
		}
		s.Level = signing.LevelT
		if !results[i].embed {
			continue
		}
		s.Level = signing.LevelLT
		dss := dssAfter(results[i].end)
		for _, d := range results {
			if dss >= 0 && d.rep.Kind == "document-timestamp" && d.rep.Indication == core.TotalPassed && d.end > dss {
				s.Level = signing.LevelLTA
			}
		}
	}
	for _, d := range results {
		rep.Signatures = append(rep.Signatures, d.rep)
	}
	return nil
}

var reDSS = regexp.MustCompile(`/Type\s*/DSS\b`)

// maxDSS bounds the decoded certificates, OCSP responses and CRLs read from a DSS.
const maxDSS = 64 << 20

// readDSS takes the certificates, OCSP responses and CRLs of the Document Security Store.
func readDSS(dss pdf.Value) core.Evidence {
	if dss.Kind() != pdf.Dict {
		return core.Evidence{}
	}
	e := core.Evidence{Source: "DSS"}
	// The DSS is bounded as a whole: its entries may all name one stream that inflates to
	// its limit.
	left := int64(maxDSS)
	streams := func(key string) [][]byte {
		var out [][]byte
		a := dss.Key(key)
		for i := range min(a.Len(), 10000) {
			if left <= 0 {
				break
			}
			if b, err := readStream(a.Index(i), min(left, 16<<20)); err == nil {
				out = append(out, b)
				left -= int64(len(b))
			}
		}
		return out
	}
	for _, der := range streams("Certs") {
		if c, err := x509.ParseCertificate(der); err == nil {
			e.Certs = append(e.Certs, c)
		}
	}
	e.OCSPs = streams("OCSPs")
	e.CRLs = streams("CRLs")
	return e
}

func readStream(s pdf.Value, limit int64) ([]byte, error) {
	if s.Kind() != pdf.Stream {
		return nil, errors.New("not a stream")
	}
	// pdfsafe.Reader, not s.Reader(): a PNG predictor's huge /Columns would make digitorus/pdf
	// allocate past memory, which ends the process.
	rc, err := pdfsafe.Reader(s)
	if err != nil {
		return nil, err
	}
	defer func() { _ = rc.Close() }() // read only
	b, err := io.ReadAll(io.LimitReader(rc, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, errors.New("stream too large")
	}
	return b, nil
}

// findSignatures walks the AcroForm's field tree for signature fields with a value.
func findSignatures(fields pdf.Value) []pdfSig {
	var out []pdfSig
	budget := 10000
	var walk func(f pdf.Value, name, ft string, depth int)
	walk = func(f pdf.Value, name, ft string, depth int) {
		if budget--; budget < 0 || depth > 32 || f.Kind() != pdf.Dict {
			return
		}
		if t := f.Key("T"); t.Kind() == pdf.String {
			if name != "" {
				name += "."
			}
			name += t.Text()
		}
		if x := f.Key("FT"); x.Kind() == pdf.Name {
			ft = x.Name()
		}
		if kids := f.Key("Kids"); kids.Kind() == pdf.Array {
			for i := range kids.Len() {
				walk(kids.Index(i), name, ft, depth+1)
			}
		}
		sv := f.Key("V")
		if ft != "Sig" || sv.Kind() != pdf.Dict {
			return
		}
		s := pdfSig{field: name, typ: sv.Key("Type").Name(), subFilter: sv.Key("SubFilter").Name(),
			contents: []byte(sv.Key("Contents").RawString()), m: sv.Key("M").RawString()}
		br := sv.Key("ByteRange")
		for i := range min(br.Len(), 16) {
			x := br.Index(i)
			if x.Kind() != pdf.Integer {
				s.byteRange = nil
				break
			}
			s.byteRange = append(s.byteRange, x.Int64())
		}
		out = append(out, s)
	}
	for i := range min(fields.Len(), 10000) {
		walk(fields.Index(i), "", "", 0)
	}
	return out
}

// checkByteRange checks that the signature's /ByteRange is [0 a b c] with the gap exactly the
// /Contents hex string holding this signature, and the second range ending at the end of a
// revision. It returns that end and the digest function over the two ranges.
func checkByteRange(sr *core.SignatureReport, data io.ReaderAt, size int64, s pdfSig, ends []int64) (int64, cades.Imprint, bool) {
	br := s.byteRange
	sr.ByteRange = br
	if len(br) != 4 || br[0] != 0 || br[1] <= 0 || br[2] <= br[1] || br[3] < 0 || br[2] > size || br[3] > size-br[2] {
		sr.Fail("byte-range", core.FormatFailure, "/ByteRange %v is not [0 a b c] within the file's %d bytes", br, size)
		return 0, nil, false
	}
	a, b, end := br[1], br[2], br[2]+br[3]
	// The gap must be this signature's /Contents in hex: its length is known before reading it.
	if b-a != 2*int64(len(s.contents))+2 {
		sr.Fail("byte-range", core.FormatFailure, "the gap is not this signature's /Contents (signature wrapping?)")
		return 0, nil, false
	}
	gap, err := readAt(data, a, b-a)
	if err != nil {
		sr.Fail("byte-range", core.FormatFailure, "%v", err)
		return 0, nil, false
	}
	if gap[0] != '<' || gap[len(gap)-1] != '>' {
		sr.Fail("byte-range", core.FormatFailure, "the gap between the ranges is not one hex string")
		return 0, nil, false
	}
	decoded := make([]byte, hex.DecodedLen(len(gap)-2))
	if n, err := hex.Decode(decoded, gap[1:len(gap)-1]); err != nil || n != len(decoded) || len(gap)%2 != 0 {
		sr.Fail("byte-range", core.FormatFailure, "the gap between the ranges is not a hex string of whole bytes")
		return 0, nil, false
	}
	if !bytes.Equal(decoded, s.contents) {
		sr.Fail("byte-range", core.FormatFailure, "the gap is not this signature's /Contents (signature wrapping?)")
		return 0, nil, false
	}
	// What precedes the gap, up to 4 KB of it: the key and the white space after it.
	lead := min(a, 4096)
	pre, err := readAt(data, a-lead, lead)
	if err != nil {
		sr.Fail("byte-range", core.FormatFailure, "%v", err)
		return 0, nil, false
	}
	if before := bytes.TrimRight(pre, " \t\r\n\f\x00"); !bytes.HasSuffix(before, []byte("/Contents")) {
		sr.Fail("byte-range", core.FormatFailure, "the gap is not preceded by the /Contents key")
		return 0, nil, false
	}
	endsInEOF := false
	if end >= 5 {
		if last, err := readAt(data, end-5, 5); err == nil {
			endsInEOF = string(last) == "%%EOF"
		}
	}
	rev := slices.IndexFunc(ends, func(e int64) bool {
		return e == end || (e > end && endsInEOF && e-end <= 2)
	})
	if rev < 0 {
		sr.Fail("byte-range", core.FormatFailure, "the signed range ends at %d, which is not the end of a revision", end)
		return 0, nil, false
	}
	sr.Revision = rev + 1
	whole, err := blank(data, end, size, " \t\r\n\f\x00")
	if err != nil {
		sr.Fail("byte-range", core.FormatFailure, "%v", err)
		return 0, nil, false
	}
	sr.CoversWholeDocument = whole
	sr.Pass("byte-range", "covers bytes 0-%d and %d-%d: all of revision %d of %d except the /Contents", a, br[2], end, rev+1, len(ends))
	// The ranges are hashed as they are read, once for each hash asked for.
	digest := func(h crypto.Hash) ([]byte, error) {
		if !h.Available() || h == crypto.SHA1 {
			return nil, fmt.Errorf("hash %v is not accepted", h)
		}
		x := h.New()
		if _, err := io.Copy(x, io.NewSectionReader(data, 0, a)); err != nil {
			return nil, fmt.Errorf("reading the PDF: %v", err)
		}
		if _, err := io.Copy(x, io.NewSectionReader(data, br[2], end-br[2])); err != nil {
			return nil, fmt.Errorf("reading the PDF: %v", err)
		}
		return x.Sum(nil), nil
	}
	return end, digest, true
}

// pdfSignature checks the CMS of a signature dictionary.
func pdfSignature(v *core.Validator, sr *core.SignatureReport, s pdfSig, content cades.Imprint, later core.Proof) (embedded, timestamped bool) {
	switch s.subFilter {
	case "ETSI.CAdES.detached":
		sr.Format = "PAdES-BASELINE"
	case "adbe.pkcs7.detached":
		sr.Format = "PKCS#7"
		sr.Info("format", "/SubFilter /adbe.pkcs7.detached: a PKCS#7 signature, not PAdES baseline")
	default:
		sr.Format = "PDF /" + s.subFilter
		sr.Fail("format", core.FormatFailure, "/SubFilter /%s is not supported (only ETSI.CAdES.detached and adbe.pkcs7.detached)", s.subFilter)
		return false, false
	}
	p, err := cades.Parse(s.contents)
	if err != nil {
		sr.Fail("format", core.FormatFailure, "/Contents: %v", err)
		return false, false
	}
	if p.EContent != nil {
		sr.Fail("format", core.FormatFailure, "the CMS is not detached")
		return false, false
	}
	if sr.Format == "PAdES-BASELINE" {
		if _, ok := p.Attrs[cms.OIDSigningTime.String()]; ok {
			sr.Fail("format", core.FormatFailure, "a PAdES baseline signature must not carry signing-time (EN 319 142-1 §6.3)")
		} else {
			sr.Pass("format", "PAdES baseline: CAdES detached, no signing-time")
		}
	}
	embedded, timestamped = cades.Signature(v, sr, p, content, sr.Format == "PAdES-BASELINE", later)
	if sr.ClaimedSigningTime == nil {
		if t, ok := parsePDFDate(s.m); ok {
			sr.ClaimedSigningTime = &t
		}
	}
	return embedded, timestamped
}

// parsePDFDate reads D:YYYYMMDDHHmmSS with an optional Z or +HH'mm'.
func parsePDFDate(s string) (time.Time, bool) {
	s = strings.TrimPrefix(s, "D:")
	s = strings.ReplaceAll(s, "'", "")
	for _, layout := range []string{"20060102150405Z", "20060102150405-0700", "20060102150405"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), true
		}
	}
	return time.Time{}, false
}
