package ephemeraltest

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vula-eid/vula/internal/store"
)

// BenchmarkTakeOnce measures one-time-code round trips (Put, then Take) per second with 1 and 8
// goroutines. Backends call it from their own benchmarks.
func BenchmarkTakeOnce(b *testing.B, s store.Ephemeral) {
	ctx := context.Background()
	for _, g := range []int{1, 8} {
		b.Run(fmt.Sprintf("g%d", g), func(b *testing.B) {
			var seq atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			for w := 0; w < g; w++ {
				n := b.N / g
				if w == 0 {
					n += b.N % g
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; i < n; i++ {
						key := fmt.Sprintf("code:%d", seq.Add(1))
						if err := s.Put(ctx, key, []byte("authorization-code-state"), time.Minute); err != nil {
							b.Error(err)
							return
						}
						if _, err := s.Take(ctx, key); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "takes/s")
		})
	}
}
