package csc

import (
	"bytes"
	"cmp"
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/vula-eid/vula/hsm"
	"github.com/vula-eid/vula/internal/signing"
	"github.com/vula-eid/vula/internal/signing/cades"
	"github.com/vula-eid/vula/internal/signing/pades"
	"github.com/vula-eid/vula/internal/signing/xades"
)

// DocumentDigest is what an authorization for signDoc lists for one document: its hash with h
// over the whole document.
func DocumentDigest(h crypto.Hash, doc []byte) []byte {
	d := h.New()
	d.Write(doc)
	return d.Sum(nil)
}

// Signature formats (CSC signature_format).
const (
	FormatPAdES = "P"
	FormatXAdES = "X"
	FormatCAdES = "C"
)

// Signed envelope properties (CSC signed_envelope_property) Vula makes. The spec's defaults are
// Certification for PAdES, Enveloped for XAdES and Attached for CAdES; Vula's CAdES is detached
// only, so Attached and Parallel are refused as unsupported.
const (
	Certification = "Certification" // PAdES: a certification signature (DocMDP, P=2)
	Revision      = "Revision"      // PAdES: an approval signature, one more revision
	Enveloped     = "Enveloped"     // XAdES: inside the signed document's root element
	Enveloping    = "Enveloping"    // XAdES: the document inside the signature
	Detached      = "Detached"      // XAdES, CAdES: the signature apart from the document
	Attached      = "Attached"      // CAdES: the document inside the signature (not made)
	Parallel      = "Parallel"      // CAdES: parallel signatures (not made)
)

// Document is one document for SignDoc.
type Document struct {
	Data             []byte
	Format           string            // CSC signature_format: "P" PAdES, "X" XAdES, "C" CAdES
	Level            signing.Level     // from CSC conformance_level ("Ades-B-B", "Ades-B-T", "Ades-B-LT", "Ades-B-LTA")
	Packaging        string            // CSC signed_envelope_property; "" = the format's default
	Visible          *pades.Appearance // PAdES only; nil = invisible
	Reason, Location string            // PAdES only
	// Name is the relative URI a detached XAdES signature refers to the document by;
	// "document-N" (N from 1 in the request) when empty.
	Name string
	// certifyFirst: PAdES with the envelope property left to its default (see checkDocument).
	certifyFirst bool
}

// DocRequest is what signatures/signDoc asks for.
type DocRequest struct {
	CredentialID string
	SAD          string
	// HashOID is as authorized ("" = the SAD's); each document's digest (DocumentDigest) is
	// taken with it and must be one the SAD lists and has not spent.
	HashOID              string
	Documents            []Document
	ReturnValidationInfo bool
}

// DocResult is what SignDoc made: the signed documents (PAdES, enveloped or enveloping XAdES)
// or detached signatures (detached XAdES, CAdES), in the order of the request.
type DocResult struct {
	Documents      [][]byte
	ValidationInfo *signing.ValidationData // when asked: the certificates, OCSP responses and CRLs (signing.Collect)
}

// SignatureFormats is what info announces as signature_formats (CSC API v2.0.0.2 §11.1): the
// formats SignDoc makes and, for each, the signed_envelope_property values it takes.
func (s *Service) SignatureFormats() map[string]any {
	return map[string]any{
		"formats":             []string{FormatCAdES, FormatXAdES, FormatPAdES},
		"envelope_properties": [][]string{{Detached}, {Enveloped, Enveloping, Detached}, {Certification, Revision}},
	}
}

// ConformanceLevels is what info announces as conformance_levels, one list for every format
// (CSC API v2.0.0.2 §11.1): each format is made at each of them, the levels from B-T on only
// with a timestamp authority.
func (s *Service) ConformanceLevels() []string {
	if s.cfg.Timestamper == nil {
		return []string{"Ades-B-B"}
	}
	return []string{"Ades-B-B", "Ades-B-T", "Ades-B-LT", "Ades-B-LTA"}
}

// MaxDocument bounds one document of SignDoc.
const MaxDocument = 32 << 20

// ParseConformanceLevel reads a CSC conformance_level: the spec spells the baseline levels
// Ades-B-B, Ades-B-T, Ades-B-LT and Ades-B-LTA; "" is Ades-B-B (the spec's default).
func ParseConformanceLevel(s string) (signing.Level, error) {
	switch s {
	case "", "Ades-B-B", "AdES-B-B":
		return signing.LevelB, nil
	case "Ades-B-T", "AdES-B-T":
		return signing.LevelT, nil
	case "Ades-B-LT", "AdES-B-LT":
		return signing.LevelLT, nil
	case "Ades-B-LTA", "AdES-B-LTA":
		return signing.LevelLTA, nil
	}
	return "", invalidRequest("Invalid parameter conformance_level: %q (Ades-B-B, Ades-B-T, Ades-B-LT or Ades-B-LTA)", s)
}

