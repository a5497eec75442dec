// Package validation validates signed documents and timestamps in the manner of ETSI EN 319 102-1
// and reports the result in the manner of ETSI TS 119 102-2.
//
// Validate takes a PDF (each signature and document timestamp in it: PAdES baseline, or a
// legacy adbe.pkcs7.detached signature reported as PKCS#7), a CMS SignedData in BER or DER (CAdES or plain
// CMS; a detached one needs Options.Content) or an RFC 3161 TimeStampToken / TimeStampResp
// (whose imprint is checked against Options.Content when given), an XML document with
// XML-DSig or XAdES signatures (enveloped, enveloping, or detached over Options.Content; see
// xml.go) or an ASiC-E container (XAdES or CAdES over an ASiCManifest; see asic.go).
//
// The contract: Validate never trusts what the document says about itself. Every signature is
// checked cryptographically, its signing certificate must be bound by signing-certificate(-v2)
// when the format claims a baseline profile, its chain must build to one of
// Options.TrustAnchors at the validation time, revocation comes from the document's embedded
// data (DSS, CMS revocation choices) or from Options.Fetch, and a timestamp gives a proof of
// existence only once its own token, imprint and TSA chain are verified. The result per
// signature is an indication (TOTAL-PASSED, TOTAL-FAILED, INDETERMINATE) with an EN 319 102-1
// sub-indication and the list of checks that led there. An input that is not a signature at all
// is an error wrapping signing.ErrInvalid (ErrUnsupported, ErrTooLarge), never a report.
//
// A PDF signature is validated over the revision its /ByteRange ends with. The revisions after
// it may add only what PAdES lets follow a signature — the DSS, document timestamps, further
// signatures with their fields and widgets (none after a DocMDP P=1 certification) — and what
// the certification's DocMDP and the signatures' FieldMDP locks permit: a form field not locked
// filled in (its value with its appearance; not after P=1), annotations under P=3; these are
// listed in the report's laterUpdates. It is checked by comparing the signed revision with the
// whole file object by object (catalog, page tree, pages' content and resources, annotations,
// form). Any other change (the incremental saving and shadow attacks) fails the signature with
// FORMAT_FAILURE, naming the change: its bytes still verify, but the document shown is not the
// one signed, and a relying party reads the document.
//
// A timestamp's time is a proof of existence for what it covers, never for itself: its TSA's
// chain and revocation are checked at the validation time, unless a later verified timestamp
// covers the token. In a PDF, a passed document timestamp proves that everything its range
// covers existed at its time (earlier document timestamps, signatures and their timestamps, the
// DSS): those are then validated at that time once a certificate of theirs has expired (EN 319
// 102-1 §5.6.2.1, past signature validation), from the last document timestamp to the first,
// so the latest one, validated now, keeps the earlier ones alive. In XAdES a passed
// xadesv141:ArchiveTimeStamp does the same for the signature and the unsigned properties
// before it (SignatureTimeStamp, CertificateValues, RevocationValues, older archive
// timestamps), the newest validated now.
package validation

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"time"

	"github.com/vula-eid/vula/internal/signing"
)

// Options says what to validate against.
type Options struct {
	// TrustAnchors are the roots a chain must end at. Required.
	TrustAnchors []*x509.Certificate
	// Time is the clock of the validation (the "current time" of EN 319 102-1); time.Now when nil.
	Time func() time.Time
	// Fetch gets revocation data online when the document embeds none; nil: embedded data only.
	Fetch Fetcher
	// Content is the signed content of a detached CMS signature, or the data a standalone
	// timestamp is over; optional.
	Content io.ReaderAt
	// ContentSize is the size of Content.
	ContentSize int64
	// MaxSize bounds the document (signing.ErrTooLarge above it); 0: no bound.
	MaxSize int64
}

// Fetcher gets revocation data online.
type Fetcher interface {
	// OCSP returns a DER OCSPResponse on cert from the responder of issuer.
	OCSP(ctx context.Context, cert, issuer *x509.Certificate) ([]byte, error)
	// CRL returns the DER CRL of the CA that issued cert.
	CRL(ctx context.Context, cert *x509.Certificate) ([]byte, error)
}

// RevocationFetcher adapts a signing.Revocation (the platform's CA in process) to a Fetcher.
type RevocationFetcher struct{ R signing.Revocation }

var _ Fetcher = RevocationFetcher{}

func (f RevocationFetcher) OCSP(ctx context.Context, cert, _ *x509.Certificate) ([]byte, error) {
	return f.R.OCSP(ctx, cert)
}

