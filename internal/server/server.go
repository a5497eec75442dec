// Package server is Vula's HTTP edge: the one mux every service registers on, health and
// readiness, metrics, one structured log line per request, panic recovery, and the single place
// where internal errors become HTTP statuses (WriteError).
//
// The edge also owns who the client is: a request's id is always made here (a client's own
// X-Request-ID is kept only when it comes through a trusted proxy, otherwise it is logged apart
// as client_request_id), and its RemoteAddr is the peer's address, or the address a trusted proxy
// names in X-Forwarded-For; the scheme the client used is https when this process terminates TLS,
// or what a trusted proxy says in X-Forwarded-Proto. Absolute URLs are never built from either:
// they come from base_url, the public name. Every answer carries X-Content-Type-Options: nosniff, a
// Referrer-Policy and, unless the handler says otherwise, Cache-Control: no-store; with HSTS on,
// Strict-Transport-Security too, unless a trusted proxy says the client came over plain http
// (RFC 6797 wants it only over a secure transport).
package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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

// Options are the edge's settings.
type Options struct {
	// TrustedProxies are the peers whose X-Forwarded-For and X-Request-ID are believed.
	TrustedProxies []netip.Prefix
	// HSTS sends Strict-Transport-Security: on when the base URL is https outside dev mode.
	HSTS bool
}

// hstsValue is the HSTS policy: a year, the usual minimum for preload lists. Subdomains are not
// included: the platform does not own its parent domain's other hosts.
const hstsValue = "max-age=31536000"

// Server routes requests to the registered services.
type Server struct {
	mux      *http.ServeMux
	log      *slog.Logger
	now      func() time.Time
	opts     Options
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec

	draining atomic.Bool

	mu     sync.RWMutex
	checks map[string]Checker
}

// Drain makes /readyz answer 503 ("draining") from now on, while everything else is still
// served: a load balancer stops sending new requests before the listener closes.
func (s *Server) Drain() { s.draining.Store(true) }

// New makes a server with /healthz, /readyz and /metrics (served from reg).
func New(log *slog.Logger, reg *prometheus.Registry, now func() time.Time, opts Options) *Server {
	s := &Server{
		mux: http.NewServeMux(), log: log, now: now, opts: opts, checks: map[string]Checker{},
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
	if s.draining.Load() {
		writeJSON(w, http.StatusServiceUnavailable, Readiness{Status: "draining", Components: map[string]ComponentStatus{}})
		return
	}
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

// schemeOf is the scheme of r as the edge knows it, "" when it does not: a plain connection not
// from a trusted proxy may still have come through a TLS terminator nobody configured. A proxy's X-Forwarded-Proto is taken from
// its last value (the one the trusted proxy nearest to us appended or set).
func schemeOf(r *http.Request, fromProxy bool) string {
	if r.TLS != nil {
		return "https"
	}
	if fromProxy {
		vs := r.Header.Values("X-Forwarded-Proto")
		if len(vs) > 0 {
			parts := strings.Split(vs[len(vs)-1], ",")
			if p := strings.ToLower(strings.TrimSpace(parts[len(parts)-1])); p == "https" || p == "http" {
				return p
			}
		}
	}
	return ""
}

// maxRequestID bounds a proxy's X-Request-ID, and what of a client's is logged.
const maxRequestID = 128

// Handler is the whole edge: client address, request id, security headers, log line, metrics
// and panic recovery around the mux.
func (s *Server) Handler() http.Handler { return s.Wrap(s.mux) }

// Wrap puts the edge around h, for a listener of its own whose routes are not on the mux (the
// ID card login's): its requests are named, logged, counted and recovered as the mux's are.
func (s *Server) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := s.now()
		peer := r.RemoteAddr
		fromProxy := s.trusted(peer)
		if fromProxy {
			if ip, ok := forwardedFor(r.Header.Values("X-Forwarded-For"), s.opts.TrustedProxies); ok {
				r.RemoteAddr = net.JoinHostPort(ip.String(), "0")
			}
		}
		// The id names the request in the audit log: only this process, or a proxy it trusts,
		// may choose it, so that two clients can never write the same one.
		id, clientID := r.Header.Get("X-Request-ID"), ""
		if !fromProxy || !validID(id) {
			clientID = id
			var b [12]byte
			rand.Read(b[:])
			id = hex.EncodeToString(b[:])
		}
		scheme := schemeOf(r, fromProxy)
		h := w.Header()
		h.Set("X-Request-ID", id)
		h.Set("X-Content-Type-Options", "nosniff")
		// Only a trusted proxy's word that the client used plain http withholds the header.
		if s.opts.HSTS && scheme != "http" {
			h.Set("Strict-Transport-Security", hstsValue)
		}
		// The key layer's audit records of signatures made for this request name it too.
		r = r.WithContext(hsm.WithRequestID(context.WithValue(r.Context(), ctxKey{}, id), id))
		rec := &recorder{ResponseWriter: w, status: http.StatusOK}
		defer func() {
			// The route is the pattern of the innermost mux that served the request (a mux
			// sets it on the request it is given; the platform's mux sits behind this one), so
			// the metric names the endpoint, not a whole prefix.
			route := r.Pattern
			if route == "" {
				route = "unmatched" // keeps the metric's label set bounded
			}
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				s.log.ErrorContext(r.Context(), "panic in handler", "panic", p, "request_id", id, "path", logPath(r))
				if !rec.wrote {
					WriteError(rec, r, errInternal)
				}
			}
			d := s.now().Sub(start)
			s.requests.WithLabelValues(route, strconv.Itoa(rec.status)).Inc()
			s.duration.WithLabelValues(route).Observe(d.Seconds())
			attrs := []slog.Attr{slog.String("method", r.Method), slog.String("path", logPath(r)),
				slog.Int("status", rec.status), slog.Int64("bytes", rec.bytes),
				slog.Duration("duration", d), slog.String("request_id", id),
				slog.String("remote", r.RemoteAddr)}
			if fromProxy {
				attrs = append(attrs, slog.String("peer", peer))
			}
			if scheme != "" {
				attrs = append(attrs, slog.String("scheme", scheme))
			}
			if clientID != "" {
				attrs = append(attrs, slog.String("client_request_id", truncate(clientID, maxRequestID)))
			}
			s.log.LogAttrs(r.Context(), slog.LevelInfo, "request", attrs...)
		}()
		next.ServeHTTP(rec, r)
		if !rec.wrote {
			rec.defaults() // a handler that wrote nothing: net/http sends the headers after this
		}
	})
}