// checkDocument checks document i's format options and fills in the defaults: the level B-B,
// the format's envelope property.
func (s *Service) checkDocument(i int, d Document) (Document, error) {
	if d.Level == "" {
		d.Level = signing.LevelB
	}
	if d.Name == "" {
		d.Name = "document-" + strconv.Itoa(i+1)
	}
	// CSC's default for PAdES is Certification; on a document already signed that can only
	// mean one more (approval) signature, so the default certifies only a first signature.
	d.certifyFirst = d.Format == FormatPAdES && d.Packaging == ""
	d.Packaging = cmp.Or(d.Packaging, map[string]string{FormatPAdES: Certification, FormatXAdES: Enveloped, FormatCAdES: Attached}[d.Format])
	p, err := s.packaging(i, d)
	d.Packaging = p
	return d, err
}

func (s *Service) packaging(i int, d Document) (string, error) {
	p := d.Packaging
	if d.Format != FormatPAdES && (d.Visible != nil || d.Reason != "" || d.Location != "") {
		return "", invalidRequest("Invalid parameter documents[%d]: a visible signature, reason and location are for PAdES only", i)
	}
	if _, err := signing.ParseLevel(string(d.Level)); err != nil {
		return "", invalidRequest("Invalid parameter conformance_level of documents[%d]", i)
	}
	if d.Level.AtLeast(signing.LevelT) && s.cfg.Timestamper == nil {
		return "", &Error{Status: 400, Code: "invalid_request", Description: fmt.Sprintf("Invalid parameter conformance_level of documents[%d]: no timestamp authority is configured for %s", i, d.Level)}
	}
	switch d.Format {
	case FormatPAdES:
		if p == "" {
			p = Certification
		}
		if p != Certification && p != Revision {
			return "", invalidRequest("Invalid parameter signed_envelope_property of documents[%d]: %q for PAdES (Certification or Revision)", i, d.Packaging)
		}
		if d.Visible != nil {
			if err := pades.CheckText(d.Visible.Text); err != nil {
				return "", invalidRequest("Invalid parameter documents[%d]: %v", i, err)
			}
		}
	case FormatXAdES:
		if p == "" {
			p = Enveloped
		}
		if p != Enveloped && p != Enveloping && p != Detached {
			return "", invalidRequest("Invalid parameter signed_envelope_property of documents[%d]: %q for XAdES (Enveloped, Enveloping or Detached)", i, d.Packaging)
		}
	case FormatCAdES:
		if p == "" {
			p = Attached
		}
		if p != Detached {
			return "", invalidRequest("Invalid parameter signed_envelope_property of documents[%d]: %q for CAdES: only Detached is supported", i, p)
		}
	default:
		return "", invalidRequest("Invalid parameter signature_format of documents[%d]: %q (P, X or C)", i, d.Format)
	}
	return p, nil
}

// SignDoc signs each document with the credential through the signing engine, after redeeming
// the SAD's entries for the documents' digests (one signature each, by compare-and-swap as in
// SignHash): a digest not listed or already spent, another official's credential, an expired
// SAD or a disabled credential are refused with signHash's errors, and nothing is signed. The
// key signs through the audited key layer, once per document, its audit record naming the SAD.
func (s *Service) SignDoc(ctx context.Context, subject string, r DocRequest) (DocResult, error) {
	if r.SAD == "" || len(r.SAD) > 256 {
		return DocResult{}, errInvalidSAD
	}
	if r.HashOID == "" {
		// The SAD's own algorithm (the CSC documents parameter names none).
		rec, _, err := s.sadRecord(ctx, sadKey(r.SAD), subject, r.CredentialID)
		if err != nil {
			return DocResult{}, err
		}
		r.HashOID = rec.HashOID
	}
	h, ok := hashOIDs[r.HashOID]
	if !ok {
		return DocResult{}, invalidRequest("Invalid parameter hashAlgorithmOID")
	}
	if len(r.Documents) == 0 {
		return DocResult{}, invalidRequest("Missing (or invalid type) array parameter documents")
	}
	if len(r.Documents) > s.cfg.MaxSignatures {
		return DocResult{}, invalidRequest("Invalid parameter documents: more than %d", s.cfg.MaxSignatures)
	}
	docs := make([]Document, len(r.Documents))
	digests := make([][]byte, len(r.Documents))
	for i, d := range r.Documents {
		if len(d.Data) == 0 {
			return DocResult{}, invalidRequest("Invalid parameter documents[%d]: empty", i)
		}
		if len(d.Data) > MaxDocument {
			return DocResult{}, &Error{Status: 413, Code: "invalid_request", Description: fmt.Sprintf("Invalid parameter documents[%d]: larger than %d bytes", i, MaxDocument)}
		}
		d, err := s.checkDocument(i, d)
		if err != nil {
			return DocResult{}, err
		}
		docs[i] = d
		digests[i] = DocumentDigest(h, d.Data)
	}
	c, rec, err := s.redeem(ctx, subject, r.CredentialID, r.SAD, r.HashOID, digests, nil)
	if err != nil {
		return DocResult{}, err
	}
	// The digests are spent now, whatever happens next.
	return s.signEach(ctx, subject, c, r.SAD, rec, len(docs), r.ReturnValidationInfo, func(i int, signer signing.Signer) ([]byte, error) {
		return s.signDocument(ctx, signer, docs[i])
	})
}

