package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/vula-eid/vula/internal/store"
	"github.com/vula-eid/vula/internal/store/storetest"
	"github.com/vula-eid/vula/internal/testenv"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.Cleanup()
	os.Exit(code)
}

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func openT(t *testing.T, dsn string) *DB {
	t.Helper()
	db, err := Open(context.Background(), dsn, discard())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestConformanceSQLite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vula.db")
	storetest.Run(t, func(t *testing.T) store.Durable { return openT(t, "sqlite:"+path) })
	for _, f := range []string{path, path + "-wal", path + "-shm"} {
		if fi, err := os.Stat(f); err == nil && fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", f, fi.Mode().Perm())
		}
	}
}

func TestConformancePostgres(t *testing.T) {
	pg := testenv.Postgres(t)
	storetest.Run(t, func(t *testing.T) store.Durable { return openT(t, pg.DSN) })
}

func TestPostgresDownAndBack(t *testing.T) {
	pg := testenv.Postgres(t)
	db := openT(t, pg.DSN)
	ctx := context.Background()
	org := store.Organization{ID: "o1", Name: "One", Identifier: "NTRXK-1"}
	if err := db.CreateOrganization(ctx, org); err != nil {
		t.Fatal(err)
	}
	pg.Stop(t)
	restarted := false
	defer func() {
		if !restarted {
			pg.Start(t)
		}
	}()
	if err := db.Ping(ctx); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Ping with the database down: %v", err)
	}
	err := db.CreateOrganization(ctx, store.Organization{ID: "o2", Name: "Two", Identifier: "NTRXK-2"})
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("write with the database down: %v", err)
	}
	if _, err := db.Organization(ctx, "o1"); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("read with the database down: %v", err)
	}
	called := false
	err = db.UpdateOrganization(ctx, "o1", func(o store.Organization) (store.Organization, error) { called = true; o.Name = "X"; return o, nil })
	if !errors.Is(err, store.ErrUnavailable) || called {
		t.Fatalf("update with the database down: %v (updater called: %v)", err, called)
	}
	_, err = db.AppendAudit(ctx, func(last *store.AuditRecord) ([]store.AuditRecord, error) {
		return []store.AuditRecord{{Seq: 1, PrevHash: make([]byte, 32), Hash: make([]byte, 32)}}, nil
	})
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("audit append with the database down: %v", err)
	}
	pg.Start(t)
	restarted = true
	if err := db.Ping(ctx); err != nil {
		t.Fatalf("Ping after restart: %v", err)
	}
	if _, err := db.Organization(ctx, "o1"); err != nil {
		t.Fatalf("read after restart: %v", err)
	}
	if _, err := db.Organization(ctx, "o2"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the write made during the outage: %v", err)
	}
	if o, _ := db.Organization(ctx, "o1"); o != org {
		t.Fatalf("the update made during the outage: %+v", o)
	}
	if recs, err := db.AuditRecords(ctx, 1, 10); err != nil || len(recs) != 0 {
		t.Fatalf("the audit append made during the outage: %d records, %v", len(recs), err)
	}
}

// TestSQLiteSettings checks, on several pooled connections at once, the settings an
// acknowledged write's durability and the writers' queueing rest on.
func TestSQLiteSettings(t *testing.T) {
	db := openT(t, "sqlite:"+filepath.Join(t.TempDir(), "vula.db"))
	ctx := context.Background()
	var conns []*sql.Conn
	for i := 0; i < 3; i++ {
		c, err := db.db.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
	}
	for i, c := range conns {
		for pragma, want := range map[string]string{"journal_mode": "wal", "synchronous": "2", "busy_timeout": "10000", "foreign_keys": "1"} {
			var got string
			if err := c.QueryRowContext(ctx, "PRAGMA "+pragma).Scan(&got); err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Errorf("connection %d: %s = %s, want %s", i, pragma, got, want)
			}
		}
	}
}

func TestSQLitePaths(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	for _, name := range []string{"plain.db", "with space.db", "per%25cent.db", "what?.db", "hash#.db"} {
		path := filepath.Join(dir, name)
		db := openT(t, "sqlite:"+path)
		if err := db.CreateOrganization(ctx, store.Organization{ID: "o", Identifier: "NTRXK-1"}); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		db.Close() // the last connection's close moves the WAL into the database file
		if fi, err := os.Stat(path); err != nil || fi.Size() == 0 {
			t.Fatalf("%s: the database is not where it was asked to be: %v", name, err)
		}
	}
	// sqlite:///abs/path names the same file as sqlite:/abs/path.
	db := openT(t, "sqlite://"+filepath.Join(dir, "plain.db"))
	if _, err := db.Organization(ctx, "o"); err != nil {
		t.Fatalf("sqlite:///: %v", err)
	}
	if _, err := Open(ctx, "sqlite::memory:", discard()); err == nil {
		t.Fatal("an in-memory database accepted")
	}
}

