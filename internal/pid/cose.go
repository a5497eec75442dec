package pid

import (
	"context"
	"crypto"
	"encoding/base64"

	"github.com/fxamacker/cbor/v2"

	"github.com/vula-eid/vula/internal/rawsig"
)

// b64 is base64url without padding, as JOSE and OpenID4VCI carry binary values.
var b64 = base64.RawURLEncoding

// COSE_Sign1 (RFC 9052 §4.2) is built here on fxamacker/cbor: one structure and one
// Sig_structure, too small for a COSE library's weight.

// COSE header labels.
const (
	coseAlg     = 1
	coseContent = 3
	coseType    = 16 // RFC 9596
	coseX5Chain = 33 // RFC 9360
)

// coseEnc writes deterministic CBOR (RFC 8949 §4.2.1): what is signed must encode one way.
var coseEnc, _ = cbor.CoreDetEncOptions().EncMode()

// sign1 is a COSE_Sign1 message, tag 18.
type sign1 struct {
	_           struct{} `cbor:",toarray"`
	Protected   []byte
	Unprotected map[int]any
	Payload     []byte
	Signature   []byte
}

// signCOSE makes a tagged COSE_Sign1 over payload with the given protected headers (alg is set
// here) and unprotected ones.
func signCOSE(ctx context.Context, s crypto.Signer, protected, unprotected map[int]any, payload []byte) ([]byte, error) {
	alg, err := rawsig.AlgOf(s.Public())
	if err != nil {
		return nil, err
	}
	protected[coseAlg] = alg.COSE
	ph, err := coseEnc.Marshal(protected)
	if err != nil {
		return nil, err
	}
	toSign, err := coseEnc.Marshal([]any{"Signature1", ph, []byte{}, payload})
	if err != nil {
		return nil, err
	}
	sig, err := rawsig.Sign(ctx, s, toSign)
	if err != nil {
		return nil, err
	}
	if unprotected == nil {
		unprotected = map[int]any{}
	}
	return coseEnc.Marshal(cbor.Tag{Number: 18, Content: sign1{Protected: ph, Unprotected: unprotected, Payload: payload, Signature: sig}})
}
