// Package cades makes detached CAdES signatures (ETSI EN 319 122-1 baseline, CMS SignedData per
// RFC 5652) at levels B-B, B-T, B-LT and B-LTA, for any content and for the PDF signer (PAdES
// embeds the same CMS, at B-B or B-T: its long-term data live in the PDF).
//
// A signature is a DER ContentInfo of SignedData with no eContent and one SignerInfo,
// identified by issuer and serial. Its signed attributes are content-type, message-digest,
// signing-certificate-v2 (ESSCertIDv2 over the signer's certificate, SHA-256, with
// issuerSerial), signing-time when asked and the caller's extra attributes; at B-T the unsigned
// attribute signature-time-stamp holds an RFC 3161 token over the signature value; B-LT adds the
// unsigned attributes certificate-values (the certificates not in SignedData.certificates: the
// TSA's, the OCSP responders') and revocation-values (the CRLs over the CAs, a basic OCSP
// response on each end-entity certificate); B-LTA adds an archive-time-stamp-v3 whose token
// carries the ats-hash-index-v3 it was computed with (see lt.go). AddArchiveTimestamp adds
// further archive timestamps later (renewal). The key signs once per signature; nothing else
// here touches it.
//
// Why the CMS is encoded here with cryptobyte and not by github.com/digitorus/pkcs7: that
// library always adds a signingTime attribute, which PAdES baseline forbids (the time goes in
// the PDF's /M), and cannot add signing-certificate-v2 or an unsigned timestamp in the form
// EN 319 122-1 asks for. The structures are few and fixed, so a few appends (as internal/tsa
// does for its tokens) are clearer than bending a generic encoder.
package cades

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"io"
	"slices"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/vula-eid/vula/internal/cms"
	"github.com/vula-eid/vula/internal/signing"
)

// The object identifiers cades writes, from the shared CMS pieces.
var (
	oidData               = cms.OIDData
	oidSignedData         = cms.OIDSignedData
	oidContentType        = cms.OIDContentType
	oidMessageDigest      = cms.OIDMessageDigest
	oidSigningTime        = cms.OIDSigningTime
	oidSigningCertV2      = cms.OIDSigningCertV2
	oidSignatureTimeStamp = cms.OIDSignatureTSToken
	oidDigest             = cms.OIDDigest
)

// Options says what a signature carries besides its mandatory attributes.
type Options struct {
	// SigningTime, when not zero, goes in a signing-time signed attribute (CAdES B-B has it;
	// PAdES must not: the PDF signer leaves it zero and writes /M instead).
	SigningTime time.Time
	// ContentType is the eContentType (and content-type attribute); id-data when nil.
	ContentType asn1.ObjectIdentifier
	// Timestamper, when not nil, adds the signature-time-stamp unsigned attribute
	// (id-aa-signatureTimeStampToken) over the signature value: level B-T.
	Timestamper signing.Timestamper
	// Revocation, when not nil (with a Timestamper), adds the certificate-values and
	// revocation-values unsigned attributes with what the signer's chain and the signature
	// timestamp's TSA need (signing.Collect): level B-LT. The PDF signer leaves it nil: PAdES
	// keeps that data in the DSS.
	Revocation signing.Revocation
	// Archive (with Revocation) adds an archive-time-stamp-v3 over all of that: level B-LTA.
	Archive bool
	// ExtraSigned are further signed attributes, already DER-encoded Attribute SEQUENCEs
	// (e.g. commitment type); optional. Each must be one Attribute whose type is none of the
	// attributes this package writes.
	ExtraSigned [][]byte
}

// MaxTokenSizer is what a Timestamper may implement to bound its tokens, so that MaxSize is
// tight; without it MaxSize reserves DefaultTokenReserve.
type MaxTokenSizer interface {
	MaxTokenSize() int
}

// DefaultTokenReserve is the room MaxSize leaves for a timestamp token of unknown size.
const DefaultTokenReserve = 16 << 10

