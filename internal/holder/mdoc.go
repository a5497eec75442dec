package holder

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"math/big"
	"sort"
	"time"

	"github.com/fxamacker/cbor/v2"
)

// ISO/IEC 18013-5 mdoc as the holder reads it: IssuerSigned (the issuer's items and the Mobile
// Security Object signed as COSE_Sign1 with x5chain), checked item by item against the MSO's
// value digests.

// cborDec bounds what hostile CBOR can make the decoder do.
var cborDec, _ = cbor.DecOptions{
	MaxNestedLevels:  24,
	MaxArrayElements: 4096,
	MaxMapPairs:      4096,
	DupMapKey:        cbor.DupMapKeyEnforcedAPF,
	IndefLength:      cbor.IndefLengthForbidden,
	DefaultMapType:   nil,
}.DecMode()

// cborEnc writes deterministic CBOR (RFC 8949 §4.2.1), as what is signed must encode one way.
var cborEnc, _ = cbor.CoreDetEncOptions().EncMode()

// issuerSigned is ISO/IEC 18013-5 §8.3.2.1.2.2's IssuerSigned.
type issuerSigned struct {
	NameSpaces map[string][]cbor.RawMessage `cbor:"nameSpaces"`
	IssuerAuth cbor.RawMessage              `cbor:"issuerAuth"`
}

// coseSign1 is an untagged COSE_Sign1 (RFC 9052 §4.2).
type coseSign1 struct {
	_           struct{} `cbor:",toarray"`
	Protected   []byte
	Unprotected map[int]cbor.RawMessage
	Payload     []byte
	Signature   []byte
}

type mdocItem struct {
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
		StatusList *statusRef `cbor:"status_list"`
	} `cbor:"status"`
}

// mdocItemRef is one verified element: its namespace and the IssuerSignedItemBytes as issued.
type mdocItemRef struct {
	namespace string
	id        string
	value     any
	raw       cbor.RawMessage // the tag-24 item, byte for byte
}

// mdoc is a parsed and verified IssuerSigned.
type mdoc struct {
	docType    string
	items      []mdocItemRef
	issuerAuth cbor.RawMessage
	deviceKey  *ecdsa.PublicKey
	validUntil time.Time
	status     *statusRef
}

