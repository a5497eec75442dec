package holder

import (
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/vula-eid/vula/internal/mdoc"
)

// An ISO/IEC 18013-5 mdoc as the wallet keeps it: the IssuerSigned the issuer sent, checked by
// internal/mdoc (the MSO's signature by its x5chain leaf, the chain to the wallet's anchors, the
// validity, every item's digest).

// cborEnc writes deterministic CBOR (RFC 8949 §4.2.1), as what is signed must encode one way.
var cborEnc, _ = cbor.CoreDetEncOptions().EncMode()

// issuedMdoc is a checked IssuerSigned, with its issuerAuth as issued to present it again.
type issuedMdoc struct {
	*mdoc.Document
	issuerAuth cbor.RawMessage
}

// parseMdoc decodes base64url IssuerSigned and checks it against anchors at now.
func parseMdoc(s string, anchors []*x509.Certificate, now time.Time) (*issuedMdoc, error) {
	if len(s) > maxCredential {
		return nil, fmt.Errorf("%w: an mdoc larger than %d bytes", ErrInvalid, maxCredential)
	}
	raw, err := b64.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%w: the mdoc is not base64url", ErrInvalid)
	}
	is, err := mdoc.DecodeIssuerSigned(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if len(anchors) == 0 {
		return nil, fmt.Errorf("%w: the wallet has no trust anchors (give --trust)", ErrUntrusted)
	}
	roots := x509.NewCertPool()
	for _, a := range anchors {
		roots.AddCert(a)
	}
	d, err := is.Check(roots, now)
	switch {
	case errors.Is(err, mdoc.ErrUntrusted):
		return nil, fmt.Errorf("%w: %w", ErrUntrusted, err)
	case err != nil:
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return &issuedMdoc{Document: d, issuerAuth: is.IssuerAuth}, nil
}

// names are the mdoc's element identifiers, sorted.
func (m *issuedMdoc) names() []string {
	out := make([]string, 0, len(m.Elements))
	for _, e := range m.Elements {
		out = append(out, e.Identifier)
	}
	sort.Strings(out)
	return out
}

// statusRef is the MSO's status list entry, nil for none.
func (m *issuedMdoc) statusRef() *statusRef {
	if m.Status == nil {
		return nil
	}
	// An index past int's range wraps negative, which status refuses as outside the list.
	return &statusRef{URI: m.Status.URI, Idx: int(m.Status.Idx)}
}

// encodeB64 is base64url without padding, as OpenID4VCI and OpenID4VP carry CBOR.
func encodeB64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
