package idp

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/vula-eid/vula/internal/idp/idptest"
	"github.com/vula-eid/vula/internal/store"
)

// Password checks run at most the bound at once, however many logins arrive together; all of
// them finish when the wait allows it.
func TestPasswordChecksBounded(t *testing.T) {
	f := newFixture(t)
	f.citizen(t, false)
	const bound, logins = 2, 12
	f.accounts.LimitPasswordChecks(bound, time.Minute)
	var inFlight, most atomic.Int64
	hash, _ := HashPassword("correct horse battery")
	var wg sync.WaitGroup
	errs := make(chan error, logins)
	for range logins {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// The slot as Password takes it, with a real Argon2id check inside.
			_, err := f.accounts.hashes.check(context.Background(), func() bool {
				n := inFlight.Add(1)
				defer inFlight.Add(-1)
				for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
				}
				return checkPassword(hash, "correct horse battery")
			})
			errs <- err
			if _, err := f.accounts.Password(context.Background(), "1234567890", "correct horse battery", "192.0.2.9"); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if m := most.Load(); m > bound || m < 1 {
		t.Fatalf("%d checks ran at once; the bound is %d", m, bound)
	}
}

// A login that finds every slot taken past the wait is answered 503 with Retry-After, changes
// nothing (no failure counted), and the same login succeeds once a slot is free. A login whose
// client gives up while waiting is not checked.
func TestPasswordChecksBusy(t *testing.T) {
	f := newFixture(t)
	f.citizen(t, false)
	f.register(t, ClientSpec{ID: "tax", RedirectURIs: []string{rpCallback}, Scopes: []string{"openid"}})
	f.accounts.LimitPasswordChecks(1, 0)
	f.accounts.hashes.slots <- struct{}{} // every slot busy

	_, err := f.accounts.Password(context.Background(), "1234567890", "correct horse battery", "192.0.2.1")
	if !errors.Is(err, ErrBusy) || !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Password with no free slot: %v", err)
	}
	f.accounts.LimitPasswordChecks(1, time.Minute)
	f.accounts.hashes.slots <- struct{}{}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := f.accounts.Password(ctx, "1234567890", "correct horse battery", "192.0.2.1"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Password for a client that left: %v", err)
	}

	f.accounts.LimitPasswordChecks(1, 0)
	f.accounts.hashes.slots <- struct{}{}
	conf := oauth2.Config{ClientID: "tax", Endpoint: oauth2.Endpoint{AuthURL: f.srv.URL + "/oauth2/auth"}, RedirectURL: rpCallback,
		Scopes: []string{"openid"}}
	_, opts := newPKCE()
	b := idptest.New(t, f.srv.URL)
	page := b.Get(conf.AuthCodeURL("state-12345678", opts...))
	if page.Status != http.StatusOK {
		t.Fatalf("login page: %d %s", page.Status, page.Body)
	}
	page.Form.Set("identifier", "1234567890")
	page.Form.Set("password", "correct horse battery")
	r := b.Post("/login", page.Form)
	if r.Status != http.StatusServiceUnavailable || r.Header.Get("Retry-After") == "" {
		t.Fatalf("login with no free slot: %d, Retry-After %q", r.Status, r.Header.Get("Retry-After"))
	}
	if _, err := f.eph.Get(context.Background(), "idp:fail:"+throttleKey("1234567890")); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a refused login counted as a failure: %v", err)
	}
	<-f.accounts.hashes.slots // a slot frees
	if r := b.Post("/login", page.Form); r.Status != http.StatusSeeOther && r.Status != http.StatusOK {
		t.Fatalf("the same login with a free slot: %d %s", r.Status, r.Body)
	}
}