// parseMdoc decodes base64url IssuerSigned and checks it: the MSO's signature by the x5chain
// leaf, the chain to anchors, the validity, and every item's digest.
func parseMdoc(s string, anchors []*x509.Certificate, now time.Time) (*mdoc, error) {
	if len(s) > maxCredential {
		return nil, fmt.Errorf("%w: an mdoc larger than %d bytes", ErrInvalid, maxCredential)
	}
	raw, err := b64.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%w: the mdoc is not base64url", ErrInvalid)
	}
	var is issuerSigned
	if err := cborDec.Unmarshal(raw, &is); err != nil {
		return nil, fmt.Errorf("%w: not an IssuerSigned structure: %v", ErrInvalid, err)
	}
	payload, _, err := verifyCOSE(is.IssuerAuth, anchors, now)
	if err != nil {
		return nil, err
	}
	var msoBytes []byte
	var tag cbor.Tag
	if err := cborDec.Unmarshal(payload, &tag); err != nil || tag.Number != 24 {
		return nil, fmt.Errorf("%w: the MSO is not embedded CBOR (tag 24)", ErrInvalid)
	}
	if msoBytes, _ = tag.Content.([]byte); msoBytes == nil {
		return nil, fmt.Errorf("%w: the MSO is not embedded CBOR (tag 24)", ErrInvalid)
	}
	var m mso
	if err := cborDec.Unmarshal(msoBytes, &m); err != nil {
		return nil, fmt.Errorf("%w: the MSO: %v", ErrInvalid, err)
	}
	if m.DigestAlgorithm != "SHA-256" && m.DigestAlgorithm != "SHA-512" {
		return nil, fmt.Errorf("%w: digest algorithm %q", ErrInvalid, m.DigestAlgorithm)
	}
	out := &mdoc{docType: m.DocType, issuerAuth: is.IssuerAuth, status: m.Status.StatusList}
	if out.validUntil, err = tdate(m.ValidityInfo.ValidUntil); err != nil {
		return nil, err
	}
	from, err := tdate(m.ValidityInfo.ValidFrom)
	if err != nil {
		return nil, err
	}
	if !now.Before(out.validUntil.Add(clockSkew)) || now.Add(clockSkew).Before(from) {
		return nil, fmt.Errorf("%w: the mdoc is valid from %s until %s", ErrInvalid, from.UTC().Format(time.RFC3339), out.validUntil.UTC().Format(time.RFC3339))
	}
	if out.deviceKey, err = coseKeyEC(m.DeviceKeyInfo.DeviceKey); err != nil {
		return nil, err
	}
	for ns, items := range is.NameSpaces {
		digests := m.ValueDigests[ns]
		for _, it := range items {
			var sum []byte
			if m.DigestAlgorithm == "SHA-256" {
				h := sha256.Sum256(it)
				sum = h[:]
			} else {
				h := sha512.Sum512(it)
				sum = h[:]
			}
			var t cbor.Tag
			if err := cborDec.Unmarshal(it, &t); err != nil || t.Number != 24 {
				return nil, fmt.Errorf("%w: an item of %s is not embedded CBOR", ErrInvalid, ns)
			}
			b, _ := t.Content.([]byte)
			var item mdocItem
			if err := cborDec.Unmarshal(b, &item); err != nil {
				return nil, fmt.Errorf("%w: an item of %s: %v", ErrInvalid, ns, err)
			}
			want, ok := digests[item.DigestID]
			if !ok || string(want) != string(sum) {
				return nil, fmt.Errorf("%w: item %s/%s does not match its digest in the MSO", ErrInvalid, ns, item.ElementIdentifier)
			}
			var v any
			if err := cborDec.Unmarshal(item.ElementValue, &v); err != nil {
				return nil, fmt.Errorf("%w: item %s/%s: %v", ErrInvalid, ns, item.ElementIdentifier, err)
			}
			out.items = append(out.items, mdocItemRef{namespace: ns, id: item.ElementIdentifier, value: v, raw: it})
		}
	}
	return out, nil
}

// tdate reads a tdate (tag 0, RFC 3339).
func tdate(t cbor.Tag) (time.Time, error) {
	s, ok := t.Content.(string)
	if t.Number != 0 || !ok {
		return time.Time{}, fmt.Errorf("%w: a validity date is not a tdate", ErrInvalid)
	}
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: a validity date: %v", ErrInvalid, err)
	}
	return v, nil
}

// coseKeyEC reads an EC2 P-256 COSE_Key (RFC 9053 §7.1.1).
func coseKeyEC(k map[int]cbor.RawMessage) (*ecdsa.PublicKey, error) {
	var kty, crv int
	var x, y []byte
	if cborDec.Unmarshal(k[1], &kty) != nil || cborDec.Unmarshal(k[-1], &crv) != nil ||
		cborDec.Unmarshal(k[-2], &x) != nil || cborDec.Unmarshal(k[-3], &y) != nil || kty != 2 || crv != 1 || len(x) != 32 || len(y) != 32 {
		return nil, fmt.Errorf("%w: the device key is not an EC2 P-256 COSE_Key", ErrInvalid)
	}
	raw := append(append([]byte{4}, x...), y...)
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), raw)
	if err != nil {
		return nil, fmt.Errorf("%w: the device key: %v", ErrInvalid, err)
	}
	return pub, nil
}

