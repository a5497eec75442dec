package cades

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"slices"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/vula-eid/vula/internal/cms"
	"github.com/vula-eid/vula/internal/signing"
)

// The object identifiers of EN 319 122-1's long-term attributes and RFC 5940's OCSP
// revocation choice.
var (
	OIDCertValues         = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 2, 23} // id-aa-ets-certValues
	OIDRevocationValues   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 2, 24} // id-aa-ets-revocationValues
	OIDArchiveTimestampV3 = asn1.ObjectIdentifier{0, 4, 0, 1733, 2, 4}                // id-aa-ets-archiveTimestampV3
	OIDATSHashIndexV3     = asn1.ObjectIdentifier{0, 4, 0, 19122, 1, 5}               // id-aa-ATSHashIndex-v3
	oidRevInfoOCSP        = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 16, 2}         // id-ri-ocsp-response
)

// ltAttrs are the certificate-values and revocation-values attributes of B-LT (EN 319 122-1
// clauses 5.5.1 and 5.5.2) for vd: the certificates not already in SignedData.certificates,
// every CRL, and every OCSP response as the BasicOCSPResponse those attributes hold.
func ltAttrs(vd signing.ValidationData, inSignedData [][]byte) ([][]byte, error) {
	var certs [][]byte
	for _, c := range vd.Certs {
		if !slices.ContainsFunc(inSignedData, func(b []byte) bool { return bytes.Equal(b, c.Raw) }) {
			certs = append(certs, c.Raw)
		}
	}
	var basics [][]byte
	for _, o := range vd.OCSPs {
		b, err := basicOCSP(o)
		if err != nil {
			return nil, err
		}
		basics = append(basics, b)
	}
	var attrs [][]byte
	if len(certs) > 0 {
		attrs = append(attrs, cms.Attribute(OIDCertValues, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { addAll(b, certs) })
		}))
	}
	// RevocationValues; the CAdES ASN.1 module has explicit tags.
	attrs = append(attrs, cms.Attribute(OIDRevocationValues, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			if len(vd.CRLs) > 0 {
				b.AddASN1(cbasn1.Tag(0).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { addAll(b, vd.CRLs) })
				})
			}
			if len(basics) > 0 {
				b.AddASN1(cbasn1.Tag(1).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { addAll(b, basics) })
				})
			}
		})
	}))
	if slices.ContainsFunc(attrs, isNil) {
		return nil, fmt.Errorf("cades: cannot encode the validation data")
	}
	return attrs, nil
}

func addAll(b *cryptobyte.Builder, items [][]byte) {
	for _, it := range items {
		b.AddBytes(it)
	}
}

// basicOCSP is the BasicOCSPResponse inside a DER OCSPResponse.
func basicOCSP(der []byte) ([]byte, error) {
	s := cryptobyte.String(der)
	var resp, rb, rbSeq cryptobyte.String
	var status int
	var oid asn1.ObjectIdentifier
	var basic []byte
	if !s.ReadASN1(&resp, cbasn1.SEQUENCE) || !resp.ReadASN1Enum(&status) || status != 0 ||
		!resp.ReadASN1(&rb, cbasn1.Tag(0).ContextSpecific().Constructed()) ||
		!rb.ReadASN1(&rbSeq, cbasn1.SEQUENCE) || !rbSeq.ReadASN1ObjectIdentifier(&oid) ||
		!rbSeq.ReadASN1Bytes(&basic, cbasn1.OCTET_STRING) {
		return nil, fmt.Errorf("cades: an OCSP response that is not a successful basic response")
	}
	return basic, nil
}

