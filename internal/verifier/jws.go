package verifier

import (
	"encoding/base64"
	"fmt"
	"slices"

	"github.com/go-jose/go-jose/v3"
)

var b64 = base64.RawURLEncoding

// Algs are the JWS algorithms accepted of issuers and holders (HAIP asks for ES256; the
// others are what the key layer and common wallets use).
var Algs = []string{"ES256", "ES384", "ES512", "PS256", "EdDSA"}

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