// TestConcurrentOpen opens one new database from several stores at once, as replicas starting
// together do: the migrations run once and every store works.
func TestConcurrentOpen(t *testing.T) {
	for name, dsn := range map[string]func(t *testing.T) string{
		"sqlite":   func(t *testing.T) string { return "sqlite:" + filepath.Join(t.TempDir(), "vula.db") },
		"postgres": func(t *testing.T) string { return testenv.Postgres(t).DSN },
	} {
		t.Run(name, func(t *testing.T) {
			dsn := dsn(t)
			ctx := context.Background()
			const n = 4
			dbs := make([]*DB, n)
			var wg sync.WaitGroup
			for i := range dbs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					db, err := Open(ctx, dsn, discard())
					if err != nil {
						t.Error(err)
						return
					}
					t.Cleanup(func() { db.Close() })
					dbs[i] = db
				}()
			}
			wg.Wait()
			if t.Failed() {
				t.FailNow()
			}
			files, _ := fs.ReadDir(migrations, "migrations/sqlite")
			var applied int
			if err := dbs[0].db.QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations`).Scan(&applied); err != nil {
				t.Fatal(err)
			}
			if applied != len(files) {
				t.Fatalf("%d migrations recorded, want %d", applied, len(files))
			}
			for i, db := range dbs {
				if err := db.CreateOrganization(ctx, store.Organization{ID: fmt.Sprint(i), Identifier: fmt.Sprint("NTRXK-", i)}); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// TestMigrationsAlike keeps the two dialects' migration sets in step.
func TestMigrationsAlike(t *testing.T) {
	lite, _ := fs.ReadDir(migrations, "migrations/sqlite")
	pg, _ := fs.ReadDir(migrations, "migrations/postgres")
	if len(lite) == 0 || len(lite) != len(pg) {
		t.Fatalf("%d SQLite migrations, %d PostgreSQL ones", len(lite), len(pg))
	}
	for i := range lite {
		if lite[i].Name() != pg[i].Name() {
			t.Fatalf("migration %d: %s and %s", i, lite[i].Name(), pg[i].Name())
		}
	}
}

func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	if _, err := Open(ctx, "mysql://x", discard()); err == nil {
		t.Fatal("unknown scheme accepted")
	}
	if _, err := Open(ctx, "sqlite:", discard()); err == nil {
		t.Fatal("empty sqlite path accepted")
	}
	// Nothing listens on port 1: the database is unavailable, not misconfigured.
	if _, err := Open(ctx, "postgres://postgres@127.0.0.1:1/x?sslmode=disable&connect_timeout=2", discard()); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("down database at open: %v", err)
	}
	// The directory is made when missing, but not under a regular file.
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, "sqlite:"+filepath.Join(file, "dir", "x.db"), discard()); err == nil {
		t.Fatal("sqlite under a regular file accepted")
	}
	made := filepath.Join(t.TempDir(), "new", "dir", "x.db")
	s, err := Open(ctx, "sqlite:"+made, discard())
	if err != nil {
		t.Fatalf("sqlite in a missing directory: %v", err)
	}
	s.Close()
}

// Under more concurrent requests than two, the PostgreSQL pool keeps its connections: with
// database/sql's default of 2 idle connections every request past the second reconnected
// (MaxIdleClosed counted each), which collapsed the token rate on PostgreSQL (issue #22).
func TestPostgresPoolKeepsConnections(t *testing.T) {
	pg := testenv.Postgres(t)
	db := openT(t, pg.DSN)
	ctx := context.Background()
	if err := db.CreateOrganization(ctx, store.Organization{ID: "pool", Name: "Pool", Identifier: "NTRXK-9"}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				if _, err := db.Organization(ctx, "pool"); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	st := db.PoolStats()
	if st.MaxIdleClosed != 0 || st.MaxOpenConnections != DefaultPool {
		t.Fatalf("pool: %d connections closed for want of idle room, max open %d", st.MaxIdleClosed, st.MaxOpenConnections)
	}
	db.SizePool(4)
	if st := db.PoolStats(); st.MaxOpenConnections != 4 {
		t.Fatalf("SizePool(4): max open %d", st.MaxOpenConnections)
	}
}

// The SQLite pool keeps the connections concurrent requests open too: with 2 idle ones, each
// connection past the second was closed and opened again (pragmas, schema, statements
// prepared anew), 13 % of a seal's server CPU at 8 clients (issue #22).
func TestSQLitePoolKeepsConnections(t *testing.T) {
	db := openT(t, "sqlite:"+filepath.Join(t.TempDir(), "vula.db"))
	ctx := context.Background()
	if err := db.CreateOrganization(ctx, store.Organization{ID: "pool", Name: "Pool", Identifier: "NTRXK-9"}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				if _, err := db.Organization(ctx, "pool"); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if st := db.PoolStats(); st.MaxIdleClosed != 0 {
		t.Fatalf("pool: %d connections closed for want of idle room (%d open)", st.MaxIdleClosed, st.OpenConnections)
	}
}

// Transactions created at once on SQLite are group-committed: every one is stored, and one
// with a taken ID gets ErrConflict without failing the others of its batch.
func TestTransactionGroupCommit(t *testing.T) {
	db := openT(t, "sqlite:"+filepath.Join(t.TempDir(), "vula.db"))
	ctx := context.Background()
	at := time.Unix(1_800_000_000, 0).UTC()
	rec := func(id string) store.Transaction {
		return store.Transaction{ID: id, Kind: "seal", Actor: "client:tax", State: "completed", Created: at, Completed: at}
	}
	if err := db.CreateTransaction(ctx, rec("taken")); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make([]error, 33)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprint("tx-", i)
			if i == 32 {
				id = "taken"
			}
			errs[i] = db.CreateTransaction(ctx, rec(id))
		}()
	}
	wg.Wait()
	for i, err := range errs[:32] {
		if err != nil {
			t.Fatalf("tx-%d: %v", i, err)
		}
		if got, err := db.Transaction(ctx, fmt.Sprint("tx-", i)); err != nil || got.Actor != "client:tax" {
			t.Fatalf("tx-%d not stored: %v", i, err)
		}
	}
	if !errors.Is(errs[32], store.ErrConflict) {
		t.Fatalf("a taken ID: %v", errs[32])
	}
}
