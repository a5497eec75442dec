package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vula-eid/vula/hsm"
	"github.com/vula-eid/vula/internal/problem"
	"github.com/vula-eid/vula/internal/store"
)

func newTest(t *testing.T) (*Server, *bytes.Buffer, *httptest.Server) {
	return newTestWith(t, Options{})
}

func newTestWith(t *testing.T, opts Options) (*Server, *bytes.Buffer, *httptest.Server) {
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	s := New(log, prometheus.NewRegistry(), time.Now, opts)
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	return s, &logs, ts
}

func get(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return resp, b.String()
}

func TestReadiness(t *testing.T) {
	s, _, ts := newTest(t)
	if resp, body := get(t, ts.URL+"/healthz"); resp.StatusCode != 200 || body != "ok\n" {
		t.Fatalf("healthz: %d %q", resp.StatusCode, body)
	}
	s.AddCheck("keys", CheckFunc(func(context.Context) error { return nil }))
	if resp, _ := get(t, ts.URL+"/readyz"); resp.StatusCode != 200 {
		t.Fatalf("readyz with all up: %d", resp.StatusCode)
	}
	s.AddCheck("durable", CheckFunc(func(context.Context) error {
		return fmt.Errorf("%w: connection refused", store.ErrUnavailable)
	}))
	resp, body := get(t, ts.URL+"/readyz")
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("readyz with a store down: %d", resp.StatusCode)
	}
	var r Readiness
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatal(err)
	}
	if r.Status != "not ready" || !r.Components["keys"].OK || r.Components["durable"].OK ||
		!strings.Contains(r.Components["durable"].Error, "connection refused") {
		t.Fatalf("readiness report: %+v", r)
	}
}

// logLine is the request log line of path.
func logLine(logs *bytes.Buffer, path string) map[string]any {
	for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var line map[string]any
		json.Unmarshal([]byte(l), &line)
		if line["msg"] == "request" && line["path"] == path {
			return line
		}
	}
	return nil
}

func echoID(s *Server) {
	s.Handle("GET /echo-id", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(RequestID(r.Context()) + " " + r.RemoteAddr))
	}))
}

func getWith(t *testing.T, url string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return resp, b.String()
}

// TestDrain: once draining, /readyz answers 503 while everything else is still served.
func TestDrain(t *testing.T) {
	s, _, ts := newTest(t)
	s.Drain()
	resp, body := get(t, ts.URL+"/readyz")
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, `"draining"`) {
		t.Fatalf("readyz while draining: %d %s", resp.StatusCode, body)
	}
	if resp, _ := get(t, ts.URL+"/healthz"); resp.StatusCode != 200 {
		t.Fatalf("healthz while draining: %d", resp.StatusCode)
	}
}

// TestRequestLogAndID: the id is made by the edge; a client's X-Request-ID is not taken (two
// clients could otherwise write the same id into the audit log) but logged apart; the log line
// has the request's fields.
func TestRequestLogAndID(t *testing.T) {
	s, logs, ts := newTest(t)
	echoID(s)
	resp, body := getWith(t, ts.URL+"/echo-id", map[string]string{"X-Request-ID": "abc-123", "X-Forwarded-For": "203.0.113.9"})
	id := resp.Header.Get("X-Request-ID")
	if len(id) != 24 || id == "abc-123" || !strings.HasPrefix(body, id+" 127.0.0.1:") {
		t.Fatalf("a client's request id or forwarded address was taken: header %q body %q", id, body)
	}
	line := logLine(logs, "/echo-id")
	if line["method"] != "GET" || line["status"] != float64(200) || line["request_id"] != id ||
		line["client_request_id"] != "abc-123" || line["duration"] == nil || line["peer"] != nil {
		t.Fatalf("log line: %v", line)
	}
	if resp, _ := get(t, ts.URL+"/healthz"); len(resp.Header.Get("X-Request-ID")) != 24 {
		t.Fatalf("generated request id %q", resp.Header.Get("X-Request-ID"))
	}
}

