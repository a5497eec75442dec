// Package ephemeraltest is the conformance suite of the ephemeral store: every store.Ephemeral
// backend (SQLite, memory, Redis) runs it.
package ephemeraltest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vula-eid/vula/internal/store"
)

// Harness opens stores and lets time pass for them.
type Harness struct {
	// Open returns an empty store; the suite closes it.
	Open func(t *testing.T) store.Ephemeral
	// Advance lets d pass for the store: a fake clock's step for memory, a real wait for Redis.
	Advance func(d time.Duration)
}

// Run runs the suite on stores that keep real time (TTL checks wait a second or so).
func Run(t *testing.T, open func(t *testing.T) store.Ephemeral) {
	RunWith(t, Harness{Open: open, Advance: time.Sleep})
}

// RunWith runs the suite with a harness, for stores whose clock the test controls.
func RunWith(t *testing.T, h Harness) {
	ctx := context.Background()
	s := h.Open(t)
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})

	// gone waits until key has expired. After Advance it should be at once; a backend whose
	// expiry lags a little (Redis's clock against ours) gets a bounded grace, never a speed test.
	gone := func(t *testing.T, key string) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			_, err := s.Get(ctx, key)
			if errors.Is(err, store.ErrNotFound) {
				return
			}
			if err != nil {
				t.Fatalf("get %s: %v", key, err)
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s outlived its ttl", key)
			}
		}
	}

	// PutAll (one write on a Batcher, Put by Put otherwise) stores each entry with its own ttl
	// and refuses a batch with a bad entry.
	t.Run("PutAll", func(t *testing.T) {
		must(t, store.PutAll(ctx, s, store.Entry{Key: "all:1", Value: []byte("one"), TTL: time.Minute},
			store.Entry{Key: "all:2", Value: []byte("two"), TTL: 2 * time.Second}, store.Entry{Key: "all:1", Value: []byte("uno"), TTL: time.Minute}))
		for k, want := range map[string]string{"all:1": "uno", "all:2": "two"} {
			if got, err := s.Get(ctx, k); err != nil || string(got) != want {
				t.Fatalf("%s: %q %v", k, got, err)
			}
		}
		if err := store.PutAll(ctx, s, store.Entry{Key: "all:3", Value: []byte("x"), TTL: time.Minute}, store.Entry{Key: "", TTL: time.Minute}); !errors.Is(err, store.ErrInvalidKey) {
			t.Fatalf("a batch with an empty key: %v", err)
		}
		h.Advance(3 * time.Second)
		gone(t, "all:2")
		if _, err := s.Get(ctx, "all:1"); err != nil {
			t.Fatalf("all:1 expired with all:2: %v", err)
		}
	})

	// GetMany (one round trip on a MultiGetter, Get by Get otherwise) returns the keys present,
	// leaves out the absent and the expired, and refuses an empty key.
	t.Run("GetMany", func(t *testing.T) {
		must(t, s.Put(ctx, "many:1", []byte("one"), time.Minute))
		must(t, s.Put(ctx, "many:2", []byte("two"), time.Second))
		must(t, s.Put(ctx, "many:3", []byte("three"), time.Minute))
		h.Advance(2 * time.Second)
		got, err := store.GetMany(ctx, s, "many:1", "many:2", "many:absent", "many:3")
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 || string(got["many:1"]) != "one" || string(got["many:3"]) != "three" {
			t.Fatalf("GetMany: %q", got)
		}
		if got, err := store.GetMany(ctx, s, "many:absent"); err != nil || len(got) != 0 {
			t.Fatalf("GetMany of an absent key: %q %v", got, err)
		}
		if _, err := store.GetMany(ctx, s, "many:1", ""); !errors.Is(err, store.ErrInvalidKey) {
			t.Fatalf("GetMany with an empty key: %v", err)
		}
	})

	t.Run("PutGetDelete", func(t *testing.T) {
		big := make([]byte, 1<<20)
		rand.Read(big)
		for key, v := range map[string][]byte{"a": []byte("value"), "bin": {0, 255, 0, 10, 13}, "big": big, "empty": {}, "nil": nil} {
			must(t, s.Put(ctx, key, v, time.Minute))
			got, err := s.Get(ctx, key)
			if err != nil || !bytes.Equal(got, v) {
				t.Fatalf("%s: got %d bytes, %v", key, len(got), err)
			}
		}
		must(t, s.Delete(ctx, "a"))
		must(t, s.Delete(ctx, "a")) // absent: no error
		if _, err := s.Get(ctx, "a"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("after delete: %v", err)
		}
		// A value may be replaced, with a new ttl.
		must(t, s.Put(ctx, "bin", []byte("new"), time.Minute))
		if v, _ := s.Get(ctx, "bin"); string(v) != "new" {
			t.Fatalf("replaced value: %q", v)
		}
	})

	t.Run("BadInput", func(t *testing.T) {
		checks := map[string]error{
			"put":           s.Put(ctx, "", []byte("x"), time.Minute),
			"put if absent": s.PutIfAbsent(ctx, "", []byte("x"), time.Minute),
			"delete":        s.Delete(ctx, ""),
			"cas":           s.CompareAndSwap(ctx, "", nil, nil, time.Minute),
			"zero ttl":      s.Put(ctx, "k", []byte("x"), 0),
			"negative ttl":  s.PutIfAbsent(ctx, "k", []byte("x"), -time.Second),
		}
		_, checks["get"] = s.Get(ctx, "")
		_, checks["take"] = s.Take(ctx, "")
		_, checks["incr"] = s.Incr(ctx, "", time.Minute)
		_, checks["incr zero window"] = s.Incr(ctx, "k", 0)
		_, checks["seen once"] = s.SeenOnce(ctx, "", time.Minute)
		for name, err := range checks {
			if !errors.Is(err, store.ErrInvalidKey) {
				t.Errorf("%s: %v, want ErrInvalidKey", name, err)
			}
		}
		if _, err := s.Get(ctx, "k"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("a rejected put stored something: %v", err)
		}
		// Keys may be secrets (one-time codes): errors do not repeat them.
		const secret = "code:s3cret-authorization-code"
		must(t, s.Put(ctx, secret, []byte("v"), time.Minute))
		errs := []error{s.PutIfAbsent(ctx, secret, nil, time.Minute), s.CompareAndSwap(ctx, secret, []byte("x"), nil, time.Minute)}
		_, err := s.Get(ctx, secret+"-other")
		errs = append(errs, err)
		for _, err := range errs {
			if err == nil || strings.Contains(err.Error(), "s3cret") {
				t.Errorf("error %v", err)
			}
		}
	})

	t.Run("TTL", func(t *testing.T) {
		must(t, s.Put(ctx, "short", []byte("x"), 300*time.Millisecond))
		must(t, s.Put(ctx, "long", []byte("y"), time.Hour))
		h.Advance(time.Second)
		gone(t, "short")
		if _, err := s.Take(ctx, "short"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("take of an expired entry: %v", err)
		}
		if _, err := s.Get(ctx, "long"); err != nil {
			t.Fatalf("live entry: %v", err)
		}
		// An expired entry no longer blocks PutIfAbsent.
		must(t, s.PutIfAbsent(ctx, "short", []byte("again"), time.Minute))
	})

	t.Run("TakeOnce", func(t *testing.T) {
		must(t, s.Put(ctx, "code:1", []byte("grant"), time.Minute))
		var wins atomic.Int32
		var wg sync.WaitGroup
		for i := 0; i < 32; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				v, err := s.Take(ctx, "code:1")
				switch {
				case err == nil && string(v) == "grant":
					wins.Add(1)
				case !errors.Is(err, store.ErrNotFound):
					t.Errorf("take: %v", err)
				}
			}()
		}
		wg.Wait()
		if wins.Load() != 1 {
			t.Fatalf("%d takers won, want exactly 1", wins.Load())
		}
	})

	t.Run("PutIfAbsent", func(t *testing.T) {
		must(t, s.PutIfAbsent(ctx, "once", []byte("1"), time.Minute))
		if err := s.PutIfAbsent(ctx, "once", []byte("2"), time.Minute); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("second PutIfAbsent: %v", err)
		}
		if v, _ := s.Get(ctx, "once"); string(v) != "1" {
			t.Fatalf("value overwritten: %q", v)
		}
	})

	t.Run("CompareAndSwap", func(t *testing.T) {
		must(t, s.Put(ctx, "sess", []byte("v1"), time.Minute))
		must(t, s.CompareAndSwap(ctx, "sess", []byte("v1"), []byte("v2"), time.Minute))
		if err := s.CompareAndSwap(ctx, "sess", []byte("v1"), []byte("v3"), time.Minute); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("stale swap: %v", err)
		}
		if err := s.CompareAndSwap(ctx, "nothing", []byte("v1"), []byte("v3"), time.Minute); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("swap of an absent key: %v", err)
		}
		if v, _ := s.Get(ctx, "sess"); string(v) != "v2" {
			t.Fatalf("value %q", v)
		}
		// Concurrent swappers from the same value: one wins.
		var wins atomic.Int32
		var wg sync.WaitGroup
		for i := 0; i < 16; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if s.CompareAndSwap(ctx, "sess", []byte("v2"), []byte{byte(i)}, time.Minute) == nil {
					wins.Add(1)
				}
			}()
		}
		wg.Wait()
		if wins.Load() != 1 {
			t.Fatalf("%d swappers won", wins.Load())
		}
	})

	t.Run("Counters", func(t *testing.T) {
		var wg sync.WaitGroup
		for i := 0; i < 50; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := s.Incr(ctx, "rl:ip", 3*time.Second); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		n, err := s.Incr(ctx, "rl:ip", 3*time.Second)
		if err != nil || n != 51 {
			t.Fatalf("51st increment: %d %v", n, err)
		}
		// The window is fixed: an increment inside it does not extend it.
		h.Advance(1500 * time.Millisecond)
		if n, err := s.Incr(ctx, "rl:ip", 3*time.Second); err != nil || n != 52 {
			t.Fatalf("52nd increment: %d %v", n, err)
		}
		h.Advance(1500 * time.Millisecond)
		gone(t, "rl:ip")
		if n, _ := s.Incr(ctx, "rl:ip", 3*time.Second); n != 1 {
			t.Fatalf("new window starts at %d", n)
		}
	})

	t.Run("CounterReadReset", func(t *testing.T) {
		for range 12 {
			if _, err := s.Incr(ctx, "rl:user", time.Minute); err != nil {
				t.Fatal(err)
			}
		}
		if v, err := s.Get(ctx, "rl:user"); err != nil || string(v) != "12" {
			t.Fatalf("counter reads %q %v, want \"12\"", v, err)
		}
		must(t, s.Delete(ctx, "rl:user"))
		if n, err := s.Incr(ctx, "rl:user", time.Minute); err != nil || n != 1 {
			t.Fatalf("after a reset: %d %v", n, err)
		}
		// A number stored by Put counts on; anything else is not a counter and stays as it was.
		must(t, s.Put(ctx, "rl:n", []byte("41"), time.Minute))
		if n, err := s.Incr(ctx, "rl:n", time.Minute); err != nil || n != 42 {
			t.Fatalf("incr of a stored 41: %d %v", n, err)
		}
		for _, v := range []string{"text", "", "07", " 7", "+7", "9223372036854775807"} {
			must(t, s.Put(ctx, "rl:v", []byte(v), time.Minute))
			if n, err := s.Incr(ctx, "rl:v", time.Minute); err == nil {
				t.Errorf("incr of %q gave %d", v, n)
			}
			if got, _ := s.Get(ctx, "rl:v"); string(got) != v {
				t.Errorf("a refused incr changed %q to %q", v, got)
			}
		}
	})

	t.Run("ReplayCache", func(t *testing.T) {
		first, err := s.SeenOnce(ctx, "jti:abc", time.Second)
		if err != nil || !first {
			t.Fatalf("first sight: %v %v", first, err)
		}
		if again, _ := s.SeenOnce(ctx, "jti:abc", time.Second); again {
			t.Fatal("a replay was taken for new")
		}
		h.Advance(time.Second)
		gone(t, "jti:abc")
		if first, _ := s.SeenOnce(ctx, "jti:abc", time.Minute); !first {
			t.Fatal("entry outlived its ttl")
		}
	})

	t.Run("Ping", func(t *testing.T) { must(t, s.Ping(ctx)) })
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
