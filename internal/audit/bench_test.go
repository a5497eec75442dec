package audit

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/vula-eid/vula/internal/testenv"
)

// BenchmarkAppend measures audit appends per second (hashing, locking, a durable commit) on
// SQLite and PostgreSQL with 1 and 8 writers. Checkpoints every 1000 records are included.
func BenchmarkAppend(b *testing.B) {
	f := newKeys(b)
	for _, backend := range []string{"sqlite", "postgres"} {
		for _, writers := range []int{1, 8} {
			b.Run(fmt.Sprintf("%s/w%d", backend, writers), func(b *testing.B) {
				dsn := "sqlite:" + filepath.Join(b.TempDir(), "bench.db")
				if backend == "postgres" {
					dsn = testenv.Postgres(b).DSN
				}
				db := openDB(b, dsn)
				l, err := New(context.Background(), db, f.keys, f.keyURI, Options{Every: 1000}, time.Now, quiet)
				if err != nil {
					b.Fatal(err)
				}
				b.ResetTimer()
				var wg sync.WaitGroup
				per := b.N / writers
				for w := 0; w < writers; w++ {
					n := per
					if w == 0 {
						n += b.N % writers
					}
					wg.Add(1)
					go func() {
						defer wg.Done()
						for i := 0; i < n; i++ {
							if _, err := l.Append(context.Background(), Event{Actor: "bench", Action: "sign", Digest: make([]byte, 32), Result: "ok"}); err != nil {
								b.Error(err)
								return
							}
						}
					}()
				}
				wg.Wait()
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "appends/s")
			})
		}
	}
}
