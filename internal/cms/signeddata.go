package cms

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// ErrNotSignedData is returned by ParseSignedData for input that is not a DER ContentInfo of
// SignedData with a SignerInfo.
var ErrNotSignedData = errors.New("not a CMS SignedData")

// ErrUnsupportedDigest is returned by ParseSignedData when the first SignerInfo's digest
// algorithm is none of HashOf's.
var ErrUnsupportedDigest = errors.New("unsupported digest algorithm")

// OIDRevocationInfoOCSP is id-ri-ocsp-response (RFC 5940): an OCSP response among a
// SignedData's revocation choices.
var OIDRevocationInfoOCSP = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 16, 2}

// readDigests are the digest algorithms a parser recognises: SHA-1 as well as OIDDigest's,
// so that a reader can name it when it refuses it.
var readDigests = map[string]crypto.Hash{
	"1.3.14.3.2.26":          crypto.SHA1,
	"2.16.840.1.101.3.4.2.1": crypto.SHA256,
	"2.16.840.1.101.3.4.2.2": crypto.SHA384,
	"2.16.840.1.101.3.4.2.3": crypto.SHA512,
}

// HashOf is the hash of a digest algorithm OID (SHA-1, SHA-256, SHA-384, SHA-512), 0 when it
// is none of them.
func HashOf(oid asn1.ObjectIdentifier) crypto.Hash { return readDigests[oid.String()] }

// SignedData is a parsed ContentInfo of SignedData (RFC 5652 §5) with its first SignerInfo:
// what a validator reads (the exact DER of the signed attributes, the attributes by type, the
// certificates and revocation data) and the cuts a signer needs to append an unsigned
// attribute while keeping everything else byte for byte.
type SignedData struct {
	ContentType asn1.ObjectIdentifier
	EContent    []byte // nil when detached
	Certs       []*x509.Certificate
	OCSPs       [][]byte // otherRevInfo id-ri-ocsp-response
	CRLs        [][]byte
	Signers     int // the number of SignerInfos; the fields below are the first one's
	SIDIssuer   []byte
	SIDSerial   *big.Int // issuerAndSerialNumber, or
	SIDSKI      []byte   // subjectKeyIdentifier
	Hash        crypto.Hash
	// SignedAttrs is the DER SET the signature covers (RFC 5652 §5.4); nil when absent.
	SignedAttrs []byte
	Attrs       map[string][]byte // OID -> the one value (DER)
	SigAlg      asn1.ObjectIdentifier
	Signature   []byte
	// Unsigned are the unsigned attributes, each a DER Attribute, and UnsignedAttrs their
	// values by type (each DER).
	Unsigned      [][]byte
	UnsignedAttrs map[string][][]byte
	// BeforeSigners is the SignedData's content before its signerInfos (version, digest
	// algorithms, encapContentInfo, certificates, crls), and SignerHead the first SignerInfo's
	// content up to and with its signature OCTET STRING.
	BeforeSigners []byte
	SignerHead    []byte
	// Exact reports that nothing follows the ContentInfo, the signerInfos or the first
	// SignerInfo's unsigned attributes.
	Exact bool
}

