package pid

import (
	"context"
	"crypto"

	"github.com/fxamacker/cbor/v2"
)

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
	_, alg, _, err := jwsAlg(s.Public())
	if err != nil {
		return nil, err
	}
	protected[coseAlg] = alg
	ph, err := coseEnc.Marshal(protected)
	if err != nil {
		return nil, err
	}
	toSign, err := coseEnc.Marshal([]any{"Signature1", ph, []byte{}, payload})
	if err != nil {
		return nil, err
	}
	sig, err := rawSign(ctx, s, toSign)
	if err != nil {
		return nil, err
	}
	if unprotected == nil {
		unprotected = map[int]any{}
	}
	return coseEnc.Marshal(cbor.Tag{Number: 18, Content: sign1{Protected: ph, Unprotected: unprotected, Payload: payload, Signature: sig}})
}