// signEach makes the n signatures of a redeemed authorization, the i-th by sign with a signer
// that may use the key once, and the validation info when asked.
func (s *Service) signEach(ctx context.Context, subject string, c Credential, sad string, rec sadRecord, n int, withInfo bool,
	sign func(i int, signer signing.Signer) ([]byte, error)) (DocResult, error) {
	out := DocResult{Documents: make([][]byte, n)}
	err := s.each(n, func(i int) error {
		signer, err := s.docSigner(ctx, subject, c, sad, rec, i)
		if err != nil {
			return err
		}
		if out.Documents[i], err = sign(i, signer); err != nil {
			return docError(i, err)
		}
		return nil
	})
	if err != nil {
		return DocResult{}, err
	}
	if withInfo {
		vd, err := signing.Collect(ctx, s.pki, append([]*x509.Certificate{c.Cert}, c.Chain...))
		if err != nil {
			return DocResult{}, err
		}
		out.ValidationInfo = &vd
	}
	return out, nil
}

// each runs f for 0..n-1, up to 8 at once: each signature waits for its audit record to be
// durable, and side by side the audit log group-commits them. It returns the first error by
// index.
func (s *Service) each(n int, f func(i int) error) error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			errs[i] = f(i)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// docSigner is the credential's signer for document i: an audited key-layer signer whose
// record names the SAD and the authorization, good for one signature only.
func (s *Service) docSigner(ctx context.Context, subject string, c Credential, sad string, rec sadRecord, i int) (signing.Signer, error) {
	ctx = hsm.WithAuditDetail(hsm.WithActor(ctx, subject), map[string]string{
		"csc_credential": c.ID, "csc_sad": sadID(sad), "csc_authorization_seq": strconv.FormatInt(rec.AuditSeq, 10),
		"csc_authorized_hashes": strconv.Itoa(len(rec.Hashes)), "csc_method": "signDoc", "csc_document": strconv.Itoa(i),
	})
	k, err := s.keys.Signer(ctx, c.KeyURI, hsm.SignPurpose(subject))
	if err != nil {
		return signing.Signer{}, err
	}
	cs, ok := k.(hsm.ContextSigner)
	if !ok {
		return signing.Signer{}, errors.New("csc: the key layer is not instrumented: refusing to sign unaudited")
	}
	return signing.Signer{Key: &onceSigner{inner: cs, ctx: ctx}, Cert: c.Cert, Chain: c.Chain}, nil
}

// onceSigner lets the formats sign one signature with the key: what the SAD allows for one
// document. A format that asked the key twice would be a bug, refused rather than signed.
type onceSigner struct {
	inner hsm.ContextSigner
	ctx   context.Context // carries the audit detail for a plain Sign
	used  atomic.Bool
}

var _ hsm.ContextSigner = (*onceSigner)(nil)

var errSignedTwice = errors.New("csc: the format asked the key for a second signature under one SAD entry")

func (o *onceSigner) Public() crypto.PublicKey { return o.inner.Public() }

func (o *onceSigner) Sign(rand io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	return o.SignContext(o.ctx, rand, digest, opts)
}

// SignContext signs with the signer's own context, which carries the SAD's audit detail: the
// formats pass theirs, which does not.
func (o *onceSigner) SignContext(_ context.Context, rand io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if o.used.Swap(true) {
		return nil, errSignedTwice
	}
	return o.inner.SignContext(o.ctx, rand, digest, opts)
}

