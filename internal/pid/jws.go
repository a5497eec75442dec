package pid

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"

	"github.com/vula-eid/vula/hsm"
)

var b64 = base64.RawURLEncoding

// jwsAlg is the JOSE (and COSE) algorithm of a signer's key, with its hash.
func jwsAlg(pub crypto.PublicKey) (alg string, cose int, h crypto.Hash, err error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve.Params().BitSize {
		case 256:
			return "ES256", -7, crypto.SHA256, nil
		case 384:
			return "ES384", -35, crypto.SHA384, nil
		}
	case *rsa.PublicKey:
		return "PS256", -37, crypto.SHA256, nil
	}
	return "", 0, 0, fmt.Errorf("pid: no JOSE algorithm for a %T key", pub)
}

// rawSign signs msg with s as JOSE and COSE want it: ECDSA as fixed-size r||s, RSA as PSS. A
// signer of the instrumented key layer signs under ctx, so that the audit record names this
// request (and not the one the signer was first obtained in).
func rawSign(ctx context.Context, s crypto.Signer, msg []byte) ([]byte, error) {
	_, _, h, err := jwsAlg(s.Public())
	if err != nil {
		return nil, err
	}
	d := h.New()
	d.Write(msg)
	digest := d.Sum(nil)
	sign := s.Sign
	if cs, ok := s.(hsm.ContextSigner); ok {
		sign = func(r io.Reader, d []byte, o crypto.SignerOpts) ([]byte, error) { return cs.SignContext(ctx, r, d, o) }
	}
	if k, ok := s.Public().(*ecdsa.PublicKey); ok {
		der, err := sign(rand.Reader, digest, h)
		if err != nil {
			return nil, err
		}
		return hsm.ECDSARaw(der, k.Curve)
	}
	return sign(rand.Reader, digest, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: h})
}

// signJWS makes a compact JWS of payload with header (alg is set here).
func signJWS(ctx context.Context, s crypto.Signer, header map[string]any, payload any) (string, error) {
	alg, _, _, err := jwsAlg(s.Public())
	if err != nil {
		return "", err
	}
	header["alg"] = alg
	hb, err := json.Marshal(header)
	if err != nil {
		return "", err
	}
	pb, err := json.Marshal(payload)
	if err != nil {
		return "", err
	}
	input := b64.EncodeToString(hb) + "." + b64.EncodeToString(pb)
	sig, err := rawSign(ctx, s, []byte(input))
	if err != nil {
		return "", err
	}
	return input + "." + b64.EncodeToString(sig), nil
}
