package idp

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/url"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/argon2"
	"golang.org/x/oauth2"

	"github.com/vula-eid/vula/internal/idp/idptest"
	"github.com/vula-eid/vula/internal/store"
)

// TestCodeFlowRoundTrips holds a complete code flow (authorization request, login
// page, password, consent remembered, code exchange) to its count of ephemeral-store operations,
// each a round trip to Redis on a deployment with replicas: 30 before the authorization
// endpoint, the login and the consent wrote and took their entries together, 27 since, 28 with
// the count of logins started from the client's address (idp.login_flows_per_minute).
func TestCodeFlowRoundTrips(t *testing.T) {
	flow, ops := codeFlowRig(t, false)
	flow(t, true) // consent asked and remembered
	ops.n.Store(0)
	flow(t, false)
	if n := ops.n.Load(); n > 28 {
		t.Errorf("a code flow made %d ephemeral-store operations, want at most 28", n)
	}
}

// BenchmarkCodeFlowMachinery is a complete code flow (the authorization endpoint, the login
// page, a password login, consent remembered, the code exchange) in process over loopback,
// with the person's password hashed at Argon2id's smallest cost: what is measured is the
// protocol machinery around the hash (issue #22: it should cost a few milliseconds), with the
// browser and the relying party in the same process (cpu-µs/op is all three). eph-ops/flow
// counts the ephemeral store's operations of a flow.
func BenchmarkCodeFlowMachinery(b *testing.B) {
	flow, ops := codeFlowRig(b, true)
	flow(b, true)
	ops.n.Store(0)
	b.ReportAllocs()
	before := processCPU()
	for b.Loop() {
		flow(b, false)
	}
	b.ReportMetric(float64((processCPU()-before).Microseconds())/float64(b.N), "cpu-µs/op")
	b.ReportMetric(float64(ops.n.Load())/float64(b.N), "eph-ops/flow")
}

// codeFlowRig sets up a provider with client tax and a person, and returns a complete code flow
// (asking consent and remembering it when first) and the ephemeral store's operation count.
// cheap stores the person's password at Argon2id's smallest cost.
func codeFlowRig(tb testing.TB, cheap bool) (func(tb testing.TB, first bool), *countingEph) {
	ops := &countingEph{}
	// Every flow comes from one address: past the default bound of logins started a minute.
	f := newFixtureEph(tb, Config{FlowsPerMinute: 1 << 20}, false, func(e store.Ephemeral) store.Ephemeral { ops.Ephemeral = e; return ops })
	ctx := context.Background()
	secret := f.register(tb, ClientSpec{ID: "tax", Name: "Tax Administration", RedirectURIs: []string{rpCallback},
		Scopes: []string{"openid", "profile"}})
	p, err := f.accounts.CreatePerson(ctx, store.Person{PersonalNumber: "1234567890", GivenName: "Arta",
		FamilyName: "Krasniqi", BirthDate: "1990-04-12"}, "correct horse battery")
	if err != nil {
		tb.Fatal(err)
	}
	if cheap {
		if err := f.db.UpdateCredential(ctx, p.SubjectID, func(c store.Credential) (store.Credential, error) {
			c.PasswordHash = cheapHash("correct horse battery")
			return c, nil
		}); err != nil {
			tb.Fatal(err)
		}
	}
	conf := oauth2.Config{ClientID: "tax", ClientSecret: secret, RedirectURL: rpCallback, Scopes: []string{"openid", "profile"},
		Endpoint: oauth2.Endpoint{AuthURL: f.srv.URL + "/oauth2/auth", TokenURL: f.srv.URL + "/oauth2/token"}}
	return func(tb testing.TB, first bool) {
		verifier, opts := newPKCE()
		authURL := conf.AuthCodeURL("state-12345678", opts...)
		br := idptest.New(tb, f.srv.URL)
		var cb *url.URL
		if first {
			cb = br.Login(authURL, rpCallback, "1234567890", "correct horse battery", "")
		} else {
			cb = loginRemembered(tb, br, authURL)
		}
		if _, err := conf.Exchange(ctx, cb.Query().Get("code"), oauth2.VerifierOption(verifier)); err != nil {
			tb.Fatalf("code exchange: %v", err)
		}
	}, ops
}

