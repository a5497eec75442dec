package pid

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"math/big"
	"testing"

	"github.com/fxamacker/cbor/v2"
	"github.com/go-jose/go-jose/v3"

	"github.com/vula-eid/vula/internal/certs"
)

// TestIssueMdoc checks an issued mdoc the way a reader would, by hand: the COSE_Sign1 by the
// x5chain leaf under the platform's root, each element's digest in the MSO, the device key.
func TestIssueMdoc(t *testing.T) {
	e := newEnv(t)
	hk, jwk := holderKey(t)
	creds, err := e.svc.Issue(context.Background(), Request{SubjectID: e.sub, Actor: "wallet", Format: FormatMdoc, Holders: []jose.JSONWebKey{jwk}})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := base64.RawURLEncoding.DecodeString(creds[0])
	if err != nil {
		t.Fatal(err)
	}
	var is struct {
		NameSpaces map[string][]cbor.Tag `cbor:"nameSpaces"`
		IssuerAuth []cbor.RawMessage     `cbor:"issuerAuth"`
	}
	if err := cbor.Unmarshal(raw, &is); err != nil {
		t.Fatal(err)
	}
	if len(is.IssuerAuth) != 4 {
		t.Fatalf("issuerAuth has %d parts", len(is.IssuerAuth))
	}
	var protected, payload, sig []byte
	var unprotected map[int]cbor.RawMessage
	cbor.Unmarshal(is.IssuerAuth[0], &protected)
	cbor.Unmarshal(is.IssuerAuth[1], &unprotected)
	cbor.Unmarshal(is.IssuerAuth[2], &payload)
	cbor.Unmarshal(is.IssuerAuth[3], &sig)
	var chain [][]byte
	if err := cbor.Unmarshal(unprotected[33], &chain); err != nil {
		var one []byte
		if err := cbor.Unmarshal(unprotected[33], &one); err != nil {
			t.Fatalf("x5chain: %v", err)
		}
		chain = [][]byte{one}
	}
	leaf, err := x509.ParseCertificate(chain[0])
	if err != nil {
		t.Fatal(err)
	}
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	root, _ := e.pki.Certificate(certs.NameRoot)
	roots.AddCert(root)
	for _, c := range chain[1:] {
		ic, _ := x509.ParseCertificate(c)
		inter.AddCert(ic)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Fatalf("x5chain: %v", err)
	}
	toSign, _ := cbor.Marshal([]any{"Signature1", protected, []byte{}, payload})
	h := sha256.Sum256(toSign)
	r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
	if !ecdsa.Verify(leaf.PublicKey.(*ecdsa.PublicKey), h[:], r, s) {
		t.Fatal("the COSE_Sign1 does not verify with the x5chain leaf")
	}
	var msoTag cbor.Tag
	if err := cbor.Unmarshal(payload, &msoTag); err != nil || msoTag.Number != 24 {
		t.Fatalf("payload is not #6.24: %v", err)
	}
	var mso struct {
		DocType       string                       `cbor:"docType"`
		ValueDigests  map[string]map[uint64][]byte `cbor:"valueDigests"`
		DeviceKeyInfo struct {
			DeviceKey map[int]cbor.RawMessage `cbor:"deviceKey"`
		} `cbor:"deviceKeyInfo"`
		Status map[string]map[string]any `cbor:"status"`
	}
	if err := cbor.Unmarshal(msoTag.Content.([]byte), &mso); err != nil {
		t.Fatal(err)
	}
	if mso.DocType != DocType || mso.Status["status_list"]["uri"] != issuerURL+"/pid/status/1" {
		t.Fatalf("mso %+v", mso)
	}
	var x []byte
	cbor.Unmarshal(mso.DeviceKeyInfo.DeviceKey[-2], &x)
	pub, _ := hk.PublicKey.Bytes()
	if !bytes.Equal(x, pub[1:33]) {
		t.Fatal("deviceKey is not the holder key")
	}
	seen := map[string]any{}
	for _, item := range is.NameSpaces[DocType] {
		enc, _ := cbor.Marshal(item)
		sum := sha256.Sum256(enc)
		var it issuerSignedItem
		if err := cbor.Unmarshal(item.Content.([]byte), &it); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(mso.ValueDigests[DocType][it.DigestID], sum[:]) {
			t.Fatalf("element %s: digest not in the MSO", it.ElementIdentifier)
		}
		seen[it.ElementIdentifier] = it.ElementValue
	}
	if seen["family_name"] != "Krasniqi" || seen["age_over_18"] != true {
		t.Fatalf("elements %v", seen)
	}
}
