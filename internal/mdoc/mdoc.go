// Package mdoc reads and checks ISO/IEC 18013-5 mdocs: the issuer's signed items and Mobile
// Security Object (IssuerSigned, the MSO signed as COSE_Sign1 with an x5chain), as a wallet
// receives them, and the DeviceResponse presentations that carry them as OpenID4VP 1.0 does
// (Appendix B.2), with the device's signature over the SessionTranscript.
//
// IssuerSigned.Check accepts an mdoc only when the MSO's signature verifies by the x5chain leaf
// (a certificate for digital signatures), the chain leads to one of the given roots, the MSO is
// valid at the time given, and every item matches its digest in the MSO. Verify adds, for a
// DeviceResponse, that the document's docType is the MSO's and that the device signature
// verifies by the MSO's device key over DeviceAuthentication built from the given
// SessionTranscript. Nothing here fetches anything; a status list reference is returned for the
// caller to check.
package mdoc

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/fxamacker/cbor/v2"
)

// MaxResponse bounds a DeviceResponse, in bytes of its base64url form.
const MaxResponse = 256 << 10

// clockSkew is the leeway on the MSO's validity.
const clockSkew = time.Minute

// ErrInvalid is an mdoc or a presentation that is malformed or does not verify.
var ErrInvalid = errors.New("invalid mdoc")

// ErrUntrusted is an mdoc whose issuer's x5chain does not lead to one of the given roots; it is
// also ErrInvalid.
var ErrUntrusted = fmt.Errorf("%w: the x5chain does not lead to a trust anchor", ErrInvalid)

// dec bounds what hostile CBOR can make the decoder do.
var dec, _ = cbor.DecOptions{
	MaxNestedLevels:  24,
	MaxArrayElements: 4096,
	MaxMapPairs:      4096,
	DupMapKey:        cbor.DupMapKeyEnforcedAPF,
	IndefLength:      cbor.IndefLengthForbidden,
}.DecMode()

// enc writes deterministic CBOR (RFC 8949 §4.2.1) for the structures that are signed.
var enc, _ = cbor.CoreDetEncOptions().EncMode()

func invalid(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, a...))
}

// deviceResponse is ISO/IEC 18013-5 §8.3.2.1.2.2's DeviceResponse.
type deviceResponse struct {
	Version   string     `cbor:"version"`
	Documents []document `cbor:"documents"`
	Status    uint64     `cbor:"status"`
}

type document struct {
	DocType      string       `cbor:"docType"`
	IssuerSigned IssuerSigned `cbor:"issuerSigned"`
	DeviceSigned deviceSigned `cbor:"deviceSigned"`
}

// IssuerSigned is ISO/IEC 18013-5 §8.3.2.1.2.2's IssuerSigned: per namespace the items as
// IssuerSignedItemBytes (tag 24, each hashed as it stands), and the MSO's COSE_Sign1.
type IssuerSigned struct {
	NameSpaces map[string][]cbor.RawMessage `cbor:"nameSpaces"`
	IssuerAuth cbor.RawMessage              `cbor:"issuerAuth"`
}

type deviceSigned struct {
	NameSpaces cbor.RawMessage `cbor:"nameSpaces"` // DeviceNameSpacesBytes, tag 24
	DeviceAuth struct {
		DeviceSignature cbor.RawMessage `cbor:"deviceSignature"`
		DeviceMac       cbor.RawMessage `cbor:"deviceMac"`
	} `cbor:"deviceAuth"`
}

// Sign1 is an untagged COSE_Sign1 (RFC 9052 §4.2); Payload is nil (null) when detached.
type Sign1 struct {
	_           struct{} `cbor:",toarray"`
	Protected   []byte
	Unprotected map[int]cbor.RawMessage
	Payload     []byte
	Signature   []byte
}

// IssuerSignedItem is one element as the issuer signed it (§8.3.2.1.2.2).
type IssuerSignedItem struct {
	DigestID          uint64          `cbor:"digestID"`
	Random            []byte          `cbor:"random"`
	ElementIdentifier string          `cbor:"elementIdentifier"`
	ElementValue      cbor.RawMessage `cbor:"elementValue"`
}

