package server

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
)

// FuzzForwardedFor: whatever a client writes into X-Forwarded-For (a trusted proxy appends to
// it, it does not clean it), the address taken is one of the listed hops, never a trusted
// proxy unless every hop is one, and nothing panics.
func FuzzForwardedFor(f *testing.F) {
	for _, s := range []string{"203.0.113.9", "198.51.100.7, 203.0.113.9, 10.0.0.5", "", ",,", "::ffff:10.1.2.3",
		"2001:db8::1, 10.0.0.1", "unknown, 203.0.113.9", "203.0.113.9 , 10.0.0.2", strings.Repeat("1.2.3.4,", 100)} {
		f.Add(s, "10.0.0.0/8")
	}
	f.Fuzz(func(t *testing.T, header, proxy string) {
		p, err := netip.ParsePrefix(proxy)
		if err != nil {
			return
		}
		proxies := []netip.Prefix{p.Masked()}
		ip, ok := forwardedFor([]string{header}, proxies)
		if !ok {
			return
		}
		hops := strings.Split(header, ",")
		found := false
		for _, h := range hops {
			if a, err := netip.ParseAddr(strings.TrimSpace(h)); err == nil && a.Unmap() == ip {
				found = true
			}
		}
		if !found {
			t.Fatalf("%q gave %v, not one of its hops", header, ip)
		}
		if inAny(ip, proxies) {
			first, _ := netip.ParseAddr(strings.TrimSpace(hops[0]))
			if first.Unmap() != ip {
				t.Fatalf("%q gave the trusted proxy %v while an untrusted hop exists", header, ip)
			}
		}
	})
}

// FuzzValidID: an accepted request id is visible ASCII of bounded length (it goes into log lines
// and audit records).
func FuzzValidID(f *testing.F) {
	for _, s := range []string{"lb-42", "", "a b", "x\n", strings.Repeat("a", 129), "é"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		if !validID(id) {
			return
		}
		if len(id) > maxRequestID {
			t.Fatalf("accepted %d bytes", len(id))
		}
		for _, c := range []byte(id) {
			if c <= ' ' || c > '~' {
				t.Fatalf("accepted %q", id)
			}
		}
	})
}

// BenchmarkPerClient measures the per-client bound's cost on a request that passes it.
func BenchmarkPerClient(b *testing.B) {
	h := NewPerClient(4).Wrap(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	r := httptest.NewRequest("POST", "/tsa", nil)
	r.RemoteAddr = "203.0.113.9:4242"
	w := httptest.NewRecorder()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			h.ServeHTTP(w, r)
		}
	})
}