// TestRequestLogHidesWildcards: a route with wildcards is logged by its pattern, so that a
// bearer reference in the path (a credential offer's id) or a person's id never reaches the log.
func TestRequestLogHidesWildcards(t *testing.T) {
	s, logs, ts := newTest(t)
	s.Handle("GET /offer/{id}", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	if resp, _ := get(t, ts.URL+"/offer/s3cret-offer-id"); resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if strings.Contains(logs.String(), "s3cret-offer-id") {
		t.Fatalf("the wildcard's value was logged: %s", logs)
	}
	if line := logLine(logs, "/offer/{id}"); line == nil || line["status"] != float64(200) {
		t.Fatalf("no log line under the pattern: %s", logs)
	}
	get(t, ts.URL+"/healthz")
	if logLine(logs, "/healthz") == nil {
		t.Fatalf("a plain route is logged by its path: %s", logs)
	}
}

// TestTrustedProxy: from a configured proxy, the request id and the client's address
// (X-Forwarded-For, right-most untrusted hop) are taken; a malformed id is replaced.
func TestTrustedProxy(t *testing.T) {
	s, logs, ts := newTestWith(t, Options{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	echoID(s)
	resp, body := getWith(t, ts.URL+"/echo-id", map[string]string{"X-Request-ID": "lb-42",
		"X-Forwarded-For": "198.51.100.7, 203.0.113.9, 127.0.0.5"})
	if resp.Header.Get("X-Request-ID") != "lb-42" || body != "lb-42 203.0.113.9:0" {
		t.Fatalf("through a trusted proxy: header %q body %q", resp.Header.Get("X-Request-ID"), body)
	}
	if line := logLine(logs, "/echo-id"); line["remote"] != "203.0.113.9:0" || !strings.HasPrefix(line["peer"].(string), "127.0.0.1:") {
		t.Fatalf("log line: %v", line)
	}
	resp, _ = getWith(t, ts.URL+"/echo-id", map[string]string{"X-Request-ID": "has space"})
	if id := resp.Header.Get("X-Request-ID"); len(id) != 24 {
		t.Fatalf("a malformed id from a proxy was kept: %q", id)
	}
}

// TestSecurityHeaders: nosniff and a referrer policy on every answer, no-store unless the
// handler chose its caching, HSTS only when configured.
func TestSecurityHeaders(t *testing.T) {
	for _, hsts := range []bool{false, true} {
		s, _, ts := newTestWith(t, Options{HSTS: hsts})
		s.Handle("GET /cached", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "public, max-age=60")
			w.Write([]byte("x"))
		}))
		s.Handle("GET /silent", http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
		for path, cache := range map[string]string{"/healthz": "no-store", "/silent": "no-store", "/nothing": "no-store",
			"/cached": "public, max-age=60"} {
			resp, _ := get(t, ts.URL+path)
			h := resp.Header
			if h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Referrer-Policy") != "no-referrer" || h.Get("Cache-Control") != cache {
				t.Errorf("%s: %v", path, h)
			}
			if got := h.Get("Strict-Transport-Security"); (got != "") != hsts {
				t.Errorf("%s with HSTS %v: %q", path, hsts, got)
			}
		}
	}
}

// TestPerClient: a client at its bound gets 429 with Retry-After while another client is
// served; when its requests end it is served again.
func TestPerClient(t *testing.T) {
	s, _, ts := newTestWith(t, Options{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	hold := make(chan struct{})
	entered := make(chan struct{}, 4)
	s.Handle("GET /slow", NewPerClient(2).Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-hold
	})))
	as := func(ip string) (*http.Response, string) {
		return getWith(t, ts.URL+"/slow", map[string]string{"X-Forwarded-For": ip})
	}
	done := make(chan int, 2)
	for range 2 {
		go func() { resp, _ := as("203.0.113.1"); done <- resp.StatusCode }()
		<-entered
	}
	resp, _ := as("203.0.113.1")
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" || !resp.Close {
		t.Fatalf("a third request of a busy client: %d %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	other := make(chan int)
	go func() { resp, _ := as("2001:db8::1"); other <- resp.StatusCode }()
	<-entered // served while the first client holds its two
	close(hold)
	if code := <-other; code != 200 {
		t.Fatalf("another client: %d", code)
	}
	for range 2 {
		if code := <-done; code != 200 {
			t.Fatalf("a held request: %d", code)
		}
	}
	if resp, _ := as("203.0.113.1"); resp.StatusCode != 200 {
		t.Fatalf("after the client's requests ended: %d", resp.StatusCode)
	}
}

func TestPanicRecovery(t *testing.T) {
	s, logs, ts := newTest(t)
	s.Handle("GET /boom", http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("secret-internal-state") }))
	resp, body := get(t, ts.URL+"/boom")
	if resp.StatusCode != 500 || strings.Contains(body, "secret-internal-state") {
		t.Fatalf("panic answer: %d %q", resp.StatusCode, body)
	}
	if !strings.Contains(logs.String(), "panic in handler") {
		t.Fatal("panic not logged")
	}
	if resp, _ := get(t, ts.URL+"/healthz"); resp.StatusCode != 200 {
		t.Fatal("server died after a panic")
	}
}