type mso struct {
	Version         string                       `cbor:"version"`
	DigestAlgorithm string                       `cbor:"digestAlgorithm"`
	ValueDigests    map[string]map[uint64][]byte `cbor:"valueDigests"`
	DeviceKeyInfo   struct {
		DeviceKey map[int]cbor.RawMessage `cbor:"deviceKey"`
	} `cbor:"deviceKeyInfo"`
	DocType      string `cbor:"docType"`
	ValidityInfo struct {
		Signed     cbor.Tag `cbor:"signed"`
		ValidFrom  cbor.Tag `cbor:"validFrom"`
		ValidUntil cbor.Tag `cbor:"validUntil"`
	} `cbor:"validityInfo"`
	Status struct {
		StatusList *StatusRef `cbor:"status_list"`
	} `cbor:"status"`
}

// StatusRef is the MSO's status.status_list (IETF Token Status List, CBOR form).
type StatusRef struct {
	Idx uint64 `cbor:"idx"`
	URI string `cbor:"uri"`
}

// Element is one verified IssuerSignedItem.
type Element struct {
	Namespace  string
	Identifier string
	Value      any
	Raw        cbor.RawMessage // the IssuerSignedItemBytes as issued, to be presented again
}

// Document is a checked mdoc.
type Document struct {
	DocType    string
	Chain      []*x509.Certificate // the issuer's x5chain, leaf first
	Elements   []Element
	DeviceKey  *ecdsa.PublicKey // the MSO's, which signs presentations
	ValidUntil time.Time
	Status     *StatusRef
}

// DecodeIssuerSigned reads a CBOR IssuerSigned, unchecked, with the decoder's bounds.
func DecodeIssuerSigned(raw []byte) (IssuerSigned, error) {
	var is IssuerSigned
	if err := dec.Unmarshal(raw, &is); err != nil {
		return IssuerSigned{}, invalid("not an IssuerSigned structure: %v", err)
	}
	return is, nil
}

// Check verifies is at now against roots: the MSO's signature by its x5chain's leaf, that
// chain to roots, the MSO's validity, every item's digest, and the device key. The Document
// is never nil: on an error it holds what was read before it (the chain, once parsed).
func (is IssuerSigned) Check(roots *x509.CertPool, now time.Time) (*Document, error) {
	payload, chain, err := verifyIssuerAuth(is.IssuerAuth, roots, now)
	out := &Document{Chain: chain}
	if err != nil {
		return out, err
	}
	var tag cbor.Tag
	if err := dec.Unmarshal(payload, &tag); err != nil || tag.Number != 24 {
		return out, invalid("the MSO is not embedded CBOR (tag 24)")
	}
	msoBytes, ok := tag.Content.([]byte)
	if !ok {
		return out, invalid("the MSO is not embedded CBOR (tag 24)")
	}
	var m mso
	if err := dec.Unmarshal(msoBytes, &m); err != nil {
		return out, invalid("the MSO: %v", err)
	}
	if m.DigestAlgorithm != "SHA-256" && m.DigestAlgorithm != "SHA-512" {
		return out, invalid("digest algorithm %q", m.DigestAlgorithm)
	}
	out.DocType, out.Status = m.DocType, m.Status.StatusList
	from, err := tdate(m.ValidityInfo.ValidFrom)
	if err != nil {
		return out, err
	}
	if out.ValidUntil, err = tdate(m.ValidityInfo.ValidUntil); err != nil {
		return out, err
	}
	if !now.Before(out.ValidUntil.Add(clockSkew)) || now.Add(clockSkew).Before(from) {
		return out, invalid("the mdoc is valid from %s until %s", from.UTC().Format(time.RFC3339), out.ValidUntil.UTC().Format(time.RFC3339))
	}
	if out.Elements, err = checkItems(is.NameSpaces, m); err != nil {
		return out, err
	}
	if out.DeviceKey, err = coseKeyEC(m.DeviceKeyInfo.DeviceKey); err != nil {
		return out, err
	}
	return out, nil
}

