package portal

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"sync/atomic"
	"testing"

	"github.com/vula-eid/vula/internal/signing/signingtest"
	"github.com/vula-eid/vula/internal/store"
)

// deletesFail is a store whose deletes fail while broken is set: a store that fails just the
// deletes of a logout, after the reads that let it in, cannot be had from a real one.
type deletesFail struct {
	store.Ephemeral
	broken *atomic.Bool
}

func (s deletesFail) Delete(ctx context.Context, key string) error {
	if s.broken.Load() {
		return errors.New("store down")
	}
	return s.Ephemeral.Delete(ctx, key)
}

// TestLogoutStoreFails: when the session or its documents cannot be deleted, the logout
// answers 503 instead of "logged out" (it used to ignore the errors) and the session and its
// document are still there; once the store is back, the logout deletes them.
func TestLogoutStoreFails(t *testing.T) {
	e := newReloginEnv(t)
	b := e.browser()
	csrf := b.loginAndUpload(map[string][]byte{"a.pdf": signingtest.PDF("a")})
	keys := sessionKeys(t, b)
	logout := func() int {
		t.Helper()
		resp, err := b.c.PostForm(e.srv.URL+"/portal/logout", url.Values{"csrf": {csrf}})
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	e.broken.Store(true)
	if status := logout(); status != http.StatusServiceUnavailable {
		t.Fatalf("logout with the store failing: %d, want 503", status)
	}
	e.broken.Store(false)
	for _, k := range keys {
		if _, err := e.eph.Get(context.Background(), k); err != nil {
			t.Fatalf("%s after the failed logout: %v", k, err)
		}
	}
	if status := logout(); status != http.StatusOK {
		t.Fatalf("logout: %d", status)
	}
	for _, k := range keys {
		if _, err := e.eph.Get(context.Background(), k); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s after the logout: %v", k, err)
		}
	}
}
