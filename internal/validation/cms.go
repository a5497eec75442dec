package validation

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/vula-eid/vula/internal/cms"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/vula-eid/vula/internal/signing"
)

// The CMS is parsed here with cryptobyte rather than github.com/digitorus/pkcs7 because a
// validator needs what that library hides: the exact DER of the signed attributes, the
// signing-certificate(-v2) attribute, the unsigned attributes (the signature timestamp) and a
// verdict per step rather than one error.

var (
	oidSignedData         = cms.OIDSignedData
	oidTSTInfo            = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 1, 4}
	oidContentType        = cms.OIDContentType
	oidMessageDigest      = cms.OIDMessageDigest
	oidSigningTime        = cms.OIDSigningTime
	oidSigningCert        = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 2, 12} // v1, SHA-1 (others' signatures)
	oidSigningCertV2      = cms.OIDSigningCertV2
	oidSignatureTimeStamp = cms.OIDSignatureTSToken
	oidRevocationInfoOCSP = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 16, 2}
	// Adobe's adbe-revocationInfoArchival signed attribute (ISO 32000-1 §12.8.3.3.2): the
	// CRLs and OCSP responses a PKCS#7 PDF signature (pdfsign's, Acrobat's) carries.
	oidAdbeRevocation = asn1.ObjectIdentifier{1, 2, 840, 113583, 1, 1, 8}
)

var digestOIDs = map[string]crypto.Hash{
	"1.3.14.3.2.26":          crypto.SHA1,
	"2.16.840.1.101.3.4.2.1": crypto.SHA256,
	"2.16.840.1.101.3.4.2.2": crypto.SHA384,
	"2.16.840.1.101.3.4.2.3": crypto.SHA512,
}

// sigAlgs maps signature algorithm OIDs to their hash (0: the digest algorithm's) and kind.
var sigAlgs = map[string]struct {
	hash crypto.Hash
	kind string
}{
	"1.2.840.113549.1.1.1":  {0, "rsa"},
	"1.2.840.113549.1.1.5":  {crypto.SHA1, "rsa"},
	"1.2.840.113549.1.1.11": {crypto.SHA256, "rsa"},
	"1.2.840.113549.1.1.12": {crypto.SHA384, "rsa"},
	"1.2.840.113549.1.1.13": {crypto.SHA512, "rsa"},
	"1.2.840.10045.2.1":     {0, "ecdsa"},
	"1.2.840.10045.4.3.2":   {crypto.SHA256, "ecdsa"},
	"1.2.840.10045.4.3.3":   {crypto.SHA384, "ecdsa"},
	"1.2.840.10045.4.3.4":   {crypto.SHA512, "ecdsa"},
	"1.3.101.112":           {0, "ed25519"},
}

// signedData is a parsed CMS SignedData with its first SignerInfo.
type signedData struct {
	contentType  asn1.ObjectIdentifier
	eContent     []byte // nil when detached
	certs        []*x509.Certificate
	ocsps        [][]byte // otherRevInfo id-ri-ocsp-response
	crls         [][]byte
	signers      int
	sidIssuer    []byte // issuerAndSerialNumber, or
	sidSerial    *big.Int
	sidSKI       []byte // subjectKeyIdentifier
	digestHash   crypto.Hash
	signedAttrs  []byte // DER SET, as the signature covers it; nil when absent
	attrs        map[string][]byte
	sigAlg       string
	signature    []byte
	unsignedAttr map[string][][]byte // OID -> values (each DER)
}

var errNotCMS = errors.New("not a CMS SignedData")

