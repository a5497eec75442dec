package audit

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/vula-eid/vula/internal/store"
	"github.com/vula-eid/vula/internal/testenv"
)

// BenchmarkAppend measures audit appends per second (hashing, locking, a durable commit) on
// SQLite and PostgreSQL with 1, 8 and 32 writers (concurrent appends share commits). Checkpoints
// every 1000 records are included.
func BenchmarkAppend(b *testing.B) {
	f := newKeys(b)
	for _, backend := range []string{"sqlite", "postgres"} {
		for _, writers := range []int{1, 8, 32} {
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
				testenv.Parallel(b, writers, "appends/s", func(int) error {
					_, err := l.Append(context.Background(), Event{Actor: "bench", Action: "sign", Digest: make([]byte, 32), Result: "ok"})
					return err
				})
			})
		}
	}
}

// BenchmarkSeal measures what a group commit now adds before it is written: the tree hashes of
// its records and the signed checkpoint over the new tree (software P-256 audit key), for a
// batch of 1 and of 13 records (the mean batch of BenchmarkTSA at 32 clients).
func BenchmarkSeal(b *testing.B) {
	f := newKeys(b)
	db := openDB(b, "sqlite:"+filepath.Join(b.TempDir(), "bench.db"))
	l, err := New(context.Background(), db, f.keys, f.keyURI, Options{}, time.Now, quiet)
	if err != nil {
		b.Fatal(err)
	}
	for _, n := range []int{1, 13} {
		b.Run(fmt.Sprintf("batch%d", n), func(b *testing.B) {
			var last *store.AuditRecord // the records are not stored: seal follows its own tree
			for i := 0; i < b.N; i++ {
				recs := make([]store.AuditRecord, n)
				prev := last
				for j := range recs {
					recs[j] = l.link(last, store.AuditRecord{Actor: "bench", Action: "sign", Digest: make([]byte, 32), Result: "ok"})
					last = &recs[j]
				}
				if err := l.seal(context.Background(), prev, recs); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
