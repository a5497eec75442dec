package portal

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vula-eid/vula/internal/store"
	"github.com/vula-eid/vula/internal/store/memstore"
	"github.com/vula-eid/vula/internal/web"
)

// puts counts the entries written to a store.
type puts struct {
	store.Ephemeral
	n *atomic.Int64
}

func (s puts) Put(ctx context.Context, key string, v []byte, ttl time.Duration) error {
	s.n.Add(1)
	return s.Ephemeral.Put(ctx, key, v, ttl)
}

// TestAnonymousLoginsKeepNothing: logins started by clients that never come back cost the
// store nothing (each used to park a state for 10 minutes); the login is in the browser's
// cookie. That a real login then finishes is TestReloginKeepsDocuments and TestBrowserPortal.
func TestAnonymousLoginsKeepNothing(t *testing.T) {
	mem := memstore.New(time.Now)
	t.Cleanup(func() { mem.Close() })
	var n atomic.Int64
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	rw, err := web.New(log, true)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	New(Config{Issuer: "https://vula.test", Secure: true}, rw, puts{mem, &n}, nil, nil, nil, log, time.Now).Register(mux)
	for range 3000 {
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, httptest.NewRequest("GET", "https://vula.test/portal/login", nil))
		if w.Code != http.StatusSeeOther || len(w.Result().Cookies()) != 1 {
			t.Fatalf("login: %d %v", w.Code, w.Result().Cookies())
		}
	}
	if got := n.Load(); got != 0 {
		t.Fatalf("%d store entries after 3000 anonymous logins, want none", got)
	}
}