// AddArchiveTimestamp adds an archive-time-stamp-v3 (EN 319 122-1 clause 5.5.3) to a CAdES
// signature at B-LT or B-LTA: B-LT becomes B-LTA, and a B-LTA signature gets one more archive
// timestamp covering everything before it (renewal, before the earlier timestamps' TSA
// certificates expire or their algorithms weaken). With rev set, the validation data of the
// newest earlier archive timestamp's TSA is first added to SignedData.certificates and crls
// (RFC 5652, RFC 5940), so that it is covered too, and when the new timestamp's TSA is one the
// signature holds nothing on, that TSA's validation data follow it there, so that the result
// validates offline at once. The CMS must be DER with one SignerInfo;
// what is there is kept byte for byte.
func AddArchiveTimestamp(ctx context.Context, der []byte, ts signing.Timestamper, rev signing.Revocation) ([]byte, error) {
	if ts == nil {
		return nil, fmt.Errorf("%w: cades: no timestamper", signing.ErrInvalid)
	}
	p, err := parseCMS(der)
	if err != nil {
		return nil, err
	}
	if !p.has(oidSignatureTimeStamp) || !p.has(OIDRevocationValues) && len(p.crls) == 0 {
		return nil, fmt.Errorf("%w: cades: an archive timestamp needs a signature at B-LT (a signature timestamp and revocation values)", signing.ErrInvalid)
	}
	if rev != nil {
		if atss := p.values(OIDArchiveTimestampV3); len(atss) > 0 {
			if err := p.addSignedDataValidation(ctx, rev, atss[len(atss)-1]); err != nil {
				return nil, err
			}
		}
	}
	if err := p.addArchiveTimestamp(ctx, ts); err != nil {
		return nil, err
	}
	if rev != nil {
		// A TSA the signature holds nothing on (a new one): its validation data follow in
		// SignedData, so that the new timestamp validates offline now; the next renewal
		// covers them.
		atss := p.values(OIDArchiveTimestampV3)
		last := atss[len(atss)-1]
		chain, err := signing.TokenCerts(last)
		if err != nil {
			return nil, fmt.Errorf("cades: the new archive timestamp: %w", err)
		}
		if !p.holds(chain[0]) {
			if err := p.addSignedDataValidation(ctx, rev, last); err != nil {
				return nil, err
			}
		}
	}
	return p.encode()
}

// holds reports whether c is among p's certificates: SignedData's or certificate-values'.
func (p *parsed) holds(c *x509.Certificate) bool {
	if slices.ContainsFunc(p.certs, func(b []byte) bool { return bytes.Equal(b, c.Raw) }) {
		return true
	}
	return slices.ContainsFunc(p.values(OIDCertValues), func(v []byte) bool { return bytes.Contains(v, c.Raw) })
}

// addSignedDataValidation adds to SignedData the certificates and revocation data of the TSA
// that made token, those not already there.
func (p *parsed) addSignedDataValidation(ctx context.Context, rev signing.Revocation, token []byte) error {
	chain, err := signing.TokenCerts(token)
	if err != nil {
		return fmt.Errorf("cades: the last archive timestamp: %w", err)
	}
	vd, err := signing.Collect(ctx, rev, chain)
	if err != nil {
		return fmt.Errorf("cades: validation data of the last archive timestamp: %w", err)
	}
	add := func(list *[][]byte, e []byte) {
		if e != nil && !slices.ContainsFunc(*list, func(b []byte) bool { return bytes.Equal(b, e) }) {
			*list = append(*list, e)
		}
	}
	for _, c := range vd.Certs {
		add(&p.certs, c.Raw)
	}
	for _, c := range vd.CRLs {
		add(&p.crls, c)
	}
	for _, o := range vd.OCSPs {
		add(&p.crls, cms.Build(func(b *cryptobyte.Builder) {
			// RevocationInfoChoice other [1] IMPLICIT OtherRevocationInfoFormat
			b.AddASN1(cbasn1.Tag(1).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
				b.AddASN1ObjectIdentifier(oidRevInfoOCSP)
				b.AddBytes(o)
			})
		}))
	}
	return nil
}

