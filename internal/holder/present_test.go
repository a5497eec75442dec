package holder

import (
	"bytes"
	"compress/zlib"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/go-jose/go-jose/v3"

	"github.com/vula-eid/vula/internal/mdoc"
)

// requestFor is a request object of a verifier at responseURI, signed by pki's leaf.
func requestFor(t *testing.T, pki testPKI, clientID, responseURI, mode string, dcql any, edit func(map[string]any)) string {
	t.Helper()
	c := map[string]any{"client_id": clientID, "response_type": "vp_token", "response_mode": mode, "response_uri": responseURI,
		"nonce": "n-1", "state": "s-1", "dcql_query": dcql}
	if edit != nil {
		edit(c)
	}
	return pki.sign(t, "oauth-authz-req+jwt", c)
}

var pidQuery = map[string]any{"credentials": []any{map[string]any{"id": "pid", "format": "dc+sd-jwt",
	"meta": map[string]any{"vct_values": []string{"urn:eudi:pid:1"}}, "claims": []any{map[string]any{"path": []any{"age_equal_or_over", "18"}}}}}}

func TestRequestObject(t *testing.T) {
	pki := newPKI(t, "rp.example")
	other := newPKI(t, "rp.example")
	h := sha256.Sum256(pki.leaf.Raw)
	hashID := "x509_hash:" + b64.EncodeToString(h[:])
	now := time.Now()
	ok := func(id string) string {
		return requestFor(t, pki, id, "https://rp.example/response", "direct_post", pidQuery, nil)
	}
	if r, err := parseRequestObject(ok("x509_san_dns:rp.example"), "x509_san_dns:rp.example", nil, now); err != nil || r.Trusted {
		t.Errorf("x509_san_dns: %v", err)
	}
	if r, err := parseRequestObject(ok(hashID), hashID, []*x509.Certificate{pki.root}, now); err != nil || !r.Trusted {
		t.Errorf("x509_hash with trust: %v", err)
	}
	for _, tc := range []struct {
		name, jwt, clientID string
		trust               *x509.Certificate
	}{
		{"another DNS name", ok("x509_san_dns:bank.example"), "x509_san_dns:bank.example", nil},
		{"another certificate's hash", ok("x509_hash:AAAA"), "x509_hash:AAAA", nil},
		{"client_id differs from the URI's", ok("x509_san_dns:rp.example"), "x509_san_dns:other.example", nil},
		{"an unsupported prefix", ok("redirect_uri:https://rp.example/cb"), "redirect_uri:https://rp.example/cb", nil},
		{"a chain to another root", ok("x509_san_dns:rp.example"), "x509_san_dns:rp.example", other.root},
		{"response_uri on another host", requestFor(t, pki, "x509_san_dns:rp.example", "https://evil.example/r", "direct_post", pidQuery, nil), "x509_san_dns:rp.example", nil},
		{"response_uri in plain http", requestFor(t, pki, "x509_san_dns:rp.example", "http://rp.example/r", "direct_post", pidQuery, nil), "x509_san_dns:rp.example", nil},
		{"a fragment response mode", requestFor(t, pki, "x509_san_dns:rp.example", "https://rp.example/r", "fragment", pidQuery, nil), "x509_san_dns:rp.example", nil},
		{"no nonce", requestFor(t, pki, "x509_san_dns:rp.example", "https://rp.example/r", "direct_post", pidQuery, func(c map[string]any) { delete(c, "nonce") }), "x509_san_dns:rp.example", nil},
		{"expired", requestFor(t, pki, "x509_san_dns:rp.example", "https://rp.example/r", "direct_post", pidQuery, func(c map[string]any) { c["exp"] = now.Add(-time.Hour).Unix() }), "x509_san_dns:rp.example", nil},
		{"no DCQL", requestFor(t, pki, "x509_san_dns:rp.example", "https://rp.example/r", "direct_post", nil, nil), "x509_san_dns:rp.example", nil},
		{"direct_post.jwt without a key", requestFor(t, pki, "x509_san_dns:rp.example", "https://rp.example/r", "direct_post.jwt", pidQuery, nil), "x509_san_dns:rp.example", nil},
		{"not a JWT", "eyJhbGciOiJub25lIn0.e30.", "x509_san_dns:rp.example", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var trust []*x509.Certificate
			if tc.trust != nil {
				trust = []*x509.Certificate{tc.trust}
			}
			if _, err := parseRequestObject(tc.jwt, tc.clientID, trust, now); !errors.Is(err, ErrRequest) {
				t.Errorf("accepted: %v", err)
			}
		})
	}
}