// parse decodes a base64url DeviceResponse and returns its documents, unverified.
func parse(s string) ([]document, error) {
	if len(s) > MaxResponse {
		return nil, invalid("a DeviceResponse larger than %d bytes", MaxResponse)
	}
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, invalid("the DeviceResponse is not base64url")
	}
	var r deviceResponse
	if err := dec.Unmarshal(raw, &r); err != nil {
		return nil, invalid("not a DeviceResponse: %v", err)
	}
	if r.Status != 0 {
		return nil, invalid("the DeviceResponse has status %d", r.Status)
	}
	if len(r.Documents) == 0 {
		return nil, invalid("the DeviceResponse has no document")
	}
	return r.Documents, nil
}

// SessionTranscript is OpenID4VP 1.0's (Appendix B.2.6.1): [null, null, ["OpenID4VPHandover",
// SHA-256(CBOR([client_id, nonce, jwkThumbprint or null, response_uri]))]].
func SessionTranscript(clientID, nonce string, jwkThumbprint []byte, responseURI string) ([]byte, error) {
	var jkt any
	if jwkThumbprint != nil {
		jkt = jwkThumbprint
	}
	info, err := enc.Marshal([]any{clientID, nonce, jkt, responseURI})
	if err != nil {
		return nil, err
	}
	h := sha256.Sum256(info)
	return enc.Marshal([]any{nil, nil, []any{"OpenID4VPHandover", h[:]}})
}

// Verify checks the base64url DeviceResponse s, which must hold exactly one document, against
// the trust anchors at now, with the device signature over sessionTranscript (CBOR).
func Verify(s string, anchors *x509.CertPool, sessionTranscript []byte, now time.Time) (*Document, error) {
	docs, err := parse(s)
	if err != nil {
		return nil, err
	}
	if len(docs) != 1 {
		return nil, invalid("the DeviceResponse has %d documents, one is expected", len(docs))
	}
	d := docs[0]
	out, err := d.IssuerSigned.Check(anchors, now)
	msoDocType := out.DocType
	out.DocType = d.DocType
	if err != nil {
		return out, err
	}
	if msoDocType != d.DocType {
		return out, invalid("the document's docType %q is not the MSO's %q", d.DocType, msoDocType)
	}
	if err := verifyDevice(d, out.DeviceKey, sessionTranscript); err != nil {
		return out, err
	}
	return out, nil
}

// checkItems verifies every returned item against its digest in the MSO.
func checkItems(nameSpaces map[string][]cbor.RawMessage, m mso) ([]Element, error) {
	var out []Element
	for ns, items := range nameSpaces {
		digests := m.ValueDigests[ns]
		for _, raw := range items {
			var sum []byte
			if m.DigestAlgorithm == "SHA-256" {
				h := sha256.Sum256(raw)
				sum = h[:]
			} else {
				h := sha512.Sum512(raw)
				sum = h[:]
			}
			var t cbor.Tag
			if err := dec.Unmarshal(raw, &t); err != nil || t.Number != 24 {
				return nil, invalid("an item of %s is not embedded CBOR", ns)
			}
			b, _ := t.Content.([]byte)
			var it IssuerSignedItem
			if err := dec.Unmarshal(b, &it); err != nil {
				return nil, invalid("an item of %s: %v", ns, err)
			}
			want, ok := digests[it.DigestID]
			if !ok || string(want) != string(sum) {
				return nil, invalid("item %s/%s does not match its digest in the MSO", ns, it.ElementIdentifier)
			}
			var v any
			if err := dec.Unmarshal(it.ElementValue, &v); err != nil {
				return nil, invalid("item %s/%s: %v", ns, it.ElementIdentifier, err)
			}
			out = append(out, Element{Namespace: ns, Identifier: it.ElementIdentifier, Value: v, Raw: raw})
		}
	}
	return out, nil
}