// addArchiveTimestamp asks ts for an archive-time-stamp-v3 over p as it is now and adds it.
// Its hash is the signature's digest algorithm, so that the message-digest attribute is the
// hash of the signed data the imprint needs (the detached content is not at hand on renewal).
func (p *parsed) addArchiveTimestamp(ctx context.Context, ts signing.Timestamper) error {
	index := p.hashIndex(p.hash)
	imprint, err := p.archiveImprint(p.hash, index)
	if err != nil {
		return err
	}
	token, err := ts.Timestamp(ctx, p.hash, imprint)
	if err != nil {
		return fmt.Errorf("cades: archive timestamp: %w", err)
	}
	if err := checkImprint(token, p.hash, imprint); err != nil {
		return err
	}
	tp, err := parseCMS(token)
	if err != nil {
		return fmt.Errorf("cades: the archive timestamp token: %w", err)
	}
	tp.unsigned = append(tp.unsigned, cms.Attribute(OIDATSHashIndexV3, func(b *cryptobyte.Builder) { b.AddBytes(index) }))
	token, err = tp.encode()
	if err != nil {
		return err
	}
	attr := cms.Attribute(OIDArchiveTimestampV3, func(b *cryptobyte.Builder) { b.AddBytes(token) })
	if attr == nil {
		return fmt.Errorf("cades: cannot encode the archive timestamp")
	}
	p.unsigned = append(p.unsigned, attr)
	return nil
}

// hashIndex is the DER ATSHashIndexV3 (EN 319 122-1 clause 5.5.2) of p under h: the hash of
// each certificate and each revocation choice of SignedData, and of each value of each
// unsigned attribute (its attrType's DER followed by the value's DER).
func (p *parsed) hashIndex(h crypto.Hash) []byte {
	sum := func(parts ...[]byte) []byte {
		d := h.New()
		for _, b := range parts {
			d.Write(b)
		}
		return d.Sum(nil)
	}
	return cms.Build(func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			if h != crypto.SHA256 { // DEFAULT id-sha256: absent in DER
				b.AddBytes(cms.AlgID(oidDigest[h], false))
			}
			for _, list := range [][][]byte{p.certs, p.crls} {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					for _, e := range list {
						b.AddASN1OctetString(sum(e))
					}
				})
			}
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				for _, a := range p.unsigned {
					typ, vals := splitAttribute(a)
					for _, v := range vals {
						b.AddASN1OctetString(sum(typ, v))
					}
				}
			})
		})
	})
}

// archiveImprint is the message imprint of an archive-time-stamp-v3 with hash index index
// (EN 319 122-1 clause 5.5.3): the hash of the eContentType, the hash of the signed data (the
// message-digest attribute, h being the signer's digest algorithm), the SignerInfo's fields
// from version to signature, and the ATSHashIndexV3.
func (p *parsed) archiveImprint(h crypto.Hash, index []byte) ([]byte, error) {
	if h != p.hash {
		return nil, fmt.Errorf("%w: cades: archive timestamp hash %v is not the signature's %v", signing.ErrUnsupported, h, p.hash)
	}
	md, ok := p.messageDigest()
	if !ok {
		return nil, fmt.Errorf("%w: cades: the signature has no message-digest attribute", signing.ErrInvalid)
	}
	d := h.New()
	d.Write(p.contentType)
	d.Write(md)
	d.Write(p.signerHead)
	d.Write(index)
	return d.Sum(nil), nil
}

// messageDigest is the value of the message-digest signed attribute.
func (p *parsed) messageDigest() ([]byte, bool) {
	attrs := p.signedAttrs
	for !attrs.Empty() {
		var a cryptobyte.String
		if !attrs.ReadASN1Element(&a, cbasn1.SEQUENCE) {
			return nil, false
		}
		typ, vals := splitAttribute(a)
		var oid asn1.ObjectIdentifier
		t := cryptobyte.String(typ)
		if t.ReadASN1ObjectIdentifier(&oid) && oid.Equal(oidMessageDigest) && len(vals) == 1 {
			v := cryptobyte.String(vals[0])
			var md []byte
			if v.ReadASN1Bytes(&md, cbasn1.OCTET_STRING) {
				return md, true
			}
		}
	}
	return nil, false
}

