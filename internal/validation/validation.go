// Package validation validates signed documents and timestamps in the manner of ETSI EN 319 102-1
// and reports the result in the manner of ETSI TS 119 102-2.
//
// Validate takes a PDF (each signature and document timestamp in it: PAdES baseline, or a
// legacy adbe.pkcs7.detached signature reported as PKCS#7), a CMS SignedData in BER or DER (CAdES or plain
// CMS; a detached one needs Options.Content) or an RFC 3161 TimeStampToken / TimeStampResp
// (whose imprint is checked against Options.Content when given), an XML document with
// XML-DSig or XAdES signatures (enveloped, enveloping, or detached over Options.Content; see
// xmlsig) or an ASiC-E container (XAdES or CAdES over an ASiCManifest; see asic).
//
// The contract: Validate never trusts what the document says about itself. Every signature is
// checked cryptographically, its signing certificate must be bound by signing-certificate(-v2)
// when the format claims a baseline profile, its chain must build to one of
// Options.TrustAnchors at the validation time (or to a service of Options.TrustedLists in a
// positive status at the signature's proof of existence, which then also decide whether the
// signature is qualified, after ETSI TS 119 615), revocation comes from the document's embedded
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
//
// The code: this package names the format of a document and hands it to the format's package
// — pades (PDF), cades (CMS and timestamp tokens), xmlsig (XML-DSig, XAdES), asic (ASiC-E) —
// over core, which they share (the report, the Validator with its options and time, chains,
// revocation, proofs of existence); it also serves the HTTP API (http.go). The format packages
// import core and each other downwards (pades, xmlsig and asic use cades's CMS and timestamp
// validation; asic uses xmlsig), never this package.
package validation

import (
	"bytes"
	"context"
	"fmt"
	"io"

	"github.com/vula-eid/vula/internal/signing"
	"github.com/vula-eid/vula/internal/validation/asic"
	"github.com/vula-eid/vula/internal/validation/cades"
	"github.com/vula-eid/vula/internal/validation/core"
	"github.com/vula-eid/vula/internal/validation/pades"
	"github.com/vula-eid/vula/internal/validation/xmlsig"
)

// The report, the options and the fetchers are the shared core's (internal/validation/core);
// they are named here too, for the callers of Validate.
type (
	Options           = core.Options
	Fetcher           = core.Fetcher
	RevocationFetcher = core.RevocationFetcher
	HTTPFetcher       = core.HTTPFetcher
	Report            = core.Report
	SignatureReport   = core.SignatureReport
	SignedObject      = core.SignedObject
	ContainerEntry    = core.ContainerEntry
	CertInfo          = core.CertInfo
	RevocationUse     = core.RevocationUse
	Check             = core.Check
	TrustedService    = core.TrustedService
	Indication        = core.Indication
	SubIndication     = core.SubIndication
)

// The indications and sub-indications of EN 319 102-1 (see core).
const (
	TotalPassed   = core.TotalPassed
	TotalFailed   = core.TotalFailed
	Indeterminate = core.Indeterminate

	FormatFailure              = core.FormatFailure
	HashFailure                = core.HashFailure
	SigCryptoFailure           = core.SigCryptoFailure
	Revoked                    = core.Revoked
	RevokedNoPOE               = core.RevokedNoPOE
	RevokedCANoPOE             = core.RevokedCANoPOE
	NoSigningCertificateFound  = core.NoSigningCertificateFound
	NoCertificateChainFound    = core.NoCertificateChainFound
	CertificateChainGeneral    = core.CertificateChainGeneral
	ChainConstraintsFailure    = core.ChainConstraintsFailure
	OutOfBoundsNoPOE           = core.OutOfBoundsNoPOE
	NotYetValid                = core.NotYetValid
	Expired                    = core.Expired
	TryLater                   = core.TryLater
	RevocationOutOfBoundsNoPOE = core.RevocationOutOfBoundsNoPOE
	SignedDataNotFound         = core.SignedDataNotFound
	SigConstraintsFailure      = core.SigConstraintsFailure
	TimestampOrderFailure      = core.TimestampOrderFailure
	CryptoConstraintsFailure   = core.CryptoConstraintsFailure
)

// SubIndicationsOf lists the sub-indications EN 319 102-1 gives each indication.
var SubIndicationsOf = core.SubIndicationsOf

// maxInMemory bounds the document when no MaxSize is set.
//
// The memory bound: a PDF is read where it lies (doc), never copied. The byte ranges are
// hashed as they are read, the file is scanned 1 MB at a time (pades/pdfio.go) and the revisions
// compared 64 KB of stream data at a time (pades/diff.go), so a PDF's validation holds only the
// objects it reads: dictionaries, the signatures' CMS, the DSS's data (at most 64 MB, pades.maxDSS)
// and an object stream being read (at most 64 MB decoded, pdfsafe) — not the file's size.
// BenchmarkValidateLargePDF measures 1.4 MB of heap for a 50 MB B-B PDF and 2.7 MB at B-LT
// (it was 50 and 275 MB). The other formats (CMS, XML, timestamps, ASiC) are read into
// memory, up to their own limits (xmlsig.MaxSize).
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
	if len(opts.TrustAnchors) == 0 && opts.TrustedLists == nil {
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
	v := core.New(ctx, opts)
	rep := Report{ValidationTime: v.Time(), Size: size}
	var err error
	switch format {
	case "pdf":
		rep.Format = "PDF"
		err = pades.Validate(v, doc, size, &rep)
	case "cms":
		rep.Format = "CMS"
		err = cades.Validate(v, data, &rep)
	case "tsr":
		rep.Format = "RFC3161"
		err = cades.ValidateTimestamp(v, data, &rep)
	case "xml":
		rep.Format = "XML"
		err = xmlsig.Validate(v, data, &rep)
	case "zip":
		rep.Format = "ASiC-E"
		err = asic.Validate(v, data, &rep)
	default:
		return Report{}, fmt.Errorf("%w: validation: not a PDF, a CMS signature or an RFC 3161 timestamp", signing.ErrInvalid)
	}
	if err != nil {
		return Report{}, err
	}
	rep.Summarize()
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
		if cades.IsTimestamp(b) {
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

// ListVerifier verifies a trusted list's signature (trustlist.Verifier) with the XML-DSig core
// that validates XML documents.
type ListVerifier = xmlsig.ListVerifier
