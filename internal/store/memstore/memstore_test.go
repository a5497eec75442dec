package memstore

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/vula-eid/vula/internal/store"
	"github.com/vula-eid/vula/internal/store/ephemeraltest"
)

// clock is a fake clock: TTL tests move it instead of sleeping.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func TestConformance(t *testing.T) {
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	ephemeraltest.RunWith(t, ephemeraltest.Harness{
		Open:    func(t *testing.T) store.Ephemeral { return New(c.now) },
		Advance: c.advance,
	})
}

func BenchmarkTakeOnce(b *testing.B) {
	s := New(time.Now)
	defer s.Close()
	ephemeraltest.BenchmarkTakeOnce(b, s)
}

// TestSweep checks that the janitor's sweep reclaims expired entries and only those, and that
// Close may be called twice.
func TestSweep(t *testing.T) {
	ctx := context.Background()
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	s := New(c.now)
	defer s.Close()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.Put(ctx, "short", []byte("x"), time.Second))
	must(s.Put(ctx, "long", []byte("y"), time.Hour))
	_, err := s.Incr(ctx, "counter", time.Second)
	must(err)
	c.advance(2 * time.Second)
	s.sweep()
	if n := s.len(); n != 1 {
		t.Fatalf("%d entries after the sweep, want 1", n)
	}
	if v, err := s.Get(ctx, "long"); err != nil || string(v) != "y" {
		t.Fatalf("live entry: %q %v", v, err)
	}
	must(s.Close())
	must(s.Close())
}