// verifyCOSE checks a COSE_Sign1 (tagged or not) signed by the leaf of its x5chain, which must
// chain to anchors, and returns the payload and the chain.
func verifyCOSE(raw []byte, anchors []*x509.Certificate, now time.Time) ([]byte, []*x509.Certificate, error) {
	var tagged cbor.RawTag
	if cborDec.Unmarshal(raw, &tagged) == nil && tagged.Number == 18 {
		raw = tagged.Content
	}
	var s coseSign1
	if err := cborDec.Unmarshal(raw, &s); err != nil {
		return nil, nil, fmt.Errorf("%w: not a COSE_Sign1: %v", ErrInvalid, err)
	}
	var prot map[int]cbor.RawMessage
	if len(s.Protected) > 0 {
		if err := cborDec.Unmarshal(s.Protected, &prot); err != nil {
			return nil, nil, fmt.Errorf("%w: the protected header: %v", ErrInvalid, err)
		}
	}
	var alg int
	if err := cborDec.Unmarshal(prot[1], &alg); err != nil {
		return nil, nil, fmt.Errorf("%w: no algorithm in the protected header", ErrInvalid)
	}
	x5 := prot[33]
	if x5 == nil {
		x5 = s.Unprotected[33]
	}
	chain, err := x5chain(x5)
	if err != nil {
		return nil, nil, err
	}
	if err := verifyChain(chain, anchors, now); err != nil {
		return nil, nil, err
	}
	toSign, err := cborEnc.Marshal([]any{"Signature1", s.Protected, []byte{}, s.Payload})
	if err != nil {
		return nil, nil, err
	}
	if err := verifyRaw(chain[0].PublicKey, alg, toSign, s.Signature); err != nil {
		return nil, nil, err
	}
	return s.Payload, chain, nil
}

func x5chain(raw cbor.RawMessage) ([]*x509.Certificate, error) {
	var ders [][]byte
	var one []byte
	if cborDec.Unmarshal(raw, &one) == nil && len(one) > 0 {
		ders = [][]byte{one}
	} else if err := cborDec.Unmarshal(raw, &ders); err != nil || len(ders) == 0 || len(ders) > 8 {
		return nil, fmt.Errorf("%w: no x5chain of 1 to 8 certificates", ErrInvalid)
	}
	out := make([]*x509.Certificate, 0, len(ders))
	for _, d := range ders {
		c, err := x509.ParseCertificate(d)
		if err != nil {
			return nil, fmt.Errorf("%w: an x5chain entry: %v", ErrInvalid, err)
		}
		out = append(out, c)
	}
	return out, nil
}

// verifyRaw checks a COSE signature (ECDSA as r||s, RSA-PSS) of alg over msg.
func verifyRaw(pub crypto.PublicKey, alg int, msg, sig []byte) error {
	bad := fmt.Errorf("%w: the COSE signature does not verify", ErrInvalid)
	var h crypto.Hash
	switch alg {
	case -7:
		h = crypto.SHA256
	case -35:
		h = crypto.SHA384
	case -36:
		h = crypto.SHA512
	case -37:
		h = crypto.SHA256
	default:
		return fmt.Errorf("%w: COSE algorithm %d", ErrInvalid, alg)
	}
	d := h.New()
	d.Write(msg)
	digest := d.Sum(nil)
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if alg == -37 || len(sig)%2 != 0 {
			return bad
		}
		r, s := new(big.Int).SetBytes(sig[:len(sig)/2]), new(big.Int).SetBytes(sig[len(sig)/2:])
		if !ecdsa.Verify(k, digest, r, s) {
			return bad
		}
	case *rsa.PublicKey:
		if alg != -37 || rsa.VerifyPSS(k, h, digest, sig, nil) != nil {
			return bad
		}
	default:
		return bad
	}
	return nil
}

// names are the mdoc's element identifiers, sorted.
func (m *mdoc) names() []string {
	out := make([]string, 0, len(m.items))
	for _, it := range m.items {
		out = append(out, it.id)
	}
	sort.Strings(out)
	return out
}

// encodeB64 is base64url without padding, as OpenID4VCI and OpenID4VP carry CBOR.
func encodeB64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
