package rp

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/vula-eid/vula/internal/store/memstore"
)

type pageSession struct {
	Session
	Subject string `json:"sub"`
}

// guarded is a set of pages with one session made through Begin; answers records what Guard
// let through or refused.
type guarded struct {
	ss     *Sessions[pageSession, *pageSession]
	now    time.Time
	cookie *http.Cookie
	csrf   string
	seen   []string
}

func newGuarded(t *testing.T) *guarded {
	g := &guarded{now: time.Date(2026, 12, 6, 8, 0, 0, 0, time.UTC)}
	now := func() time.Time { return g.now }
	p := New(Config{Issuer: "http://op.test", ClientID: "c", Path: "/pages/", Name: "pages"}, memstore.New(now), slog.New(slog.DiscardHandler), now)
	g.ss = NewSessions[pageSession](p, SessionPages{
		Refuse: func(w http.ResponseWriter, r *http.Request, why Refusal) {
			g.seen = append(g.seen, "refused")
			w.WriteHeader(why.Status())
		},
		Unavailable: func(w http.ResponseWriter, r *http.Request, err error) {
			g.seen = append(g.seen, "unavailable")
			w.WriteHeader(http.StatusServiceUnavailable)
		},
		Multipart: "/pages/upload",
	})
	rec := httptest.NewRecorder()
	s := &pageSession{Subject: "alice"}
	if err := g.ss.Begin(context.Background(), rec, s, 30*time.Minute); err != nil {
		t.Fatal(err)
	}
	cookies := rec.Result().Cookies()
	if len(cookies) != 1 || cookies[0].Name != "vula_pages" || cookies[0].Value != s.ID || !cookies[0].HttpOnly || cookies[0].Path != "/pages/" {
		t.Fatalf("cookies %+v for session %q", cookies, s.ID)
	}
	if s.CSRF == "" || s.CSRF == s.ID || !s.Expires.Equal(g.now.Add(30*time.Minute)) {
		t.Fatalf("session %+v", s.Session)
	}
	g.cookie, g.csrf = cookies[0], s.CSRF
	return g
}

func (g *guarded) do(method, path, contentType, body string, withCookie bool) int {
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	if contentType != "" {
		r.Header.Set("Content-Type", contentType)
	}
	if withCookie {
		r.AddCookie(g.cookie)
	}
	w := httptest.NewRecorder()
	g.ss.Guard(func(w http.ResponseWriter, r *http.Request, s *pageSession) {
		g.seen = append(g.seen, s.Subject+"@"+s.ID)
		if s.ID != g.cookie.Value {
			g.seen = append(g.seen, "wrong id")
		}
	})(w, r)
	return w.Code
}

const form = "application/x-www-form-urlencoded"

func TestSessionsGuard(t *testing.T) {
	g := newGuarded(t)
	ok := "alice@" + g.cookie.Value
	tests := []struct {
		name             string
		method, path, ct string
		body             string
		cookie           bool
		status           int
		seen             string
	}{
		{"a page", "GET", "/pages/x", "", "", true, 200, ok},
		{"a page without the cookie goes home", "GET", "/pages/x", "", "", false, http.StatusSeeOther, ""},
		{"a form without the cookie", "POST", "/pages/x", form, "csrf=" + g.csrf, false, 401, "refused"},
		{"a form with the token", "POST", "/pages/x", form, "csrf=" + url.QueryEscape(g.csrf), true, 200, ok},
		{"a form without the token", "POST", "/pages/x", form, "a=b", true, 403, "refused"},
		{"a form with another token", "POST", "/pages/x", form, "csrf=" + url.QueryEscape(g.cookie.Value), true, 403, "refused"},
		{"a form that does not parse", "POST", "/pages/x", form, "csrf=%zz", true, 400, "refused"},
		{"a form too large", "POST", "/pages/x", form, "csrf=" + g.csrf + "&a=" + strings.Repeat("a", maxForm), true, 400, "refused"},
		{"not a form", "POST", "/pages/x", "application/json", "{}", true, 415, "refused"},
		{"multipart where the handler checks", "POST", "/pages/upload", "multipart/form-data; boundary=x", "", true, 200, ok},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g.seen = nil
			if got := g.do(tt.method, tt.path, tt.ct, tt.body, tt.cookie); got != tt.status {
				t.Errorf("status %d, want %d", got, tt.status)
			}
			if got := strings.Join(g.seen, ","); got != tt.seen {
				t.Errorf("seen %q, want %q", got, tt.seen)
			}
		})
	}
}

func TestSessionsExpire(t *testing.T) {
	g := newGuarded(t)
	g.now = g.now.Add(30*time.Minute - time.Second)
	if got := g.do("GET", "/pages/x", "", "", true); got != 200 {
		t.Fatalf("a second before the end: %d", got)
	}
	// The store may keep it a little longer; the session's own end counts.
	g.now = g.now.Add(time.Second)
	if got := g.do("GET", "/pages/x", "", "", true); got != http.StatusSeeOther {
		t.Fatalf("at the end: %d", got)
	}
}

func TestSessionsSaveKeepsIDOutOfTheStore(t *testing.T) {
	g := newGuarded(t)
	r := httptest.NewRequest("GET", "/pages/x", nil)
	r.AddCookie(g.cookie)
	s, err := g.ss.Load(r)
	if err != nil || s == nil {
		t.Fatal(s, err)
	}
	s.Subject = "bob"
	if err := g.ss.Save(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	raw, err := g.ss.rp.eph.Get(context.Background(), g.ss.rp.Key("session", g.cookie.Value))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), g.cookie.Value) || !strings.Contains(string(raw), `"sub":"bob"`) {
		t.Fatalf("stored %s", raw)
	}
}
