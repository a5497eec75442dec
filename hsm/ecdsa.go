package hsm

import (
	"crypto/elliptic"
	"fmt"
	"math/big"

	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/cryptobyte/asn1"
)

// ECDSARaw turns an ASN.1 DER ECDSA signature (what Go's crypto.Signer returns) into the fixed
// r||s form that XML-DSig, JOSE and PKCS#11 use, each half padded to the curve's size.
func ECDSARaw(der []byte, curve elliptic.Curve) ([]byte, error) {
	if curve == nil {
		// Curve() of an RSA algorithm: refuse rather than panic.
		return nil, fmt.Errorf("%w: no curve for an ECDSA signature", ErrInvalid)
	}
	var r, s big.Int
	in := cryptobyte.String(der)
	var seq cryptobyte.String
	if !in.ReadASN1(&seq, asn1.SEQUENCE) || !in.Empty() ||
		!seq.ReadASN1Integer(&r) || !seq.ReadASN1Integer(&s) || !seq.Empty() {
		return nil, fmt.Errorf("%w: not a DER ECDSA signature", ErrInvalid)
	}
	size := (curve.Params().BitSize + 7) / 8
	if r.Sign() <= 0 || s.Sign() <= 0 || len(r.Bytes()) > size || len(s.Bytes()) > size {
		return nil, fmt.Errorf("%w: ECDSA signature does not fit the curve", ErrInvalid)
	}
	out := make([]byte, 2*size)
	r.FillBytes(out[:size])
	s.FillBytes(out[size:])
	return out, nil
}

// ECDSADER turns a raw r||s ECDSA signature into ASN.1 DER.
func ECDSADER(raw []byte) ([]byte, error) {
	if len(raw) == 0 || len(raw)%2 != 0 {
		return nil, fmt.Errorf("%w: raw ECDSA signature of odd length %d", ErrInvalid, len(raw))
	}
	r := new(big.Int).SetBytes(raw[:len(raw)/2])
	s := new(big.Int).SetBytes(raw[len(raw)/2:])
	var b cryptobyte.Builder
	b.AddASN1(asn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1BigInt(r)
		b.AddASN1BigInt(s)
	})
	return b.Bytes()
}

// Curve returns the curve of an ECDSA algorithm, nil for RSA.
func (a Algorithm) Curve() elliptic.Curve {
	switch a {
	case ECP256:
		return elliptic.P256()
	case ECP384:
		return elliptic.P384()
	}
	return nil
}