// parseSignedData reads a CMS ContentInfo of SignedData in BER (RFC 5652 allows BER; NSS
// writes indefinite lengths) by making it DER first: the signed attributes are then the DER
// the signature is over (RFC 5652, 5.4).
func parseSignedData(ber []byte) (*signedData, error) {
	bad := func(what string) error {
		return fmt.Errorf("%w: validation: %w: %s", signing.ErrInvalid, errNotCMS, what)
	}
	der, err := cms.DER(ber)
	if err != nil {
		return nil, bad(err.Error())
	}
	s := cryptobyte.String(der)
	var ci, content, sd cryptobyte.String
	var oid asn1.ObjectIdentifier
	if !s.ReadASN1(&ci, cbasn1.SEQUENCE) {
		return nil, bad("no ContentInfo")
	}
	if !ci.ReadASN1ObjectIdentifier(&oid) || !oid.Equal(oidSignedData) {
		return nil, bad("the content type is not signedData")
	}
	if !ci.ReadASN1(&content, cbasn1.Tag(0).ContextSpecific().Constructed()) || !content.ReadASN1(&sd, cbasn1.SEQUENCE) {
		return nil, bad("no SignedData")
	}
	p := &signedData{attrs: map[string][]byte{}, unsignedAttr: map[string][][]byte{}}
	var version int64
	var digestAlgs, encap cryptobyte.String
	if !sd.ReadASN1Integer(&version) || !sd.ReadASN1(&digestAlgs, cbasn1.SET) || !sd.ReadASN1(&encap, cbasn1.SEQUENCE) {
		return nil, bad("SignedData header")
	}
	if !encap.ReadASN1ObjectIdentifier(&p.contentType) {
		return nil, bad("eContentType")
	}
	if !encap.Empty() {
		var ec, octets cryptobyte.String
		if !encap.ReadASN1(&ec, cbasn1.Tag(0).ContextSpecific().Constructed()) {
			return nil, bad("eContent")
		}
		if !ec.ReadASN1(&octets, cbasn1.OCTET_STRING) { // cms.DER made a constructed one primitive
			return nil, bad("eContent is not a primitive OCTET STRING")
		}
		p.eContent = bytes.Clone(octets)
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
			p.certs = append(p.certs, x)
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
			p.crls = append(p.crls, bytes.Clone(c))
		case cbasn1.Tag(1).ContextSpecific().Constructed(): // OtherRevocationInfoFormat
			var body cryptobyte.String
			var f asn1.ObjectIdentifier
			var info cryptobyte.String
			if c.ReadASN1(&body, tag) && body.ReadASN1ObjectIdentifier(&f) && f.Equal(oidRevocationInfoOCSP) && body.ReadASN1Element(&info, cbasn1.SEQUENCE) {
				p.ocsps = append(p.ocsps, bytes.Clone(info))
			}
		}
	}
	var signers, si cryptobyte.String
	if !sd.ReadASN1(&signers, cbasn1.SET) {
		return nil, bad("signerInfos")
	}
	for rest := signers; !rest.Empty(); p.signers++ {
		if !rest.SkipASN1(cbasn1.SEQUENCE) {
			return nil, bad("signerInfo")
		}
	}
	if p.signers == 0 || !signers.ReadASN1(&si, cbasn1.SEQUENCE) {
		return nil, bad("no SignerInfo")
	}
	var sid cryptobyte.String
	var sidTag cbasn1.Tag
	var digestAlg, sigAlg cryptobyte.String
	if !si.ReadASN1Integer(&version) || !si.ReadAnyASN1Element(&sid, &sidTag) || !si.ReadASN1(&digestAlg, cbasn1.SEQUENCE) {
		return nil, bad("SignerInfo")
	}
	switch sidTag {
	case cbasn1.SEQUENCE:
		var ias, issuer cryptobyte.String
		p.sidSerial = new(big.Int)
		if !sid.ReadASN1(&ias, cbasn1.SEQUENCE) || !ias.ReadASN1Element(&issuer, cbasn1.SEQUENCE) || !ias.ReadASN1Integer(p.sidSerial) {
			return nil, bad("issuerAndSerialNumber")
		}
		p.sidIssuer = bytes.Clone(issuer)
	case cbasn1.Tag(0).ContextSpecific():
		var ski cryptobyte.String
		if !sid.ReadASN1(&ski, sidTag) {
			return nil, bad("subjectKeyIdentifier")
		}
		p.sidSKI = bytes.Clone(ski)
	default:
		return nil, bad("signer identifier")
	}
	if !digestAlg.ReadASN1ObjectIdentifier(&oid) {
		return nil, bad("digest algorithm")
	}
	p.digestHash = digestOIDs[oid.String()]
	if p.digestHash == 0 {
		return nil, fmt.Errorf("%w: validation: digest algorithm %v", signing.ErrUnsupported, oid)
	}
	var sa cryptobyte.String
	if !si.ReadOptionalASN1(&sa, &has, cbasn1.Tag(0).ContextSpecific().Constructed()) {
		return nil, bad("signed attributes")
	}
	if has {
		// The signature covers the attributes with the SET OF tag, not the [0] IMPLICIT one.
		b := cryptobyte.NewBuilder(nil)
		b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) { b.AddBytes(sa) })
		p.signedAttrs = b.BytesOrPanic()
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
			if _, dup := p.attrs[aoid.String()]; dup {
				return nil, bad("a signed attribute twice")
			}
			p.attrs[aoid.String()] = bytes.Clone(v)
		}
	}
	if v, ok := p.attrs[oidAdbeRevocation.String()]; ok {
		p.readAdbeRevocation(v)
	}
	if !si.ReadASN1(&sigAlg, cbasn1.SEQUENCE) || !sigAlg.ReadASN1ObjectIdentifier(&oid) {
		return nil, bad("signature algorithm")
	}
	p.sigAlg = oid.String()
	var sig cryptobyte.String
	if !si.ReadASN1(&sig, cbasn1.OCTET_STRING) {
		return nil, bad("signature")
	}
	p.signature = bytes.Clone(sig)
	var ua cryptobyte.String
	if !si.ReadOptionalASN1(&ua, &has, cbasn1.Tag(1).ContextSpecific().Constructed()) {
		return nil, bad("unsigned attributes")
	}
	for has && !ua.Empty() {
		var a, vals cryptobyte.String
		var aoid asn1.ObjectIdentifier
		if !ua.ReadASN1(&a, cbasn1.SEQUENCE) || !a.ReadASN1ObjectIdentifier(&aoid) || !a.ReadASN1(&vals, cbasn1.SET) {
			return nil, bad("unsigned attribute")
		}
		for !vals.Empty() {
			var v cryptobyte.String
			var tag cbasn1.Tag
			if !vals.ReadAnyASN1Element(&v, &tag) {
				return nil, bad("unsigned attribute value")
			}
			p.unsignedAttr[aoid.String()] = append(p.unsignedAttr[aoid.String()], bytes.Clone(v))
		}
	}
	return p, nil
}

