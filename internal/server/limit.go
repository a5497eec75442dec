package server

import (
	"net"
	"net/http"
	"net/netip"
	"sync"

	"github.com/vula-eid/vula/internal/problem"
)

// PerClient bounds the requests one client address has in flight on an anonymous endpoint, so
// that one client cannot take what a service has for everyone (validation slots, disk for
// uploads, signing capacity); a request beyond the bound is answered 429 with Retry-After at
// once. The address is the request's RemoteAddr as the edge set it (the peer, or the client a
// trusted proxy names). Memory is one map entry per client with a request in flight.
type PerClient struct {
	max  int
	mu   sync.Mutex
	busy map[string]int
}

// NewPerClient allows n requests in flight per client address (at least 1).
func NewPerClient(n int) *PerClient {
	return &PerClient{max: max(n, 1), busy: map[string]int{}}
}

// RetryAfterBusy is the Retry-After (seconds) of a 429 from PerClient.
const RetryAfterBusy = "1"

// Wrap bounds h.
func (p *PerClient) Wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := clientKey(r.RemoteAddr)
		if !p.acquire(c) {
			CloseUnread(w)
			w.Header().Set("Retry-After", RetryAfterBusy)
			WriteError(w, r, problem.Errorf(problem.TooManyRequests, "this client already has %d requests in flight here", p.max))
			return
		}
		defer p.release(c)
		h.ServeHTTP(w, r)
	})
}

func (p *PerClient) acquire(c string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.busy[c] >= p.max {
		return false
	}
	p.busy[c]++
	return true
}

func (p *PerClient) release(c string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.busy[c]--; p.busy[c] <= 0 {
		delete(p.busy, c)
	}
}

// clientKey is the client at addr, whatever its source port: its IPv4 address, or its IPv6 /64
// (one subscriber is given a whole /64 and may pick any address in it).
func clientKey(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	if ip = ip.Unmap(); ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}

// CloseUnread marks an answer given without reading the request's body: the connection closes
// after it. Otherwise net/http reads up to 256 KiB of the unread body before it sends the answer,
// and a client that announced a body and sends none would hold its refusal until the read
// timeout.
func CloseUnread(w http.ResponseWriter) { w.Header().Set("Connection", "close") }