// SignDigest returns a detached CMS (DER ContentInfo of SignedData, no eContent) over content
// whose digest is digest, computed with signing.HashFor(s.Key.Public()). The certificates are
// s.Cert and s.Chain. The key signs once; its audit record gets ctx when the key takes one.
func SignDigest(ctx context.Context, s signing.Signer, digest []byte, opts Options) ([]byte, error) {
	p, err := prepare(s, opts)
	if err != nil {
		return nil, err
	}
	if len(digest) != p.hash.Size() {
		return nil, fmt.Errorf("%w: cades: a digest of %d bytes, want %d (%v)", signing.ErrInvalid, len(digest), p.hash.Size(), p.hash)
	}
	signedAttrs, err := p.signedAttrs(digest)
	if err != nil {
		return nil, err
	}
	h := p.hash.New()
	h.Write(signedAttrs)
	sig, err := cms.Sign(ctx, s.Key, h.Sum(nil), p.hash)
	if err != nil {
		return nil, fmt.Errorf("cades: signature: %w", err)
	}
	var unsigned [][]byte
	var token []byte
	if opts.Timestamper != nil {
		attr, err := timestampAttr(ctx, opts.Timestamper, p.hash, sig)
		if err != nil {
			return nil, err
		}
		unsigned = append(unsigned, attr)
		_, vals := splitAttribute(attr)
		token = vals[0]
	}
	out := p.encode(signedAttrs, sig, unsigned)
	if out == nil {
		return nil, fmt.Errorf("cades: cannot encode the signature")
	}
	if opts.Revocation == nil {
		return out, nil
	}
	return longTerm(ctx, out, s, token, opts)
}

// longTerm takes a B-T signature to B-LT and, with opts.Archive, B-LTA.
func longTerm(ctx context.Context, der []byte, s signing.Signer, token []byte, opts Options) ([]byte, error) {
	lt, err := parseCMS(der)
	if err != nil {
		return nil, err
	}
	tsaChain, err := signing.TokenCerts(token)
	if err != nil {
		return nil, fmt.Errorf("cades: the signature timestamp: %w", err)
	}
	vd, err := signing.Collect(ctx, opts.Revocation, append([]*x509.Certificate{s.Cert}, s.Chain...), tsaChain)
	if err != nil {
		return nil, fmt.Errorf("cades: validation data: %w", err)
	}
	attrs, err := ltAttrs(vd, lt.certs)
	if err != nil {
		return nil, err
	}
	lt.unsigned = append(lt.unsigned, attrs...)
	if opts.Archive {
		if err := lt.addArchiveTimestamp(ctx, opts.Timestamper); err != nil {
			return nil, err
		}
	}
	return lt.encode()
}

// Sign hashes r as it streams and calls SignDigest.
func Sign(ctx context.Context, s signing.Signer, r io.Reader, opts Options) ([]byte, error) {
	if s.Key == nil {
		return nil, fmt.Errorf("%w: cades: no key", signing.ErrInvalid)
	}
	hash, err := signing.HashFor(s.Key.Public())
	if err != nil {
		return nil, err
	}
	h := hash.New()
	if _, err := io.Copy(h, r); err != nil {
		return nil, fmt.Errorf("cades: reading the content: %w", err)
	}
	return SignDigest(ctx, s, h.Sum(nil), opts)
}

// MaxSize is an upper bound of len(SignDigest(...)) for s and opts, computed without signing:
// the signature is encoded with a placeholder of the largest DER signature value the key can
// give and, at B-T, a placeholder of the timestamper's MaxTokenSize (DefaultTokenReserve when it
// has none). Everything else is encoded as SignDigest will, so the bound is tight.
func MaxSize(s signing.Signer, opts Options) (int, error) {
	p, err := prepare(s, opts)
	if err != nil {
		return 0, err
	}
	sigLen, err := cms.MaxSignatureLen(s.Key.Public())
	if err != nil {
		return 0, err
	}
	signedAttrs, err := p.signedAttrs(make([]byte, p.hash.Size()))
	if err != nil {
		return 0, err
	}
	var unsigned [][]byte
	if opts.Timestamper != nil {
		n := DefaultTokenReserve
		if m, ok := opts.Timestamper.(MaxTokenSizer); ok {
			n = m.MaxTokenSize()
		}
		// The token is the attribute value as is, so a placeholder of its size weighs the same.
		unsigned = append(unsigned, cms.Attribute(oidSignatureTimeStamp, func(b *cryptobyte.Builder) { b.AddBytes(make([]byte, n)) }))
	}
	out := p.encode(signedAttrs, make([]byte, sigLen), unsigned)
	if out == nil {
		return 0, fmt.Errorf("cades: cannot encode the signature")
	}
	return len(out), nil
}

