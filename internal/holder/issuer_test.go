package holder

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/go-jose/go-jose/v3"
)

// A test issuer: what a real one sends, signed by a test PKI, and a tamper hook to send what a
// real one would not (a response changed on the way, a broken issuer). Vula's own issuer is
// tested with the wallet end to end in test/holder_test.go.

type testPKI struct {
	root    *x509.Certificate
	leaf    *x509.Certificate
	key     *ecdsa.PrivateKey
	rootKey *ecdsa.PrivateKey
}

func newPKI(t testing.TB, dns ...string) testPKI {
	t.Helper()
	rk, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rt := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test root"}, IsCA: true, BasicConstraintsValid: true,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), KeyUsage: x509.KeyUsageCertSign}
	rd, err := x509.CreateCertificate(rand.Reader, rt, rt, &rk.PublicKey, rk)
	if err != nil {
		t.Fatal(err)
	}
	root, _ := x509.ParseCertificate(rd)
	lk, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ld, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "test signer"},
		DNSNames: dns, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), KeyUsage: x509.KeyUsageDigitalSignature},
		root, &lk.PublicKey, rk)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(ld)
	return testPKI{root: root, leaf: leaf, key: lk, rootKey: rk}
}

func (p testPKI) x5c() []string { return []string{base64.StdEncoding.EncodeToString(p.leaf.Raw)} }

// sign makes a compact JWS with typ and the leaf in x5c.
func (p testPKI) sign(t testing.TB, typ string, claims any) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType(jose.ContentType(typ)).WithHeader("x5c", p.x5c())
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: p.key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(claims)
	jws, err := s.Sign(b)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := jws.CompactSerialize()
	return out
}

func disclose(t testing.TB, name string, value any) (string, string) {
	t.Helper()
	salt := make([]byte, 16)
	rand.Read(salt)
	b, _ := json.Marshal([]any{b64.EncodeToString(salt), name, value})
	enc := b64.EncodeToString(b)
	return enc, sdDigest(enc)
}

// sdJWTFor issues an SD-JWT VC with every claim of person disclosable (age_equal_or_over nested).
func (p testPKI) sdJWTFor(t testing.TB, iss string, holder *ecdsa.PublicKey, status *statusRef) string {
	t.Helper()
	var ds, digests []string
	add := func(name string, v any) string {
		enc, d := disclose(t, name, v)
		ds = append(ds, enc)
		return d
	}
	for k, v := range map[string]any{"family_name": "Gashi", "given_name": "Arben", "birthdate": "1990-04-17"} {
		digests = append(digests, add(k, v))
	}
	over := []string{add("18", true), add("65", false)}
	sort.Strings(over)
	digests = append(digests, add("age_equal_or_over", map[string]any{"_sd": over}))
	sort.Strings(digests)
	jwk, _ := json.Marshal(jose.JSONWebKey{Key: holder})
	claims := map[string]any{"iss": iss, "vct": "urn:eudi:pid:1", "_sd_alg": "sha-256", "_sd": digests,
		"iat": time.Now().Unix(), "exp": time.Now().Add(24 * time.Hour).Unix(), "cnf": map[string]any{"jwk": json.RawMessage(jwk)}}
	if status != nil {
		claims["status"] = map[string]any{"status_list": status}
	}
	return p.sign(t, "dc+sd-jwt", claims) + "~" + strings.Join(ds, "~") + "~"
}

// mdocFor issues an mdoc of the PID doctype bound to holder.
func (p testPKI) mdocFor(t testing.TB, holder *ecdsa.PublicKey) string {
	t.Helper()
	const ns = "eu.europa.ec.eudi.pid.1"
	var items []cbor.RawMessage
	digests := map[uint64][]byte{}
	for i, e := range []struct {
		id string
		v  any
	}{{"family_name", "Gashi"}, {"given_name", "Arben"}, {"age_over_18", true}} {
		r := make([]byte, 16)
		rand.Read(r)
		inner, _ := cborEnc.Marshal(map[string]any{"digestID": uint64(i), "random": r, "elementIdentifier": e.id, "elementValue": e.v})
		raw, _ := cborEnc.Marshal(cbor.Tag{Number: 24, Content: inner})
		sum := sha256.Sum256(raw)
		digests[uint64(i)] = sum[:]
		items = append(items, raw)
	}
	pub, _ := holder.Bytes()
	now := time.Now().UTC().Truncate(time.Second)
	tdate := func(t time.Time) cbor.Tag { return cbor.Tag{Number: 0, Content: t.Format(time.RFC3339)} }
	mso, _ := cborEnc.Marshal(map[string]any{"version": "1.0", "digestAlgorithm": "SHA-256", "docType": ns,
		"valueDigests":  map[string]any{ns: digests},
		"deviceKeyInfo": map[string]any{"deviceKey": map[int]any{1: 2, -1: 1, -2: pub[1:33], -3: pub[33:]}},
		"validityInfo":  map[string]any{"signed": tdate(now), "validFrom": tdate(now), "validUntil": tdate(now.Add(24 * time.Hour))}})
	payload, _ := cborEnc.Marshal(cbor.Tag{Number: 24, Content: mso})
	prot, _ := cborEnc.Marshal(map[int]any{1: -7})
	toSign, _ := cborEnc.Marshal([]any{"Signature1", prot, []byte{}, payload})
	h := sha256.Sum256(toSign)
	r, s, _ := ecdsa.Sign(rand.Reader, p.key, h[:])
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	auth, _ := cborEnc.Marshal([]any{prot, map[int]any{33: p.leaf.Raw}, payload, sig})
	out, _ := cborEnc.Marshal(map[string]any{"nameSpaces": map[string]any{ns: items}, "issuerAuth": cbor.RawMessage(auth)})
	return b64.EncodeToString(out)
}

