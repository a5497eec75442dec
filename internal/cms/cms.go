// Package cms holds the pieces of CMS (RFC 5652) that Vula encodes itself with cryptobyte, for
// the two places that make SignedData: the timestamp tokens of internal/tsa and the signatures
// of internal/signing/cades. Both encode their fixed structures by hand (each says why); what
// they share is here: object identifiers, algorithm identifiers, attributes, the
// signing-certificate-v2 attribute, the longest signature a key gives, and signing with the
// caller's context so that the key layer's audit record names the actor. DER (ber.go) turns
// the BER others' signers write into DER, and ParseSignedData (signeddata.go) is the one
// reader of SignedData: internal/validation's, and cades' when it adds a timestamp.
package cms

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"fmt"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/vula-eid/vula/hsm"
)

// Object identifiers of RFC 5652, RFC 5035 and RFC 5754.
var (
	OIDData             = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1}
	OIDSignedData       = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 2}
	OIDContentType      = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 3}
	OIDMessageDigest    = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 4}
	OIDSigningTime      = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 5}
	OIDSigningCertV2    = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 2, 47}
	OIDSignatureTSToken = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 2, 14}

	OIDECDSAWithSHA = map[crypto.Hash]asn1.ObjectIdentifier{
		crypto.SHA256: {1, 2, 840, 10045, 4, 3, 2}, crypto.SHA384: {1, 2, 840, 10045, 4, 3, 3}, crypto.SHA512: {1, 2, 840, 10045, 4, 3, 4}}
	OIDRSAWithSHA = map[crypto.Hash]asn1.ObjectIdentifier{
		crypto.SHA256: {1, 2, 840, 113549, 1, 1, 11}, crypto.SHA384: {1, 2, 840, 113549, 1, 1, 12}, crypto.SHA512: {1, 2, 840, 113549, 1, 1, 13}}
	OIDDigest = map[crypto.Hash]asn1.ObjectIdentifier{
		crypto.SHA256: {2, 16, 840, 1, 101, 3, 4, 2, 1}, crypto.SHA384: {2, 16, 840, 1, 101, 3, 4, 2, 2}, crypto.SHA512: {2, 16, 840, 1, 101, 3, 4, 2, 3}}
)

// Build runs f on a fresh builder; nil means f encoded something invalid.
func Build(f func(b *cryptobyte.Builder)) []byte { return BuildSized(0, f) }

// BuildSized is Build with room for n bytes, so that a large structure is not copied as it
// grows.
func BuildSized(n int, f func(b *cryptobyte.Builder)) []byte {
	b := cryptobyte.NewBuilder(make([]byte, 0, n))
	f(b)
	out, err := b.Bytes()
	if err != nil {
		return nil
	}
	return out
}

// AlgID is an AlgorithmIdentifier; null adds NULL parameters (RSA algorithms carry them).
func AlgID(oid asn1.ObjectIdentifier, null bool) []byte {
	return Build(func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(oid)
			if null {
				b.AddASN1NULL()
			}
		})
	})
}

// Attribute is a CMS Attribute with one value.
func Attribute(oid asn1.ObjectIdentifier, value func(b *cryptobyte.Builder)) []byte {
	return Build(func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(oid)
			b.AddASN1(cbasn1.SET, value)
		})
	})
}

// SigningCertificateV2 is the signing-certificate-v2 attribute (RFC 5035) naming cert: one
// ESSCertIDv2 with the default hash (SHA-256) and issuerSerial.
func SigningCertificateV2(cert *x509.Certificate) []byte {
	certHash := sha256.Sum256(cert.Raw)
	return Attribute(OIDSigningCertV2, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // SigningCertificateV2
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // certs
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // ESSCertIDv2
					b.AddASN1OctetString(certHash[:])
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // IssuerSerial
						b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // GeneralNames
							b.AddASN1(cbasn1.Tag(4).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
								b.AddBytes(cert.RawIssuer) // directoryName
							})
						})
						b.AddASN1BigInt(cert.SerialNumber)
					})
				})
			})
		})
	})
}

// SignatureAlgorithm is the AlgorithmIdentifier of a signature by pub over a hash digest:
// ecdsa-with-SHA* (no parameters) or sha*WithRSAEncryption (NULL parameters).
func SignatureAlgorithm(pub crypto.PublicKey, hash crypto.Hash) ([]byte, error) {
	switch pub.(type) {
	case *ecdsa.PublicKey:
		if oid, ok := OIDECDSAWithSHA[hash]; ok {
			return AlgID(oid, false), nil
		}
	case *rsa.PublicKey:
		if oid, ok := OIDRSAWithSHA[hash]; ok {
			return AlgID(oid, true), nil
		}
	}
	return nil, fmt.Errorf("cms: no signature algorithm for %T with %v", pub, hash)
}

// MaxSignatureLen is the longest signature value the key gives: for ECDSA a DER SEQUENCE of
// two INTEGERs at full length (with a leading zero when the order's bit length is a multiple
// of 8, as for P-256 and P-384), for RSA the modulus length.
func MaxSignatureLen(pub crypto.PublicKey) (int, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		bits := k.Curve.Params().N.BitLen()
		n := (bits + 7) / 8
		if bits%8 == 0 {
			n++
		}
		integer := 1 + derLenLen(n) + n
		return 1 + derLenLen(2*integer) + 2*integer, nil
	case *rsa.PublicKey:
		return k.Size(), nil
	}
	return 0, fmt.Errorf("cms: unsupported key type %T", pub)
}

// derLenLen is the size of a DER length field for n bytes of content.
func derLenLen(n int) int {
	if n < 0x80 {
		return 1
	}
	l := 1
	for ; n > 0; n >>= 8 {
		l++
	}
	return l
}

// Sign signs digest with k, passing ctx on when k takes one (an instrumented key), so that the
// key layer's audit record names the actor and carries the caller's detail.
func Sign(ctx context.Context, k crypto.Signer, digest []byte, hash crypto.Hash) ([]byte, error) {
	if cs, ok := k.(hsm.ContextSigner); ok {
		return cs.SignContext(ctx, rand.Reader, digest, hash)
	}
	return k.Sign(rand.Reader, digest, hash)
}