// verifyDevice checks deviceSignature, a COSE_Sign1 with a detached payload
// DeviceAuthenticationBytes = #6.24(bstr .cbor ["DeviceAuthentication", SessionTranscript,
// DocType, DeviceNameSpacesBytes]) (ISO/IEC 18013-5 §9.1.3.4).
func verifyDevice(d document, key *ecdsa.PublicKey, sessionTranscript []byte) error {
	if d.DeviceSigned.DeviceAuth.DeviceSignature == nil {
		return invalid("no deviceSignature (deviceMac is not accepted)")
	}
	var s Sign1
	if err := unmarshalSign1(d.DeviceSigned.DeviceAuth.DeviceSignature, &s); err != nil {
		return err
	}
	if s.Payload != nil {
		return invalid("the deviceSignature's payload is not detached")
	}
	alg, err := algOf(s.Protected)
	if err != nil {
		return err
	}
	toSign, err := DeviceToSign(s.Protected, sessionTranscript, d.DocType, d.DeviceSigned.NameSpaces)
	if err != nil {
		return err
	}
	if err := verifyRaw(key, alg, toSign, s.Signature); err != nil {
		return invalid("the device signature does not verify (another key, or another session)")
	}
	return nil
}

// DeviceToSign is what the device signs for a presentation, with the COSE protected header
// protected: the Sig_structure over the detached DeviceAuthenticationBytes = #6.24(bstr .cbor
// ["DeviceAuthentication", SessionTranscript, DocType, DeviceNameSpacesBytes]) (ISO/IEC
// 18013-5 §9.1.3.4); sessionTranscript is CBOR, deviceNameSpaces the tag-24 bytes.
func DeviceToSign(protected, sessionTranscript []byte, docType string, deviceNameSpaces cbor.RawMessage) ([]byte, error) {
	var t cbor.RawTag
	if err := dec.Unmarshal(deviceNameSpaces, &t); err != nil || t.Number != 24 {
		return nil, invalid("deviceSigned.nameSpaces is not embedded CBOR")
	}
	da, err := enc.Marshal([]any{"DeviceAuthentication", cbor.RawMessage(sessionTranscript), docType, deviceNameSpaces})
	if err != nil {
		return nil, err
	}
	daBytes, err := enc.Marshal(cbor.Tag{Number: 24, Content: da})
	if err != nil {
		return nil, err
	}
	return enc.Marshal([]any{"Signature1", protected, []byte{}, daBytes})
}

func unmarshalSign1(raw []byte, s *Sign1) error {
	var tagged cbor.RawTag
	if dec.Unmarshal(raw, &tagged) == nil && tagged.Number == 18 {
		raw = tagged.Content
	}
	if err := dec.Unmarshal(raw, s); err != nil {
		return invalid("not a COSE_Sign1: %v", err)
	}
	return nil
}

func algOf(protected []byte) (int, error) {
	var prot map[int]cbor.RawMessage
	if err := dec.Unmarshal(protected, &prot); err != nil {
		return 0, invalid("the COSE protected header: %v", err)
	}
	var alg int
	if err := dec.Unmarshal(prot[1], &alg); err != nil {
		return 0, invalid("no algorithm in the COSE protected header")
	}
	return alg, nil
}

