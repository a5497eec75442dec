package idp

import (
	"context"
	"crypto/sha256"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
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