// ParseSignedData parses a DER ContentInfo of SignedData (DER turns BER into it). Bytes after
// the ContentInfo are allowed (Exact says whether there are any). It checks the structure,
// not the signature. The errors wrap ErrNotSignedData or ErrUnsupportedDigest.
func ParseSignedData(der []byte) (*SignedData, error) {
	bad := func(what string) error { return fmt.Errorf("%w: %s", ErrNotSignedData, what) }
	s := cryptobyte.String(der)
	var ci, content, sd cryptobyte.String
	var oid asn1.ObjectIdentifier
	if !s.ReadASN1(&ci, cbasn1.SEQUENCE) {
		return nil, bad("no ContentInfo")
	}
	exact := s.Empty()
	if !ci.ReadASN1ObjectIdentifier(&oid) || !oid.Equal(OIDSignedData) {
		return nil, bad("the content type is not signedData")
	}
	if !ci.ReadASN1(&content, cbasn1.Tag(0).ContextSpecific().Constructed()) || !content.ReadASN1(&sd, cbasn1.SEQUENCE) {
		return nil, bad("no SignedData")
	}
	exact = exact && ci.Empty() && content.Empty()
	p := &SignedData{Attrs: map[string][]byte{}, UnsignedAttrs: map[string][][]byte{}}
	start := sd
	var version int64
	var digestAlgs, encap cryptobyte.String
	if !sd.ReadASN1Integer(&version) || !sd.ReadASN1(&digestAlgs, cbasn1.SET) || !sd.ReadASN1(&encap, cbasn1.SEQUENCE) {
		return nil, bad("SignedData header")
	}
	if !encap.ReadASN1ObjectIdentifier(&p.ContentType) {
		return nil, bad("eContentType")
	}
	if !encap.Empty() {
		var ec, octets cryptobyte.String
		if !encap.ReadASN1(&ec, cbasn1.Tag(0).ContextSpecific().Constructed()) {
			return nil, bad("eContent")
		}
		if !ec.ReadASN1(&octets, cbasn1.OCTET_STRING) { // DER made a constructed one primitive
			return nil, bad("eContent is not a primitive OCTET STRING")
		}
		p.EContent = bytes.Clone(octets)
	}
	var certs cryptobyte.String
	var has bool
	if !sd.ReadOptionalASN1(&certs, &has, cbasn1.Tag(0).ContextSpecific().Constructed()) {
		return nil, bad("certificates")
	}
	for has && !certs.Empty() {
		var c cryptobyte.String
		var tag cbasn1.Tag
		if !certs.ReadAnyASN1Element(&c, &tag) {
			return nil, bad("certificate")
		}
		if tag != cbasn1.SEQUENCE {
			continue // other certificate formats: not used
		}
		if x, err := x509.ParseCertificate(c); err == nil {
			p.Certs = append(p.Certs, x)
		}
	}
	var crls cryptobyte.String
	if !sd.ReadOptionalASN1(&crls, &has, cbasn1.Tag(1).ContextSpecific().Constructed()) {
		return nil, bad("crls")
	}
	for has && !crls.Empty() {
		var c cryptobyte.String
		var tag cbasn1.Tag
		if !crls.ReadAnyASN1Element(&c, &tag) {
			return nil, bad("crl")
		}
		switch tag {
		case cbasn1.SEQUENCE:
			p.CRLs = append(p.CRLs, bytes.Clone(c))
		case cbasn1.Tag(1).ContextSpecific().Constructed(): // OtherRevocationInfoFormat
			var body cryptobyte.String
			var f asn1.ObjectIdentifier
			var info cryptobyte.String
			if c.ReadASN1(&body, tag) && body.ReadASN1ObjectIdentifier(&f) && f.Equal(OIDRevocationInfoOCSP) && body.ReadASN1Element(&info, cbasn1.SEQUENCE) {
				p.OCSPs = append(p.OCSPs, bytes.Clone(info))
			}
		}
	}
	p.BeforeSigners = start[:len(start)-len(sd)]
	var signers, si cryptobyte.String
	if !sd.ReadASN1(&signers, cbasn1.SET) {
		return nil, bad("signerInfos")
	}
	exact = exact && sd.Empty()
	for rest := signers; !rest.Empty(); p.Signers++ {
		if !rest.SkipASN1(cbasn1.SEQUENCE) {
			return nil, bad("signerInfo")
		}
	}
	if p.Signers == 0 || !signers.ReadASN1(&si, cbasn1.SEQUENCE) {
		return nil, bad("no SignerInfo")
	}
	siStart := si
	var sid cryptobyte.String
	var sidTag cbasn1.Tag
	var digestAlg, sigAlg cryptobyte.String
	if !si.ReadASN1Integer(&version) || !si.ReadAnyASN1Element(&sid, &sidTag) || !si.ReadASN1(&digestAlg, cbasn1.SEQUENCE) {
		return nil, bad("SignerInfo")
	}
	switch sidTag {
	case cbasn1.SEQUENCE:
		var ias, issuer cryptobyte.String
		p.SIDSerial = new(big.Int)
		if !sid.ReadASN1(&ias, cbasn1.SEQUENCE) || !ias.ReadASN1Element(&issuer, cbasn1.SEQUENCE) || !ias.ReadASN1Integer(p.SIDSerial) {
			return nil, bad("issuerAndSerialNumber")
		}
		p.SIDIssuer = bytes.Clone(issuer)
	case cbasn1.Tag(0).ContextSpecific():
		var ski cryptobyte.String
		if !sid.ReadASN1(&ski, sidTag) {
			return nil, bad("subjectKeyIdentifier")
		}
		p.SIDSKI = bytes.Clone(ski)
	default:
		return nil, bad("signer identifier")
	}
	if !digestAlg.ReadASN1ObjectIdentifier(&oid) {
		return nil, bad("digest algorithm")
	}
	if p.Hash = HashOf(oid); p.Hash == 0 {
		return nil, fmt.Errorf("%w %v", ErrUnsupportedDigest, oid)
	}
	var sa cryptobyte.String
	if !si.ReadOptionalASN1(&sa, &has, cbasn1.Tag(0).ContextSpecific().Constructed()) {
		return nil, bad("signed attributes")
	}
	if has {
		// The signature covers the attributes with the SET OF tag, not the [0] IMPLICIT one.
		b := cryptobyte.NewBuilder(nil)
		b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) { b.AddBytes(sa) })
		p.SignedAttrs = b.BytesOrPanic()
		for !sa.Empty() {
			var a, vals, v cryptobyte.String
			var aoid asn1.ObjectIdentifier
			if !sa.ReadASN1(&a, cbasn1.SEQUENCE) || !a.ReadASN1ObjectIdentifier(&aoid) || !a.ReadASN1(&vals, cbasn1.SET) {
				return nil, bad("signed attribute")
			}
			var tag cbasn1.Tag
			if !vals.ReadAnyASN1Element(&v, &tag) || !vals.Empty() {
				return nil, bad("a signed attribute without exactly one value")
			}
			if _, dup := p.Attrs[aoid.String()]; dup {
				return nil, bad("a signed attribute twice")
			}
			p.Attrs[aoid.String()] = bytes.Clone(v)
		}
	}
	if !si.ReadASN1(&sigAlg, cbasn1.SEQUENCE) || !sigAlg.ReadASN1ObjectIdentifier(&p.SigAlg) {
		return nil, bad("signature algorithm")
	}
	var sig cryptobyte.String
	if !si.ReadASN1(&sig, cbasn1.OCTET_STRING) {
		return nil, bad("signature")
	}
	p.Signature = bytes.Clone(sig)
	p.SignerHead = siStart[:len(siStart)-len(si)]
	var ua cryptobyte.String
	if !si.ReadOptionalASN1(&ua, &has, cbasn1.Tag(1).ContextSpecific().Constructed()) {
		return nil, bad("unsigned attributes")
	}
	p.Exact = exact && si.Empty()
	for has && !ua.Empty() {
		var el, a, vals cryptobyte.String
		var aoid asn1.ObjectIdentifier
		if !ua.ReadASN1Element(&el, cbasn1.SEQUENCE) {
			return nil, bad("unsigned attribute")
		}
		if outer := el; !outer.ReadASN1(&a, cbasn1.SEQUENCE) || !a.ReadASN1ObjectIdentifier(&aoid) || !a.ReadASN1(&vals, cbasn1.SET) {
			return nil, bad("unsigned attribute")
		}
		p.Exact = p.Exact && a.Empty()
		for !vals.Empty() {
			var v cryptobyte.String
			var tag cbasn1.Tag
			if !vals.ReadAnyASN1Element(&v, &tag) {
				return nil, bad("unsigned attribute value")
			}
			p.UnsignedAttrs[aoid.String()] = append(p.UnsignedAttrs[aoid.String()], bytes.Clone(v))
		}
		p.Unsigned = append(p.Unsigned, bytes.Clone(el))
	}
	return p, nil
}
