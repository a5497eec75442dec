package verifier

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/vula-eid/vula/internal/problem"
)

const (
	pidDocType = "eu.europa.ec.eudi.pid.1"
	pidNS      = "eu.europa.ec.eudi.pid.1"
	mdocQuery  = `{"credentials":[{"id":"pid","format":"mso_mdoc","meta":{"doctype_value":"eu.europa.ec.eudi.pid.1"},
	"claims":[{"path":["eu.europa.ec.eudi.pid.1","family_name"]},{"path":["eu.europa.ec.eudi.pid.1","age_over_18"]}]}]}`
)

var testEnc, _ = cbor.CoreDetEncOptions().EncMode()

func cborOf(t testing.TB, v any) []byte {
	t.Helper()
	b, err := testEnc.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// coseSign1 signs payload (nil: detached, signed as detached) with key as ES256 COSE_Sign1.
func coseSign1(t testing.TB, key *ecdsa.PrivateKey, prot map[int]any, unprot map[int]any, payload, detached []byte) []byte {
	t.Helper()
	p := cborOf(t, prot)
	signed := payload
	if payload == nil {
		signed = detached
	}
	h := sha256.Sum256(cborOf(t, []any{"Signature1", p, []byte{}, signed}))
	r, s, err := ecdsa.Sign(rand.Reader, key, h[:])
	if err != nil {
		t.Fatal(err)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	var pl any
	if payload != nil {
		pl = payload
	}
	return cborOf(t, []any{p, unprot, pl, sig})
}

// testMdoc is an issued mdoc: its items (tag-24 IssuerSignedItemBytes by element) and issuerAuth.
type testMdoc struct {
	items      map[string][]byte
	issuerAuth []byte
}

// mdoc issues a PID mdoc bound to holder, with status entry idx, valid until until.
func (is *issuer) mdoc(t testing.TB, holder *ecdsa.PrivateKey, idx int, until time.Time) testMdoc {
	t.Helper()
	values := map[string]any{"family_name": "Berisha", "given_name": "Drita", "age_over_18": true,
		"birth_date": cbor.Tag{Number: 1004, Content: "1985-11-02"}}
	m := testMdoc{items: map[string][]byte{}}
	digests := map[uint64][]byte{}
	var id uint64
	for name, v := range values {
		salt := make([]byte, 16)
		rand.Read(salt)
		item := cborOf(t, map[string]any{"digestID": id, "random": salt, "elementIdentifier": name, "elementValue": v})
		raw := cborOf(t, cbor.Tag{Number: 24, Content: item})
		sum := sha256.Sum256(raw)
		digests[id] = sum[:]
		m.items[name] = raw
		id++
	}
	point, err := holder.PublicKey.Bytes() // 0x04 || x || y
	if err != nil {
		t.Fatal(err)
	}
	x, y := point[1:33], point[33:]
	tdate := func(tm time.Time) cbor.Tag { return cbor.Tag{Number: 0, Content: tm.UTC().Format(time.RFC3339)} }
	now := time.Now().Add(-time.Hour)
	mso := map[string]any{"version": "1.0", "digestAlgorithm": "SHA-256", "docType": pidDocType,
		"valueDigests":  map[string]any{pidNS: digests},
		"deviceKeyInfo": map[string]any{"deviceKey": map[int]any{1: 2, -1: 1, -2: x, -3: y}},
		"validityInfo":  map[string]any{"signed": tdate(now), "validFrom": tdate(now), "validUntil": tdate(until)},
		"status":        map[string]any{"status_list": map[string]any{"idx": idx, "uri": is.listURI}}}
	payload := cborOf(t, cbor.Tag{Number: 24, Content: cborOf(t, mso)})
	m.issuerAuth = coseSign1(t, is.key, map[int]any{1: -7}, map[int]any{33: is.leaf.Raw}, payload, nil)
	return m
}

// presentMdoc is the wallet's DeviceResponse for r with the named elements, signed by device
// over the SessionTranscript of clientID, nonce and r's response URI and encryption key.
func presentMdoc(t testing.TB, m testMdoc, device *ecdsa.PrivateKey, r request, clientID, nonce string, names ...string) string {
	t.Helper()
	var chosen []cbor.RawMessage
	for _, n := range names {
		chosen = append(chosen, m.items[n])
	}
	var jkt any
	if r.encKey != nil {
		th, err := r.encKey.Thumbprint(crypto.SHA256)
		if err != nil {
			t.Fatal(err)
		}
		jkt = th
	}
	info := sha256.Sum256(cborOf(t, []any{clientID, nonce, jkt, r.responseURI}))
	st := []any{nil, nil, []any{"OpenID4VPHandover", info[:]}}
	ns := cbor.Tag{Number: 24, Content: cborOf(t, map[string]any{})}
	da := cborOf(t, cbor.Tag{Number: 24, Content: cborOf(t, []any{"DeviceAuthentication", st, pidDocType, ns})})
	sig := coseSign1(t, device, map[int]any{1: -7}, map[int]any{}, nil, da)
	doc := map[string]any{"docType": pidDocType,
		"issuerSigned": map[string]any{"nameSpaces": map[string]any{pidNS: chosen}, "issuerAuth": cbor.RawMessage(m.issuerAuth)},
		"deviceSigned": map[string]any{"nameSpaces": ns, "deviceAuth": map[string]any{"deviceSignature": cbor.RawMessage(sig)}}}
	return b64.EncodeToString(cborOf(t, map[string]any{"version": "1.0", "documents": []any{doc}, "status": 0}))
}

func TestMdocPresentationAccepted(t *testing.T) {
	is := newIssuer(t, "outside")
	s := newService(t, is, is.ca)
	for _, mode := range []string{DirectPostJWT, DirectPost} {
		t.Run(mode, func(t *testing.T) {
			holder, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			r := ask(t, s, "rp-1", mode, mdocQuery)
			m := is.mdoc(t, holder, 5, time.Now().Add(time.Hour))
			// The wallet returns one element more than asked: it is not passed on.
			p := presentMdoc(t, m, holder, r, r.clientID, r.nonce, "family_name", "given_name", "age_over_18")
			if _, err := r.answer(t, s, map[string]any{"pid": []string{p}}); err != nil {
				t.Fatal(err)
			}
			res, err := s.Result(context.Background(), r.id, "rp-1")
			if err != nil {
				t.Fatal(err)
			}
			if res.Status != Accepted || len(res.Credentials) != 1 {
				t.Fatalf("result %+v", res)
			}
			c := res.Credentials[0]
			if c.Trust != "trusted" || c.Status != "valid" || c.KeyBinding != "ok" || c.DocType != pidDocType || !strings.Contains(c.Issuer, "outside PID issuer") {
				t.Fatalf("credential result %+v", c)
			}
			got, _ := json.Marshal(c.Claims)
			want := `[{"path":["eu.europa.ec.eudi.pid.1","family_name"],"value":"Berisha"},{"path":["eu.europa.ec.eudi.pid.1","age_over_18"],"value":true}]`
			if string(got) != want {
				t.Fatalf("claims %s", got)
			}
		})
	}
	t.Run("a full-date element reaches the relying party as its string", func(t *testing.T) {
		holder, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		r := ask(t, s, "rp-1", DirectPost, `{"credentials":[{"id":"pid","format":"mso_mdoc","meta":{"doctype_value":"eu.europa.ec.eudi.pid.1"},
			"claims":[{"path":["eu.europa.ec.eudi.pid.1","birth_date"]}]}]}`)
		p := presentMdoc(t, is.mdoc(t, holder, 5, time.Now().Add(time.Hour)), holder, r, r.clientID, r.nonce, "birth_date")
		if _, err := r.answer(t, s, map[string]any{"pid": p}); err != nil {
			t.Fatal(err)
		}
		res, _ := s.Result(context.Background(), r.id, "rp-1")
		if got, _ := json.Marshal(res.Credentials[0].Claims); !strings.Contains(string(got), `"value":"1985-11-02"`) {
			t.Fatalf("claims %s", got)
		}
	})
}

func TestMdocPresentationRefused(t *testing.T) {
	is := newIssuer(t, "outside")
	stranger := newIssuer(t, "stranger")
	s := newService(t, is, is.ca)
	holder, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	is.revoked[9] = true
	fresh := func() testMdoc { return is.mdoc(t, holder, 5, time.Now().Add(time.Hour)) }
	all := []string{"family_name", "age_over_18"}
	for _, tc := range []struct {
		name, want string
		query      string
		make       func(r request) string
	}{
		{"another verifier's client id", "device signature", mdocQuery, func(r request) string {
			return presentMdoc(t, fresh(), holder, r, "x509_hash:someone-else", r.nonce, all...)
		}},
		{"a wrong nonce in the handover", "device signature", mdocQuery, func(r request) string {
			return presentMdoc(t, fresh(), holder, r, r.clientID, "n-other", all...)
		}},
		{"a device signature by another key", "device signature", mdocQuery, func(r request) string {
			return presentMdoc(t, fresh(), other, r, r.clientID, r.nonce, all...)
		}},
		{"a tampered item", "digest", mdocQuery, func(r request) string {
			m := fresh()
			fake := cborOf(t, map[string]any{"digestID": 0, "random": []byte("salt"), "elementIdentifier": "family_name", "elementValue": "Someone Else"})
			m.items["family_name"] = cborOf(t, cbor.Tag{Number: 24, Content: fake})
			return presentMdoc(t, m, holder, r, r.clientID, r.nonce, all...)
		}},
		{"an issuer not under a trust anchor", "trust anchor", mdocQuery, func(r request) string {
			return presentMdoc(t, stranger.mdoc(t, holder, 5, time.Now().Add(time.Hour)), holder, r, r.clientID, r.nonce, all...)
		}},
		{"an expired mdoc", "valid from", mdocQuery, func(r request) string {
			return presentMdoc(t, is.mdoc(t, holder, 5, time.Now().Add(-time.Hour)), holder, r, r.clientID, r.nonce, all...)
		}},
		{"a revoked mdoc", "status is invalid", mdocQuery, func(r request) string {
			return presentMdoc(t, is.mdoc(t, holder, 9, time.Now().Add(time.Hour)), holder, r, r.clientID, r.nonce, all...)
		}},
		{"an element the wallet did not return", "age_over_18", mdocQuery, func(r request) string {
			return presentMdoc(t, fresh(), holder, r, r.clientID, r.nonce, "family_name")
		}},
		{"another doctype asked for", "docType", `{"credentials":[{"id":"pid","format":"mso_mdoc","meta":{"doctype_value":"org.iso.18013.5.1.mDL"}}]}`,
			func(r request) string { return presentMdoc(t, fresh(), holder, r, r.clientID, r.nonce, all...) }},
		{"not CBOR", "DeviceResponse", mdocQuery, func(r request) string { return b64.EncodeToString([]byte("not cbor")) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := ask(t, s, "rp-1", DirectPostJWT, tc.query)
			_, err := r.answer(t, s, map[string]any{"pid": tc.make(r)})
			if pt, _ := problem.Of(err); !errors.Is(err, ErrResponse) || pt != problem.InvalidRequest {
				t.Fatalf("answer: %v", err)
			}
			res, _ := s.Result(context.Background(), r.id, "rp-1")
			if res.Status != Refused || !strings.Contains(res.Reason, tc.want) {
				t.Fatalf("result %+v, want a refusal naming %q", res, tc.want)
			}
			for _, c := range res.Credentials {
				if len(c.Claims) > 0 {
					t.Fatalf("a refused presentation passed on claims %+v", c.Claims)
				}
			}
		})
	}
}
