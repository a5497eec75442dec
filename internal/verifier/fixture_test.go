package verifier

import (
	"bytes"
	"compress/zlib"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v3"

	"github.com/vula-eid/vula/internal/certs"
	"github.com/vula-eid/vula/internal/sdjwt"
	"github.com/vula-eid/vula/internal/store/memstore"
	"github.com/vula-eid/vula/internal/testenv/stack"
)

// issuer is an outside credential issuer made for the tests: its own CA (a trust anchor of the
// service under test, or not), a leaf that signs SD-JWT VCs and a status list.
type issuer struct {
	caKey   *ecdsa.PrivateKey
	ca      *x509.Certificate
	key     *ecdsa.PrivateKey
	leaf    *x509.Certificate
	listURI string
	revoked map[int]bool
}

func newIssuer(t testing.TB, name string) *issuer {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name + " CA"}, NotBefore: now.Add(-time.Hour),
		NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leafTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: name + " PID issuer", Country: []string{"XK"}},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), KeyUsage: x509.KeyUsageDigitalSignature}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, key.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(leafDER)
	return &issuer{caKey: caKey, ca: ca, key: key, leaf: leaf, listURI: "https://" + name + ".example/status/1", revoked: map[int]bool{}}
}

func (is *issuer) sign(typ string, payload any) string {
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: is.key},
		(&jose.SignerOptions{}).WithType(jose.ContentType(typ)).WithHeader("x5c", []string{base64.StdEncoding.EncodeToString(is.leaf.Raw)}))
	if err != nil {
		panic(err)
	}
	b, _ := json.Marshal(payload)
	o, err := s.Sign(b)
	if err != nil {
		panic(err)
	}
	c, _ := o.CompactSerialize()
	return c
}

// credential issues an SD-JWT VC (every claim disclosable, age_equal_or_over.18 nested) bound to
// holder, with status entry idx. exp sets the expiry.
func (is *issuer) credential(t testing.TB, holder *ecdsa.PrivateKey, idx int, exp time.Time) string {
	t.Helper()
	claims := map[string]any{"family_name": "Berisha", "given_name": "Drita", "birthdate": "1985-11-02",
		"nationalities": []string{"XK"}}
	var ds []string
	digest := func(name string, v any) string {
		j, _ := json.Marshal([]any{fmt.Sprint("salt-", name, len(ds)), name, v})
		d := b64.EncodeToString(j)
		ds = append(ds, d)
		return sdjwt.Digest(d)
	}
	var sd []string
	for k, v := range claims {
		sd = append(sd, digest(k, v))
	}
	age := map[string]any{"_sd": []string{digest("18", true), digest("65", false)}}
	sd = append(sd, digest("age_equal_or_over", age))
	sort.Strings(sd)
	jwk := jose.JSONWebKey{Key: holder.Public()}
	body := map[string]any{"iss": "https://issuer.example", "vct": "urn:eudi:pid:1", "_sd_alg": "sha-256", "_sd": sd,
		"iat": time.Now().Add(-time.Hour).Unix(), "exp": exp.Unix(), "cnf": map[string]any{"jwk": jwk},
		"status": map[string]any{"status_list": map[string]any{"uri": is.listURI, "idx": idx}}}
	return is.sign("dc+sd-jwt", body) + "~" + strings.Join(ds, "~") + "~"
}

// present keeps only the disclosures whose names are in names (and the parent object of a
// nested one), then adds a key binding JWT for aud and nonce.
func present(t testing.TB, cred string, holder *ecdsa.PrivateKey, aud, nonce string, names ...string) string {
	t.Helper()
	parts := strings.Split(strings.TrimSuffix(cred, "~"), "~")
	kept := []string{parts[0]}
	for _, d := range parts[1:] {
		raw, _ := b64.DecodeString(d)
		var arr []any
		json.Unmarshal(raw, &arr)
		for _, n := range names {
			if arr[1] == n {
				kept = append(kept, d)
			}
		}
	}
	sdj := strings.Join(kept, "~") + "~"
	p, _ := sdjwt.Parse(sdj)
	s, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: holder}, (&jose.SignerOptions{}).WithType("kb+jwt"))
	b, _ := json.Marshal(map[string]any{"iat": time.Now().Unix(), "aud": aud, "nonce": nonce, "sd_hash": p.SDHash()})
	o, _ := s.Sign(b)
	kb, _ := o.CompactSerialize()
	return sdj + kb
}

// StatusList serves the issuer's status list as a signed token.
func (is *issuer) StatusList(_ context.Context, uri string) ([]byte, error) {
	if uri != is.listURI {
		return nil, fmt.Errorf("no list %s", uri)
	}
	bits := make([]byte, 128)
	for i := range is.revoked {
		bits[i/8] |= 1 << (i % 8)
	}
	var z bytes.Buffer
	w := zlib.NewWriter(&z)
	w.Write(bits)
	w.Close()
	return []byte(is.sign("statuslist+jwt", map[string]any{"sub": uri, "iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix(),
		"status_list": map[string]any{"bits": 1, "lst": b64.EncodeToString(z.Bytes())}})), nil
}

// newService is the verifier on the platform's ground (a software key layer, an SQLite store,
// the audit log, Vula's PKI), trusting Vula's PID issuer (under seal-ca, as the platform does)
// and the anchors given, reading status lists from lists.
func newService(t testing.TB, lists StatusLists, anchors ...*x509.Certificate) *Service {
	t.Helper()
	ctx := context.Background()
	st := stack.New(t)
	own, _ := st.PKI.Certificate(certs.NameSealCA)
	s := New(Config{BaseURL: "https://vula.example", Organization: "Vula", Country: "XK", PIDIssuerCAs: []*x509.Certificate{own},
		Anchors: anchors}, st.Keys, st.PKI, st.DB, lists, st.Audit, memstore.New(time.Now), st.Log, time.Now)
	if err := s.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	return s
}
