package audit

import (
	"context"
	"crypto"
	"fmt"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/vula-eid/vula/hsm"
	"github.com/vula-eid/vula/internal/store"
	"github.com/vula-eid/vula/internal/testenv"
)

// BenchmarkAppend measures audit appends per second (hashing, locking, a durable commit) on
// SQLite and PostgreSQL with 1, 8 and 32 writers (concurrent appends share commits), and the
// process's CPU time per append (on PostgreSQL without the server's). Checkpoints every 1000
// records are included. The sign/ runs append a signature's record as the key layer does
// (RecordSignature, its JSON detail), and the linger/ runs have Options.Linger at 1 ms.
func BenchmarkAppend(b *testing.B) {
	f := newKeys(b)
	for _, backend := range []string{"sqlite", "postgres"} {
		for _, mode := range []string{"plain", "sign", "linger"} {
			for _, writers := range []int{1, 8, 32} {
				b.Run(fmt.Sprintf("%s/%s/w%d", backend, mode, writers), func(b *testing.B) {
					dsn := "sqlite:" + filepath.Join(b.TempDir(), "bench.db")
					if backend == "postgres" {
						dsn = testenv.Postgres(b).DSN
					}
					db := openDB(b, dsn)
					opts := Options{Every: 1000}
					if mode == "linger" {
						opts.Linger = time.Millisecond
					}
					l, err := New(context.Background(), db, f.keys, f.keyURI, opts, time.Now, quiet)
					if err != nil {
						b.Fatal(err)
					}
					before, cpu := l.Stats(), processCPU()
					testenv.Parallel(b, writers, "appends/s", func(int) error {
						if mode == "sign" {
							return l.RecordSignature(context.Background(), hsm.SignEvent{Actor: "tsa", KeyURI: "software:tsa-1",
								Purpose: hsm.PurposeTSA, Hash: crypto.SHA256, Digest: make([]byte, 32), RequestID: "0123456789abcdef",
								Detail: map[string]string{"serial": "5f1e2d3c4b5a69788796a5b4c3d2e1f001122334", "time": "2026-12-06T07:00:00.123456Z",
									"imprint": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", "imprint_hash": "SHA-256"}})
						}
						_, err := l.Append(context.Background(), Event{Actor: "bench", Action: "sign", Digest: make([]byte, 32), Result: "ok"})
						return err
					})
					b.ReportMetric(float64((processCPU()-cpu).Microseconds())/float64(b.N), "cpu-µs/op")
					if st := l.Stats(); st.Commits > before.Commits {
						b.ReportMetric(float64(st.Records-before.Records)/float64(st.Commits-before.Commits), "records/commit")
					}
				})
			}
		}
	}
}

// processCPU is the user and system CPU time of this process so far.
func processCPU() time.Duration {
	var u syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &u)
	return time.Duration(u.Utime.Nano() + u.Stime.Nano())
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
