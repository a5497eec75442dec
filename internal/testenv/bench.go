package testenv

import (
	"sync"
	"testing"
)

// Parallel runs b.N calls of f spread over g goroutines (worker 0..g-1) and reports the rate
// as unit per second. The benchmarks of every seam use it so that their figures compare.
func Parallel(b *testing.B, g int, unit string, f func(worker int) error) {
	b.Helper()
	b.ResetTimer()
	var wg sync.WaitGroup
	for w := 0; w < g; w++ {
		n := b.N / g
		if w == 0 {
			n += b.N % g
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < n; i++ {
				if err := f(w); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), unit)
}
