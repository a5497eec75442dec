// Package rawsig signs, through any crypto.Signer of the key layer, in the raw forms that JOSE
// (RFC 7515, RFC 7518) and COSE (RFC 9052, RFC 9053) carry: ECDSA as fixed-size r||s, RSA as
// PSS with SHA-256; and makes compact JWS with them.
//
// The contract: the algorithm follows from the key (P-256 ES256, P-384 ES384, RSA PS256; any
// other key is an error), and a signer of the instrumented key layer (hsm.ContextSigner) signs
// under the caller's context, so that its audit record names that request and not the one the
// signer was first obtained in.
package rawsig

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"

	_ "crypto/sha512" // SHA-384 for ES384

	"github.com/vula-eid/vula/hsm"
)

// Alg is a key's algorithm in JOSE's and COSE's names, with its hash.
type Alg struct {
	JOSE string
	COSE int
	Hash crypto.Hash
}

// AlgOf is the algorithm of a key.
func AlgOf(pub crypto.PublicKey) (Alg, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve.Params().BitSize {
		case 256:
			return Alg{"ES256", -7, crypto.SHA256}, nil
		case 384:
			return Alg{"ES384", -35, crypto.SHA384}, nil
		}
	case *rsa.PublicKey:
		return Alg{"PS256", -37, crypto.SHA256}, nil
	}
	return Alg{}, fmt.Errorf("rawsig: no JOSE algorithm for a %T key", pub)
}

// Sign signs msg with s in its algorithm's raw form, under ctx.
func Sign(ctx context.Context, s crypto.Signer, msg []byte) ([]byte, error) {
	alg, err := AlgOf(s.Public())
	if err != nil {
		return nil, err
	}
	d := alg.Hash.New()
	d.Write(msg)
	var opts crypto.SignerOpts = alg.Hash
	if alg.COSE == -37 {
		opts = &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: alg.Hash}
	}
	var sig []byte
	if cs, ok := s.(hsm.ContextSigner); ok {
		sig, err = cs.SignContext(ctx, rand.Reader, d.Sum(nil), opts)
	} else {
		sig, err = s.Sign(rand.Reader, d.Sum(nil), opts)
	}
	if err != nil {
		return nil, err
	}
	if k, ok := s.Public().(*ecdsa.PublicKey); ok {
		return hsm.ECDSARaw(sig, k.Curve)
	}
	return sig, nil
}

// JWS makes a compact JWS of payload (as JSON) with header, whose alg it sets, signed by s
// under ctx.
func JWS(ctx context.Context, s crypto.Signer, header map[string]any, payload any) (string, error) {
	alg, err := AlgOf(s.Public())
	if err != nil {
		return "", err
	}
	header["alg"] = alg.JOSE
	hb, err := json.Marshal(header)
	if err != nil {
		return "", err
	}
	pb, err := json.Marshal(payload)
	if err != nil {
		return "", err
	}
	b64 := base64.RawURLEncoding
	input := b64.EncodeToString(hb) + "." + b64.EncodeToString(pb)
	sig, err := Sign(ctx, s, []byte(input))
	if err != nil {
		return "", err
	}
	return input + "." + b64.EncodeToString(sig), nil
}
