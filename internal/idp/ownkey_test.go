package idp

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vula-eid/vula/internal/store"
)

// keyLog is the real ephemeral store, noting the keys written to it.
type keyLog struct {
	store.Ephemeral
	mu   sync.Mutex
	keys []string
}

func (k *keyLog) Put(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	k.mu.Lock()
	k.keys = append(k.keys, key)
	k.mu.Unlock()
	return k.Ephemeral.Put(ctx, key, value, ttl)
}

func (k *keyLog) written() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]string(nil), k.keys...)
}

// A client_credentials token is stored under its own key only (no grant index: half of such a
// token's store work), and is still revoked: by its client at another replica, after which
// this replica finds it inactive at introspection and refuses it as a bearer token.
func TestClientCredentialsOwnKey(t *testing.T) {
	var log *keyLog
	f := newFixtureEph(t, Config{}, false, func(s store.Ephemeral) store.Ephemeral { log = &keyLog{Ephemeral: s}; return log })
	secret := f.register(t, ClientSpec{ID: "batch", GrantTypes: []string{"client_credentials"}, Scopes: []string{"seal"}})
	tok, _ := ccToken(t, f.srv.URL+"/oauth2/token", secret)
	if keys := log.written(); len(keys) != 1 || !strings.HasPrefix(keys[0], "idp:at:") {
		t.Fatalf("a client_credentials token wrote %q, want its own session only", keys)
	}
	bearer := func() error {
		r := httptest.NewRequest("POST", "/api/v1/seal", nil)
		r.Header.Set("Authorization", "Bearer "+tok)
		_, err := f.p.Bearer(r, "seal")
		return err
	}
	if err := bearer(); err != nil {
		t.Fatalf("the fresh token: %v", err)
	}

	other, err := New(context.Background(), Config{Issuer: f.srv.URL, Secrets: testSealer()}, f.keys, f.db, f.eph, quiet, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	other.Register(mux)
	otherSrv := httptest.NewServer(mux)
	defer otherSrv.Close()
	if code, body := postForm(t, otherSrv.URL+"/oauth2/revoke", url.Values{"token": {tok}, "token_type_hint": {"access_token"}}, "batch", secret); code != 200 {
		t.Fatalf("revocation at the other replica: %d %v", code, body)
	}
	if code, body := postForm(t, f.srv.URL+"/oauth2/introspect", url.Values{"token": {tok}}, "batch", secret); code != 200 || body["active"] != false {
		t.Fatalf("introspection after revocation: %d %v", code, body)
	}
	if err := bearer(); !errors.Is(err, ErrTokenInvalid) {
		t.Fatalf("the revoked token as a bearer: %v", err)
	}
}