// verifyIssuerAuth checks the MSO's COSE_Sign1 by the leaf of its x5chain, which must chain to
// anchors and be for digital signatures, and returns the payload and the chain.
func verifyIssuerAuth(raw []byte, anchors *x509.CertPool, now time.Time) ([]byte, []*x509.Certificate, error) {
	var s Sign1
	if err := unmarshalSign1(raw, &s); err != nil {
		return nil, nil, err
	}
	alg, err := algOf(s.Protected)
	if err != nil {
		return nil, nil, err
	}
	var prot map[int]cbor.RawMessage
	_ = dec.Unmarshal(s.Protected, &prot) // algOf decoded it
	x5 := prot[33]
	if x5 == nil {
		x5 = s.Unprotected[33]
	}
	chain, err := x5chain(x5)
	if err != nil {
		return nil, nil, err
	}
	if anchors == nil {
		// crypto/x509 would take the system's roots.
		return nil, chain, fmt.Errorf("%w: no trust anchors", ErrUntrusted)
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := chain[0].Verify(x509.VerifyOptions{Roots: anchors, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nil, chain, fmt.Errorf("%w: %s: %v", ErrUntrusted, chain[0].Subject, err)
	}
	if chain[0].KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		return nil, chain, invalid("the issuer certificate is not for digital signatures")
	}
	if s.Payload == nil {
		return nil, chain, invalid("the issuerAuth has no payload")
	}
	toSign, err := enc.Marshal([]any{"Signature1", s.Protected, []byte{}, s.Payload})
	if err != nil {
		return nil, chain, err
	}
	if err := verifyRaw(chain[0].PublicKey, alg, toSign, s.Signature); err != nil {
		return nil, chain, invalid("the issuer's signature on the MSO does not verify")
	}
	return s.Payload, chain, nil
}

func x5chain(raw cbor.RawMessage) ([]*x509.Certificate, error) {
	var ders [][]byte
	var one []byte
	if raw == nil {
		return nil, invalid("no x5chain in the issuerAuth")
	}
	if dec.Unmarshal(raw, &one) == nil && len(one) > 0 {
		ders = [][]byte{one}
	} else if err := dec.Unmarshal(raw, &ders); err != nil || len(ders) == 0 || len(ders) > 8 {
		return nil, invalid("no x5chain of 1 to 8 certificates")
	}
	out := make([]*x509.Certificate, 0, len(ders))
	for i, d := range ders {
		c, err := x509.ParseCertificate(d)
		if err != nil {
			return nil, invalid("x5chain[%d] is not a certificate", i)
		}
		out = append(out, c)
	}
	return out, nil
}

// tdate reads a tdate (tag 0, RFC 3339).
func tdate(t cbor.Tag) (time.Time, error) {
	s, ok := t.Content.(string)
	if t.Number != 0 || !ok {
		return time.Time{}, invalid("a validity date is not a tdate")
	}
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, invalid("a validity date: %v", err)
	}
	return v, nil
}

// coseKeyEC reads an EC2 P-256 COSE_Key (RFC 9053 §7.1.1).
func coseKeyEC(k map[int]cbor.RawMessage) (*ecdsa.PublicKey, error) {
	var kty, crv int
	var x, y []byte
	if dec.Unmarshal(k[1], &kty) != nil || dec.Unmarshal(k[-1], &crv) != nil ||
		dec.Unmarshal(k[-2], &x) != nil || dec.Unmarshal(k[-3], &y) != nil || kty != 2 || crv != 1 || len(x) != 32 || len(y) != 32 {
		return nil, invalid("the device key is not an EC2 P-256 COSE_Key")
	}
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
	if err != nil {
		return nil, invalid("the device key is not a P-256 point")
	}
	return pub, nil
}

// verifyRaw checks a COSE ECDSA signature (r||s) of alg over msg.
func verifyRaw(pub crypto.PublicKey, alg int, msg, sig []byte) error {
	var h crypto.Hash
	switch alg {
	case -7:
		h = crypto.SHA256
	case -35:
		h = crypto.SHA384
	case -36:
		h = crypto.SHA512
	default:
		return invalid("COSE algorithm %d", alg)
	}
	k, ok := pub.(*ecdsa.PublicKey)
	if !ok || len(sig) == 0 || len(sig)%2 != 0 {
		return invalid("the COSE signature does not verify")
	}
	d := h.New()
	d.Write(msg)
	r, s := new(big.Int).SetBytes(sig[:len(sig)/2]), new(big.Int).SetBytes(sig[len(sig)/2:])
	if !ecdsa.Verify(k, d.Sum(nil), r, s) {
		return invalid("the COSE signature does not verify")
	}
	return nil
}
