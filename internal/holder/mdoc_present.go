package holder

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"

	"github.com/fxamacker/cbor/v2"
	"github.com/go-jose/go-jose/v3"
)

// An mdoc presentation over OpenID4VP (1.0 Appendix B.2): a DeviceResponse with the chosen
// IssuerSignedItems, as issued, and a device signature over the SessionTranscript, whose
// OpenID4VPHandover binds it to the verifier's client_id, nonce, response_uri and (for an
// encrypted response) encryption key.

type deviceSign1 struct {
	_           struct{} `cbor:",toarray"`
	Protected   []byte
	Unprotected map[int]any
	Payload     any // detached: null
	Signature   []byte
}

// sessionTranscript is OpenID4VP 1.0's SessionTranscript: [null, null, OpenID4VPHandover].
func sessionTranscript(r *Request, encKey *jose.JSONWebKey) ([]any, error) {
	var jkt any
	if encKey != nil {
		t, err := encKey.Thumbprint(crypto.SHA256)
		if err != nil {
			return nil, err
		}
		jkt = t
	}
	info, err := cborEnc.Marshal([]any{r.ClientID, r.Nonce, jkt, r.ResponseURI})
	if err != nil {
		return nil, err
	}
	h := sha256.Sum256(info)
	return []any{nil, nil, []any{"OpenID4VPHandover", h[:]}}, nil
}

// presentMdoc is the base64url DeviceResponse disclosing the elements at paths ([namespace,
// element]) of m, signed by the device key.
func presentMdoc(m *mdoc, key *ecdsa.PrivateKey, r *Request, encKey *jose.JSONWebKey, paths [][]any) (string, error) {
	chosen := map[string][]cbor.RawMessage{}
	for _, it := range m.items {
		for _, p := range paths {
			if len(p) == 2 && p[0] == it.namespace && p[1] == it.id {
				chosen[it.namespace] = append(chosen[it.namespace], it.raw)
				break
			}
		}
	}
	st, err := sessionTranscript(r, encKey)
	if err != nil {
		return "", err
	}
	empty, err := cborEnc.Marshal(map[string]any{})
	if err != nil {
		return "", err
	}
	nsBytes := cbor.Tag{Number: 24, Content: empty}
	da, err := cborEnc.Marshal([]any{"DeviceAuthentication", st, m.docType, nsBytes})
	if err != nil {
		return "", err
	}
	daBytes, err := cborEnc.Marshal(cbor.Tag{Number: 24, Content: da})
	if err != nil {
		return "", err
	}
	prot, err := cborEnc.Marshal(map[int]any{1: -7})
	if err != nil {
		return "", err
	}
	toSign, err := cborEnc.Marshal([]any{"Signature1", prot, []byte{}, daBytes})
	if err != nil {
		return "", err
	}
	h := sha256.Sum256(toSign)
	r1, s1, err := ecdsa.Sign(rand.Reader, key, h[:])
	if err != nil {
		return "", err
	}
	sig := make([]byte, 64)
	r1.FillBytes(sig[:32])
	s1.FillBytes(sig[32:])
	doc := map[string]any{
		"docType":      m.docType,
		"issuerSigned": map[string]any{"nameSpaces": chosen, "issuerAuth": m.issuerAuth},
		"deviceSigned": map[string]any{
			"nameSpaces": nsBytes,
			"deviceAuth": map[string]any{"deviceSignature": deviceSign1{Protected: prot, Unprotected: map[int]any{}, Signature: sig}},
		},
	}
	out, err := cborEnc.Marshal(map[string]any{"version": "1.0", "documents": []any{doc}, "status": 0})
	if err != nil {
		return "", err
	}
	return encodeB64(out), nil
}
