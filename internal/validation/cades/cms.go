package cades

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

// The CMS is parsed by internal/cms (cryptobyte) rather than github.com/digitorus/pkcs7 because a
// validator needs what that library hides: the exact DER of the signed attributes, the
// signing-certificate(-v2) attribute, the unsigned attributes (the signature timestamp) and a
// verdict per step rather than one error.

var (
	oidTSTInfo            = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 1, 4}
	oidContentType        = cms.OIDContentType
	oidMessageDigest      = cms.OIDMessageDigest
	oidSigningTime        = cms.OIDSigningTime
	oidSigningCert        = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 2, 12} // v1, SHA-1 (others' signatures)
	oidSigningCertV2      = cms.OIDSigningCertV2
	oidSignatureTimeStamp = cms.OIDSignatureTSToken
	// Adobe's adbe-revocationInfoArchival signed attribute (ISO 32000-1 §12.8.3.3.2): the
	// CRLs and OCSP responses a PKCS#7 PDF signature (pdfsign's, Acrobat's) carries.
	oidAdbeRevocation = asn1.ObjectIdentifier{1, 2, 840, 113583, 1, 1, 8}
)

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

// Parse reads a CMS ContentInfo of SignedData in BER (RFC 5652 allows BER; NSS
// writes indefinite lengths) by making it DER first: the signed attributes are then the DER
// the signature is over (RFC 5652, 5.4). The CRLs and OCSP responses of Adobe's
// revocation-information attribute join the SignedData's own.
func Parse(ber []byte) (*cms.SignedData, error) {
	der, err := cms.DER(ber)
	if err != nil {
		return nil, fmt.Errorf("%w: validation: %w: %s", signing.ErrInvalid, cms.ErrNotSignedData, err.Error())
	}
	p, err := cms.ParseSignedData(der)
	switch {
	case errors.Is(err, cms.ErrUnsupportedDigest):
		return nil, fmt.Errorf("%w: validation: %w", signing.ErrUnsupported, err)
	case err != nil:
		return nil, fmt.Errorf("%w: validation: %w", signing.ErrInvalid, err)
	}
	if v, ok := p.Attrs[oidAdbeRevocation.String()]; ok {
		readAdbeRevocation(p, v)
	}
	return p, nil
}

// signerCert finds the signer's certificate among certs by the SignerInfo's identifier.
func signerCert(p *cms.SignedData, certs []*x509.Certificate) *x509.Certificate {
	for _, c := range certs {
		if p.SIDSKI != nil && bytes.Equal(c.SubjectKeyId, p.SIDSKI) {
			return c
		}
		if p.SIDSerial != nil && bytes.Equal(c.RawIssuer, p.SIDIssuer) && c.SerialNumber.Cmp(p.SIDSerial) == 0 {
			return c
		}
	}
	return nil
}

// verifySignature checks the signature value over the signed attributes (or over digest when
// there are none) with cert's key.
func verifySignature(p *cms.SignedData, cert *x509.Certificate, contentDigest []byte) error {
	alg, ok := sigAlgs[p.SigAlg.String()]
	if !ok {
		return fmt.Errorf("signature algorithm %s is not supported", p.SigAlg.String())
	}
	h := p.Hash
	if alg.hash != 0 {
		h = alg.hash
	}
	if h == crypto.SHA1 {
		return errors.New("SHA-1 signatures are not accepted")
	}
	var digest []byte
	if p.SignedAttrs != nil {
		hh := h.New()
		hh.Write(p.SignedAttrs)
		digest = hh.Sum(nil)
	} else {
		if h != p.Hash {
			return errors.New("the signature's hash is not the digest algorithm")
		}
		digest = contentDigest
	}
	switch pub := cert.PublicKey.(type) {
	case *ecdsa.PublicKey:
		if alg.kind != "ecdsa" || !ecdsa.VerifyASN1(pub, digest, p.Signature) {
			return errors.New("the ECDSA signature does not verify")
		}
	case *rsa.PublicKey:
		if alg.kind != "rsa" {
			return errors.New("the algorithm does not match the RSA key")
		}
		if err := rsa.VerifyPKCS1v15(pub, h, digest, p.Signature); err != nil {
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
func signingTime(p *cms.SignedData) *time.Time {
	v, ok := p.Attrs[oidSigningTime.String()]
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
func certBinding(p *cms.SignedData, cert *x509.Certificate) (string, error) {
	if v, ok := p.Attrs[oidSigningCertV2.String()]; ok {
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
			if h = cms.HashOf(oid); h == 0 || h == crypto.SHA1 {
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
		if err := CheckIssuerSerial(id, cert); err != nil {
			return "", err
		}
		return "signing-certificate-v2", nil
	}
	if v, ok := p.Attrs[oidSigningCert.String()]; ok {
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
		if err := CheckIssuerSerial(id, cert); err != nil {
			return "", err
		}
		return "signing-certificate", nil
	}
	return "absent", nil
}

// CheckIssuerSerial checks an optional IssuerSerial left in s.
func CheckIssuerSerial(s cryptobyte.String, cert *x509.Certificate) error {
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
func messageDigest(p *cms.SignedData) ([]byte, bool) {
	v, ok := p.Attrs[oidMessageDigest.String()]
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
func contentTypeOK(p *cms.SignedData) bool {
	v, ok := p.Attrs[oidContentType.String()]
	if !ok {
		return false
	}
	var oid asn1.ObjectIdentifier
	_, err := asn1.Unmarshal(v, &oid)
	return err == nil && oid.Equal(p.ContentType)
}

// readAdbeRevocation takes the CRLs ([0]) and OCSP responses ([1]) of a
// RevocationInfoArchival; what does not parse is left out (it is only evidence to try).
func readAdbeRevocation(p *cms.SignedData, v []byte) {
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
				p.CRLs = append(p.CRLs, bytes.Clone(item))
			case cbasn1.Tag(1).ContextSpecific().Constructed():
				p.OCSPs = append(p.OCSPs, bytes.Clone(item))
			}
		}
	}
}
