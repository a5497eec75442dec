package csc

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/sha256"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vula-eid/vula/internal/auth"
	"github.com/vula-eid/vula/internal/idp"
	"github.com/vula-eid/vula/internal/signing"
	"github.com/vula-eid/vula/internal/store/memstore"
)

// callerFor is the Caller the identity provider's Bearer gives for a credential token whose
// authorization event is seq, expiring at exp.
func callerFor(o official, exp time.Time, seq int64, hashes ...[]byte) auth.Caller {
	a := &auth.CredentialAuthorization{Type: "credential", CredentialID: o.cred.ID, HashAlgorithmOID: "2.16.840.1.101.3.4.2.1"}
	for i, h := range hashes {
		a.DocumentDigests = append(a.DocumentDigests, auth.DocumentDigest{Hash: h, Label: "doc " + strconv.Itoa(i)})
	}
	return auth.Caller{ClientID: "app", Subject: o.sub, Scopes: []string{"credential"}, ACR: auth.LoASubstantial,
		ExpiresAt: exp, Credential: a, AuthorizationSeq: seq}
}

// A credential token signs exactly its digests, each once, on its own credential only, until it
// expires by the service's clock; every signature names the authorization event.
func TestCredentialToken(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	s := e.replica(memstore.New(e.now))
	o := e.official(t, s, "1100000001")
	other := e.official(t, s, "1100000002")
	h1, h2, h3 := sha256.Sum256([]byte("one")), sha256.Sum256([]byte("two")), sha256.Sum256([]byte("not authorized"))
	c := callerFor(o, e.now().Add(idp.CredentialTokenTTL), 0, h1[:], h2[:])
	seq, err := s.RecordAuthorization(ctx, o.sub, "app", *c.Credential, "")
	if err != nil || seq == 0 {
		t.Fatalf("record: %d %v", seq, err)
	}
	c.AuthorizationSeq = seq
	const token = "eyJ.a-credential-token.sig"
	sad, err := s.TokenSAD(ctx, c, token)
	if err != nil || !strings.HasPrefix(sad, "oauth2:") {
		t.Fatalf("TokenSAD: %q %v", sad, err)
	}
	if again, err := s.TokenSAD(ctx, c, token); err != nil || again != sad {
		t.Fatalf("a second use names another SAD: %q %v", again, err)
	}
	sign := func(cred string, hs ...[]byte) ([][]byte, error) {
		return s.SignHash(ctx, o.sub, SignRequest{CredentialID: cred, SAD: sad, Hashes: hs, SignAlgo: "1.2.840.10045.4.3.2"})
	}
	if _, err := sign(o.cred.ID, h3[:]); !strings.Contains(cscCode(err), "not authorized") {
		t.Fatalf("a digest outside the token: %s", cscCode(err))
	}
	if _, err := sign(other.cred.ID, h1[:]); cscCode(err) != "invalid_request: Invalid parameter SAD" {
		t.Fatalf("another credential: %s", cscCode(err))
	}
	sigs, err := sign(o.cred.ID, h1[:])
	if err != nil || !ecdsa.VerifyASN1(o.cred.Cert.PublicKey.(*ecdsa.PublicKey), h1[:], sigs[0]) {
		t.Fatalf("signHash: %s", cscCode(err))
	}
	if _, err := sign(o.cred.ID, h1[:]); !strings.Contains(cscCode(err), "already been signed") {
		t.Fatalf("a second use: %s", cscCode(err))
	}
	// Another token over the same digests is another authorization with its own record.
	if sad2, err := s.TokenSAD(ctx, c, token+"x"); err != nil || sad2 == sad {
		t.Fatalf("another token: %q %v", sad2, err)
	}
	e.advance(idp.CredentialTokenTTL + time.Second)
	if _, err := sign(o.cred.ID, h2[:]); cscCode(err) != "invalid_request: SAD expired" {
		t.Fatalf("after expiry: %s", cscCode(err))
	}
	// A token first used after its expiry gets no record.
	late := callerFor(o, e.now().Add(-time.Second), seq, h2[:])
	if _, err := s.TokenSAD(ctx, late, "late-token"); cscCode(err) != "invalid_request: SAD expired" {
		t.Fatalf("first use after expiry: %s", cscCode(err))
	}
	// The record never outlives SADTTL, whatever the token says.
	long := callerFor(o, e.now().Add(time.Hour), seq, h2[:])
	lsad, err := s.TokenSAD(ctx, long, "long-token")
	if err != nil {
		t.Fatal(err)
	}
	e.advance(5*time.Minute + time.Second)
	if _, err := s.SignHash(ctx, o.sub, SignRequest{CredentialID: o.cred.ID, SAD: lsad, Hashes: [][]byte{h2[:]}, SignAlgo: "1.2.840.10045.4.3.2"}); cscCode(err) != "invalid_request: SAD expired" {
		t.Fatalf("a token longer than SADTTL: %s", cscCode(err))
	}
	if _, err := s.TokenSAD(ctx, auth.Caller{Subject: o.sub}, token); cscCode(err) != "invalid_request: Invalid parameter SAD" {
		t.Fatalf("a token without authorization details: %s", cscCode(err))
	}

	recs, err := e.db.AuditRecords(ctx, 1, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var auths, signed int
	for _, r := range recs {
		switch {
		case r.Action == "csc.authorize" && r.Seq == seq:
			auths++
			if r.Result != "ok" || !bytes.Contains(r.Detail, []byte(`"mode":"oauth2code"`)) || !bytes.Contains(r.Detail, []byte("doc 1")) {
				t.Errorf("the authorization event: %s %s", r.Result, r.Detail)
			}
		case r.Action == "sign" && r.Key == o.cred.KeyURI:
			signed++
			if !bytes.Contains(r.Detail, []byte(strconv.FormatInt(seq, 10))) {
				t.Errorf("a signature not naming its authorization %d: %s", seq, r.Detail)
			}
		}
	}
	if auths != 1 || signed != 1 {
		t.Fatalf("audit: %d authorizations, %d signatures; want 1, 1", auths, signed)
	}
}

// CheckCredential: the official's own valid credential only; revocation is read afresh.
func TestCheckCredential(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	s := e.replica(memstore.New(e.now))
	o := e.official(t, s, "1100000001")
	other := e.official(t, s, "1100000002")
	if err := s.CheckCredential(ctx, o.sub, o.cred.ID); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{other.cred.ID, "ffff", ""} {
		if err := s.CheckCredential(ctx, o.sub, id); !errors.Is(err, idp.ErrCredentialRefused) {
			t.Errorf("credential %q: %v", id, err)
		}
	}
	if err := e.pki.Revoke(ctx, "person-ca", o.cred.Cert.SerialNumber, 1); err != nil {
		t.Fatal(err)
	}
	if err := s.CheckCredential(ctx, o.sub, o.cred.ID); !errors.Is(err, idp.ErrCredentialRefused) || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("a revoked credential: %v", err)
	}
}

