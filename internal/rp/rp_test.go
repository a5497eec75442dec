package rp

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vula-eid/vula/internal/store"
	"github.com/vula-eid/vula/internal/store/memstore"
)

// writes is an ephemeral store that counts the entries written to it.
type writes struct {
	store.Ephemeral
	mu   sync.Mutex
	keys map[string]bool
}

func (s *writes) note(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys[key] = true
}

func (s *writes) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.keys)
}

func (s *writes) Put(ctx context.Context, key string, v []byte, ttl time.Duration) error {
	s.note(key)
	return s.Ephemeral.Put(ctx, key, v, ttl)
}

func (s *writes) PutIfAbsent(ctx context.Context, key string, v []byte, ttl time.Duration) error {
	s.note(key)
	return s.Ephemeral.PutIfAbsent(ctx, key, v, ttl)
}

func (s *writes) CompareAndSwap(ctx context.Context, key string, old, v []byte, ttl time.Duration) error {
	s.note(key)
	return s.Ephemeral.CompareAndSwap(ctx, key, old, v, ttl)
}

func (s *writes) Incr(ctx context.Context, key string, window time.Duration) (int64, error) {
	s.note(key)
	return s.Ephemeral.Incr(ctx, key, window)
}

func (s *writes) SeenOnce(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	s.note(key)
	return s.Ephemeral.SeenOnce(ctx, key, ttl)
}

// clock is the RP's fake time; the tests move it from one goroutine only.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

func newRP(t testing.TB, secure bool) (*RP, *writes, *clock) {
	c := &clock{t: time.Now()}
	mem := memstore.New(time.Now)
	t.Cleanup(func() { mem.Close() })
	st := &writes{Ephemeral: mem, keys: map[string]bool{}}
	p := New(Config{Issuer: "https://vula.test", ClientID: "portal", Path: "/portal/", Name: "portal", ACR: "high", Secure: secure},
		st, slog.New(slog.NewTextHandler(io.Discard, nil)), c.now)
	return p, st, c
}