// logPath is the path a request is logged under: the route's pattern when it has wildcards
// ("/pid/credential-offer/{id}"), else the path. A wildcard segment may be a bearer reference
// (a credential offer's id, a presentation's transaction) or name a person (/desk/person/{id}):
// the request id ties a log line to the audit record that names them where that is allowed.
func logPath(r *http.Request) string {
	if i := strings.IndexByte(r.Pattern, '/'); i >= 0 && strings.Contains(r.Pattern, "{") {
		return r.Pattern[i:]
	}
	return r.URL.Path
}

// trusted says whether the peer at addr is a configured proxy.
func (s *Server) trusted(addr string) bool {
	if len(s.opts.TrustedProxies) == 0 {
		return false
	}
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return false
	}
	return inAny(ap.Addr().Unmap(), s.opts.TrustedProxies)
}

func inAny(ip netip.Addr, nets []netip.Prefix) bool {
	for _, n := range nets {
		if n.Contains(ip) {
			return true
		}
	}
	return false
}

// forwardedFor is the client's address from X-Forwarded-For: the right-most address that is not
// itself a trusted proxy (the ones to its left were written by the client and prove nothing).
func forwardedFor(values []string, proxies []netip.Prefix) (netip.Addr, bool) {
	var hops []string
	for _, v := range values {
		hops = append(hops, strings.Split(v, ",")...)
	}
	for i := len(hops) - 1; i >= 0; i-- {
		ip, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			return netip.Addr{}, false
		}
		ip = ip.Unmap()
		if !inAny(ip, proxies) || i == 0 {
			return ip, true
		}
	}
	return netip.Addr{}, false
}

// validID accepts a proxy's request id of visible ASCII, so that it cannot break a log line.
func validID(id string) bool {
	if id == "" || len(id) > maxRequestID {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] <= ' ' || id[i] > '~' {
			return false
		}
	}
	return true
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
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
		r.defaults()
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if !r.wrote {
		r.defaults()
	}
	r.wrote = true
	n, err := r.ResponseWriter.Write(b)
	r.bytes += int64(n)
	return n, err
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// defaults fills the headers a handler did not set: answers may hold personal data, so nothing
// is cached or sent on as a referrer unless the handler says it may be.
func (r *recorder) defaults() {
	h := r.Header()
	if h.Get("Cache-Control") == "" {
		h.Set("Cache-Control", "no-store")
	}
	if h.Get("Referrer-Policy") == "" {
		h.Set("Referrer-Policy", "no-referrer")
	}
}
