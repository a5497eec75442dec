// Package signing holds what every signature format of Vula shares: who signs (a key from the
// key layer with its certificate and chain), the baseline levels of ETSI EN 319 1x2-1, the two
// services a signature at level T and above draws on (a timestamp authority and a source of
// revocation data), and the errors the formats return.
//
// The formats live beneath it: cades (CMS, EN 319 122-1), pades (PDF, EN 319 142-1), xades
// (XML, EN 319 132-1) and asic (containers, EN 319 162-1). None of them talks HTTP; the sealing
// and remote-signing services map their errors to statuses at the edge.
package signing

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"fmt"
	"strings"

	"github.com/vula-eid/vula/internal/problem"
)

// Level is a baseline level.
type Level string

const (
	LevelB   Level = "B-B"   // the signature and its signed attributes
	LevelT   Level = "B-T"   // plus a timestamp on the signature
	LevelLT  Level = "B-LT"  // plus the certificates and revocation data to validate it later
	LevelLTA Level = "B-LTA" // plus an archive (or document) timestamp over all of that
)

// Levels lists the levels in order.
var Levels = []Level{LevelB, LevelT, LevelLT, LevelLTA}

// ParseLevel reads a level, with or without the "B-" prefix and in any case ("lt", "B-LT").
func ParseLevel(s string) (Level, error) {
	for _, l := range Levels {
		if strings.EqualFold(s, string(l)) || strings.EqualFold(s, string(l)[2:]) {
			return l, nil
		}
	}
	return "", fmt.Errorf("%w: level %q (want B-B, B-T, B-LT or B-LTA)", ErrInvalid, s)
}

// AtLeast reports whether l includes what m asks for (B-LT is at least B-T).
func (l Level) AtLeast(m Level) bool { return l.rank() >= m.rank() }

func (l Level) rank() int {
	for i, x := range Levels {
		if x == l {
			return i
		}
	}
	return -1
}

// Signer is who signs: a signer from the key layer (audited, so every signature is recorded),
// the certificate of its key and the chain above it, the issuer first and the root last.
type Signer struct {
	Key   crypto.Signer
	Cert  *x509.Certificate
	Chain []*x509.Certificate
}

// Validate checks that the key matches the certificate and is of a kind the formats support.
func (s Signer) Validate() error {
	if s.Key == nil || s.Cert == nil {
		return fmt.Errorf("%w: no key or no certificate", ErrInvalid)
	}
	pub, ok := s.Key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(s.Cert.PublicKey) {
		return fmt.Errorf("%w: the key does not match the certificate %s", ErrInvalid, s.Cert.Subject)
	}
	_, err := HashFor(s.Key.Public())
	return err
}

// HashFor is the digest algorithm Vula signs with for a key: SHA-384 for P-384, SHA-512 for
// P-521, SHA-256 otherwise (P-256, RSA with PKCS #1 v1.5).
func HashFor(pub crypto.PublicKey) (crypto.Hash, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return crypto.SHA256, nil
		case elliptic.P384():
			return crypto.SHA384, nil
		case elliptic.P521():
			return crypto.SHA512, nil
		}
	case *rsa.PublicKey:
		return crypto.SHA256, nil
	}
	return 0, fmt.Errorf("%w: key type %T", ErrUnsupported, pub)
}

// Timestamper makes RFC 3161 timestamp tokens. In the server it is the in-process TSA
// (tsa.Responder); a client of a remote TSA (pkg/tsclient) fits too.
type Timestamper interface {
	// Timestamp returns a DER TimeStampToken (a CMS ContentInfo of SignedData over a TSTInfo)
	// whose message imprint is digest, computed with hash. The token MUST carry the TSA's
	// certificate.
	Timestamp(ctx context.Context, hash crypto.Hash, digest []byte) ([]byte, error)
}

// Revocation gives the revocation data a signature at level LT embeds. In the server it is the
// platform's own CA (certs.Authority), in process.
type Revocation interface {
	// OCSP returns a DER OCSPResponse (status successful) on c, from its issuer's responder.
	OCSP(ctx context.Context, c *x509.Certificate) ([]byte, error)
	// CRLOf returns the current DER CRL of the CA that issued c.
	CRLOf(ctx context.Context, c *x509.Certificate) ([]byte, error)
}

// Errors of the formats, each of a problem type. They are wrapped with the detail, which never
// holds a secret.
var (
	// ErrInvalid: the input is not what the format takes (not a PDF, broken XML, a DTD, ...).
	ErrInvalid = problem.New(problem.InvalidRequest, "signing: invalid input")
	// ErrUnsupported: a well-formed input or option Vula does not sign (an encrypted PDF, a
	// key type, a level the format does not have).
	ErrUnsupported = problem.New(problem.Unsupported, "signing: unsupported")
	// ErrTooLarge: the input is above the configured size.
	ErrTooLarge = problem.New(problem.TooLarge, "signing: input too large")
)