// fakeIssuer serves OpenID4VCI's pre-authorized code flow for one offer (code "c", tx "123456")
// and issues what pki signs; tamper, when set, changes each credential before it is sent.
func fakeIssuer(t *testing.T, pki testPKI, tamper func(format, cred string) string) (*httptest.Server, string) {
	t.Helper()
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	iss := srv.URL
	js := func(w http.ResponseWriter, v any) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(v)
	}
	mux.HandleFunc("GET /.well-known/openid-credential-issuer", func(w http.ResponseWriter, r *http.Request) {
		js(w, map[string]any{"credential_issuer": iss, "authorization_servers": []string{iss}, "credential_endpoint": iss + "/credential",
			"nonce_endpoint": iss + "/nonce", "batch_credential_issuance": map[string]any{"batch_size": 2},
			"credential_configurations_supported": map[string]any{
				"pid-sd": map[string]any{"format": "dc+sd-jwt", "vct": "urn:eudi:pid:1"},
				"pid-md": map[string]any{"format": "mso_mdoc", "doctype": "eu.europa.ec.eudi.pid.1"},
			}})
	})
	mux.HandleFunc("GET /.well-known/oauth-authorization-server", func(w http.ResponseWriter, r *http.Request) {
		js(w, map[string]any{"issuer": iss, "token_endpoint": iss + "/token", "dpop_signing_alg_values_supported": []string{"ES256"}})
	})
	mux.HandleFunc("POST /token", func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		if r.Header.Get("DPoP") == "" {
			w.WriteHeader(400)
			js(w, map[string]string{"error": "invalid_dpop_proof"})
			return
		}
		if r.PostForm.Get("pre-authorized_code") != "c" || r.PostForm.Get("tx_code") != "123456" {
			w.WriteHeader(400)
			js(w, map[string]string{"error": "invalid_grant", "error_description": "the transaction code is wrong"})
			return
		}
		js(w, map[string]any{"access_token": "at", "token_type": "DPoP"})
	})
	mux.HandleFunc("POST /nonce", func(w http.ResponseWriter, r *http.Request) { js(w, map[string]string{"c_nonce": "n1"}) })
	mux.HandleFunc("POST /credential", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "DPoP at" || r.Header.Get("DPoP") == "" {
			w.WriteHeader(401)
			return
		}
		var req struct {
			ID     string `json:"credential_configuration_id"`
			Proofs struct {
				JWT []string `json:"jwt"`
			} `json:"proofs"`
		}
		json.NewDecoder(r.Body).Decode(&req)
		var out []map[string]string
		for _, p := range req.Proofs.JWT {
			jws, err := jose.ParseSigned(p)
			if err != nil {
				t.Errorf("proof: %v", err)
				return
			}
			k := jws.Signatures[0].Protected.JSONWebKey
			var c struct {
				Aud   string `json:"aud"`
				Nonce string `json:"nonce"`
			}
			b, err := jws.Verify(k)
			if err != nil || json.Unmarshal(b, &c) != nil || c.Aud != iss || c.Nonce != "n1" {
				t.Errorf("proof: %v %+v", err, c)
			}
			holder := k.Key.(*ecdsa.PublicKey)
			format, cred := "dc+sd-jwt", ""
			if req.ID == "pid-md" {
				format, cred = "mso_mdoc", pki.mdocFor(t, holder)
			} else {
				cred = pki.sdJWTFor(t, iss, holder, nil)
			}
			if tamper != nil {
				cred = tamper(format, cred)
			}
			out = append(out, map[string]string{"credential": cred})
		}
		js(w, map[string]any{"credentials": out})
	})
	offer, _ := json.Marshal(map[string]any{"credential_issuer": iss, "credential_configuration_ids": []string{"pid-sd", "pid-md"},
		"grants": map[string]any{GrantPreAuthorized: map[string]any{"pre-authorized_code": "c", "tx_code": map[string]any{"length": 6}}}})
	return srv, "openid-credential-offer://?credential_offer=" + url.QueryEscape(string(offer))
}
