package sqlstore

import (
	"context"
	"crypto/sha256"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/vula-eid/vula/internal/store"
	"github.com/vula-eid/vula/internal/testenv"
)

// BenchmarkAppendAudit measures the store's own audit appends per second (the lock, reading the
// head, one durable commit each) on SQLite and PostgreSQL with 1 and 8 writers, without the
// audit package's signing. The test PostgreSQL runs with fsync off, so its figures leave out the
// disk's flush that SQLite's include.
func BenchmarkAppendAudit(b *testing.B) {
	for _, backend := range []string{"sqlite", "postgres"} {
		for _, writers := range []int{1, 8} {
			b.Run(fmt.Sprintf("%s/w%d", backend, writers), func(b *testing.B) {
				dsn := "sqlite:" + filepath.Join(b.TempDir(), "bench.db")
				if backend == "postgres" {
					dsn = testenv.Postgres(b).DSN
				}
				db, err := Open(context.Background(), dsn, discard())
				if err != nil {
					b.Fatal(err)
				}
				defer db.Close()
				ctx := context.Background()
				testenv.Parallel(b, writers, "appends/s", func(w int) error {
					_, err := db.AppendAudit(ctx, func(last *store.AuditRecord) ([]store.AuditRecord, error) {
						r := store.AuditRecord{Seq: 1, Time: time.Now(), Actor: fmt.Sprint("w", w), Action: "sign",
							Digest: make([]byte, 32), Result: "ok", PrevHash: make([]byte, 32)}
						if last != nil {
							r.Seq, r.PrevHash = last.Seq+1, last.Hash
						}
						h := sha256.Sum256(fmt.Appendf(nil, "%d|%x", r.Seq, r.PrevHash))
						r.Hash = h[:]
						return []store.AuditRecord{r}, nil
					})
					return err
				})
				// What was measured must also be a whole chain.
				recs, err := db.AuditRecords(ctx, 1, b.N+1)
				if err != nil || len(recs) != b.N || recs[len(recs)-1].Seq != int64(b.N) {
					b.Fatalf("%d records after %d appends: %v", len(recs), b.N, err)
				}
			})
		}
	}
}