// start runs Start for a browser holding jar's cookies (nil: a client that keeps none) and
// returns the state sent to the provider.
func start(t *testing.T, p *RP, jar map[string]*http.Cookie) (string, *httptest.ResponseRecorder) {
	t.Helper()
	r := httptest.NewRequest("GET", "https://vula.test/portal/login", nil)
	for _, c := range jar {
		r.AddCookie(c)
	}
	w := httptest.NewRecorder()
	p.Start(w, r, Options{Resume: "portal:session:abc"})
	if w.Code != http.StatusSeeOther {
		t.Fatalf("start: %d", w.Code)
	}
	u, err := url.Parse(w.Header().Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range w.Result().Cookies() {
		if jar == nil {
			continue
		}
		if c.MaxAge < 0 {
			delete(jar, c.Name)
		} else {
			jar[c.Name] = c
		}
	}
	return u.Query().Get("state"), w
}

// Thousands of anonymous logins started leave nothing in the store: each is in its own
// browser's cookie. Before, each one parked an entry for 10 minutes.
func TestStartKeepsNothingServerSide(t *testing.T) {
	p, st, _ := newRP(t, true)
	for range 5000 {
		_, w := start(t, p, nil)
		cs := w.Result().Cookies()
		if len(cs) != 1 {
			t.Fatalf("%d cookies, want the login's only", len(cs))
		}
		c := cs[0]
		if !strings.HasPrefix(c.Name, "__Host-vula_portal_login_") || !c.Secure || !c.HttpOnly || c.Path != "/" ||
			c.Domain != "" || c.SameSite != http.SameSiteLaxMode || c.MaxAge != 600 || len(c.Value) > 512 {
			t.Fatalf("login cookie %+v", c)
		}
	}
	if n := st.count(); n != 0 {
		t.Fatalf("%d store entries after 5000 logins started, want none", n)
	}
}

// One browser holds at most maxPending logins in progress (its tabs): the oldest go first, and
// the newest still finish.
func TestStartBoundsOneBrowser(t *testing.T) {
	p, _, c := newRP(t, false)
	jar := map[string]*http.Cookie{}
	var states []string
	for range 50 {
		s, _ := start(t, p, jar)
		states = append(states, s)
		c.advance(time.Second)
		if len(jar) > maxPending {
			t.Fatalf("%d login cookies, want at most %d", len(jar), maxPending)
		}
	}
	for _, n := range []string{"vula_portal_login_" + states[49][:16], "vula_portal_login_" + states[46][:16]} {
		if jar[n] == nil {
			t.Fatalf("the newest logins' cookies are gone: %v", jar)
		}
	}
	// Two tabs: each finishes its own login (the provider refused here, after the state checked).
	for _, s := range []string{states[48], states[47]} {
		if _, err := finish(p, jar, url.Values{"state": {s}, "error": {"access_denied"}}); !errors.Is(err, ErrRefused) {
			t.Fatalf("tab's login: %v, want ErrRefused (state accepted)", err)
		}
	}
	if _, err := finish(p, jar, url.Values{"state": {states[0]}, "error": {"access_denied"}}); !errors.Is(err, ErrState) {
		t.Fatalf("dropped login: %v, want ErrState", err)
	}
}

func finish(p *RP, jar map[string]*http.Cookie, q url.Values) (*httptest.ResponseRecorder, error) {
	r := httptest.NewRequest("GET", "https://vula.test/portal/callback?"+q.Encode(), nil)
	for _, c := range jar {
		r.AddCookie(c)
	}
	w := httptest.NewRecorder()
	_, err := p.Finish(w, r)
	for _, c := range w.Result().Cookies() {
		if c.MaxAge < 0 {
			delete(jar, c.Name)
		}
	}
	return w, err
}

// Finish accepts only the login this browser started here, unexpired, once.
func TestFinishState(t *testing.T) {
	p, st, c := newRP(t, true)
	other, _, _ := newRP(t, true) // another key
	refused := func(s string) url.Values { return url.Values{"state": {s}, "error": {"access_denied"}} }

	jar := map[string]*http.Cookie{}
	s, _ := start(t, p, jar)
	name := "__Host-vula_portal_login_" + s[:16]
	sealed := jar[name]

	tamper := *sealed
	b := []byte(tamper.Value)
	if b[len(b)/2] == 'A' {
		b[len(b)/2] = 'B'
	} else {
		b[len(b)/2] = 'A'
	}
	tamper.Value = string(b)

	// The same sealed login under another state's cookie name does not open.
	s2, _ := start(t, p, map[string]*http.Cookie{})
	moved := *sealed
	moved.Name = "__Host-vula_portal_login_" + s2[:16]

	otherJar := map[string]*http.Cookie{}
	s3, _ := start(t, other, otherJar)

	cases := []struct {
		name string
		jar  map[string]*http.Cookie
		q    url.Values
	}{
		{"no state", jar, url.Values{"error": {"access_denied"}}},
		{"short state", jar, refused("abc")},
		{"no cookie", map[string]*http.Cookie{}, refused(s)},
		{"tampered", map[string]*http.Cookie{name: &tamper}, refused(s)},
		{"moved to another state", map[string]*http.Cookie{moved.Name: &moved}, refused(s2)},
		{"sealed by another key", otherJar, refused(s3)},
		{"same prefix, other state", jar, refused(s[:16] + "x")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := finish(p, maps.Clone(tc.jar), tc.q); !errors.Is(err, ErrState) {
				t.Fatalf("%v, want ErrState", err)
			}
		})
	}

	if _, err := finish(p, jar, refused(s)); !errors.Is(err, ErrRefused) {
		t.Fatalf("own login: %v, want ErrRefused after the state checked", err)
	}
	if len(jar) != 0 {
		t.Fatalf("the callback left the login's cookie: %v", jar)
	}
	if _, err := finish(p, jar, refused(s)); !errors.Is(err, ErrState) {
		t.Fatalf("second callback: %v, want ErrState", err)
	}

	jar = map[string]*http.Cookie{}
	s, _ = start(t, p, jar)
	c.advance(loginTTL)
	if _, err := finish(p, jar, refused(s)); !errors.Is(err, ErrState) {
		t.Fatalf("expired login: %v, want ErrState", err)
	}
	if n := st.count(); n != 0 {
		t.Fatalf("%d store entries, want none", n)
	}
}

// FuzzLoginCookie: whatever a browser sends as a login cookie, open neither panics nor accepts
// anything but what this RP sealed under that cookie's name.
func FuzzLoginCookie(f *testing.F) {
	p, _, _ := newRP(f, true)
	name := p.loginCookie("0123456789abcdefXYZ")
	sealed := p.seal(name, loginState{State: "0123456789abcdefXYZ", Verifier: "v", Nonce: "n", Expires: time.Now().Add(time.Hour).Unix()})
	f.Add(name, sealed)
	f.Add(name, sealed[:len(sealed)-1])
	f.Add(name+"x", sealed)
	f.Add(name, "")
	f.Add(name, "%%%")
	f.Fuzz(func(t *testing.T, n, v string) {
		st, ok := p.open(&http.Cookie{Name: n, Value: v})
		if ok && (n != name || v != sealed || st.State != "0123456789abcdefXYZ") {
			t.Fatalf("opened %q=%q as %+v", n, v, st)
		}
	})
}