// signDoc redeems a credential token as signHash does: the documents' digests must be the
// token's, each signed once.
func TestCredentialTokenSignDoc(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	s := e.replica(memstore.New(e.now))
	o := e.official(t, s, "1100000001")
	doc, other := []byte("Vendim nr. 7\n"), []byte("another document\n")
	c := callerFor(o, e.now().Add(idp.CredentialTokenTTL), 0, DocumentDigest(crypto.SHA256, doc))
	sad, err := s.TokenSAD(ctx, c, "a-credential-token")
	if err != nil {
		t.Fatal(err)
	}
	req := func(d []byte) DocRequest {
		return DocRequest{CredentialID: o.cred.ID, SAD: sad, HashOID: "2.16.840.1.101.3.4.2.1",
			Documents: []Document{{Data: d, Format: FormatCAdES, Level: signing.LevelB, Packaging: Detached}}}
	}
	if _, err := s.SignDoc(ctx, o.sub, req(other)); !strings.Contains(cscCode(err), "not authorized") {
		t.Fatalf("a document outside the token: %s", cscCode(err))
	}
	res, err := s.SignDoc(ctx, o.sub, req(doc))
	if err != nil || len(res.Documents) != 1 || len(res.Documents[0]) == 0 {
		t.Fatalf("signDoc: %s", cscCode(err))
	}
	if _, err := s.SignDoc(ctx, o.sub, req(doc)); !strings.Contains(cscCode(err), "Invalid parameter SAD") {
		t.Fatalf("a document signed twice on one token: %s", cscCode(err))
	}
}

// A credential may require its authorizations at LoA high: set by its official's id only, read
// by credential id before the login; substantial otherwise, and again after it is lowered.
func TestCredentialLevel(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	s := e.replica(memstore.New(e.now))
	o := e.official(t, s, "1100000001")
	other := e.official(t, s, "1100000002")
	level := func(id string) string {
		t.Helper()
		l, err := s.CredentialLevel(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	if got := level(o.cred.ID); got != auth.LoASubstantial {
		t.Fatalf("default: %s", got)
	}
	if err := s.SetCredentialLevel(ctx, other.sub, o.cred.ID, auth.LoAHigh); err == nil {
		t.Fatal("another official set the level of a credential not theirs")
	}
	if err := s.SetCredentialLevel(ctx, o.sub, o.cred.ID, "very high"); err == nil {
		t.Fatal("an unknown level was accepted")
	}
	if err := s.SetCredentialLevel(ctx, o.sub, o.cred.ID, auth.LoAHigh); err != nil {
		t.Fatal(err)
	}
	if got := level(o.cred.ID); got != auth.LoAHigh {
		t.Fatalf("after set: %s", got)
	}
	if got := level(other.cred.ID); got != auth.LoASubstantial {
		t.Fatalf("another credential: %s", got)
	}
	if err := s.SetCredentialLevel(ctx, o.sub, o.cred.ID, auth.LoASubstantial); err != nil || level(o.cred.ID) != auth.LoASubstantial {
		t.Fatalf("lowered: %v %s", err, level(o.cred.ID))
	}
}
