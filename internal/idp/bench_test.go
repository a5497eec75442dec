package idp

import (
	"context"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/oauth2/clientcredentials"
)

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
