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
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vula-eid/vula/hsm"
	"github.com/vula-eid/vula/internal/store"
)

func newTest(t *testing.T) (*Server, *bytes.Buffer, *httptest.Server) {
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	s := New(log, prometheus.NewRegistry(), time.Now)
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

func TestRequestLogAndID(t *testing.T) {
	s, logs, ts := newTest(t)
	s.Handle("GET /echo-id", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(RequestID(r.Context())))
	}))
	req, _ := http.NewRequest("GET", ts.URL+"/echo-id", nil)
	req.Header.Set("X-Request-ID", "abc-123")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	resp.Body.Close()
	if b.String() != "abc-123" || resp.Header.Get("X-Request-ID") != "abc-123" {
		t.Fatalf("request id not carried: body %q header %q", b.String(), resp.Header.Get("X-Request-ID"))
	}
	var line map[string]any
	for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		json.Unmarshal([]byte(l), &line)
		if line["path"] == "/echo-id" {
			break
		}
	}
	if line["msg"] != "request" || line["method"] != "GET" || line["status"] != float64(200) ||
		line["bytes"] != float64(7) || line["request_id"] != "abc-123" || line["duration"] == nil {
		t.Fatalf("log line: %v", line)
	}
	// Without a request id, one is made.
	if resp, _ := get(t, ts.URL+"/healthz"); len(resp.Header.Get("X-Request-ID")) != 24 {
		t.Fatalf("generated request id %q", resp.Header.Get("X-Request-ID"))
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
	for _, tc := range []struct {
		err        error
		code       int
		showDetail bool
	}{
		{fmt.Errorf("%w: key x", hsm.ErrNotFound), 404, true},
		{fmt.Errorf("%w: person", store.ErrNotFound), 404, true},
		{fmt.Errorf("%w: label", hsm.ErrInvalid), 400, true},
		{fmt.Errorf("%w: tsa", hsm.ErrWrongPurpose), 403, true},
		{fmt.Errorf("%w: serial", store.ErrConflict), 409, true},
		{fmt.Errorf("%w: db down at 10.0.0.5", store.ErrUnavailable), 503, false},
		{errors.New("pq: relation users does not exist"), 500, false},
	} {
		rec := httptest.NewRecorder()
		r := httptest.NewRequest("GET", "/x", nil)
		WriteError(rec, r, tc.err)
		var p Problem
		json.Unmarshal(rec.Body.Bytes(), &p)
		if rec.Code != tc.code || p.Status != tc.code || rec.Header().Get("Content-Type") != "application/problem+json" {
			t.Errorf("%v: %d %+v %s", tc.err, rec.Code, p, rec.Header().Get("Content-Type"))
		}
		if (p.Detail != "") != tc.showDetail {
			t.Errorf("%v: detail %q", tc.err, p.Detail)
		}
	}
}