// signerCert finds the signer's certificate among certs by the SignerInfo's identifier.
func (p *signedData) signerCert(certs []*x509.Certificate) *x509.Certificate {
	for _, c := range certs {
		if p.sidSKI != nil && bytes.Equal(c.SubjectKeyId, p.sidSKI) {
			return c
		}
		if p.sidSerial != nil && bytes.Equal(c.RawIssuer, p.sidIssuer) && c.SerialNumber.Cmp(p.sidSerial) == 0 {
			return c
		}
	}
	return nil
}

// verifySignature checks the signature value over the signed attributes (or over digest when
// there are none) with cert's key.
func (p *signedData) verifySignature(cert *x509.Certificate, contentDigest []byte) error {
	alg, ok := sigAlgs[p.sigAlg]
	if !ok {
		return fmt.Errorf("signature algorithm %s is not supported", p.sigAlg)
	}
	h := p.digestHash
	if alg.hash != 0 {
		h = alg.hash
	}
	if h == crypto.SHA1 {
		return errors.New("SHA-1 signatures are not accepted")
	}
	var digest []byte
	if p.signedAttrs != nil {
		hh := h.New()
		hh.Write(p.signedAttrs)
		digest = hh.Sum(nil)
	} else {
		if h != p.digestHash {
			return errors.New("the signature's hash is not the digest algorithm")
		}
		digest = contentDigest
	}
	switch pub := cert.PublicKey.(type) {
	case *ecdsa.PublicKey:
		if alg.kind != "ecdsa" || !ecdsa.VerifyASN1(pub, digest, p.signature) {
			return errors.New("the ECDSA signature does not verify")
		}
	case *rsa.PublicKey:
		if alg.kind != "rsa" {
			return errors.New("the algorithm does not match the RSA key")
		}
		if err := rsa.VerifyPKCS1v15(pub, h, digest, p.signature); err != nil {
			return fmt.Errorf("the RSA signature does not verify: %w", err)
		}
	case ed25519.PublicKey:
		return errors.New("Ed25519 CMS signatures are not supported")
	default:
		return fmt.Errorf("key type %T", pub)
	}
	return nil
}

// signingTime is the signing-time attribute, if any.
func (p *signedData) signingTime() *time.Time {
	v, ok := p.attrs[oidSigningTime.String()]
	if !ok {
		return nil
	}
	var t time.Time
	if _, err := asn1.Unmarshal(v, &t); err != nil {
		return nil
	}
	t = t.UTC()
	return &t
}

