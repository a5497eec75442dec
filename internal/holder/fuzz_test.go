package holder

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"testing"
	"time"
)

// Every parser of what the network hands the wallet, fuzzed: none may panic or run away, and
// what the SD-JWT and mdoc parsers accept must verify.

func FuzzParseOffer(f *testing.F) {
	f.Add([]byte(`{"credential_issuer":"https://i.example","credential_configuration_ids":["a"],"grants":{"urn:ietf:params:oauth:grant-type:pre-authorized_code":{"pre-authorized_code":"c","tx_code":{"length":6}}}}`))
	f.Add([]byte(`{"credential_issuer":"http://127.0.0.1:1","credential_configuration_ids":[],"grants":null}`))
	f.Fuzz(func(t *testing.T, b []byte) { _, _ = parseOffer(b) })
}

func FuzzSDJWT(f *testing.F) {
	pki := newPKI(f)
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	f.Add(pki.sdJWTFor(f, "https://i.example", &k.PublicKey, &statusRef{URI: "https://i.example/s/1", Idx: 3}))
	f.Add("a.b.c~WyJzIiwibiIsMV0~")
	anchors := []*x509.Certificate{pki.root}
	now := time.Now()
	f.Fuzz(func(t *testing.T, s string) {
		sd, err := parseSDJWT(s, anchors, now)
		if err != nil {
			return
		}
		_ = sd.disclosedNames()
		_ = sd.present([][]any{{"family_name"}, {"age_equal_or_over", nil}})
	})
}

func FuzzMdoc(f *testing.F) {
	pki := newPKI(f)
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	f.Add(pki.mdocFor(f, &k.PublicKey))
	f.Add("oA")
	anchors := []*x509.Certificate{pki.root}
	now := time.Now()
	f.Fuzz(func(t *testing.T, s string) {
		if m, err := parseMdoc(s, anchors, now); err == nil {
			_ = m.names()
		}
	})
}

func FuzzRequestObject(f *testing.F) {
	pki := newPKI(f, "rp.example")
	f.Add(pki.sign(f, "oauth-authz-req+jwt", map[string]any{"client_id": "x509_san_dns:rp.example", "response_type": "vp_token",
		"response_mode": "direct_post.jwt", "response_uri": "https://rp.example/r", "nonce": "n", "dcql_query": pidQuery,
		"client_metadata": map[string]any{"jwks": map[string]any{"keys": []any{}}}}))
	f.Add("e30.e30.e30")
	now := time.Now()
	f.Fuzz(func(t *testing.T, s string) { _, _ = parseRequestObject(s, "x509_san_dns:rp.example", nil, now) })
}

func FuzzDCQL(f *testing.F) {
	b, _ := json.Marshal(pidQuery)
	f.Add(b)
	f.Add([]byte(`{"credentials":[{"id":"a","format":"mso_mdoc","claims":[{"id":"x","path":["ns","e"]}],"claim_sets":[["x"]]}],"credential_sets":[{"options":[["a"]]}]}`))
	f.Fuzz(func(t *testing.T, b []byte) { _, _ = parseDCQL(b) })
}
