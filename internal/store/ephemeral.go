package store

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"
)

// Ephemeral keeps short-lived state shared by every replica: sessions, one-time codes, replay
// caches, rate-limit counters. Values are opaque bytes; every entry has a time to live. Keys are
// namespaced by the caller ("code:…", "jti:…"). Every method rejects an empty key with
// ErrInvalidKey. Errors never repeat the key: a key may be a secret such as an authorization code.
// Implementations: sqlitekv (the embedded default), memstore (tests), rediskv (replicas).
type Ephemeral interface {
	// Put stores value under key for ttl, replacing what was there.
	Put(ctx context.Context, key string, value []byte, ttl time.Duration) error
	// PutIfAbsent stores value only if key holds nothing; ErrConflict otherwise.
	PutIfAbsent(ctx context.Context, key string, value []byte, ttl time.Duration) error
	// Get returns the value of key; ErrNotFound if absent or expired.
	Get(ctx context.Context, key string) ([]byte, error)
	// Delete removes key; removing an absent key is not an error.
	Delete(ctx context.Context, key string) error
	// Take returns the value of key and removes it, atomically: of several concurrent takers of
	// one key exactly one gets it, the others ErrNotFound. For one-time codes.
	Take(ctx context.Context, key string) ([]byte, error)
	// CompareAndSwap replaces the value of key with new, for ttl, only if it is old:
	// ErrNotFound if key is absent, ErrConflict if it holds something else.
	CompareAndSwap(ctx context.Context, key string, old, new []byte, ttl time.Duration) error
	// Incr adds one to the counter at key and returns the new count. A counter lives for one
	// fixed window from its first increment; later increments do not extend it. A counter is
	// stored as its decimal text: Get reads it ("12") and Delete resets it. Incr on a key that
	// holds anything but a decimal integer is an error.
	Incr(ctx context.Context, key string, window time.Duration) (int64, error)
	// SeenOnce records key for ttl and reports whether this was the first time (a replay cache).
	SeenOnce(ctx context.Context, key string, ttl time.Duration) (first bool, err error)
	// Ping reports whether the store answers now.
	Ping(ctx context.Context) error
	Close() error
}

// Entry is one key's value and time to live, for PutAll.
type Entry struct {
	Key   string
	Value []byte
	TTL   time.Duration
}

// Batcher is an Ephemeral store that can store several entries in one write (one transaction,
// one round trip) instead of one write each. It is optional: PutAll falls back to Put.
type Batcher interface {
	// PutAll stores every entry as Put would. It is not atomic: on an error, some entries may
	// be stored and others not.
	PutAll(ctx context.Context, entries ...Entry) error
}

// PutAll stores entries in s, in one write when s is a Batcher.
func PutAll(ctx context.Context, s Ephemeral, entries ...Entry) error {
	if b, ok := s.(Batcher); ok {
		return b.PutAll(ctx, entries...)
	}
	for _, e := range entries {
		if err := s.Put(ctx, e.Key, e.Value, e.TTL); err != nil {
			return err
		}
	}
	return nil
}

// MultiGetter is an Ephemeral store that can read several keys in one round trip (one
// statement, one Redis pipeline): for checks that read a few markers on every request.
type MultiGetter interface {
	// GetMany returns the values of the keys that are present and unexpired; the others are
	// not in the map.
	GetMany(ctx context.Context, keys ...string) (map[string][]byte, error)
}

// GetMany reads keys from s, in one round trip when s is a MultiGetter: the values of the keys
// present, absent or expired ones left out.
func GetMany(ctx context.Context, s Ephemeral, keys ...string) (map[string][]byte, error) {
	if m, ok := s.(MultiGetter); ok {
		return m.GetMany(ctx, keys...)
	}
	out := make(map[string][]byte, len(keys))
	for _, k := range keys {
		v, err := s.Get(ctx, k)
		switch {
		case err == nil:
			out[k] = v
		case !errors.Is(err, ErrNotFound):
			return nil, err
		}
	}
	return out, nil
}

// ErrInvalidKey is returned for an empty key or a non-positive time to live.
var ErrInvalidKey = errors.New("store: empty key or non-positive ttl")

// CheckKey rejects an empty key, for every backend alike.
func CheckKey(key string) error {
	if key == "" {
		return fmt.Errorf("%w: the key is empty", ErrInvalidKey)
	}
	return nil
}

// Counter reads a stored counter for Incr: like Redis, only the canonical decimal form of an
// int64, and never past the largest one. Every embedded backend shares it.
func Counter(v []byte) (int64, error) {
	n, err := strconv.ParseInt(string(v), 10, 64)
	if err != nil || strconv.FormatInt(n, 10) != string(v) {
		return 0, errors.New("incr: the key holds a value, not a counter")
	}
	if n == math.MaxInt64 {
		return 0, errors.New("incr: the counter would overflow")
	}
	return n, nil
}

// CheckEntry rejects an empty key or a time to live that is not positive.
func CheckEntry(key string, ttl time.Duration) error {
	if err := CheckKey(key); err != nil {
		return err
	}
	if ttl <= 0 {
		return fmt.Errorf("%w: ttl %v is not positive", ErrInvalidKey, ttl)
	}
	return nil
}
