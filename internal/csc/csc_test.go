package csc

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"github.com/vula-eid/vula/hsm"
	"github.com/vula-eid/vula/internal/audit"
	"github.com/vula-eid/vula/internal/certs"
	"github.com/vula-eid/vula/internal/idp"
	"github.com/vula-eid/vula/internal/store"
	"github.com/vula-eid/vula/internal/store/memstore"
	"github.com/vula-eid/vula/internal/store/rediskv"
	"github.com/vula-eid/vula/internal/store/sqlstore"
	"github.com/vula-eid/vula/internal/testenv"
	"github.com/vula-eid/vula/internal/testenv/stack"
)

// env is the service on real parts: software keys audited into a hash-chained log on SQLite,
// the platform's CA, the identity provider's credential checks. The clock is the test's.
type env struct {
	db    *sqlstore.DB
	keys  hsm.Manager
	pki   *certs.Authority
	audit *audit.Log
	log   *slog.Logger
	mu    sync.Mutex
	t     time.Time
}

func (e *env) now() time.Time { e.mu.Lock(); defer e.mu.Unlock(); return e.t }
func (e *env) advance(d time.Duration) {
	e.mu.Lock()
	e.t = e.t.Add(d)
	e.mu.Unlock()
}

func newEnv(t testing.TB) *env {
	t.Helper()
	st := stack.New(t)
	return &env{log: st.Log, t: time.Now(), db: st.DB, audit: st.Audit, keys: st.Keys, pki: st.PKI}
}

// replica is one service over eph, as one `vula serve` process would have it.
func (e *env) replica(eph store.Ephemeral) *Service {
	seeds, _ := store.NewSeedSealer(bytes.Repeat([]byte{7}, 32))
	acc := idp.NewAccounts(e.db, eph, seeds, "Vula", e.now)
	return New(Config{Country: "XK"}, e.keys, e.pki, e.db, eph, acc, e.audit, e.log, e.now)
}

type official struct {
	sub, pw, seed string
	cred          Credential
}