// TestPresentMdocEncrypted answers a direct_post.jwt request for an mdoc element: the response
// is a JWE to the verifier's key, and its DeviceResponse holds only the element asked for, with
// a device signature over the OpenID4VP handover.
func TestPresentMdocEncrypted(t *testing.T) {
	issuer := newPKI(t)
	rp := newPKI(t, "127.0.0.1")
	encKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	got := make(chan url.Values, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		v, _ := url.ParseQuery(string(b))
		got <- v
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"redirect_uri":"https://rp.example/done"}`))
	}))
	defer srv.Close()
	w := newWallet(t, "", issuer.root)
	id, k, _ := w.NewKey()
	w.add(Credential{ID: "1", Format: formatMdoc, KeyID: id, Credential: issuer.mdocFor(t, &k.PublicKey), Received: time.Now()})
	query := map[string]any{"credentials": []any{map[string]any{"id": "q", "format": "mso_mdoc",
		"meta":   map[string]any{"doctype_value": "eu.europa.ec.eudi.pid.1"},
		"claims": []any{map[string]any{"path": []any{"eu.europa.ec.eudi.pid.1", "age_over_18"}, "values": []any{true}}}}}}
	jwks := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &encKey.PublicKey, KeyID: "e1", Use: "enc", Algorithm: "ECDH-ES"}}}
	clientID := "x509_san_dns:127.0.0.1"
	jwt := requestFor(t, rp, clientID, srv.URL+"/post", "direct_post.jwt", query, func(c map[string]any) {
		c["client_metadata"] = map[string]any{"jwks": jwks, "encrypted_response_enc_values_supported": []string{"A256GCM"}}
	})
	c := Client{}
	req, err := c.ParseRequestURI(context.Background(), "openid4vp://?client_id="+url.QueryEscape(clientID)+"&request="+jwt, nil)
	if err != nil {
		t.Fatal(err)
	}
	m, err := c.Match(context.Background(), req, w)
	if err != nil || len(m) != 1 || len(m[0].Claims) != 1 {
		t.Fatalf("match: %v %v", m, err)
	}
	resp, err := c.Present(context.Background(), w, req, m, [][][]any{m[0].Claims})
	if err != nil || resp.RedirectURI != "https://rp.example/done" {
		t.Fatalf("present: %+v %v", resp, err)
	}
	form := <-got
	if form.Get("vp_token") != "" {
		t.Fatal("direct_post.jwt sent the vp_token in the clear")
	}
	jwe, err := jose.ParseEncrypted(form.Get("response"))
	if err != nil {
		t.Fatal(err)
	}
	if jwe.Header.Algorithm != "ECDH-ES" || jwe.Header.KeyID != "e1" || jwe.Header.ExtraHeaders["enc"] != "A256GCM" {
		t.Errorf("JWE header %+v", jwe.Header)
	}
	plain, err := jwe.Decrypt(encKey)
	if err != nil {
		t.Fatal(err)
	}
	var payload struct {
		VP    map[string][]string `json:"vp_token"`
		State string              `json:"state"`
	}
	if err := json.Unmarshal(plain, &payload); err != nil || payload.State != "s-1" || len(payload.VP["q"]) != 1 {
		t.Fatalf("payload %s: %v", plain, err)
	}
	raw, _ := b64.DecodeString(payload.VP["q"][0])
	var dr struct {
		Documents []struct {
			DocType      string `cbor:"docType"`
			IssuerSigned struct {
				NameSpaces map[string][]cbor.RawMessage `cbor:"nameSpaces"`
			} `cbor:"issuerSigned"`
			DeviceSigned struct {
				NameSpaces cbor.RawMessage `cbor:"nameSpaces"`
				DeviceAuth struct {
					Sig mdoc.Sign1 `cbor:"deviceSignature"`
				} `cbor:"deviceAuth"`
			} `cbor:"deviceSigned"`
		} `cbor:"documents"`
	}
	if err := cbor.Unmarshal(raw, &dr); err != nil || len(dr.Documents) != 1 {
		t.Fatalf("DeviceResponse: %v", err)
	}
	d := dr.Documents[0]
	if items := d.IssuerSigned.NameSpaces["eu.europa.ec.eudi.pid.1"]; len(items) != 1 || !strings.Contains(string(items[0]), "age_over_18") {
		t.Errorf("disclosed %d items", len(items))
	}
	// The device signature, checked from the specification's structures (OpenID4VP 1.0 B.2.6.1).
	jkt, _ := (&jose.JSONWebKey{Key: &encKey.PublicKey}).Thumbprint(crypto.SHA256)
	info, _ := cborEnc.Marshal([]any{clientID, "n-1", jkt, srv.URL + "/post"})
	hInfo := sha256.Sum256(info)
	st := []any{nil, nil, []any{"OpenID4VPHandover", hInfo[:]}}
	var ns cbor.Tag
	cbor.Unmarshal(d.DeviceSigned.NameSpaces, &ns)
	da, _ := cborEnc.Marshal([]any{"DeviceAuthentication", st, d.DocType, ns})
	daBytes, _ := cborEnc.Marshal(cbor.Tag{Number: 24, Content: da})
	toSign, _ := cborEnc.Marshal([]any{"Signature1", d.DeviceSigned.DeviceAuth.Sig.Protected, []byte{}, daBytes})
	hs := sha256.Sum256(toSign)
	sig := d.DeviceSigned.DeviceAuth.Sig.Signature
	if len(sig) != 64 || !ecdsa.Verify(&k.PublicKey, hs[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
		t.Error("the device signature does not verify over the session transcript")
	}
}

func TestMatchDCQL(t *testing.T) {
	pki := newPKI(t)
	w := newWallet(t, "", pki.root)
	id, k, _ := w.NewKey()
	w.add(Credential{ID: "1", Format: formatSDJWT, KeyID: id, Credential: pki.sdJWTFor(t, "https://i.example", &k.PublicKey, nil)})
	req := func(q string) *Request {
		var raw json.RawMessage = []byte(q)
		dq, err := parseDCQL(raw)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		return &Request{query: dq}
	}
	c := Client{}
	for _, tc := range []struct {
		q      string
		claims []string
	}{
		{`{"credentials":[{"id":"a","format":"dc+sd-jwt","claims":[{"path":["family_name"]},{"path":["birthdate"]}]}]}`, []string{"family_name", "birthdate"}},
		{`{"credentials":[{"id":"a","format":"dc+sd-jwt","claims":[{"id":"x","path":["nationalities"]},{"id":"y","path":["given_name"]}],"claim_sets":[["x"],["y"]]}]}`, []string{"given_name"}},
		{`{"credentials":[{"id":"a","format":"dc+sd-jwt","claims":[{"path":["given_name"],"values":["Arben"]}]}]}`, []string{"given_name"}},
		{`{"credentials":[{"id":"a","format":"mso_mdoc"},{"id":"b","format":"dc+sd-jwt","claims":[{"path":["age_equal_or_over","18"]}]}],"credential_sets":[{"options":[["a"],["b"]]}]}`, []string{"age_equal_or_over.18"}},
	} {
		m, err := c.Match(context.Background(), req(tc.q), w)
		if err != nil || len(m) != 1 || strings.Join(m[0].ClaimNames(), ",") != strings.Join(tc.claims, ",") {
			t.Errorf("%s: %v %v", tc.q, m, err)
		}
	}
	for _, q := range []string{
		`{"credentials":[{"id":"a","format":"dc+sd-jwt","claims":[{"path":["nationalities"]}]}]}`,
		`{"credentials":[{"id":"a","format":"dc+sd-jwt","meta":{"vct_values":["urn:other"]}}]}`,
		`{"credentials":[{"id":"a","format":"dc+sd-jwt","claims":[{"path":["given_name"],"values":["Someone"]}]}]}`,
		`{"credentials":[{"id":"a","format":"mso_mdoc"}]}`,
	} {
		if _, err := c.Match(context.Background(), req(q), w); !errors.Is(err, ErrNoMatch) {
			t.Errorf("%s: %v", q, err)
		}
	}
	for _, q := range []string{`{}`, `{"credentials":[{"format":"dc+sd-jwt"}]}`, `{"credentials":[{"id":"a","claims":[{"path":[]}]}]}`,
		`{"credentials":[{"id":"a","claims":[{"path":[1.5]}]}]}`, `{"credentials":[{"id":"a"}],"credential_sets":[{"options":[["b"]]}]}`} {
		if _, err := parseDCQL(json.RawMessage(q)); !errors.Is(err, ErrRequest) {
			t.Errorf("%s: %v", q, err)
		}
	}
}

// TestMatchSkipsRevoked: a credential its status list shows revoked is not presented; the next
// one that fits is.
func TestMatchSkipsRevoked(t *testing.T) {
	pki := newPKI(t)
	var srvURL string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var z bytes.Buffer
		zw := zlib.NewWriter(&z)
		zw.Write([]byte{0b0000_0010}) // index 1 revoked
		zw.Close()
		w.Write([]byte(pki.sign(t, "statuslist+jwt", map[string]any{"sub": srvURL + "/1", "exp": time.Now().Add(time.Hour).Unix(),
			"status_list": map[string]any{"bits": 1, "lst": b64.EncodeToString(z.Bytes())}})))
	}))
	defer srv.Close()
	srvURL = srv.URL
	w := newWallet(t, "", pki.root)
	for i, idx := range []int{1, 2} {
		id, k, _ := w.NewKey()
		w.add(Credential{ID: fmt.Sprint(i), Format: formatSDJWT, KeyID: id,
			Credential: pki.sdJWTFor(t, "https://i.example", &k.PublicKey, &statusRef{URI: srv.URL + "/1", Idx: idx})})
	}
	dq, _ := parseDCQL(json.RawMessage(`{"credentials":[{"id":"a","format":"dc+sd-jwt","claims":[{"path":["given_name"]}]}]}`))
	m, err := Client{}.Match(context.Background(), &Request{query: dq}, w)
	if err != nil || len(m) != 1 || m[0].Credential.ID != "1" {
		t.Fatalf("match: %+v %v", m, err)
	}
	if l := (Client{}).List(context.Background(), w); l[0].Status != StatusRevoked || l[1].Status != StatusValid {
		t.Errorf("list: %s %s", l[0].Status, l[1].Status)
	}
}