// prepared is what a signature for one signer and options needs besides the digest and the
// signature value.
type prepared struct {
	s      signing.Signer
	opts   Options
	hash   crypto.Hash
	sigAlg []byte
	ctype  asn1.ObjectIdentifier
}

func prepare(s signing.Signer, opts Options) (*prepared, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	if opts.Revocation != nil && opts.Timestamper == nil {
		return nil, fmt.Errorf("%w: cades: level B-LT needs a timestamper", signing.ErrInvalid)
	}
	if opts.Archive && opts.Revocation == nil {
		return nil, fmt.Errorf("%w: cades: level B-LTA needs a source of revocation data", signing.ErrInvalid)
	}
	p := &prepared{s: s, opts: opts, ctype: opts.ContentType}
	if p.ctype == nil {
		p.ctype = oidData
	}
	var err error
	if p.hash, err = signing.HashFor(s.Key.Public()); err != nil {
		return nil, err
	}
	if p.sigAlg, err = cms.SignatureAlgorithm(s.Key.Public(), p.hash); err != nil {
		return nil, fmt.Errorf("%w: %w", signing.ErrUnsupported, err)
	}
	for _, c := range s.Chain {
		if c == nil {
			return nil, fmt.Errorf("%w: cades: a nil certificate in the chain", signing.ErrInvalid)
		}
	}
	for i, a := range opts.ExtraSigned {
		oid, ok := attributeType(a)
		if !ok {
			return nil, fmt.Errorf("%w: cades: extra signed attribute %d is not one DER Attribute", signing.ErrInvalid, i)
		}
		for _, own := range []asn1.ObjectIdentifier{oidContentType, oidMessageDigest, oidSigningTime, oidSigningCertV2} {
			if oid.Equal(own) {
				return nil, fmt.Errorf("%w: cades: extra signed attribute %d is %v, which cades writes itself", signing.ErrInvalid, i, oid)
			}
		}
	}
	return p, nil
}

// signedAttrs is the DER SET OF the signed attributes, as the signature covers it.
func (p *prepared) signedAttrs(digest []byte) ([]byte, error) {
	cert := p.s.Cert
	attrs := [][]byte{
		cms.Attribute(oidContentType, func(b *cryptobyte.Builder) { b.AddASN1ObjectIdentifier(p.ctype) }),
		cms.Attribute(oidMessageDigest, func(b *cryptobyte.Builder) { b.AddASN1OctetString(digest) }),
		cms.SigningCertificateV2(cert),
	}
	if !p.opts.SigningTime.IsZero() {
		attrs = append(attrs, cms.Attribute(oidSigningTime, func(b *cryptobyte.Builder) {
			// RFC 5652 §11.3: UTCTime from 1950 to 2049, GeneralizedTime outside; whole seconds.
			t := p.opts.SigningTime.UTC().Truncate(time.Second)
			if y := t.Year(); y >= 1950 && y < 2050 {
				b.AddASN1UTCTime(t)
			} else {
				b.AddASN1GeneralizedTime(t)
			}
		}))
	}
	attrs = append(attrs, p.opts.ExtraSigned...)
	out := setOf(attrs)
	if out == nil {
		return nil, fmt.Errorf("%w: cades: cannot encode the signed attributes", signing.ErrInvalid)
	}
	return out, nil
}