func TestWriteError(t *testing.T) {
	sentinel := problem.New(problem.TooLarge, "thing: too large")
	for _, tc := range []struct {
		err        error
		code       int
		typ        problem.Type
		showDetail bool
	}{
		{fmt.Errorf("%w: key x", hsm.ErrNotFound), 404, problem.NotFound, true},
		{fmt.Errorf("%w: person", store.ErrNotFound), 404, problem.NotFound, true},
		{fmt.Errorf("%w: label", hsm.ErrInvalid), 400, problem.InvalidRequest, true},
		{fmt.Errorf("%w: tsa", hsm.ErrWrongPurpose), 403, problem.Forbidden, true},
		{fmt.Errorf("%w: serial", store.ErrConflict), 409, problem.Conflict, true},
		{fmt.Errorf("%w: db down at 10.0.0.5", store.ErrUnavailable), 503, problem.Unavailable, false},
		{errors.New("pq: relation users does not exist"), 500, problem.Internal, false},
		// A domain's sentinel carries its type, wrapped or not; a marked type outranks the
		// key layer's and the stores' sentinels, and the outermost mark wins.
		{fmt.Errorf("%w: 70 MB", sentinel), 413, problem.TooLarge, true},
		{fmt.Errorf("%w: %w", sentinel, store.ErrNotFound), 413, problem.TooLarge, true},
		{problem.Mark(problem.Unavailable, fmt.Errorf("%w: x", sentinel)), 503, problem.Unavailable, false},
		{problem.Errorf(problem.TooManyRequests, "busy"), 429, problem.TooManyRequests, true},
	} {
		rec := httptest.NewRecorder()
		r := httptest.NewRequest("GET", "/x", nil)
		WriteError(rec, r, tc.err)
		var p Problem
		json.Unmarshal(rec.Body.Bytes(), &p)
		if rec.Code != tc.code || p.Status != tc.code || rec.Header().Get("Content-Type") != "application/problem+json" {
			t.Errorf("%v: %d %+v %s", tc.err, rec.Code, p, rec.Header().Get("Content-Type"))
		}
		if p.Type != tc.typ.URI() || p.Title != tc.typ.Title || !strings.HasPrefix(p.Type, "https://") {
			t.Errorf("%v: type %q title %q, want %q", tc.err, p.Type, p.Title, tc.typ.URI())
		}
		if (p.Detail != "") != tc.showDetail {
			t.Errorf("%v: detail %q", tc.err, p.Detail)
		}
		if Status(tc.err) != tc.code {
			t.Errorf("%v: Status %d", tc.err, Status(tc.err))
		}
	}
	if !errors.Is(fmt.Errorf("%w: x", sentinel), sentinel) {
		t.Error("a problem sentinel is not found by errors.Is")
	}
}

// TestRouteLabel: the request metrics name the pattern of the innermost mux that served the
// request, so that services mounted behind one catch-all (the platform's routes, registered
// once they exist) are told apart; what no pattern matched is "unmatched".
func TestRouteLabel(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := New(slog.New(slog.DiscardHandler), reg, time.Now, Options{})
	inner := http.NewServeMux()
	inner.HandleFunc("GET /things/{id}", func(w http.ResponseWriter, r *http.Request) {})
	s.Handle("/", inner)
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	get(t, ts.URL+"/things/1")
	get(t, ts.URL+"/things/2")
	get(t, ts.URL+"/nothing")
	got := map[string]float64{}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "vula_http_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "route" {
					got[l.GetValue()] += m.GetCounter().GetValue()
				}
			}
		}
	}
	if got["GET /things/{id}"] != 2 || got["unmatched"] != 1 || len(got) != 2 {
		t.Fatalf("requests by route: %v", got)
	}
}

// TestWrap: a handler served on a listener of its own, outside the mux, gets the whole edge:
// request id, security headers, the log line, the metrics under its own pattern, and a panic
// answered with a problem rather than a dropped connection.
func TestWrap(t *testing.T) {
	var logs bytes.Buffer
	reg := prometheus.NewRegistry()
	s := New(slog.New(slog.NewJSONHandler(&logs, nil)), reg, time.Now, Options{HSTS: true})
	own := http.NewServeMux()
	own.HandleFunc("GET /login/card", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(RequestID(r.Context())))
	})
	own.HandleFunc("GET /boom", func(http.ResponseWriter, *http.Request) { panic("secret-internal-state") })
	ts := httptest.NewServer(s.Wrap(own))
	t.Cleanup(ts.Close)
	resp, body := get(t, ts.URL+"/login/card")
	h := resp.Header
	if id := h.Get("X-Request-ID"); len(id) != 24 || body != id || h.Get("X-Content-Type-Options") != "nosniff" ||
		h.Get("Cache-Control") != "no-store" || h.Get("Strict-Transport-Security") == "" {
		t.Fatalf("answer of a wrapped handler: %v %q", h, body)
	}
	if line := logLine(&logs, "/login/card"); line == nil || line["request_id"] != h.Get("X-Request-ID") {
		t.Fatalf("log line: %v\n%s", line, logs.String())
	}
	resp, body = get(t, ts.URL+"/boom")
	if resp.StatusCode != 500 || resp.Header.Get("Content-Type") != "application/problem+json" || strings.Contains(body, "secret") {
		t.Fatalf("panic in a wrapped handler: %d %q", resp.StatusCode, body)
	}
	mfs, _ := reg.Gather()
	var counted bool
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				counted = counted || (mf.GetName() == "vula_http_requests_total" && l.GetValue() == "GET /login/card")
			}
		}
	}
	if !counted {
		t.Fatal("the wrapped handler's requests are not in the metrics")
	}
}
