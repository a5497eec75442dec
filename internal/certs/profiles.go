// Package certs issues Vula's certificates: the CA hierarchy and the leaf profiles of ETSI
// EN 319 412 (natural-person signature, legal-person seal, timestamping unit, OCSP responder).
// Every certificate is linted with zlint before the CA key signs it, and an error-level finding
// blocks issuance. Keys never leave the key layer: certificates are signed through a
// crypto.Signer from hsm.Manager.
//
// Authority is the hierarchy (made on first start, loaded afterwards, refused when a key does
// not match its certificate); Handlers serve it over HTTP: certificates, CRLs and OCSP.
package certs

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"time"

	"go.step.sm/crypto/x509util"
)

// Profile is the kind of certificate.
type Profile string

const (
	Root          Profile = "root"
	IssuingCA     Profile = "issuing-ca"
	NaturalPerson Profile = "natural-person" // EN 319 412-2, qualified signature
	LegalPerson   Profile = "legal-person"   // EN 319 412-3, qualified seal
	TSA           Profile = "tsa"            // EN 319 422 timestamping unit
	OCSPResponder Profile = "ocsp"           // RFC 6960 delegated responder
	PIDIssuer     Profile = "pid-issuer"     // signs person identification data (SD-JWT VC, mdoc)
	// Verifier is the access certificate of Vula's OpenID4VP verifier: it signs the requests
	// wallets are shown (the wallet authenticates the verifier by it, x509_hash client id).
	Verifier Profile = "verifier"
	// TrustListSigner signs a trusted list (ETSI TS 119 612 §5.7.1: nonRepudiation and the
	// extended key usage id-tsl-kp-tslSigning).
	TrustListSigner Profile = "tsl-signer"
)

// OIDDocumentSigner is the extended key usage id-mdl-kp-mdlDS of ISO/IEC 18013-5, which mdoc
// verifiers look for. Of this PKI's profiles only PIDIssuer carries it.
var OIDDocumentSigner = asn1.ObjectIdentifier{1, 0, 18013, 5, 1, 2}

// IsPIDIssuer reports whether c has the document-signer extended key usage of the PIDIssuer
// profile: under Vula's CA, the PID issuer's certificate and no other.
func IsPIDIssuer(c *x509.Certificate) bool {
	return slices.ContainsFunc(c.UnknownExtKeyUsage, OIDDocumentSigner.Equal)
}

// Policy is what every certificate of this PKI says about where its services are.
type Policy struct {
	// BaseURL is this server's public URL: AIA, CRL distribution points and OCSP point under /pki.
	BaseURL string
	// PolicyOIDs go into certificatePolicies of every leaf and issuing CA.
	PolicyOIDs []asn1.ObjectIdentifier
	// PDSURL is the PKI disclosure statement (QcPDS), in English.
	PDSURL string
}

// Request asks for one certificate.
type Request struct {
	Profile   Profile
	Subject   pkix.Name
	PublicKey crypto.PublicKey
	NotBefore time.Time
	NotAfter  time.Time
}

// Issuer is a CA that can sign: its certificate, a signer for its key from the key layer, and
// the name its URLs use (/pki/<name>.crt).
type Issuer struct {
	Name   string
	Cert   *x509.Certificate
	Signer crypto.Signer
}

// ETSI and RFC object identifiers.
var (
	oidQCStatements         = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 1, 3}
	oidQcCompliance         = asn1.ObjectIdentifier{0, 4, 0, 1862, 1, 1}
	oidQcSSCD               = asn1.ObjectIdentifier{0, 4, 0, 1862, 1, 4}
	oidQcPDS                = asn1.ObjectIdentifier{0, 4, 0, 1862, 1, 5}
	oidQcType               = asn1.ObjectIdentifier{0, 4, 0, 1862, 1, 6}
	oidQcTypeESign          = asn1.ObjectIdentifier{0, 4, 0, 1862, 1, 6, 1}
	oidQcTypeESeal          = asn1.ObjectIdentifier{0, 4, 0, 1862, 1, 6, 2}
	oidExtKeyUsage          = asn1.ObjectIdentifier{2, 5, 29, 37}
	oidTimeStamping         = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 8}
	oidOCSPNoCheck          = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 5}
	oidTSLSigning           = asn1.ObjectIdentifier{0, 4, 0, 2231, 3, 0}
	OIDOrganizationIdentity = asn1.ObjectIdentifier{2, 5, 4, 97}
	oidSerialNumber         = asn1.ObjectIdentifier{2, 5, 4, 5}
)

// NaturalPersonName is the subject of a person's signature certificate: the personal number
// as serialNumber with the EN 319 412-1 semantics identifier PNO and the country.
func NaturalPersonName(given, family, personalNumber, country string) pkix.Name {
	return pkix.Name{
		Country:    []string{country},
		CommonName: given + " " + family,
		ExtraNames: []pkix.AttributeTypeAndValue{
			{Type: asn1.ObjectIdentifier{2, 5, 4, 42}, Value: given}, // givenName
			{Type: asn1.ObjectIdentifier{2, 5, 4, 4}, Value: family}, // surname
			{Type: oidSerialNumber, Value: "PNO" + country + "-" + personalNumber},
		},
	}
}

// LegalPersonName is the subject of an institution's seal certificate, with the
// organizationIdentifier (NTR = national trade register, EN 319 412-1).
func LegalPersonName(name, registryNumber, country string) pkix.Name {
	return pkix.Name{
		Country:      []string{country},
		Organization: []string{name},
		CommonName:   name,
		ExtraNames: []pkix.AttributeTypeAndValue{
			{Type: OIDOrganizationIdentity, Value: "NTR" + country + "-" + registryNumber},
		},
	}
}

