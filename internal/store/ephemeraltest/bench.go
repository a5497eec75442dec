package ephemeraltest

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vula-eid/vula/internal/store"
	"github.com/vula-eid/vula/internal/testenv"
)

// BenchmarkTakeOnce measures one-time-code round trips (Put, then Take) per second with 1 and 8
// goroutines. Backends call it from their own benchmarks.
func BenchmarkTakeOnce(b *testing.B, s store.Ephemeral) {
	ctx := context.Background()
	for _, g := range []int{1, 8} {
		b.Run(fmt.Sprintf("g%d", g), func(b *testing.B) {
			var seq atomic.Int64
			testenv.Parallel(b, g, "takes/s", func(int) error {
				key := fmt.Sprintf("code:%d", seq.Add(1))
				if err := s.Put(ctx, key, []byte("authorization-code-state"), time.Minute); err != nil {
					return err
				}
				_, err := s.Take(ctx, key)
				return err
			})
		})
	}
}
