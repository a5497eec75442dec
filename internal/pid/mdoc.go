package pid

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/go-jose/go-jose/v3"

	"github.com/vula-eid/vula/internal/store"
)

// The PID as an ISO/IEC 18013-5 mdoc: IssuerSigned with the PID rulebook's data elements in
// namespace eu.europa.ec.eudi.pid.1, each an IssuerSignedItem whose digest is in the Mobile
// Security Object, which the issuer key signs as a COSE_Sign1 with the certificate chain in
// x5chain. The wallet's key is the MSO's deviceKey; the status list slot is the MSO's status.
const (
	FormatMdoc = "mso_mdoc"
	// DocType (and namespace) of the EU PID mdoc.
	DocType = "eu.europa.ec.eudi.pid.1"
	// ConfigMdoc is the credential configuration id of the PID as an mdoc.
	ConfigMdoc = "eu.europa.ec.eudi.pid.1.mso_mdoc"
)

// issuerSignedItem is ISO/IEC 18013-5 §8.3.2.1.2.2's IssuerSignedItem.
type issuerSignedItem struct {
	DigestID          uint64 `cbor:"digestID"`
	Random            []byte `cbor:"random"`
	ElementIdentifier string `cbor:"elementIdentifier"`
	ElementValue      any    `cbor:"elementValue"`
}

func tdate(t time.Time) cbor.Tag {
	return cbor.Tag{Number: 0, Content: t.UTC().Truncate(time.Second).Format(time.RFC3339)}
}

func fullDate(s string) cbor.Tag { return cbor.Tag{Number: 1004, Content: s} }

// embedded is #6.24(bstr .cbor v): CBOR carried as bytes, so its digest is over those bytes.
func embedded(v any) (cbor.Tag, []byte, error) {
	b, err := coseEnc.Marshal(v)
	if err != nil {
		return cbor.Tag{}, nil, err
	}
	t := cbor.Tag{Number: 24, Content: b}
	enc, err := coseEnc.Marshal(t)
	return t, enc, err
}

// mdocElements are the PID rulebook's mdoc data elements of p.
func (s *Service) mdocElements(p store.Person, issued, expires time.Time) []issuerSignedItem {
	e := []issuerSignedItem{
		{ElementIdentifier: "family_name", ElementValue: p.FamilyName},
		{ElementIdentifier: "given_name", ElementValue: p.GivenName},
		{ElementIdentifier: "birth_date", ElementValue: fullDate(p.BirthDate)},
		{ElementIdentifier: "nationality", ElementValue: []string{s.cfg.Country}},
		{ElementIdentifier: "personal_administrative_number", ElementValue: p.PersonalNumber},
		{ElementIdentifier: "issuing_authority", ElementValue: s.cfg.Authority},
		{ElementIdentifier: "issuing_country", ElementValue: s.cfg.Country},
		{ElementIdentifier: "issuance_date", ElementValue: fullDate(issued.UTC().Format(time.DateOnly))},
		{ElementIdentifier: "expiry_date", ElementValue: fullDate(expires.UTC().Format(time.DateOnly))},
	}
	if p.Email != "" {
		e = append(e, issuerSignedItem{ElementIdentifier: "email_address", ElementValue: p.Email})
	}
	if born, err := time.Parse(time.DateOnly, p.BirthDate); err == nil {
		age := ageAt(born, issued)
		e = append(e, issuerSignedItem{ElementIdentifier: "age_in_years", ElementValue: age},
			issuerSignedItem{ElementIdentifier: "age_birth_year", ElementValue: born.Year()})
		for _, n := range []int{14, 16, 18, 21, 65} {
			e = append(e, issuerSignedItem{ElementIdentifier: fmt.Sprintf("age_over_%d", n), ElementValue: age >= n})
		}
	}
	return e
}

// coseKey is the holder's EC key as a COSE_Key (RFC 9053 §7.1.1).
func coseKey(h jose.JSONWebKey) (map[int]any, error) {
	k, ok := h.Key.(*ecdsa.PublicKey)
	if !ok || k.Curve.Params().BitSize != 256 {
		return nil, fmt.Errorf("%w: an mdoc device key must be EC P-256", ErrInvalidKey)
	}
	raw, err := k.Bytes() // 0x04 || X || Y
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidKey, err)
	}
	return map[int]any{1: 2, -1: 1, -2: raw[1:33], -3: raw[33:]}, nil
}

// mdoc signs one PID mdoc for holder and returns it as OpenID4VCI carries it: base64url of the
// IssuerSigned structure.
func (s *Service) mdoc(ctx context.Context, k *issuerKey, p store.Person, holder jose.JSONWebKey, rec store.IssuedPID) (string, error) {
	dk, err := coseKey(holder)
	if err != nil {
		return "", err
	}
	elems := s.mdocElements(p, rec.Issued, rec.Expires)
	// Digest IDs are random (ISO/IEC 18013-5 §9.1.2.5), so they say nothing about the elements.
	ids := make([]byte, 4*len(elems))
	if _, err := rand.Read(ids); err != nil {
		return "", err
	}
	items := make([]cbor.Tag, 0, len(elems))
	digests := map[uint64][]byte{}
	for i, e := range elems {
		e.Random = make([]byte, 16)
		if _, err := rand.Read(e.Random); err != nil {
			return "", err
		}
		for {
			e.DigestID = uint64(ids[4*i])<<24 | uint64(ids[4*i+1])<<16 | uint64(ids[4*i+2])<<8 | uint64(ids[4*i+3])
			if _, taken := digests[e.DigestID]; !taken {
				break
			}
			ids[4*i]++
		}
		t, enc, err := embedded(e)
		if err != nil {
			return "", err
		}
		sum := sha256.Sum256(enc)
		digests[e.DigestID] = sum[:]
		items = append(items, t)
	}
	mso := map[string]any{
		"version":         "1.0",
		"digestAlgorithm": "SHA-256",
		"valueDigests":    map[string]any{DocType: digests},
		"deviceKeyInfo":   map[string]any{"deviceKey": dk},
		"docType":         DocType,
		"validityInfo":    map[string]any{"signed": tdate(rec.Issued), "validFrom": tdate(rec.Issued), "validUntil": tdate(rec.Expires)},
		"status":          map[string]any{"status_list": map[string]any{"idx": rec.Index, "uri": s.statusURI(rec.List)}},
	}
	_, msoBytes, err := embedded(mso)
	if err != nil {
		return "", err
	}
	auth, err := signCOSE(ctx, k.signer, map[int]any{}, map[int]any{coseX5Chain: x5chain(k.chain)}, msoBytes)
	if err != nil {
		return "", err
	}
	// IssuerAuth is the untagged COSE_Sign1 (ISO/IEC 18013-5 §9.1.2.4).
	var tagged cbor.RawTag
	if err := cbor.Unmarshal(auth, &tagged); err != nil {
		return "", err
	}
	out, err := coseEnc.Marshal(map[string]any{
		"nameSpaces": map[string]any{DocType: items},
		"issuerAuth": tagged.Content,
	})
	if err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(out), nil
}
