package sqlitekv

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vula-eid/vula/internal/store"
	"github.com/vula-eid/vula/internal/store/ephemeraltest"
	"github.com/vula-eid/vula/internal/testenv"
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

func open(t testing.TB, path string, now func() time.Time) *Store {
	t.Helper()
	s, err := Open(context.Background(), path, now)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) {
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	ephemeraltest.RunWith(t, ephemeraltest.Harness{
		Open:    func(t *testing.T) store.Ephemeral { return open(t, filepath.Join(t.TempDir(), "eph.db"), c.now) },
		Advance: c.advance,
	})
}

// TestConformanceRealClock runs the suite once on the wall clock, as serve uses the store.
func TestConformanceRealClock(t *testing.T) {
	ephemeraltest.Run(t, func(t *testing.T) store.Ephemeral { return open(t, filepath.Join(t.TempDir(), "eph.db"), time.Now) })
}

// TestSurvivesReopen is what the store is for: entries, counters and their expiries outlive a
// close and a reopen of the file (a restart of the process), and expired ones stay gone.
func TestSurvivesReopen(t *testing.T) {
	ctx := context.Background()
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	path := filepath.Join(t.TempDir(), "sub", "eph.db")
	s := open(t, path, c.now)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.Put(ctx, "idp:sso:1", []byte("session"), time.Hour))
	must(s.Put(ctx, "code:1", []byte("grant"), time.Minute))
	must(s.Put(ctx, "short", []byte("x"), time.Second))
	for range 3 {
		_, err := s.Incr(ctx, "rl:ip", 10*time.Second)
		must(err)
	}
	must(s.Close())
	must(s.Close())
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("file: %v %v", fi, err)
	}

	c.advance(5 * time.Second)
	s = open(t, path, c.now)
	defer s.Close()
	if v, err := s.Get(ctx, "idp:sso:1"); err != nil || string(v) != "session" {
		t.Fatalf("session after reopen: %q %v", v, err)
	}
	if v, err := s.Take(ctx, "code:1"); err != nil || string(v) != "grant" {
		t.Fatalf("code after reopen: %q %v", v, err)
	}
	if _, err := s.Get(ctx, "short"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("expired entry after reopen: %v", err)
	}
	// The counter's window kept its end across the reopen: 5 s left.
	if n, err := s.Incr(ctx, "rl:ip", 10*time.Second); err != nil || n != 4 {
		t.Fatalf("counter after reopen: %d %v", n, err)
	}
	c.advance(5 * time.Second)
	if n, _ := s.Incr(ctx, "rl:ip", 10*time.Second); n != 1 {
		t.Fatalf("the window did not end where it began: %d", n)
	}
	if n, err := s.Count(ctx); err != nil || n != 2 {
		t.Fatalf("count: %d %v", n, err)
	}
}

