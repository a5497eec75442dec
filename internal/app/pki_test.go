package app

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/vula-eid/vula/internal/store"
	"github.com/vula-eid/vula/internal/store/memstore"
)

var quietLog = slog.New(slog.NewTextHandler(io.Discard, nil))

// TestInitLock: the init lock is held, renewed past its time to live, while its holder works;
// released, it is gone; and a lock left by a process that died expires within its time to live
// instead of the two minutes it had when the ephemeral store did not outlive the process.
func TestInitLock(t *testing.T) {
	ctx := context.Background()
	eph := memstore.New(time.Now)
	defer eph.Close()
	const ttl = 600 * time.Millisecond
	release, err := lock(ctx, eph, ttl, quietLog)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond) // past two lifetimes: renewals keep it
	if err := eph.PutIfAbsent(ctx, initLock, []byte("other"), time.Second); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("the lock lapsed while held: %v", err)
	}
	release()
	if _, err := eph.Get(ctx, initLock); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the lock outlived its release: %v", err)
	}

	// A dead holder's lock: the next start waits at most its time to live.
	if err := eph.Put(ctx, initLock, []byte("dead"), 600*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	release, err = lock(ctx, eph, ttl, quietLog)
	if err != nil {
		t.Fatal(err)
	}
	release()
	t.Logf("took over a dead holder's lock after %v", time.Since(start).Round(10*time.Millisecond))

	// Releasing does not remove a lock that expired and was taken by another.
	release, _ = lock(ctx, eph, ttl, quietLog)
	eph.Put(ctx, initLock, []byte("another"), time.Minute)
	release()
	if v, err := eph.Get(ctx, initLock); err != nil || string(v) != "another" {
		t.Fatalf("release removed another's lock: %q %v", v, err)
	}
}