// certBinding checks the signing-certificate-v2 (or v1) attribute against cert: "absent",
// "ok" or an error.
func (p *signedData) certBinding(cert *x509.Certificate) (string, error) {
	if v, ok := p.attrs[oidSigningCertV2.String()]; ok {
		s := cryptobyte.String(v)
		var scv2, ids, id cryptobyte.String
		if !s.ReadASN1(&scv2, cbasn1.SEQUENCE) || !scv2.ReadASN1(&ids, cbasn1.SEQUENCE) || !ids.ReadASN1(&id, cbasn1.SEQUENCE) {
			return "", errors.New("signing-certificate-v2 is malformed")
		}
		h := crypto.SHA256
		if id.PeekASN1Tag(cbasn1.SEQUENCE) {
			var alg cryptobyte.String
			var oid asn1.ObjectIdentifier
			if !id.ReadASN1(&alg, cbasn1.SEQUENCE) || !alg.ReadASN1ObjectIdentifier(&oid) {
				return "", errors.New("signing-certificate-v2 hash algorithm is malformed")
			}
			if h = digestOIDs[oid.String()]; h == 0 || h == crypto.SHA1 {
				return "", fmt.Errorf("signing-certificate-v2 hash algorithm %v", oid)
			}
		}
		var certHash []byte
		if !id.ReadASN1Bytes(&certHash, cbasn1.OCTET_STRING) {
			return "", errors.New("signing-certificate-v2 certHash is malformed")
		}
		hh := h.New()
		hh.Write(cert.Raw)
		if !bytes.Equal(hh.Sum(nil), certHash) {
			return "", errors.New("signing-certificate-v2 names another certificate")
		}
		if err := checkIssuerSerial(id, cert); err != nil {
			return "", err
		}
		return "signing-certificate-v2", nil
	}
	if v, ok := p.attrs[oidSigningCert.String()]; ok {
		s := cryptobyte.String(v)
		var sc, ids, id cryptobyte.String
		var certHash []byte
		if !s.ReadASN1(&sc, cbasn1.SEQUENCE) || !sc.ReadASN1(&ids, cbasn1.SEQUENCE) || !ids.ReadASN1(&id, cbasn1.SEQUENCE) ||
			!id.ReadASN1Bytes(&certHash, cbasn1.OCTET_STRING) {
			return "", errors.New("signing-certificate is malformed")
		}
		sum := sha1.Sum(cert.Raw)
		if !bytes.Equal(sum[:], certHash) {
			return "", errors.New("signing-certificate names another certificate")
		}
		if err := checkIssuerSerial(id, cert); err != nil {
			return "", err
		}
		return "signing-certificate", nil
	}
	return "absent", nil
}

// checkIssuerSerial checks an optional IssuerSerial left in s.
func checkIssuerSerial(s cryptobyte.String, cert *x509.Certificate) error {
	if s.Empty() {
		return nil
	}
	var is, names cryptobyte.String
	serial := new(big.Int)
	if !s.ReadASN1(&is, cbasn1.SEQUENCE) || !is.ReadASN1(&names, cbasn1.SEQUENCE) || !is.ReadASN1Integer(serial) {
		return errors.New("issuerSerial is malformed")
	}
	if serial.Cmp(cert.SerialNumber) != 0 {
		return errors.New("issuerSerial names another serial number")
	}
	for !names.Empty() {
		var gn cryptobyte.String
		var tag cbasn1.Tag
		if !names.ReadAnyASN1(&gn, &tag) {
			return errors.New("issuerSerial names are malformed")
		}
		if tag == cbasn1.Tag(4).ContextSpecific().Constructed() && !bytes.Equal(gn, cert.RawIssuer) {
			return errors.New("issuerSerial names another issuer")
		}
	}
	return nil
}

// messageDigest is the message-digest attribute.
func (p *signedData) messageDigest() ([]byte, bool) {
	v, ok := p.attrs[oidMessageDigest.String()]
	if !ok {
		return nil, false
	}
	var d []byte
	if _, err := asn1.Unmarshal(v, &d); err != nil {
		return nil, false
	}
	return d, true
}

// contentTypeOK checks the content-type attribute equals the eContentType.
func (p *signedData) contentTypeOK() bool {
	v, ok := p.attrs[oidContentType.String()]
	if !ok {
		return false
	}
	var oid asn1.ObjectIdentifier
	_, err := asn1.Unmarshal(v, &oid)
	return err == nil && oid.Equal(p.contentType)
}

// readAdbeRevocation takes the CRLs ([0]) and OCSP responses ([1]) of a
// RevocationInfoArchival; what does not parse is left out (it is only evidence to try).
func (p *signedData) readAdbeRevocation(v []byte) {
	s := cryptobyte.String(v)
	var ria cryptobyte.String
	if !s.ReadASN1(&ria, cbasn1.SEQUENCE) {
		return
	}
	for !ria.Empty() {
		var field, list cryptobyte.String
		var tag cbasn1.Tag
		if !ria.ReadAnyASN1(&field, &tag) || !field.ReadASN1(&list, cbasn1.SEQUENCE) {
			return
		}
		for !list.Empty() {
			var item cryptobyte.String
			if !list.ReadASN1Element(&item, cbasn1.SEQUENCE) {
				break
			}
			switch tag {
			case cbasn1.Tag(0).ContextSpecific().Constructed():
				p.crls = append(p.crls, bytes.Clone(item))
			case cbasn1.Tag(1).ContextSpecific().Constructed():
				p.ocsps = append(p.ocsps, bytes.Clone(item))
			}
		}
	}
}
