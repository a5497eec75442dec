package signing

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"slices"

	"github.com/digitorus/timestamp"
	"github.com/vula-eid/vula/internal/problem"
	"golang.org/x/crypto/ocsp"
)

// ValidationData is what a signature at level LT embeds so that it can be validated later
// without going online: the certificates of every chain, an OCSP response on each end-entity
// certificate and the CRL over each CA certificate below the root.
type ValidationData struct {
	Certs []*x509.Certificate
	OCSPs [][]byte
	CRLs  [][]byte
}

// Collect gathers the validation data for chains, each a certificate and the chain above it
// (the root last), as Signer.Chain and TokenCerts give them. An end-entity certificate gets an
// OCSP response (whose responder certificate joins Certs), a CA certificate below the root the
// CRL of its issuer. Certificates and CRLs are listed once however many chains share them.
func Collect(ctx context.Context, rev Revocation, chains ...[]*x509.Certificate) (ValidationData, error) {
	var vd ValidationData
	addCert := func(c *x509.Certificate) {
		for _, x := range vd.Certs {
			if x.Equal(c) {
				return
			}
		}
		vd.Certs = append(vd.Certs, c)
	}
	for _, chain := range chains {
		for _, c := range chain {
			addCert(c)
			switch {
			case bytes.Equal(c.RawSubject, c.RawIssuer): // a root: the trust anchor, nothing to check
			case c.IsCA:
				crl, err := rev.CRLOf(ctx, c)
				if err != nil {
					return vd, fmt.Errorf("signing: CRL over %s: %w", c.Subject, err)
				}
				if !slices.ContainsFunc(vd.CRLs, func(b []byte) bool { return bytes.Equal(b, crl) }) {
					vd.CRLs = append(vd.CRLs, crl)
				}
			default:
				der, err := rev.OCSP(ctx, c)
				if err != nil {
					return vd, fmt.Errorf("signing: OCSP on %s: %w", c.Subject, err)
				}
				resp, err := ocsp.ParseResponse(der, nil)
				if err != nil {
					return vd, fmt.Errorf("signing: OCSP on %s: %w", c.Subject, err)
				}
				if resp.Status != ocsp.Good {
					return vd, fmt.Errorf("%w: the certificate %s is not good (OCSP status %d)", ErrRevoked, c.Subject, resp.Status)
				}
				if resp.Certificate != nil {
					addCert(resp.Certificate)
				}
				vd.OCSPs = append(vd.OCSPs, der)
			}
		}
	}
	return vd, nil
}

// ErrRevoked: a certificate that a signature depends on is revoked (or unknown to its CA).
var ErrRevoked = problem.New(problem.Revoked, "signing: certificate revoked")

// TokenCerts returns the chain of the TSA that signed a DER TimeStampToken: its certificate
// first, then the others the token carries.
func TokenCerts(token []byte) ([]*x509.Certificate, error) {
	ts, err := timestamp.Parse(token)
	if err != nil {
		return nil, fmt.Errorf("%w: timestamp token: %w", ErrInvalid, err)
	}
	if len(ts.Certificates) == 0 {
		return nil, fmt.Errorf("%w: the timestamp token carries no certificate", ErrInvalid)
	}
	// The TSA's own certificate is the one for timestamping; the rest follow in their order.
	certs := slices.Clone(ts.Certificates)
	slices.SortStableFunc(certs, func(a, b *x509.Certificate) int {
		return boolRank(isTSA(b)) - boolRank(isTSA(a))
	})
	return certs, nil
}

func isTSA(c *x509.Certificate) bool {
	return slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageTimeStamping)
}

func boolRank(b bool) int {
	if b {
		return 1
	}
	return 0
}
