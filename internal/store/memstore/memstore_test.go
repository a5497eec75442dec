package memstore

import (
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
	ephemeraltest.Run(t, ephemeraltest.Harness{
		Open:    func(t *testing.T) store.Ephemeral { return New(c.now) },
		Advance: c.advance,
	})
}

func BenchmarkTakeOnce(b *testing.B) {
	s := New(time.Now)
	defer s.Close()
	ephemeraltest.BenchmarkTakeOnce(b, s)
}
