package verifier

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v3"

	"github.com/vula-eid/vula/internal/mdoc"
	"github.com/vula-eid/vula/internal/sdjwt"
)

// FuzzParseQuery: any body a relying party sends is either a query that passes Check or an
// error, never a panic; a query that passes can be selected against without one.
func FuzzParseQuery(f *testing.F) {
	f.Add([]byte(pidQuery))
	f.Add([]byte(`{"credentials":[{"id":"a","format":"dc+sd-jwt","meta":{"vct_values":["x"]},"claims":[{"id":"c","path":["a",null,0]}],"claim_sets":[["c"]]}],"credential_sets":[{"options":[["a"]],"required":false}]}`))
	f.Add([]byte(`{"credentials":[{"id":"a","format":"mso_mdoc","meta":{"doctype_value":"x"}}]}`))
	f.Add([]byte(`{"credentials":[{"id":"a","format":"dc+sd-jwt","meta":{"vct_values":["x"]},"claims":[{"path":["a"],"values":[1,"b",true]}]}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		q, err := ParseQuery(b)
		if err != nil {
			return
		}
		claims := map[string]any{"a": []any{map[string]any{"b": 1}}, "family_name": "x"}
		for _, c := range q.Credentials {
			_, _ = c.pick(claims)
		}
		_ = q.satisfied(map[string]bool{})
	})
}

// FuzzSDJWT: any presentation a wallet sends is parsed and resolved without a panic.
func FuzzSDJWT(f *testing.F) {
	is := newIssuer(f, "seed")
	holder, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	cred := is.credential(f, holder, 1, time.Now().Add(time.Hour))
	f.Add(cred)
	f.Add(present(f, cred, holder, "aud", "nonce", "family_name", "age_equal_or_over", "18"))
	f.Add("a.b.c~~")
	f.Add("eyJhbGciOiJub25lIn0.eyJfc2QiOlsiYSJdfQ.~WyJzIiwiYSIsMV0~")
	f.Fuzz(func(t *testing.T, s string) {
		p, err := sdjwt.Parse(s)
		if err != nil {
			return
		}
		_, _ = p.Claims()
		_ = p.SDHash()
	})
}

// FuzzStatusAt: any status list read at any index, without a panic or an unbounded allocation.
func FuzzStatusAt(f *testing.F) {
	f.Add("eNrbuZOBEQAEXgGx", 1, int64(3))
	f.Add("", 2, int64(0))
	f.Fuzz(func(t *testing.T, lst string, bits int, idx int64) {
		if idx < 0 {
			return
		}
		_, _ = statusAt(lst, bits, idx)
	})
}

// FuzzResponse: any vp_token a wallet posts, and any direct_post.jwt response, is refused or
// read without a panic.
func FuzzResponse(f *testing.F) {
	f.Add(`{"pid":["a.b.c~d~"]}`, "eyJhbGciOiJFQ0RILUVTIiwiZW5jIjoiQTEyOEdDTSJ9..a.b.c")
	f.Add(`{"pid":"x"}`, "a.b.c.d.e")
	f.Add(`[]`, `{"protected":"e30"}`)
	priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	key, _ := json.Marshal(jose.JSONWebKey{Key: priv, Algorithm: "ECDH-ES", Use: "enc"})
	tx := transaction{Key: key}
	f.Fuzz(func(t *testing.T, vp, jwe string) {
		_, _ = parseVPToken(vp)
		_, _ = decryptResponse(jwe, tx)
	})
}

// FuzzMdoc: any DeviceResponse a wallet sends (the CBOR, before base64url) is refused or
// verified without a panic; one that verifies returns only elements it carries.
func FuzzMdoc(f *testing.F) {
	is := newIssuer(f, "seed")
	holder, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	r := request{clientID: "x509_hash:c", nonce: "n", responseURI: "https://vula.example/openid4vp/response/t"}
	p := presentMdoc(f, is.mdoc(f, holder, 1, time.Now().Add(time.Hour)), holder, r, r.clientID, r.nonce, "family_name", "birth_date")
	seed, _ := b64.DecodeString(p)
	f.Add(seed)
	f.Add([]byte{0xa0})
	f.Add([]byte{0xa1, 0x69, 'd', 'o', 'c', 'u', 'm', 'e', 'n', 't', 's', 0x81, 0xa0})
	anchors := x509.NewCertPool()
	anchors.AddCert(is.ca)
	st, err := mdoc.SessionTranscript(r.clientID, r.nonce, nil, r.responseURI)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := mdoc.Verify(b64.EncodeToString(b), anchors, st, time.Now())
		if err == nil && len(d.Elements) > 2 {
			t.Fatalf("%d elements verified from a response that carries 2", len(d.Elements))
		}
	})
}