// TestSweep checks that the janitor's sweep deletes expired rows and only those.
func TestSweep(t *testing.T) {
	ctx := context.Background()
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	s := open(t, filepath.Join(t.TempDir(), "eph.db"), c.now)
	defer s.Close()
	s.Put(ctx, "short", []byte("x"), time.Second)
	s.Put(ctx, "long", []byte("y"), time.Hour)
	c.advance(2 * time.Second)
	if err := s.sweep(ctx); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM entries`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("%d rows after the sweep (%v), want 1", n, err)
	}
}

// TestOpenRefuses: a path that cannot be a store's file is refused at Open.
func TestOpenRefuses(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	if _, err := Open(ctx, "", time.Now); err == nil {
		t.Fatal("empty path accepted")
	}
	if _, err := Open(ctx, dir, time.Now); err == nil { // a directory, not a file
		t.Fatal("a directory accepted")
	}
}

func BenchmarkTakeOnce(b *testing.B) {
	s := open(b, filepath.Join(b.TempDir(), "eph.db"), time.Now)
	defer s.Close()
	ephemeraltest.BenchmarkTakeOnce(b, s)
}

// TestDamagedFile: a file that is not a sound database (what a power cut can leave with
// synchronous=OFF) is moved aside and the store starts empty, instead of the server not starting.
func TestDamagedFile(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "eph.db")
	garbage := make([]byte, 8192)
	for i := range garbage {
		garbage[i] = byte(i * 7)
	}
	if err := os.WriteFile(path, garbage, 0o600); err != nil {
		t.Fatal(err)
	}
	s := open(t, path, time.Now)
	defer s.Close()
	if s.MovedAside == "" {
		t.Fatal("a damaged file was not moved aside")
	}
	if b, err := os.ReadFile(s.MovedAside); err != nil || len(b) != len(garbage) {
		t.Fatalf("the damaged file is not kept at %s: %v", s.MovedAside, err)
	}
	if err := s.Put(ctx, "k", []byte("v"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if v, err := s.Get(ctx, "k"); err != nil || string(v) != "v" {
		t.Fatalf("the new store: %q %v", v, err)
	}
	// A sound file is left as it is.
	s.Close()
	s2 := open(t, path, time.Now)
	defer s2.Close()
	if s2.MovedAside != "" {
		t.Fatalf("a sound file was moved aside to %s", s2.MovedAside)
	}
}

// Concurrent puts are group-committed: every one is stored, each with its own expiry, whether
// it wrote a batch or rode in another's — also when the put that leads a batch has been
// cancelled by its caller.
func TestGroupCommit(t *testing.T) {
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	s := open(t, filepath.Join(t.TempDir(), "eph.db"), c.now)
	defer s.Close()
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			if g%8 == 0 {
				ctx = cancelled
			}
			errs <- s.PutAll(ctx, store.Entry{Key: fmt.Sprint("long:", g), Value: []byte{byte(g)}, TTL: time.Hour},
				store.Entry{Key: fmt.Sprint("short:", g), Value: []byte{byte(g)}, TTL: time.Second})
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	c.advance(2 * time.Second)
	for g := range 64 {
		if v, err := s.Get(context.Background(), fmt.Sprint("long:", g)); err != nil || len(v) != 1 || v[0] != byte(g) {
			t.Fatalf("long:%d: %v %v", g, v, err)
		}
		if _, err := s.Get(context.Background(), fmt.Sprint("short:", g)); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("short:%d outlived its ttl: %v", g, err)
		}
	}
}

// BenchmarkTokenSessions is the identity provider's write per access token: a session of about
// a kilobyte under a random key and its grant's index, in one PutAll, from 32 goroutines, on a
// table that already holds 20,000 sessions (a few seconds of tokens); cpu-µs/op is the
// process's CPU time per token.
func BenchmarkTokenSessions(b *testing.B) {
	ctx := context.Background()
	s := open(b, filepath.Join(b.TempDir(), "eph.db"), time.Now)
	defer s.Close()
	value := make([]byte, 1100)
	key := func() string {
		k := make([]byte, 32)
		_, _ = rand.Read(k)
		return base64.RawURLEncoding.EncodeToString(k)
	}
	put := func(int) error {
		return s.PutAll(ctx, store.Entry{Key: "idp:at:" + key(), Value: value, TTL: 10 * time.Minute},
			store.Entry{Key: "idp:at-req:" + key(), Value: []byte(key()), TTL: 10 * time.Minute})
	}
	for range 20_000 {
		if err := put(0); err != nil {
			b.Fatal(err)
		}
	}
	var before, after syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &before)
	testenv.Parallel(b, 32, "tokens/s", put)
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &after)
	cpu := after.Utime.Nano() + after.Stime.Nano() - before.Utime.Nano() - before.Stime.Nano()
	b.ReportMetric(float64(cpu)/1e3/float64(b.N), "cpu-µs/op")
}

// TestOlderLayout: a file written by a version before the rowid layout (one WITHOUT ROWID table
// named ephemeral) is taken over at Open: its live entries keep their values and expiries, its
// expired ones are dropped, and the old table is gone.
func TestOlderLayout(t *testing.T) {
	ctx := context.Background()
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	path := filepath.Join(t.TempDir(), "eph.db")
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	now := c.now()
	for _, q := range []string{
		`CREATE TABLE ephemeral (key TEXT PRIMARY KEY, value BLOB NOT NULL, expires INTEGER NOT NULL) WITHOUT ROWID`,
		`CREATE INDEX ephemeral_expires ON ephemeral (expires)`,
		fmt.Sprintf(`INSERT INTO ephemeral VALUES ('idp:at:live', x'7b7d', %d), ('gone', x'00', %d)`,
			now.Add(time.Minute).UnixNano(), now.Add(-time.Second).UnixNano()),
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	s := open(t, path, c.now)
	defer s.Close()
	if v, err := s.Get(ctx, "idp:at:live"); err != nil || string(v) != "{}" {
		t.Fatalf("the live entry: %q %v", v, err)
	}
	if n, err := s.Count(ctx); err != nil || n != 1 {
		t.Fatalf("count: %d %v", n, err)
	}
	c.advance(2 * time.Minute) // its expiry came along
	if _, err := s.Get(ctx, "idp:at:live"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the entry outlived its expiry: %v", err)
	}
	var old int
	if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE name = 'ephemeral'`).Scan(&old); err != nil || old != 0 {
		t.Fatalf("the old table is still there (%d, %v)", old, err)
	}
	s.Close()
	open(t, path, c.now).Close() // a second open finds nothing to move
}