// splitAttribute is the DER attrType and each DER value of a DER Attribute.
func splitAttribute(a []byte) (typ []byte, vals [][]byte) {
	s := cryptobyte.String(a)
	var attr, t, set cryptobyte.String
	if !s.ReadASN1(&attr, cbasn1.SEQUENCE) || !attr.ReadASN1Element(&t, cbasn1.OBJECT_IDENTIFIER) || !attr.ReadASN1(&set, cbasn1.SET) {
		return nil, nil
	}
	for !set.Empty() {
		var v cryptobyte.String
		var tag cbasn1.Tag
		if !set.ReadAnyASN1Element(&v, &tag) {
			return t, nil
		}
		vals = append(vals, v)
	}
	return t, vals
}

// has reports whether p has an unsigned attribute of type oid.
func (p *parsed) has(oid asn1.ObjectIdentifier) bool { return len(p.values(oid)) > 0 }

// values are the values of p's unsigned attributes of type oid, in order.
func (p *parsed) values(oid asn1.ObjectIdentifier) [][]byte {
	var out [][]byte
	for _, a := range p.unsigned {
		if t, ok := attributeType(a); ok && t.Equal(oid) {
			_, vals := splitAttribute(a)
			out = append(out, vals...)
		}
	}
	return out
}

// encode is the ContentInfo of p: its head, certificates, crls and SignerInfo as parsed with
// p.unsigned as the unsigned attributes, in their order (archive timestamps oldest first).
func (p *parsed) encode() ([]byte, error) {
	if slices.ContainsFunc(p.unsigned, isNil) {
		return nil, fmt.Errorf("cades: cannot encode the signature")
	}
	// The sets keep the order they had: what was there stays byte for byte, additions follow.
	certs, crls := p.certs, p.crls
	out := cms.Build(func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // ContentInfo
			b.AddASN1ObjectIdentifier(oidSignedData)
			b.AddASN1(cbasn1.Tag(0).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // SignedData
					b.AddBytes(p.head)
					if len(certs) > 0 {
						b.AddASN1(cbasn1.Tag(0).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) { addAll(b, certs) })
					}
					if len(crls) > 0 {
						b.AddASN1(cbasn1.Tag(1).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) { addAll(b, crls) })
					}
					b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) {
						b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // SignerInfo
							b.AddBytes(p.signerHead)
							if len(p.unsigned) > 0 {
								b.AddASN1(cbasn1.Tag(1).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) { addAll(b, p.unsigned) })
							}
						})
					})
				})
			})
		})
	})
	if out == nil {
		return nil, fmt.Errorf("cades: cannot encode the signature")
	}
	return out, nil
}

// Archive is one archive-time-stamp-v3 of a signature, for a validator.
type Archive struct {
	Token []byte // the TimeStampToken, with its ats-hash-index-v3
	// Imprint recomputes the imprint the token must carry, with hash h, over the signature as
	// it is now; it fails when the hash index lists a certificate, revocation value or
	// unsigned attribute value the signature no longer holds (EN 319 122-1 clause 5.5.3).
	Imprint func(h crypto.Hash) ([]byte, error)
}

// Archives returns the archive-time-stamp-v3 attributes of the DER CMS der (one SignerInfo),
// in their order. contentDigest gives the hash of the signed content under a hash function
// (the detached content, or an ASiC manifest).
func Archives(der []byte, contentDigest func(crypto.Hash) ([]byte, error)) ([]Archive, error) {
	p, err := parseCMS(der)
	if err != nil {
		return nil, err
	}
	var out []Archive
	for _, tok := range p.values(OIDArchiveTimestampV3) {
		out = append(out, Archive{Token: tok, Imprint: func(h crypto.Hash) ([]byte, error) {
			return p.checkedImprint(tok, h, contentDigest)
		}})
	}
	return out, nil
}

