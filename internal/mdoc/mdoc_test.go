package mdoc

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
)

const pid = "eu.europa.ec.eudi.pid.1"

var t0 = time.Date(2026, 12, 6, 8, 0, 0, 0, time.UTC)

// issuer is a root and a document signer certificate under it.
type issuer struct {
	roots *x509.CertPool
	leaf  *x509.Certificate
	key   *ecdsa.PrivateKey
}

func newIssuer(t *testing.T, usage x509.KeyUsage) issuer {
	t.Helper()
	rootKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	root := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "IACA"}, NotBefore: t0.Add(-time.Hour),
		NotAfter: t0.Add(365 * 24 * time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	rootDER, err := x509.CreateCertificate(rand.Reader, root, root, &rootKey.PublicKey, rootKey)
	if err != nil {
		t.Fatal(err)
	}
	root, _ = x509.ParseCertificate(rootDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leafDER, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "DS"},
		NotBefore: t0.Add(-time.Hour), NotAfter: t0.Add(90 * 24 * time.Hour), KeyUsage: usage}, root, &key.PublicKey, rootKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(leafDER)
	roots := x509.NewCertPool()
	roots.AddCert(root)
	return issuer{roots: roots, leaf: leaf, key: key}
}

func mustCBOR(t *testing.T, v any) []byte {
	t.Helper()
	b, err := enc.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func sign(t *testing.T, key *ecdsa.PrivateKey, toSign []byte) []byte {
	t.Helper()
	h := sha256.Sum256(toSign)
	r, s, err := ecdsa.Sign(rand.Reader, key, h[:])
	if err != nil {
		t.Fatal(err)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return sig
}

// issue makes an IssuerSigned of the PID doctype, valid from t0 for a day, bound to device.
func (iss issuer) issue(t *testing.T, device *ecdsa.PublicKey) IssuerSigned {
	t.Helper()
	var items []cbor.RawMessage
	digests := map[uint64][]byte{}
	for i, e := range []struct {
		id string
		v  any
	}{{"family_name", "Gashi"}, {"age_over_18", true}} {
		inner := mustCBOR(t, IssuerSignedItem{DigestID: uint64(i), Random: make([]byte, 16), ElementIdentifier: e.id, ElementValue: mustCBOR(t, e.v)})
		raw := mustCBOR(t, cbor.Tag{Number: 24, Content: inner})
		sum := sha256.Sum256(raw)
		digests[uint64(i)], items = sum[:], append(items, raw)
	}
	pub, _ := device.Bytes()
	tdate := func(t time.Time) cbor.Tag { return cbor.Tag{Number: 0, Content: t.Format(time.RFC3339)} }
	m := mustCBOR(t, map[string]any{"version": "1.0", "digestAlgorithm": "SHA-256", "docType": pid,
		"valueDigests":  map[string]any{pid: digests},
		"deviceKeyInfo": map[string]any{"deviceKey": map[int]any{1: 2, -1: 1, -2: pub[1:33], -3: pub[33:]}},
		"validityInfo":  map[string]any{"signed": tdate(t0), "validFrom": tdate(t0), "validUntil": tdate(t0.Add(24 * time.Hour))},
		"status":        map[string]any{"status_list": map[string]any{"idx": 7, "uri": "https://i.example/status/1"}}})
	payload := mustCBOR(t, cbor.Tag{Number: 24, Content: m})
	prot := mustCBOR(t, map[int]any{1: -7})
	sig := sign(t, iss.key, mustCBOR(t, []any{"Signature1", prot, []byte{}, payload}))
	auth := mustCBOR(t, Sign1{Protected: prot, Unprotected: map[int]cbor.RawMessage{33: mustCBOR(t, iss.leaf.Raw)}, Payload: payload, Signature: sig})
	return IssuerSigned{NameSpaces: map[string][]cbor.RawMessage{pid: items}, IssuerAuth: auth}
}

func TestCheck(t *testing.T) {
	iss := newIssuer(t, x509.KeyUsageDigitalSignature)
	device, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	is := iss.issue(t, &device.PublicKey)
	// Through its CBOR, as a wallet receives it.
	is, err := DecodeIssuerSigned(mustCBOR(t, is))
	if err != nil {
		t.Fatal(err)
	}
	d, err := is.Check(iss.roots, t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if d.DocType != pid || len(d.Chain) != 1 || !d.DeviceKey.Equal(&device.PublicKey) || !d.ValidUntil.Equal(t0.Add(24*time.Hour)) ||
		d.Status == nil || d.Status.Idx != 7 || d.Status.URI != "https://i.example/status/1" {
		t.Fatalf("checked %+v", d)
	}
	got := map[string]any{}
	for _, e := range d.Elements {
		got[e.Namespace+"/"+e.Identifier] = e.Value
		if string(e.Raw) != string(is.NameSpaces[pid][0]) && string(e.Raw) != string(is.NameSpaces[pid][1]) {
			t.Errorf("%s: Raw is not the item as issued", e.Identifier)
		}
	}
	if len(got) != 2 || got[pid+"/family_name"] != "Gashi" || got[pid+"/age_over_18"] != true {
		t.Errorf("elements %v", got)
	}
}

func TestCheckRefuses(t *testing.T) {
	iss := newIssuer(t, x509.KeyUsageDigitalSignature)
	other := newIssuer(t, x509.KeyUsageDigitalSignature)
	encipher := newIssuer(t, x509.KeyUsageKeyEncipherment)
	device, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	fresh := func() IssuerSigned { return iss.issue(t, &device.PublicKey) }
	for _, tc := range []struct {
		name      string
		is        IssuerSigned
		roots     *x509.CertPool
		at        time.Time
		untrusted bool
	}{
		{"another root", fresh(), other.roots, t0, true},
		{"no roots", fresh(), nil, t0, true},
		{"a changed item", func() IssuerSigned {
			is := fresh()
			raw := is.NameSpaces[pid][0]
			raw[strings.Index(string(raw), "Gashi")] = 'X'
			return is
		}(), iss.roots, t0, false},
		{"an item moved to another namespace", func() IssuerSigned {
			is := fresh()
			is.NameSpaces["other"] = is.NameSpaces[pid]
			delete(is.NameSpaces, pid)
			return is
		}(), iss.roots, t0, false},
		{"a changed signature", func() IssuerSigned {
			is := fresh()
			is.IssuerAuth[len(is.IssuerAuth)-1] ^= 1
			return is
		}(), iss.roots, t0, false},
		{"expired", fresh(), iss.roots, t0.Add(25 * time.Hour), false},
		{"not yet valid", fresh(), iss.roots, t0.Add(-2 * time.Minute), false},
		{"a signer not for digital signatures", encipher.issue(t, &device.PublicKey), encipher.roots, t0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := tc.is.Check(tc.roots, tc.at)
			if !errors.Is(err, ErrInvalid) || errors.Is(err, ErrUntrusted) != tc.untrusted {
				t.Errorf("checked: %v", err)
			}
			if d == nil || len(d.Chain) != 1 {
				t.Errorf("the chain read is not returned with the refusal: %+v", d)
			}
		})
	}
}

// present is a DeviceResponse of is, signed by device over sessionTranscript.
func present(t *testing.T, is IssuerSigned, docType string, device *ecdsa.PrivateKey, sessionTranscript []byte) string {
	t.Helper()
	ns := mustCBOR(t, cbor.Tag{Number: 24, Content: mustCBOR(t, map[string]any{})})
	prot := mustCBOR(t, map[int]any{1: -7})
	toSign, err := DeviceToSign(prot, sessionTranscript, docType, ns)
	if err != nil {
		t.Fatal(err)
	}
	doc := map[string]any{"docType": docType, "issuerSigned": is, "deviceSigned": map[string]any{"nameSpaces": cbor.RawMessage(ns),
		"deviceAuth": map[string]any{"deviceSignature": Sign1{Protected: prot, Unprotected: map[int]cbor.RawMessage{}, Signature: sign(t, device, toSign)}}}}
	return base64.RawURLEncoding.EncodeToString(mustCBOR(t, map[string]any{"version": "1.0", "documents": []any{doc}, "status": 0}))
}

func TestVerify(t *testing.T) {
	iss := newIssuer(t, x509.KeyUsageDigitalSignature)
	device, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	is := iss.issue(t, &device.PublicKey)
	st, err := SessionTranscript("x509_san_dns:rp.example", "n-1", nil, "https://rp.example/post")
	if err != nil {
		t.Fatal(err)
	}
	d, err := Verify(present(t, is, pid, device, st), iss.roots, st, t0)
	if err != nil || d.DocType != pid || len(d.Elements) != 2 {
		t.Fatalf("%+v %v", d, err)
	}
	other, _ := SessionTranscript("x509_san_dns:rp.example", "n-2", nil, "https://rp.example/post")
	if _, err := Verify(present(t, is, pid, device, other), iss.roots, st, t0); !errors.Is(err, ErrInvalid) {
		t.Errorf("signed over another session: %v", err)
	}
	if d, err := Verify(present(t, is, "org.iso.18013.5.1.mDL", device, st), iss.roots, st, t0); !errors.Is(err, ErrInvalid) || d.DocType != "org.iso.18013.5.1.mDL" {
		t.Errorf("a document whose docType is not the MSO's: %+v %v", d, err)
	}
	thief, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if _, err := Verify(present(t, is, pid, thief, st), iss.roots, st, t0); !errors.Is(err, ErrInvalid) {
		t.Errorf("signed by another device: %v", err)
	}
}
