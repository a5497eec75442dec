// Package server is Vula's HTTP edge: the one mux every service registers on, health and
// readiness, metrics, one structured log line per request, panic recovery, and the single place
// where internal errors become HTTP statuses (WriteError).
package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/vula-eid/vula/hsm"
)

// Checker is a component /readyz asks. Ping MUST return quickly and name the cause when down.
type Checker interface {
	Ping(ctx context.Context) error
}

// CheckFunc adapts a function to Checker.
type CheckFunc func(ctx context.Context) error

// Ping calls f.
func (f CheckFunc) Ping(ctx context.Context) error { return f(ctx) }

// Server routes requests to the registered services.
type Server struct {
	mux      *http.ServeMux
	log      *slog.Logger
	now      func() time.Time
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec

	mu     sync.RWMutex
	checks map[string]Checker
}

// New makes a server with /healthz, /readyz and /metrics (served from reg).
func New(log *slog.Logger, reg *prometheus.Registry, now func() time.Time) *Server {
	s := &Server{
		mux: http.NewServeMux(), log: log, now: now, checks: map[string]Checker{},
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vula_http_requests_total", Help: "HTTP requests by route and status code.",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "vula_http_request_duration_seconds", Help: "HTTP request latency by route.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18),
		}, []string{"route"}),
	}
	reg.MustRegister(s.requests, s.duration)
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n"))
	})
	s.mux.HandleFunc("GET /readyz", s.ready)
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	return s
}

// Handle registers h for a Go 1.22 mux pattern ("POST /tsa").
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// AddCheck makes /readyz depend on c, reported under name.
func (s *Server) AddCheck(name string, c Checker) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.checks[name] = c
}

// ComponentStatus is one line of the readiness report.
type ComponentStatus struct {
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
}

// Readiness is the body of /readyz.
type Readiness struct {
	Status     string                     `json:"status"`
	Components map[string]ComponentStatus `json:"components"`
}

func (s *Server) ready(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	s.mu.RLock()
	names := make([]string, 0, len(s.checks))
	for n := range s.checks {
		names = append(names, n)
	}
	s.mu.RUnlock()
	sort.Strings(names)
	rep := Readiness{Status: "ready", Components: map[string]ComponentStatus{}}
	var wg sync.WaitGroup
	var mu sync.Mutex
	for _, n := range names {
		s.mu.RLock()
		c := s.checks[n]
		s.mu.RUnlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := ComponentStatus{OK: true}
			if err := c.Ping(ctx); err != nil {
				st = ComponentStatus{Error: err.Error()}
			}
			mu.Lock()
			rep.Components[n] = st
			mu.Unlock()
		}()
	}
	wg.Wait()
	code := http.StatusOK
	for _, st := range rep.Components {
		if !st.OK {
			rep.Status, code = "not ready", http.StatusServiceUnavailable
		}
	}
	writeJSON(w, code, rep)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	if w.Header().Get("Content-Type") == "" {
		w.Header().Set("Content-Type", "application/json")
	}
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v) // the status is sent: a failed write means the client left
}

type ctxKey struct{}

// RequestID returns the id of the request ctx belongs to.
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(ctxKey{}).(string)
	return id
}

// Handler is the whole edge: request id, log line, metrics and panic recovery around the mux.
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := s.now()
		id := r.Header.Get("X-Request-ID")
		if id == "" || len(id) > 128 {
			var b [12]byte
			rand.Read(b[:])
			id = hex.EncodeToString(b[:])
		}
		w.Header().Set("X-Request-ID", id)
		// The key layer's audit records of signatures made for this request name it too.
		r = r.WithContext(hsm.WithRequestID(context.WithValue(r.Context(), ctxKey{}, id), id))
		rec := &recorder{ResponseWriter: w, status: http.StatusOK}
		_, route := s.mux.Handler(r)
		if route == "" {
			route = "unmatched" // keeps the metric's label set bounded
		}
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				s.log.ErrorContext(r.Context(), "panic in handler", "panic", p, "request_id", id, "path", r.URL.Path)
				if !rec.wrote {
					WriteError(rec, r, errInternal)
				}
			}
			d := s.now().Sub(start)
			s.requests.WithLabelValues(route, strconv.Itoa(rec.status)).Inc()
			s.duration.WithLabelValues(route).Observe(d.Seconds())
			s.log.LogAttrs(r.Context(), slog.LevelInfo, "request",
				slog.String("method", r.Method), slog.String("path", r.URL.Path),
				slog.Int("status", rec.status), slog.Int64("bytes", rec.bytes),
				slog.Duration("duration", d), slog.String("request_id", id),
				slog.String("remote", r.RemoteAddr))
		}()
		s.mux.ServeHTTP(rec, r)
	})
}

type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
	wrote  bool
}

func (r *recorder) WriteHeader(code int) {
	if !r.wrote {
		r.status, r.wrote = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	r.wrote = true
	n, err := r.ResponseWriter.Write(b)
	r.bytes += int64(n)
	return n, err
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