func (f RevocationFetcher) CRL(ctx context.Context, cert *x509.Certificate) ([]byte, error) {
	return f.R.CRLOf(ctx, cert)
}

// maxInMemory bounds the document when no MaxSize is set.
//
// The memory bound: a PDF is read where it lies (doc), never copied. The byte ranges are
// hashed as they are read, the file is scanned 1 MB at a time (pdfio.go) and the revisions
// compared 64 KB of stream data at a time (diff.go), so a PDF's validation holds only the
// objects it reads: dictionaries, the signatures' CMS, the DSS's data (at most 64 MB, maxDSS)
// and an object stream being read (at most 64 MB decoded, pdfsafe) — not the file's size.
// BenchmarkValidateLargePDF measures 1.4 MB of heap for a 50 MB B-B PDF and 2.7 MB at B-LT
// (it was 50 and 275 MB). The other formats (CMS, XML, timestamps, ASiC) are read into
// memory, up to their own limits (maxXMLSize).
const maxInMemory = 512 << 20

// Validate validates the document of size bytes read from doc.
func Validate(ctx context.Context, doc io.ReaderAt, size int64, opts Options) (Report, error) {
	limit := opts.MaxSize
	if limit <= 0 {
		limit = maxInMemory
	}
	if size > limit {
		return Report{}, fmt.Errorf("%w: validation: the document has %d bytes, the limit is %d", signing.ErrTooLarge, size, limit)
	}
	if size <= 0 {
		return Report{}, fmt.Errorf("%w: validation: empty document", signing.ErrInvalid)
	}
	if len(opts.TrustAnchors) == 0 {
		return Report{}, fmt.Errorf("%w: validation: no trust anchors", signing.ErrInvalid)
	}
	head := make([]byte, min(size, 1024))
	if _, err := doc.ReadAt(head, 0); err != nil && err != io.EOF {
		return Report{}, fmt.Errorf("validation: reading the document: %w", err)
	}
	format := detect(head)
	var data []byte
	if format != "pdf" {
		data = make([]byte, size)
		if _, err := doc.ReadAt(data, 0); err != nil && err != io.EOF {
			return Report{}, fmt.Errorf("validation: reading the document: %w", err)
		}
		format = detect(data)
	}
	v := &validator{ctx: ctx, opts: opts, now: time.Now}
	if opts.Time != nil {
		v.now = opts.Time
	}
	v.vtime = v.now().UTC()
	rep := Report{ValidationTime: v.vtime, Size: size}
	var err error
	switch format {
	case "pdf":
		rep.Format = "PDF"
		err = v.pdf(doc, size, &rep)
	case "cms":
		rep.Format = "CMS"
		err = v.cmsDocument(data, &rep)
	case "tsr":
		rep.Format = "RFC3161"
		err = v.timestampDocument(data, &rep)
	case "xml":
		rep.Format = "XML"
		err = v.xmlDocument(data, &rep)
	case "zip":
		rep.Format = "ASiC-E"
		err = v.asicContainer(data, &rep)
	default:
		return Report{}, fmt.Errorf("%w: validation: not a PDF, a CMS signature or an RFC 3161 timestamp", signing.ErrInvalid)
	}
	if err != nil {
		return Report{}, err
	}
	rep.summarize()
	return rep, nil
}

// detect names the format by its first bytes.
func detect(b []byte) string {
	switch {
	case bytes.HasPrefix(b, []byte("%PDF-")) || (len(b) > 5 && bytes.Contains(b[:min(len(b), 1024)], []byte("%PDF-"))):
		return "pdf"
	case bytes.HasPrefix(b, []byte("PK\x03\x04")):
		return "zip"
	case len(b) > 0 && b[0] == 0x30:
		if isTimeStampResp(b) || isTimeStampToken(b) {
			return "tsr"
		}
		return "cms"
	}
	t := bytes.TrimLeft(b, " \t\r\n\xef\xbb\xbf")
	if len(t) > 0 && t[0] == '<' {
		return "xml"
	}
	return ""
}

// validator holds one validation's state.
type validator struct {
	ctx   context.Context
	opts  Options
	now   func() time.Time
	vtime time.Time
	// extra are certificates and revocation data embedded outside the signature (the DSS).
	extraCerts []*x509.Certificate
	ocsps      [][]byte
	crls       [][]byte
	source     string // where extra revocation data comes from: "DSS"
	memos      map[string]memoEntry
}
