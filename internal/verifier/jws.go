package verifier

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
	"slices"

	"github.com/go-jose/go-jose/v3"

	"github.com/vula-eid/vula/hsm"
)

var b64 = base64.RawURLEncoding

// Algs are the JWS algorithms accepted of issuers and holders (HAIP asks for ES256; the
// others are what the key layer and common wallets use).
var Algs = []string{"ES256", "ES384", "ES512", "PS256", "EdDSA"}

// signJWS makes a compact JWS of payload with header, signed through the key layer under ctx
// (so the audit record names this request). ECDSA is written as JOSE's r||s.
func signJWS(ctx context.Context, s crypto.Signer, header map[string]any, payload any) (string, error) {
	var alg string
	var h crypto.Hash
	switch k := s.Public().(type) {
	case *ecdsa.PublicKey:
		switch k.Curve.Params().BitSize {
		case 256:
			alg, h = "ES256", crypto.SHA256
		case 384:
			alg, h = "ES384", crypto.SHA384
		}
	case *rsa.PublicKey:
		alg, h = "PS256", crypto.SHA256
	}
	if alg == "" {
		return "", fmt.Errorf("verifier: no JOSE algorithm for a %T key", s.Public())
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
	d := h.New()
	d.Write([]byte(input))
	sign := s.Sign
	if cs, ok := s.(hsm.ContextSigner); ok {
		sign = func(r io.Reader, d []byte, o crypto.SignerOpts) ([]byte, error) { return cs.SignContext(ctx, r, d, o) }
	}
	var sig []byte
	if k, ok := s.Public().(*ecdsa.PublicKey); ok {
		der, err := sign(rand.Reader, d.Sum(nil), h)
		if err == nil {
			sig, err = hsm.ECDSARaw(der, k.Curve)
		}
		if err != nil {
			return "", err
		}
	} else if sig, err = sign(rand.Reader, d.Sum(nil), &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: h}); err != nil {
		return "", err
	}
	return input + "." + b64.EncodeToString(sig), nil
}

// verifyJWS checks a compact JWS's signature by key and returns its protected header and
// payload. Only the algorithms of Algs are accepted, and typ must be typ.
func verifyJWS(compact, typ string, key any) (jose.Header, []byte, error) {
	jws, err := jose.ParseSigned(compact)
	if err != nil || len(jws.Signatures) != 1 {
		return jose.Header{}, nil, fmt.Errorf("not a compact JWS with one signature")
	}
	h := jws.Signatures[0].Protected
	if !slices.Contains(Algs, h.Algorithm) {
		return h, nil, fmt.Errorf("alg %q is not accepted", h.Algorithm)
	}
	if t, _ := h.ExtraHeaders[jose.HeaderType].(string); t != typ {
		return h, nil, fmt.Errorf("typ %q, want %q", t, typ)
	}
	payload, err := jws.Verify(key)
	if err != nil {
		return h, nil, fmt.Errorf("the signature does not verify")
	}
	return h, payload, nil
}
