package pid

import (
	"bytes"
	"compress/zlib"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v3"

	"github.com/vula-eid/vula/hsm"
	"github.com/vula-eid/vula/internal/certs"
	"github.com/vula-eid/vula/internal/store"
	"github.com/vula-eid/vula/internal/store/memstore"
	"github.com/vula-eid/vula/internal/store/sqlstore"
	"github.com/vula-eid/vula/internal/testenv/stack"
)

type env struct {
	svc   *Service
	db    *sqlstore.DB
	pki   *certs.Authority
	eph   *memstore.Store
	sub   string
	clock time.Time
}

const issuerURL = "https://vula.example"

func newEnv(t testing.TB) *env {
	t.Helper()
	ctx := context.Background()
	st := stack.New(t)
	e := &env{db: st.DB, pki: st.PKI, eph: memstore.New(time.Now), sub: "sub-arta", clock: time.Now()}
	if err := e.db.CreatePerson(ctx, store.Person{SubjectID: e.sub, PersonalNumber: "1234567890", GivenName: "Arta",
		FamilyName: "Krasniqi", BirthDate: "1990-04-12", Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
	e.svc = New(Config{Issuer: issuerURL, Country: "XK", Authority: "Vula", ListSize: 1024}, st.Keys, st.PKI, st.DB, st.DB, st.Audit, e.eph, st.Log,
		func() time.Time { return e.clock })
	if err := e.svc.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	return e
}

func holderKey(t testing.TB) (*ecdsa.PrivateKey, jose.JSONWebKey) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k, jose.JSONWebKey{Key: k.Public()}
}

// verifySDJWT checks an issued SD-JWT the way a verifier would, without the package's code:
// the JWS by the x5c leaf, the leaf under the platform's root, and every disclosure in _sd.
func verifySDJWT(t *testing.T, cred string, pki *certs.Authority) (payload map[string]any, disclosed map[string]any) {
	t.Helper()
	parts := strings.Split(cred, "~")
	if parts[len(parts)-1] != "" {
		t.Fatalf("an issued SD-JWT ends with ~: %q", cred[len(cred)-10:])
	}
	jws, err := jose.ParseSigned(parts[0])
	if err != nil {
		t.Fatal(err)
	}
	h := jws.Signatures[0].Protected
	if h.ExtraHeaders[jose.HeaderType] != FormatSDJWT || h.Algorithm != "ES256" {
		t.Fatalf("header typ %v alg %v", h.ExtraHeaders[jose.HeaderType], h.Algorithm)
	}
	roots := x509.NewCertPool()
	root, _ := pki.Certificate(certs.NameRoot)
	roots.AddCert(root)
	chains, err := h.Certificates(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if err != nil {
		t.Fatalf("x5c does not chain to the root: %v", err)
	}
	body, err := jws.Verify(chains[0][0].PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(body, &payload); err != nil {
		t.Fatal(err)
	}
	sd := map[string]bool{}
	collect := func(m map[string]any) {
		for _, d := range m["_sd"].([]any) {
			sd[d.(string)] = true
		}
	}
	collect(payload)
	disclosed = map[string]any{}
	// Nested objects' digests are inside other disclosures: read them all before checking.
	arrays := map[string][]any{}
	for _, d := range parts[1 : len(parts)-1] {
		raw, err := base64.RawURLEncoding.DecodeString(d)
		if err != nil {
			t.Fatal(err)
		}
		var arr []any
		if err := json.Unmarshal(raw, &arr); err != nil || len(arr) != 3 {
			t.Fatalf("disclosure %s: %v", raw, err)
		}
		if m, ok := arr[2].(map[string]any); ok && m["_sd"] != nil {
			collect(m)
		}
		arrays[d] = arr
	}
	for d, arr := range arrays {
		sum := sha256.Sum256([]byte(d))
		if !sd[base64.RawURLEncoding.EncodeToString(sum[:])] {
			t.Fatalf("disclosure %s has no digest in any _sd", d)
		}
		disclosed[arr[1].(string)] = arr[2]
	}
	return payload, disclosed
}

func TestIssueSDJWT(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	_, jwk1 := holderKey(t)
	_, jwk2 := holderKey(t)
	creds, err := e.svc.Issue(ctx, Request{SubjectID: e.sub, Actor: "wallet", Format: FormatSDJWT, Holders: []jose.JSONWebKey{jwk1, jwk2}})
	if err != nil {
		t.Fatal(err)
	}
	if len(creds) != 2 {
		t.Fatalf("%d credentials for 2 keys", len(creds))
	}
	p, d := verifySDJWT(t, creds[0], e.pki)
	for _, name := range []string{"family_name", "given_name", "birthdate", "nationalities", "personal_administrative_number",
		"issuing_authority", "issuing_country", "date_of_issuance", "date_of_expiry", "age_equal_or_over", "18"} {
		if _, ok := d[name]; !ok {
			t.Errorf("claim %s is not disclosable", name)
		}
		if _, ok := p[name]; ok {
			t.Errorf("claim %s is in the clear", name)
		}
	}
	if d["family_name"] != "Krasniqi" || d["18"] != true || d["personal_administrative_number"] != "1234567890" {
		t.Fatalf("disclosed %v", d)
	}
	if p["vct"] != VCT || p["iss"] != issuerURL || p["_sd_alg"] != "sha-256" {
		t.Fatalf("payload %v", p)
	}
	cnf, _ := json.Marshal(p["cnf"].(map[string]any)["jwk"])
	var got jose.JSONWebKey
	if err := got.UnmarshalJSON(cnf); err != nil || !got.Key.(*ecdsa.PublicKey).Equal(jwk1.Key) {
		t.Fatalf("cnf.jwk is not the first holder key: %s", cnf)
	}
	sl := p["status"].(map[string]any)["status_list"].(map[string]any)
	if sl["uri"] != issuerURL+"/pid/status/1" {
		t.Fatalf("status %v", sl)
	}
	// The two credentials share nothing that links them: other salts, other slots.
	p2, _ := verifySDJWT(t, creds[1], e.pki)
	if p2["status"].(map[string]any)["status_list"].(map[string]any)["idx"] == sl["idx"] {
		t.Fatal("two credentials share a status slot")
	}
	// The audit record names the claims, never their values.
	recs, err := e.db.AuditRecords(ctx, 1, 1000)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range recs {
		if r.Action == "pid.issue" {
			found = true
			if bytes.Contains(r.Detail, []byte("Krasniqi")) || bytes.Contains(r.Detail, []byte("1234567890")) || bytes.Contains(r.Detail, []byte("1990")) {
				t.Fatalf("claim values in the audit log: %s", r.Detail)
			}
			if !bytes.Contains(r.Detail, []byte("family_name")) || r.Key == "" || r.Actor != "wallet" {
				t.Fatalf("audit record %+v", r)
			}
		}
	}
	if !found {
		t.Fatal("no pid.issue audit record")
	}
}

func TestRevokeShowsInStatusList(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	_, jwk := holderKey(t)
	creds, err := e.svc.Issue(ctx, Request{SubjectID: e.sub, Actor: "desk", Format: FormatSDJWT, Holders: []jose.JSONWebKey{jwk}})
	if err != nil {
		t.Fatal(err)
	}
	p, _ := verifySDJWT(t, creds[0], e.pki)
	idx := int(p["status"].(map[string]any)["status_list"].(map[string]any)["idx"].(float64))
	bit := func() int {
		tok, err := e.svc.StatusList(ctx, 1, false)
		if err != nil {
			t.Fatal(err)
		}
		jws, err := jose.ParseSigned(string(tok.Token))
		if err != nil {
			t.Fatal(err)
		}
		k, _ := e.svc.issuer(ctx)
		body, err := jws.Verify(k.cert.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		var c struct {
			Sub        string `json:"sub"`
			StatusList struct {
				Bits int    `json:"bits"`
				Lst  string `json:"lst"`
			} `json:"status_list"`
		}
		if err := json.Unmarshal(body, &c); err != nil || c.Sub != issuerURL+"/pid/status/1" || c.StatusList.Bits != 1 {
			t.Fatalf("status list token %s: %v", body, err)
		}
		z, _ := base64.RawURLEncoding.DecodeString(c.StatusList.Lst)
		r, err := zlib.NewReader(bytes.NewReader(z))
		if err != nil {
			t.Fatal(err)
		}
		bits, _ := io.ReadAll(r)
		return int(bits[idx/8]>>(idx%8)) & 1
	}
	if bit() != 0 {
		t.Fatal("a fresh credential is revoked")
	}
	if n, err := e.svc.Revoke(ctx, e.sub, "operator", "lost device"); err != nil || n != 1 {
		t.Fatalf("revoked %d: %v", n, err)
	}
	if bit() != 1 {
		t.Fatal("the revocation does not show in the status list")
	}
	if _, err := e.svc.StatusList(ctx, 2, false); !errors.Is(err, ErrNoList) {
		t.Fatalf("an unused list: %v", err)
	}
	if _, err := e.svc.StatusList(ctx, 1, true); err != nil {
		t.Fatal(err)
	}
}

// The issuer key's signer is kept across requests: each signature runs under its own request's
// context, so its audit record names that request's actor, not the first request's.
func TestSignerOutlivesFirstRequest(t *testing.T) {
	e := newEnv(t)
	_, jwk := holderKey(t)
	e.svc.mu.Lock()
	e.svc.signer = nil // obtained again under the first request
	e.svc.mu.Unlock()
	for _, actor := range []string{"first-wallet", "second-wallet"} {
		if _, err := e.svc.Issue(hsm.WithActor(context.Background(), actor), Request{SubjectID: e.sub, Actor: actor, Format: FormatSDJWT,
			Holders: []jose.JSONWebKey{jwk}}); err != nil {
			t.Fatal(err)
		}
	}
	recs, err := e.db.AuditRecords(context.Background(), 1, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var signers []string
	for _, r := range recs {
		if r.Action == "sign" && strings.Contains(string(r.Detail), `"pid"`) {
			signers = append(signers, r.Actor)
		}
	}
	if len(signers) < 2 || signers[len(signers)-1] != "second-wallet" {
		t.Fatalf("the signatures' audit records name %v, want the last to be second-wallet", signers)
	}
}

// A person whose eID means is revoked has every PID revoked with it, and gets no new one.
func TestEIDRevocationRevokesPIDs(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	_, jwk := holderKey(t)
	creds, err := e.svc.Issue(ctx, Request{SubjectID: e.sub, Format: FormatSDJWT, Holders: []jose.JSONWebKey{jwk}})
	if err != nil {
		t.Fatal(err)
	}
	p, _ := verifySDJWT(t, creds[0], e.pki)
	idx := int(p["status"].(map[string]any)["status_list"].(map[string]any)["idx"].(float64))
	if err := e.db.UpdatePerson(ctx, e.sub, func(p store.Person) (store.Person, error) { p.Status = store.EIDRevoked; return p, nil }); err != nil {
		t.Fatal(err)
	}
	revoked, err := e.db.RevokedPIDs(ctx, 1)
	if err != nil || len(revoked) != 1 || revoked[0] != idx {
		t.Fatalf("revoked slots %v (%v), want [%d]", revoked, err, idx)
	}
	if _, err := e.svc.StatusList(ctx, 1, false); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Issue(ctx, Request{SubjectID: e.sub, Format: FormatSDJWT, Holders: []jose.JSONWebKey{jwk}}); !errors.Is(err, ErrNotEligible) {
		t.Fatalf("issued to a revoked eID: %v", err)
	}
	if _, err := e.svc.NewOffer(ctx, "1234567890", "desk"); !errors.Is(err, ErrNotEligible) {
		t.Fatalf("offered to a revoked eID: %v", err)
	}
}
