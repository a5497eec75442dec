// Package memstore is the in-memory ephemeral store of the embedded default: one process, state
// lost on restart. An expired entry is invisible at once (expiry is checked on every read, against
// the injected clock) and its memory is reclaimed by a janitor goroutine that Close stops.
package memstore

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/vula-eid/vula/internal/store"
)

// sweepEvery is how often the janitor reclaims expired entries. Correctness does not depend on
// it: reads ignore expired entries anyway.
const sweepEvery = time.Minute

type item struct {
	value   []byte
	expires time.Time
}

// Store is an in-memory store.Ephemeral, safe for concurrent use.
type Store struct {
	now  func() time.Time
	mu   sync.Mutex
	m    map[string]item
	stop chan struct{}
	once sync.Once
}

var (
	_ store.Ephemeral   = (*Store)(nil)
	_ store.MultiGetter = (*Store)(nil)
)

// New makes a store whose clock is now (time.Now in production, a fake clock in tests) and
// starts its janitor.
func New(now func() time.Time) *Store {
	s := &Store{now: now, m: map[string]item{}, stop: make(chan struct{})}
	go s.janitor(sweepEvery)
	return s
}

func (s *Store) janitor(every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.sweep()
		}
	}
}

// sweep deletes every expired entry.
func (s *Store) sweep() {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	for k, it := range s.m {
		if !now.Before(it.expires) {
			delete(s.m, k)
		}
	}
}

// live returns the unexpired item at key. Called with mu held.
func (s *Store) live(key string) (item, bool) {
	it, ok := s.m[key]
	if ok && !s.now().Before(it.expires) {
		delete(s.m, key)
		return item{}, false
	}
	return it, ok
}

func notFound(op string) error { return fmt.Errorf("memstore: %s: %w", op, store.ErrNotFound) }
func conflict(op string) error { return fmt.Errorf("memstore: %s: %w", op, store.ErrConflict) }

// Put stores value for ttl, replacing what was there.
func (s *Store) Put(_ context.Context, key string, value []byte, ttl time.Duration) error {
	if err := store.CheckEntry(key, ttl); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[key] = item{value: bytes.Clone(value), expires: s.now().Add(ttl)}
	return nil
}

// PutIfAbsent stores value if key holds nothing.
func (s *Store) PutIfAbsent(_ context.Context, key string, value []byte, ttl time.Duration) error {
	if err := store.CheckEntry(key, ttl); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.live(key); ok {
		return conflict("put if absent: the key exists")
	}
	s.m[key] = item{value: bytes.Clone(value), expires: s.now().Add(ttl)}
	return nil
}

// Get returns the value of key.
func (s *Store) Get(_ context.Context, key string) ([]byte, error) {
	if err := store.CheckKey(key); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	it, ok := s.live(key)
	if !ok {
		return nil, notFound("get")
	}
	return bytes.Clone(it.value), nil
}

// GetMany returns the values of the keys present, under one lock.
func (s *Store) GetMany(_ context.Context, keys ...string) (map[string][]byte, error) {
	for _, k := range keys {
		if err := store.CheckKey(k); err != nil {
			return nil, err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string][]byte, len(keys))
	for _, k := range keys {
		if it, ok := s.live(k); ok {
			out[k] = bytes.Clone(it.value)
		}
	}
	return out, nil
}

// Delete removes key.
func (s *Store) Delete(_ context.Context, key string) error {
	if err := store.CheckKey(key); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, key)
	return nil
}

// Take returns and removes the value of key.
func (s *Store) Take(_ context.Context, key string) ([]byte, error) {
	if err := store.CheckKey(key); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	it, ok := s.live(key)
	if !ok {
		return nil, notFound("take")
	}
	delete(s.m, key)
	return it.value, nil
}

// CompareAndSwap replaces old with new, for ttl.
func (s *Store) CompareAndSwap(_ context.Context, key string, old, new []byte, ttl time.Duration) error {
	if err := store.CheckEntry(key, ttl); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	it, ok := s.live(key)
	if !ok {
		return notFound("compare and swap")
	}
	if !bytes.Equal(it.value, old) {
		return conflict("compare and swap: the value changed")
	}
	s.m[key] = item{value: bytes.Clone(new), expires: s.now().Add(ttl)}
	return nil
}

// Incr counts within a fixed window that starts at the first increment. The counter is kept as
// its decimal text, as Redis keeps it, so that Get, CompareAndSwap and a Put of a number behave
// alike on both backends.
func (s *Store) Incr(_ context.Context, key string, window time.Duration) (int64, error) {
	if err := store.CheckEntry(key, window); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	it, ok := s.live(key)
	var n int64
	if ok {
		var err error
		if n, err = store.Counter(it.value); err != nil {
			return 0, err
		}
	}
	n++
	if n == 1 {
		// The window starts when the count does, as in the Redis backend's script.
		it.expires = s.now().Add(window)
	}
	it.value = strconv.AppendInt(nil, n, 10)
	s.m[key] = it
	return n, nil
}

// SeenOnce records key for ttl and reports whether it is new.
func (s *Store) SeenOnce(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	if err := store.CheckEntry(key, ttl); err != nil {
		return false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.live(key); ok {
		return false, nil
	}
	s.m[key] = item{value: []byte{1}, expires: s.now().Add(ttl)}
	return true, nil
}

// Ping always answers: the store is this process.
func (s *Store) Ping(context.Context) error { return nil }

// Close stops the janitor. The store still answers afterwards; closing twice is harmless.
func (s *Store) Close() error {
	s.once.Do(func() { close(s.stop) })
	return nil
}

// len counts the entries held, expired or not, for tests of the janitor.
func (s *Store) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}
