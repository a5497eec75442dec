// Package memstore is the in-memory ephemeral store of the embedded default: one process, state
// lost on restart. Expired entries are invisible at once and swept by a janitor goroutine.
package memstore

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/vula-eid/vula/internal/store"
)

type item struct {
	value   []byte
	counter int64
	expires time.Time
}

// Store is an in-memory store.Ephemeral.
type Store struct {
	now  func() time.Time
	mu   sync.Mutex
	m    map[string]item
	stop chan struct{}
	once sync.Once
}

var _ store.Ephemeral = (*Store)(nil)

// New makes a store whose clock is now, with a janitor sweeping expired entries every minute.
func New(now func() time.Time) *Store {
	s := &Store{now: now, m: map[string]item{}, stop: make(chan struct{})}
	go s.janitor(time.Minute)
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
			s.mu.Lock()
			now := s.now()
			for k, it := range s.m {
				if !now.Before(it.expires) {
					delete(s.m, k)
				}
			}
			s.mu.Unlock()
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

func clone(b []byte) []byte { return append([]byte{}, b...) }

// Put stores value for ttl.
func (s *Store) Put(_ context.Context, key string, value []byte, ttl time.Duration) error {
	if err := store.CheckEntry(key, ttl); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[key] = item{value: clone(value), expires: s.now().Add(ttl)}
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
		return fmt.Errorf("%w: %s exists", store.ErrConflict, key)
	}
	s.m[key] = item{value: clone(value), expires: s.now().Add(ttl)}
	return nil
}

// Get returns the value of key.
func (s *Store) Get(_ context.Context, key string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	it, ok := s.live(key)
	if !ok {
		return nil, store.ErrNotFound
	}
	if it.value == nil {
		return []byte(fmt.Sprint(it.counter)), nil
	}
	return clone(it.value), nil
}

// Delete removes key.
func (s *Store) Delete(_ context.Context, key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, key)
	return nil
}

// Take returns and removes the value of key.
func (s *Store) Take(_ context.Context, key string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	it, ok := s.live(key)
	if !ok {
		return nil, store.ErrNotFound
	}
	delete(s.m, key)
	return it.value, nil
}

// CompareAndSwap replaces old with new.
func (s *Store) CompareAndSwap(_ context.Context, key string, old, new []byte, ttl time.Duration) error {
	if err := store.CheckEntry(key, ttl); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	it, ok := s.live(key)
	if !ok {
		return store.ErrNotFound
	}
	if !bytes.Equal(it.value, old) {
		return fmt.Errorf("%w: %s changed", store.ErrConflict, key)
	}
	s.m[key] = item{value: clone(new), expires: s.now().Add(ttl)}
	return nil
}

// Incr counts within a fixed window.
func (s *Store) Incr(_ context.Context, key string, window time.Duration) (int64, error) {
	if err := store.CheckEntry(key, window); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	it, ok := s.live(key)
	if !ok {
		it = item{expires: s.now().Add(window)}
	}
	it.counter++
	s.m[key] = it
	return it.counter, nil
}

// SeenOnce records key and reports whether it is new.
func (s *Store) SeenOnce(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	err := s.PutIfAbsent(ctx, key, []byte{1}, ttl)
	if err == nil {
		return true, nil
	}
	if err == store.ErrInvalidKey {
		return false, err
	}
	return false, nil
}

// Ping always answers: the store is this process.
func (s *Store) Ping(context.Context) error { return nil }

// Close stops the janitor.
func (s *Store) Close() error {
	s.once.Do(func() { close(s.stop) })
	return nil
}
