package idp

import (
	"context"
	"crypto/sha256"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2/clientcredentials"
)

// A bearer token verified once is not verified again while its key is published and it has
// not expired; the cache never makes a token good that is not: a revoked token (the store
// says so at every use), a token whose signing key left the key set, an expired token and a
// token with one byte changed are refused even after the genuine token was cached.
func TestVerifiedTokens(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.p.keys.now = f.clock.Now
	secret := f.register(t, ClientSpec{ID: "batch", GrantTypes: []string{"client_credentials"}, Scopes: []string{"seal"}})
	tokenURL := f.srv.URL + "/oauth2/token"
	bearer := func(tok string) error {
		r := httptest.NewRequest("POST", "/api/v1/seal", nil)
		r.Header.Set("Authorization", "Bearer "+tok)
		_, err := f.p.Bearer(r, "seal")
		return err
	}
	cached := func() int {
		f.p.keys.verified.mu.Lock()
		defer f.p.keys.verified.mu.Unlock()
		return len(f.p.keys.verified.m)
	}

	tok, _ := ccToken(t, tokenURL, secret)
	for range 2 {
		if err := bearer(tok); err != nil {
			t.Fatalf("the genuine token: %v", err)
		}
	}
	if n := cached(); n != 1 {
		t.Fatalf("%d tokens cached, want 1", n)
	}

	// One byte of the payload changed: another hash, verified afresh, refused.
	parts := strings.Split(tok, ".")
	p := []byte(parts[1])
	p[len(p)/2] ^= 1
	if err := bearer(parts[0] + "." + string(p) + "." + parts[2]); err == nil {
		t.Fatal("a tampered token accepted")
	}

	// Revoked: the cached signature does not keep it alive.
	if code, _ := postForm(t, f.srv.URL+"/oauth2/revoke", map[string][]string{"token": {tok}}, "batch", secret); code != 200 {
		t.Fatalf("revocation: %d", code)
	}
	if err := bearer(tok); err == nil {
		t.Fatal("a revoked token accepted")
	}

	// Its key dropped from this replica's set (its grace over, or the key destroyed).
	tok2, h := ccToken(t, tokenURL, secret)
	if err := bearer(tok2); err != nil {
		t.Fatal(err)
	}
	set, err := f.p.keys.load(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	kid := h["kid"].(string)
	pub := set.byKID[kid]
	delete(set.byKID, kid)
	if _, err := f.p.keys.Decode(ctx, tok2); err == nil {
		t.Fatal("a token of a key no longer published was decoded")
	}
	set.byKID[kid] = pub

	// Expired: neither the cache nor the parser takes it.
	if _, err := f.p.keys.Decode(ctx, tok2); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(11 * time.Minute)
	if got := f.p.keys.verified.get(sha256.Sum256([]byte(tok2)), set, f.clock.Now()); got != nil {
		t.Fatal("an expired token served from the cache")
	}
}

// BenchmarkBearer is the check a sealing or signing call makes of its bearer token: the token
// verified before (cached) and, for comparison, verified afresh every time.
func BenchmarkBearer(b *testing.B) {
	f := newFixture(b)
	secret := f.register(b, ClientSpec{ID: "batch", GrantTypes: []string{"client_credentials"}, Scopes: []string{"seal"}})
	cc := clientcredentials.Config{ClientID: "batch", ClientSecret: secret, TokenURL: f.srv.URL + "/oauth2/token", Scopes: []string{"seal"}}
	tok, err := cc.Token(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	r := httptest.NewRequest("POST", "/api/v1/seal", nil)
	r.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	for _, fresh := range []bool{false, true} {
		b.Run(map[bool]string{false: "cached", true: "verified"}[fresh], func(b *testing.B) {
			for b.Loop() {
				if fresh {
					f.p.keys.verified.mu.Lock()
					clear(f.p.keys.verified.m)
					f.p.keys.verified.mu.Unlock()
				}
				if _, err := f.p.Bearer(r, "seal"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkClientCredentials is the token endpoint's own work for a client_credentials token
// (no network): client authentication, fosite, the signature with its audit hook, the
// session's write to the ephemeral store (memory here) and the response.
func BenchmarkClientCredentials(b *testing.B) {
	f := newFixture(b)
	secret := f.register(b, ClientSpec{ID: "batch", GrantTypes: []string{"client_credentials"}, Scopes: []string{"seal"}})
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {"seal"}}.Encode()
	b.ReportAllocs()
	for b.Loop() {
		r := httptest.NewRequest("POST", "/oauth2/token", strings.NewReader(form))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.SetBasicAuth("batch", secret)
		w := httptest.NewRecorder()
		f.p.token(w, r)
		if w.Code != 200 {
			b.Fatalf("%d %s", w.Code, w.Body)
		}
	}
}