// loginRemembered goes from an authorization URL through the login page and a password login
// straight back to the relying party (consent remembered), and returns that redirect.
func loginRemembered(tb testing.TB, br *idptest.Browser, authURL string) *url.URL {
	r := br.Get(authURL)
	if r.Status != 200 {
		tb.Fatalf("login page: %d %s", r.Status, r.URL)
	}
	r.Form.Set("identifier", "1234567890")
	r.Form.Set("password", "correct horse battery")
	r = br.Post("/login", r.Form)
	if !strings.HasPrefix(r.URL.String(), rpCallback) {
		tb.Fatalf("after login: %d %s", r.Status, r.URL)
	}
	return r.URL
}

// processCPU is this process's CPU time (user and system): the provider's, the browser's and
// the relying party's together.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cheapHash is a PHC string of pw at Argon2id's smallest cost (8 KiB, one pass), which
// checkPassword accepts like any other.
func cheapHash(pw string) string {
	salt := []byte("0123456789abcdef")
	key := argon2.IDKey([]byte(pw), salt, 1, 8, 1, 32)
	return fmt.Sprintf("$argon2id$v=%d$m=8,t=1,p=1$%s$%s", argon2.Version,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key))
}

// countingEph counts the operations on an ephemeral store.
type countingEph struct {
	store.Ephemeral
	n atomic.Int64
}

var _ store.Batcher = (*countingEph)(nil)

func (c *countingEph) Put(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	c.n.Add(1)
	return c.Ephemeral.Put(ctx, key, value, ttl)
}

func (c *countingEph) PutAll(ctx context.Context, entries ...store.Entry) error {
	c.n.Add(1)
	return store.PutAll(ctx, c.Ephemeral, entries...)
}

func (c *countingEph) PutIfAbsent(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	c.n.Add(1)
	return c.Ephemeral.PutIfAbsent(ctx, key, value, ttl)
}

func (c *countingEph) Get(ctx context.Context, key string) ([]byte, error) {
	c.n.Add(1)
	return c.Ephemeral.Get(ctx, key)
}

func (c *countingEph) Delete(ctx context.Context, key string) error {
	c.n.Add(1)
	return c.Ephemeral.Delete(ctx, key)
}

func (c *countingEph) Take(ctx context.Context, key string) ([]byte, error) {
	c.n.Add(1)
	return c.Ephemeral.Take(ctx, key)
}

func (c *countingEph) CompareAndSwap(ctx context.Context, key string, old, new []byte, ttl time.Duration) error {
	c.n.Add(1)
	return c.Ephemeral.CompareAndSwap(ctx, key, old, new, ttl)
}

func (c *countingEph) Incr(ctx context.Context, key string, window time.Duration) (int64, error) {
	c.n.Add(1)
	return c.Ephemeral.Incr(ctx, key, window)
}

func (c *countingEph) SeenOnce(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	c.n.Add(1)
	return c.Ephemeral.SeenOnce(ctx, key, ttl)
}

// TestLoginFlowsBounded: one address may start only FlowsPerMinute logins a minute; past that
// the authorization endpoint answers 429 with Retry-After and stores nothing, so an anonymous
// client cannot grow the ephemeral store at will.
func TestLoginFlowsBounded(t *testing.T) {
	ops := &countingEph{}
	f := newFixtureEph(t, Config{FlowsPerMinute: 3}, false, func(e store.Ephemeral) store.Ephemeral { ops.Ephemeral = e; return ops })
	f.register(t, ClientSpec{ID: "tax", Name: "Tax Administration", RedirectURIs: []string{rpCallback}, Scopes: []string{"openid"}})
	q := url.Values{"client_id": {"tax"}, "response_type": {"code"}, "redirect_uri": {rpCallback}, "scope": {"openid"},
		"state": {"state-12345678"}, "code_challenge": {oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier())},
		"code_challenge_method": {"S256"}}
	for i := range 3 {
		if r := idptest.New(t, f.srv.URL).Get(f.srv.URL + "/oauth2/auth?" + q.Encode()); r.Status != 200 || r.Form.Get("flow") == "" {
			t.Fatalf("login %d: %d", i+1, r.Status)
		}
	}
	ops.n.Store(0)
	r := idptest.New(t, f.srv.URL).Get(f.srv.URL + "/oauth2/auth?" + q.Encode())
	if r.Status != 429 || r.Header.Get("Retry-After") == "" {
		t.Fatalf("the fourth login of the minute: %d %v", r.Status, r.Header)
	}
	if n := ops.n.Load(); n != 1 { // the count's increment, and no flow stored
		t.Fatalf("a refused login made %d ephemeral-store operations, want the count's 1", n)
	}
}