// encode is the ContentInfo around one SignerInfo; signedAttrs is the SET the signature covers.
func (p *prepared) encode(signedAttrs, sig []byte, unsigned [][]byte) []byte {
	if slices.ContainsFunc(unsigned, isNil) {
		return nil
	}
	digestAlg := cms.AlgID(oidDigest[p.hash], false) // RFC 5754 §2: SHA-2 parameters absent
	certs := make([][]byte, 0, 1+len(p.s.Chain))
	certs = append(certs, p.s.Cert.Raw)
	for _, c := range p.s.Chain {
		if !slices.ContainsFunc(certs, func(b []byte) bool { return bytes.Equal(b, c.Raw) }) {
			certs = append(certs, c.Raw)
		}
	}
	slices.SortFunc(certs, bytes.Compare) // DER SET OF; verifiers find the signer by issuer and serial
	// RFC 5652 §5.1: version 1 for id-data with issuerAndSerialNumber signers, else 3.
	version := int64(1)
	if !p.ctype.Equal(oidData) {
		version = 3
	}
	size := len(signedAttrs) + len(sig) + 256
	for _, c := range certs {
		size += len(c)
	}
	for _, u := range unsigned {
		size += len(u) + 8
	}
	return cms.BuildSized(size, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // ContentInfo
			b.AddASN1ObjectIdentifier(oidSignedData)
			b.AddASN1(cbasn1.Tag(0).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // SignedData
					b.AddASN1Int64(version)
					b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) { b.AddBytes(digestAlg) })
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // EncapsulatedContentInfo, detached
						b.AddASN1ObjectIdentifier(p.ctype)
					})
					b.AddASN1(cbasn1.Tag(0).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
						for _, c := range certs {
							b.AddBytes(c)
						}
					})
					b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) {
						b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // SignerInfo
							b.AddASN1Int64(1)
							b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // IssuerAndSerialNumber
								b.AddBytes(p.s.Cert.RawIssuer)
								b.AddASN1BigInt(p.s.Cert.SerialNumber)
							})
							b.AddBytes(digestAlg)
							// The SET the signature covers, carried as [0] IMPLICIT.
							b.AddASN1(cbasn1.Tag(0).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
								b.AddBytes(setContents(signedAttrs))
							})
							b.AddBytes(p.sigAlg)
							b.AddASN1OctetString(sig)
							if len(unsigned) > 0 {
								b.AddASN1(cbasn1.Tag(1).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
									b.AddBytes(setContents(setOf(unsigned)))
								})
							}
						})
					})
				})
			})
		})
	})
}

// timestampAttr asks ts for a token over the signature value and wraps it as the
// signature-time-stamp attribute. The token's imprint is checked: a TSA that stamped something
// else would make a B-T signature that no validator accepts.
func timestampAttr(ctx context.Context, ts signing.Timestamper, hash crypto.Hash, sig []byte) ([]byte, error) {
	h := hash.New()
	h.Write(sig)
	digest := h.Sum(nil)
	tok, err := ts.Timestamp(ctx, hash, digest)
	if err != nil {
		return nil, fmt.Errorf("cades: timestamp: %w", err)
	}
	if err := checkImprint(tok, hash, digest); err != nil {
		return nil, err
	}
	attr := cms.Attribute(oidSignatureTimeStamp, func(b *cryptobyte.Builder) { b.AddBytes(tok) })
	if attr == nil {
		return nil, fmt.Errorf("cades: cannot encode the timestamp attribute")
	}
	return attr, nil
}

// setOf is the DER SET OF the encoded elements: sorted by their encodings.
func setOf(elems [][]byte) []byte {
	if slices.ContainsFunc(elems, isNil) {
		return nil
	}
	sorted := slices.Clone(elems)
	slices.SortFunc(sorted, bytes.Compare)
	return cms.Build(func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) {
			for _, e := range sorted {
				b.AddBytes(e)
			}
		})
	})
}

// setContents is the contents of a DER SET (or any element) without its tag and length.
func setContents(der []byte) []byte {
	s := cryptobyte.String(der)
	var contents cryptobyte.String
	var tag cbasn1.Tag
	if !s.ReadAnyASN1(&contents, &tag) {
		return nil
	}
	return contents
}

// attributeType reads the type of one DER Attribute (SEQUENCE { OID, SET }) and nothing after.
func attributeType(der []byte) (asn1.ObjectIdentifier, bool) {
	s := cryptobyte.String(der)
	var attr, values cryptobyte.String
	var oid asn1.ObjectIdentifier
	if !s.ReadASN1(&attr, cbasn1.SEQUENCE) || !s.Empty() ||
		!attr.ReadASN1ObjectIdentifier(&oid) || !attr.ReadASN1(&values, cbasn1.SET) || !attr.Empty() {
		return nil, false
	}
	return oid, true
}

func isNil(b []byte) bool { return b == nil }
