package sqlstore

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

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
	if _, err := Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "no", "such", "dir", "x.db"), discard()); err == nil {
		t.Fatal("sqlite in a missing directory accepted")
	}
}
