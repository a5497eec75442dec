package software

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"io"

	"github.com/vula-eid/vula/hsm"
)

// signer signs with one key of a Manager: ECDSA as ASN.1 DER, RSA as PKCS#1 v1.5 or, given
// *rsa.PSSOptions, PSS. Digests must be SHA-256, SHA-384 or SHA-512 and of the right length.
type signer struct {
	m   *Manager
	e   *entry
	uri string
	pub crypto.PublicKey
}

var _ crypto.Signer = (*signer)(nil)

func (s *signer) Public() crypto.PublicKey { return s.pub }

func (s *signer) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if s.m.closed.Load() {
		return nil, hsm.ErrClosed
	}
	k := s.e.priv.Load()
	if k == nil {
		return nil, fmt.Errorf("%w: key %s is no longer active", hsm.ErrKeyNotActive, s.uri)
	}
	pss, isPSS := opts.(*rsa.PSSOptions)
	h := hsm.HashOf(opts)
	switch h {
	case crypto.SHA256, crypto.SHA384, crypto.SHA512:
	default:
		return nil, fmt.Errorf("%w: hash %v (want SHA-256, SHA-384 or SHA-512)", hsm.ErrUnsupportedOp, h)
	}
	if len(digest) != h.Size() {
		return nil, fmt.Errorf("%w: digest of %d bytes for %v", hsm.ErrInvalid, len(digest), h)
	}
	if r == nil {
		r = rand.Reader
	}
	switch priv := k.Signer.(type) {
	case *ecdsa.PrivateKey:
		if isPSS {
			return nil, fmt.Errorf("%w: PSS with an ECDSA key", hsm.ErrUnsupportedOp)
		}
		return ecdsa.SignASN1(r, priv, digest)
	case *rsa.PrivateKey:
		if isPSS {
			return rsa.SignPSS(r, priv, h, digest, pss)
		}
		return rsa.SignPKCS1v15(r, priv, h, digest)
	}
	return nil, fmt.Errorf("%w: key type %T", hsm.ErrUnsupportedOp, k.Signer)
}