type pdsLocation struct {
	URL      string `asn1:"ia5"`
	Language string `asn1:"printable"`
}

type qcStatement struct {
	ID   asn1.ObjectIdentifier
	Info asn1.RawValue `asn1:"optional"`
}

// qcStatements encodes the QCStatements extension (RFC 3739, EN 319 412-5) of a qualified
// certificate whose key is in a QSCD.
func qcStatements(qcType asn1.ObjectIdentifier, pdsURL string) (pkix.Extension, error) {
	raw := func(v any) (asn1.RawValue, error) {
		b, err := asn1.Marshal(v)
		return asn1.RawValue{FullBytes: b}, err
	}
	types, err := raw([]asn1.ObjectIdentifier{qcType})
	if err != nil {
		return pkix.Extension{}, err
	}
	pds, err := raw([]pdsLocation{{URL: pdsURL, Language: "en"}})
	if err != nil {
		return pkix.Extension{}, err
	}
	v, err := asn1.Marshal([]qcStatement{{ID: oidQcCompliance}, {ID: oidQcSSCD}, {ID: oidQcType, Info: types}, {ID: oidQcPDS, Info: pds}})
	return pkix.Extension{Id: oidQCStatements, Value: v}, err
}

// template builds the certificate req asks for, under issuer (nil: self-signed root).
func template(req Request, issuer *Issuer, pol Policy) (*x509.Certificate, error) {
	if req.PublicKey == nil || !req.NotAfter.After(req.NotBefore) {
		return nil, errors.New("certs: a request needs a public key and a validity period")
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 159)) // positive, < 20 octets
	if err != nil {
		return nil, err
	}
	ski, err := x509util.GenerateSubjectKeyID(req.PublicKey)
	if err != nil {
		return nil, err
	}
	t := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               req.Subject,
		NotBefore:             req.NotBefore.UTC().Truncate(time.Second),
		NotAfter:              req.NotAfter.UTC().Truncate(time.Second),
		SubjectKeyId:          ski,
		BasicConstraintsValid: true,
	}
	base := strings.TrimRight(pol.BaseURL, "/")
	if issuer != nil {
		t.IssuingCertificateURL = []string{base + "/pki/" + issuer.Name + ".crt"}
		t.CRLDistributionPoints = []string{base + "/pki/" + issuer.Name + ".crl"}
		// Since Go 1.24 CreateCertificate writes Policies and ignores PolicyIdentifiers
		// (GODEBUG x509usepolicies): set Policies, or certificatePolicies silently goes missing.
		for _, o := range pol.PolicyOIDs {
			arcs := make([]uint64, len(o))
			for i, a := range o {
				if a < 0 {
					return nil, fmt.Errorf("certs: policy OID %v has a negative arc", o)
				}
				arcs[i] = uint64(a)
			}
			oid, err := x509.OIDFromInts(arcs)
			if err != nil {
				return nil, fmt.Errorf("certs: policy OID %v: %w", o, err)
			}
			t.Policies = append(t.Policies, oid)
		}
	}
	switch req.Profile {
	case Root, IssuingCA:
		t.IsCA = true
		t.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
		if req.Profile == IssuingCA {
			t.MaxPathLenZero = true // issues only end-entity certificates
		}
		return t, nil
	case NaturalPerson, LegalPerson:
		t.KeyUsage = x509.KeyUsageContentCommitment
		qcType := oidQcTypeESign
		if req.Profile == LegalPerson {
			qcType = oidQcTypeESeal
		}
		qc, err := qcStatements(qcType, pol.PDSURL)
		if err != nil {
			return nil, err
		}
		t.ExtraExtensions = append(t.ExtraExtensions, qc)
	case PIDIssuer:
		// A legal person's signing certificate (the PID provider) with the ISO/IEC 18013-5
		// document-signer purpose, which mdoc verifiers look for.
		eku, err := asn1.Marshal([]asn1.ObjectIdentifier{OIDDocumentSigner})
		if err != nil {
			return nil, err
		}
		t.KeyUsage = x509.KeyUsageDigitalSignature
		t.ExtraExtensions = append(t.ExtraExtensions, pkix.Extension{Id: oidExtKeyUsage, Critical: true, Value: eku})
	case Verifier:
		t.KeyUsage = x509.KeyUsageDigitalSignature
	case TSA:
		// crypto/x509 writes extendedKeyUsage non-critical; RFC 3161 wants it critical.
		eku, err := asn1.Marshal([]asn1.ObjectIdentifier{oidTimeStamping})
		if err != nil {
			return nil, err
		}
		t.KeyUsage = x509.KeyUsageDigitalSignature
		t.ExtraExtensions = append(t.ExtraExtensions, pkix.Extension{Id: oidExtKeyUsage, Critical: true, Value: eku})
	case TrustListSigner:
		t.KeyUsage = x509.KeyUsageContentCommitment
		t.UnknownExtKeyUsage = []asn1.ObjectIdentifier{oidTSLSigning}
	case OCSPResponder:
		t.KeyUsage = x509.KeyUsageDigitalSignature
		t.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageOCSPSigning}
		null, _ := asn1.Marshal(asn1.NullRawValue)
		t.ExtraExtensions = append(t.ExtraExtensions, pkix.Extension{Id: oidOCSPNoCheck, Value: null})
		return t, nil
	default:
		return nil, fmt.Errorf("certs: unknown profile %q", req.Profile)
	}
	t.OCSPServer = []string{base + "/pki/ocsp"}
	return t, nil
}