func (e *env) official(t testing.TB, s *Service, number string) official {
	t.Helper()
	ctx := context.Background()
	seeds, _ := store.NewSeedSealer(bytes.Repeat([]byte{7}, 32))
	acc := idp.NewAccounts(e.db, memstore.New(e.now), seeds, "Vula", e.now)
	o := official{pw: "passphrase of " + number}
	p, err := acc.CreatePerson(ctx, store.Person{PersonalNumber: number, GivenName: "Arta", FamilyName: "Krasniqi", Official: true}, o.pw)
	if err != nil {
		t.Fatal(err)
	}
	k, err := acc.NewTOTP(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := acc.EnrollTOTP(ctx, p.SubjectID, k); err != nil {
		t.Fatal(err)
	}
	o.sub, o.seed = p.SubjectID, k.Secret()
	if o.cred, err = s.Enrol(ctx, p); err != nil {
		t.Fatal(err)
	}
	return o
}

// code is the TOTP code of step offset (-1, 0, 1) from the env's clock.
func (e *env) code(t testing.TB, o official, offset int) string {
	c, err := totp.GenerateCodeCustom(o.seed, e.now().Add(time.Duration(offset)*30*time.Second),
		totp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func cscCode(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code + ": " + e.Description
	}
	if err == nil {
		return "ok"
	}
	return "not a CSC error: " + err.Error()
}

func TestEnrolRefusesNonOfficials(t *testing.T) {
	e := newEnv(t)
	s := e.replica(memstore.New(e.now))
	_, err := s.Enrol(context.Background(), store.Person{SubjectID: "abc", PersonalNumber: "1", GivenName: "A", FamilyName: "B"})
	if !errors.Is(err, ErrNotOfficial) {
		t.Fatalf("Enrol of a citizen: %v", err)
	}
}

// TestSADExpires: a SAD is good for five minutes at most, however long the configuration asks.
func TestSADExpires(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	s := e.replica(memstore.New(e.now))
	if New(Config{SADTTL: time.Hour}, nil, nil, nil, nil, nil, nil, nil, nil).cfg.SADTTL != 5*time.Minute {
		t.Fatal("a SAD lifetime over five minutes was accepted")
	}
	o := e.official(t, s, "1100000001")
	h := sha256.Sum256([]byte("a decision"))
	a, err := s.Authorize(ctx, o.sub, Authorization{CredentialID: o.cred.ID, NumSignatures: 1, Hashes: [][]byte{h[:]},
		HashOID: "2.16.840.1.101.3.4.2.1", PIN: o.pw, OTP: e.code(t, o, 0)})
	if err != nil || a.ExpiresIn != 300 {
		t.Fatalf("authorize: %v %+v", err, a)
	}
	e.advance(5*time.Minute + time.Second)
	_, err = s.SignHash(ctx, o.sub, SignRequest{CredentialID: o.cred.ID, SAD: a.SAD, Hashes: [][]byte{h[:]}, SignAlgo: "1.2.840.10045.4.3.2"})
	if got := cscCode(err); got != "invalid_request: SAD expired" {
		t.Fatalf("signHash after expiry: %s", got)
	}
	_, err = s.SignHash(ctx, o.sub, SignRequest{CredentialID: o.cred.ID, SAD: "not-a-sad", Hashes: [][]byte{h[:]}, SignAlgo: "1.2.840.10045.4.3.2"})
	if got := cscCode(err); got != "invalid_request: Invalid parameter SAD" {
		t.Fatalf("signHash with an unknown SAD: %s", got)
	}
}

// TestParameters: refusals before any factor is checked, each with the spec's code.
func TestParameters(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	s := e.replica(memstore.New(e.now))
	o := e.official(t, s, "1100000001")
	h := sha256.Sum256([]byte("x"))
	h2 := sha256.Sum256([]byte("y"))
	ok := Authorization{CredentialID: o.cred.ID, NumSignatures: 1, Hashes: [][]byte{h[:]}, HashOID: "2.16.840.1.101.3.4.2.1", PIN: o.pw, OTP: "1"}
	for _, c := range []struct {
		name string
		edit func(a *Authorization)
		want string
	}{
		{"unknown hash algorithm", func(a *Authorization) { a.HashOID = "1.2.3" }, "invalid_request: Invalid parameter hashAlgorithmOID"},
		{"no hashes", func(a *Authorization) { a.Hashes = nil }, "invalid_request: Missing (or invalid type) array parameter hashes"},
		{"a short hash", func(a *Authorization) { a.Hashes = [][]byte{h[:20]} }, "invalid_request: Invalid digest value length (hash 0)"},
		{"a hash twice", func(a *Authorization) { a.Hashes, a.NumSignatures = [][]byte{h[:], h[:]}, 2 }, "invalid_request: Invalid parameter hashes: hash 1 is given twice"},
		{"too many", func(a *Authorization) { a.NumSignatures = 101 }, "invalid_request: Invalid value for parameter numSignatures (1 to 100)"},
		{"numSignatures is not the hashes' count", func(a *Authorization) { a.Hashes = [][]byte{h[:], h2[:]} },
			"invalid_request: Invalid value for parameter numSignatures: 1 signatures for 2 hashes"},
		{"no such credential", func(a *Authorization) { a.CredentialID = "ff" }, "invalid_request: Invalid parameter credentialID"},
		{"no PIN", func(a *Authorization) { a.PIN = "" }, "invalid_pin: The PIN is invalid"},
		{"a wrong OTP", func(a *Authorization) {}, "invalid_otp: The OTP is invalid"},
	} {
		a := ok
		c.edit(&a)
		if _, err := s.Authorize(ctx, o.sub, a); cscCode(err) != c.want {
			t.Errorf("%s: %s, want %s", c.name, cscCode(err), c.want)
		}
	}
}

// TestReplicasShareSADs: two services on one Redis, as two replicas. A SAD from one is redeemed
// on the other; of 16 redemptions of one hash across both, exactly one signs; a SHA-384
// authorization signs with ecdsa-with-SHA384 and verifies.
func TestReplicasShareSADs(t *testing.T) {
	rd := testenv.Redis(t)
	e := newEnv(t)
	ctx := context.Background()
	var reps []*Service
	for range 2 {
		kv, err := rediskv.Open(ctx, rd.URL, e.log)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { kv.Close() })
		reps = append(reps, e.replica(kv))
	}
	o := e.official(t, reps[0], "1100000001")
	h1, h2 := sha512.Sum384([]byte("one")), sha512.Sum384([]byte("two"))
	a, err := reps[0].Authorize(ctx, o.sub, Authorization{CredentialID: o.cred.ID, NumSignatures: 2, Hashes: [][]byte{h1[:], h2[:]},
		HashOID: "2.16.840.1.101.3.4.2.2", PIN: o.pw, OTP: e.code(t, o, 0)})
	if err != nil {
		t.Fatal(cscCode(err))
	}
	var signed atomic.Int32
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sigs, err := reps[i%2].SignHash(ctx, o.sub, SignRequest{CredentialID: o.cred.ID, SAD: a.SAD, Hashes: [][]byte{h1[:]}, SignAlgo: "1.2.840.10045.4.3.3"})
			if err == nil {
				signed.Add(1)
				if !ecdsa.VerifyASN1(o.cred.Cert.PublicKey.(*ecdsa.PublicKey), h1[:], sigs[0]) {
					t.Error("the signature does not verify")
				}
			}
		}()
	}
	wg.Wait()
	if signed.Load() != 1 {
		t.Fatalf("%d of 16 redemptions of one hash signed, want 1", signed.Load())
	}
	// SHA-384 hashes with a SHA-256 algorithm: refused.
	_, err = reps[1].SignHash(ctx, o.sub, SignRequest{CredentialID: o.cred.ID, SAD: a.SAD, Hashes: [][]byte{h2[:]}, SignAlgo: "1.2.840.10045.4.3.2"})
	if got := cscCode(err); got != "invalid_request: Invalid parameter hashAlgorithmOID: the SAD authorized 2.16.840.1.101.3.4.2.2" {
		t.Fatalf("a mismatched algorithm: %s", got)
	}
	if _, err := reps[1].SignHash(ctx, o.sub, SignRequest{CredentialID: o.cred.ID, SAD: a.SAD, Hashes: [][]byte{h2[:]}, SignAlgo: "1.2.840.10045.4.3.3"}); err != nil {
		t.Fatal(cscCode(err))
	}
	_, err = reps[0].SignHash(ctx, o.sub, SignRequest{CredentialID: o.cred.ID, SAD: a.SAD, Hashes: [][]byte{h2[:]}, SignAlgo: "1.2.840.10045.4.3.3"})
	if got := cscCode(err); got != "invalid_request: Invalid parameter SAD: it has been used for all its signatures" {
		t.Fatalf("a consumed SAD: %s", got)
	}
	// The log holds the authorization and two signatures of the key, each naming it.
	recs, err := e.db.AuditRecords(ctx, 1, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var auths, sigs int
	for _, r := range recs {
		switch {
		case r.Action == "csc.authorize" && r.Key == o.cred.KeyURI && r.Result == "ok":
			auths++
		case r.Action == "sign" && r.Key == o.cred.KeyURI && bytes.Contains(r.Detail, []byte("csc_authorization_seq")):
			sigs++
		}
	}
	if auths != 1 || sigs != 2 {
		t.Fatalf("audit: %d authorizations, %d signatures; want 1, 2", auths, sigs)
	}
}
