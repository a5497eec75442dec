package holder

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"

	"github.com/fxamacker/cbor/v2"
	"github.com/go-jose/go-jose/v3"

	"github.com/vula-eid/vula/internal/mdoc"
)

// An mdoc presentation over OpenID4VP (1.0 Appendix B.2): a DeviceResponse with the chosen
// IssuerSignedItems, as issued, and a device signature over the SessionTranscript, whose
// OpenID4VPHandover binds it to the verifier's client_id, nonce, response_uri and (for an
// encrypted response) encryption key.

// sessionTranscript is the request's SessionTranscript (CBOR).
func sessionTranscript(r *Request, encKey *jose.JSONWebKey) ([]byte, error) {
	var jkt []byte
	if encKey != nil {
		t, err := encKey.Thumbprint(crypto.SHA256)
		if err != nil {
			return nil, err
		}
		jkt = t
	}
	return mdoc.SessionTranscript(r.ClientID, r.Nonce, jkt, r.ResponseURI)
}

// presentMdoc is the base64url DeviceResponse disclosing the elements at paths ([namespace,
// element]) of m, signed by the device key.
func presentMdoc(m *issuedMdoc, key *ecdsa.PrivateKey, r *Request, encKey *jose.JSONWebKey, paths [][]any) (string, error) {
	chosen := map[string][]cbor.RawMessage{}
	for _, e := range m.Elements {
		for _, p := range paths {
			if len(p) == 2 && p[0] == e.Namespace && p[1] == e.Identifier {
				chosen[e.Namespace] = append(chosen[e.Namespace], e.Raw)
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
	nsBytes, err := cborEnc.Marshal(cbor.Tag{Number: 24, Content: empty})
	if err != nil {
		return "", err
	}
	prot, err := cborEnc.Marshal(map[int]any{1: -7})
	if err != nil {
		return "", err
	}
	toSign, err := mdoc.DeviceToSign(prot, st, m.DocType, nsBytes)
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
		"docType":      m.DocType,
		"issuerSigned": mdoc.IssuerSigned{NameSpaces: chosen, IssuerAuth: m.issuerAuth},
		"deviceSigned": map[string]any{
			"nameSpaces": cbor.RawMessage(nsBytes),
			"deviceAuth": map[string]any{"deviceSignature": mdoc.Sign1{Protected: prot, Unprotected: map[int]cbor.RawMessage{}, Signature: sig}},
		},
	}
	out, err := cborEnc.Marshal(map[string]any{"version": "1.0", "documents": []any{doc}, "status": 0})
	if err != nil {
		return "", err
	}
	return encodeB64(out), nil
}