func (s *Service) signDocument(ctx context.Context, signer signing.Signer, d Document) ([]byte, error) {
	pack := d.Packaging
	var ts signing.Timestamper
	if d.Level.AtLeast(signing.LevelT) {
		ts = s.cfg.Timestamper
	}
	now := s.now()
	switch d.Format {
	case FormatPAdES:
		var buf bytes.Buffer
		err := pades.Sign(ctx, bytes.NewReader(d.Data), int64(len(d.Data)), &buf, signer, pades.Options{Level: d.Level,
			Timestamper: ts, Revocation: s.pki, Certify: pack == Certification && !d.certifyFirst, CertifyFirst: d.certifyFirst, Reason: d.Reason, Location: d.Location,
			Time: now, Visible: d.Visible, MaxSize: MaxDocument})
		return buf.Bytes(), err
	case FormatXAdES:
		p := map[string]xades.Packaging{Enveloped: xades.Enveloped, Enveloping: xades.Enveloping, Detached: xades.Detached}[pack]
		return xades.Sign(ctx, bytes.NewReader(d.Data), signer, xades.Options{Level: d.Level, Packaging: p, Timestamper: ts,
			Revocation: s.pki, Time: now, FileName: d.Name, MaxSize: MaxDocument})
	default: // CAdES, detached
		return cades.Sign(ctx, signer, bytes.NewReader(d.Data), s.cadesOptions(d.Level, ts))
	}
}

// cadesOptions are CAdES's options at level: from B-LT on the signature carries the validation
// data of the signer's chain and of its timestamp (B-LTA: under an archive timestamp), as PAdES
// and XAdES do.
func (s *Service) cadesOptions(level signing.Level, ts signing.Timestamper) cades.Options {
	o := cades.Options{SigningTime: s.now(), Timestamper: ts}
	if level != "" && level.AtLeast(signing.LevelLT) {
		o.Revocation, o.Archive = s.pki, level == signing.LevelLTA
	}
	return o
}

// docError makes a format's refusal of document i a CSC error; other errors pass as they are.
func docError(i int, err error) error {
	switch {
	case errors.Is(err, signing.ErrTooLarge):
		return &Error{Status: 413, Code: "invalid_request", Description: fmt.Sprintf("Invalid parameter documents[%d]: %v", i, err)}
	case errors.Is(err, signing.ErrInvalid), errors.Is(err, signing.ErrUnsupported):
		return invalidRequest("Invalid parameter documents[%d]: %v", i, err)
	case errors.Is(err, signing.ErrRevoked):
		return errDisabled
	}
	return err
}

// DigestRequest is signDoc's documentDigests: detached CAdES signatures over digests of
// documents the caller holds.
type DigestRequest struct {
	CredentialID         string
	SAD                  string
	HashOID              string
	Digests              [][]byte
	Level                signing.Level
	ReturnValidationInfo bool
}

// SignDigests makes a detached CAdES signature over each digest the SAD lists (cades.SignDigest),
// redeeming the SAD as SignDoc does. The hash must be the one the credential's key signs with
// (signing.HashFor), because the CMS signed attributes are hashed with it too.
func (s *Service) SignDigests(ctx context.Context, subject string, r DigestRequest) (DocResult, error) {
	if r.SAD == "" || len(r.SAD) > 256 {
		return DocResult{}, errInvalidSAD
	}
	h, ok := hashOIDs[r.HashOID]
	if !ok {
		return DocResult{}, invalidRequest("Invalid parameter hashAlgorithmOID")
	}
	if len(r.Digests) == 0 {
		return DocResult{}, invalidRequest("Missing (or invalid type) array parameter hashes")
	}
	for i, d := range r.Digests {
		if len(d) != h.Size() {
			return DocResult{}, invalidRequest("Invalid digest value length (hash %d)", i)
		}
	}
	if _, err := s.checkDocument(0, Document{Format: FormatCAdES, Level: r.Level, Packaging: Detached}); err != nil {
		return DocResult{}, err
	}
	c, rec, err := s.redeem(ctx, subject, r.CredentialID, r.SAD, r.HashOID, r.Digests, func(_ string, c Credential) error {
		if kh, err := signing.HashFor(c.Cert.PublicKey); err != nil || kh != h {
			return invalidRequest("Invalid parameter hashAlgorithmOID: the credential's key signs CAdES with %v", kh)
		}
		return nil
	})
	if err != nil {
		return DocResult{}, err
	}
	var ts signing.Timestamper
	if r.Level != "" && r.Level.AtLeast(signing.LevelT) {
		ts = s.cfg.Timestamper
	}
	return s.signEach(ctx, subject, c, r.SAD, rec, len(r.Digests), r.ReturnValidationInfo, func(i int, signer signing.Signer) ([]byte, error) {
		return cades.SignDigest(ctx, signer, r.Digests[i], s.cadesOptions(r.Level, ts))
	})
}