// checkedImprint is the imprint an archive timestamp token tok must carry under h: its hash
// index, checked against p, and p's fields.
func (p *parsed) checkedImprint(tok []byte, h crypto.Hash, contentDigest func(crypto.Hash) ([]byte, error)) ([]byte, error) {
	tp, err := parseCMS(tok)
	if err != nil {
		return nil, fmt.Errorf("the archive timestamp token: %w", err)
	}
	idx := tp.values(OIDATSHashIndexV3)
	if len(idx) != 1 {
		return nil, fmt.Errorf("the archive timestamp token carries %d ats-hash-index-v3 attributes, want 1", len(idx))
	}
	index := idx[0]
	ih, lists, err := parseHashIndex(index)
	if err != nil {
		return nil, err
	}
	present := map[string]bool{}
	sum := func(parts ...[]byte) string {
		d := ih.New()
		for _, b := range parts {
			d.Write(b)
		}
		return string(d.Sum(nil))
	}
	for _, e := range p.certs {
		present[sum(e)] = true
	}
	for _, e := range p.crls {
		present[sum(e)] = true
	}
	for _, a := range p.unsigned {
		typ, vals := splitAttribute(a)
		for _, v := range vals {
			present[sum(typ, v)] = true
		}
	}
	for i, list := range lists {
		for _, hv := range list {
			if !present[string(hv)] {
				what := [...]string{"certificate", "revocation value", "unsigned attribute value"}[i]
				return nil, fmt.Errorf("the ats-hash-index-v3 lists a %s the signature no longer holds", what)
			}
		}
	}
	cd, err := contentDigest(h)
	if err != nil {
		return nil, err
	}
	d := h.New()
	d.Write(p.contentType)
	d.Write(cd)
	d.Write(p.signerHead)
	d.Write(index)
	return d.Sum(nil), nil
}

// parseHashIndex reads a DER ATSHashIndexV3: its hash (SHA-256 when absent) and its three
// lists of hashes.
func parseHashIndex(der []byte) (crypto.Hash, [3][][]byte, error) {
	var lists [3][][]byte
	bad := fmt.Errorf("the ats-hash-index-v3 is not a DER ATSHashIndexV3")
	s := cryptobyte.String(der)
	var seq cryptobyte.String
	if !s.ReadASN1(&seq, cbasn1.SEQUENCE) || !s.Empty() {
		return 0, lists, bad
	}
	h := crypto.SHA256
	var alg cryptobyte.String
	var present bool
	// The AlgorithmIdentifier is a SEQUENCE, as are the lists: it is there when the first
	// element's first child is an OBJECT IDENTIFIER.
	peek := seq
	var first cryptobyte.String
	if peek.ReadASN1(&first, cbasn1.SEQUENCE) && first.PeekASN1Tag(cbasn1.OBJECT_IDENTIFIER) {
		present = true
		_ = seq.ReadASN1(&alg, cbasn1.SEQUENCE)
	}
	if present {
		var oid asn1.ObjectIdentifier
		if !alg.ReadASN1ObjectIdentifier(&oid) {
			return 0, lists, bad
		}
		h = 0
		for hh, o := range oidDigest {
			if o.Equal(oid) {
				h = hh
			}
		}
		if h == 0 {
			return 0, lists, fmt.Errorf("the ats-hash-index-v3 hashes with %v, which Vula does not know", oid)
		}
	}
	for i := range lists {
		var l cryptobyte.String
		if !seq.ReadASN1(&l, cbasn1.SEQUENCE) {
			return 0, lists, bad
		}
		for !l.Empty() {
			var v []byte
			if !l.ReadASN1Bytes(&v, cbasn1.OCTET_STRING) {
				return 0, lists, bad
			}
			lists[i] = append(lists[i], v)
		}
	}
	if !seq.Empty() {
		return 0, lists, bad
	}
	return h, lists, nil
}
