// Package rediskv is the ephemeral store on Redis, for replicas that share state, through
// go-redis's UniversalClient: a single server, Sentinel or Cluster. Every operation touches a
// single key, so Cluster needs no hash tags. A Redis that is down gives store.ErrUnavailable
// quickly, and the store recovers on its own when Redis is back.
package rediskv

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/vula-eid/vula/internal/store"
)

// Store is a store.Ephemeral on Redis.
type Store struct {
	c      redis.UniversalClient
	prefix string
}

var (
	_ store.Ephemeral   = (*Store)(nil)
	_ store.Batcher     = (*Store)(nil)
	_ store.MultiGetter = (*Store)(nil)
)

// DefaultPrefix namespaces Vula's keys in a shared Redis.
const DefaultPrefix = "vula:"

// Open connects to url: redis://[:password@]host:port/db or rediss://… for one server;
// redis+sentinel://[:password@]host1:26379,host2:26379/master[?db=N] for Sentinel;
// redis+cluster://[:password@]host1:7000,host2:7001 for Cluster; rediss+sentinel:// and
// rediss+cluster:// speak TLS. Open does not wait for Redis:
// a Redis that is down makes Ping and every operation fail with store.ErrUnavailable until it
// comes back.
func Open(ctx context.Context, rawURL string, log *slog.Logger) (*Store, error) {
	opts, err := parseURL(rawURL)
	if err != nil {
		return nil, err
	}
	// Short timeouts and one retry: during an outage a request should fail fast with
	// ErrUnavailable (a 503) rather than hang; the retry absorbs a pooled connection that
	// died when Redis restarted.
	opts.DialTimeout, opts.ReadTimeout, opts.WriteTimeout = 2*time.Second, 2*time.Second, 2*time.Second
	opts.MaxRetries = 1
	opts.DialerRetries, opts.DialerRetryTimeout = 1, 50*time.Millisecond
	s := OpenClient(redis.NewUniversalClient(opts), DefaultPrefix)
	if log != nil {
		// The addresses and mode only: the URL may carry a password.
		mode := "single"
		switch {
		case opts.MasterName != "":
			mode = "sentinel"
		case opts.IsClusterMode:
			mode = "cluster"
		}
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		if err := s.Ping(pctx); err != nil {
			log.Warn("redis not answering yet; will retry on use", "mode", mode, "addrs", opts.Addrs, "err", err)
		} else {
			log.Info("redis ephemeral store", "mode", mode, "addrs", opts.Addrs, "db", opts.DB)
		}
	}
	return s, nil
}

// OpenClient wraps a client the caller configured; every key is stored under prefix (Open uses
// DefaultPrefix). Close closes c.
func OpenClient(c redis.UniversalClient, prefix string) *Store {
	return &Store{c: c, prefix: prefix}
}

func parseURL(raw string) (*redis.UniversalOptions, error) {
	scheme, _, _ := strings.Cut(raw, "://")
	switch scheme {
	case "redis", "rediss":
		o, err := redis.ParseURL(raw)
		if err != nil {
			// url.Error quotes the whole URL, password included: name only the cause.
			var uerr *url.Error
			if errors.As(err, &uerr) {
				return nil, fmt.Errorf("rediskv: malformed redis URL: %v", uerr.Err)
			}
			return nil, fmt.Errorf("rediskv: %w", err)
		}
		return &redis.UniversalOptions{Addrs: []string{o.Addr}, Username: o.Username, Password: o.Password, DB: o.DB, TLSConfig: o.TLSConfig}, nil
	case "redis+sentinel", "rediss+sentinel", "redis+cluster", "rediss+cluster":
		return parseMulti(scheme, raw)
	}
	// The URL is not repeated: it may hold a password.
	return nil, errors.New("rediskv: want a redis://, rediss://, redis+sentinel:// or redis+cluster:// URL")
}

// parseMulti reads the Sentinel and Cluster URLs, which name several hosts. The password
// authenticates to the Redis servers; sentinels are asked without one (for sentinels that want
// a password, build the client yourself and use OpenClient).
func parseMulti(scheme, raw string) (*redis.UniversalOptions, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, errors.New("rediskv: malformed redis URL")
	}
	o := &redis.UniversalOptions{Addrs: strings.Split(u.Host, ",")}
	for _, a := range o.Addrs {
		if a == "" {
			return nil, errors.New("rediskv: the redis URL names no host, or an empty one")
		}
	}
	if u.User != nil {
		o.Username = u.User.Username()
		o.Password, _ = u.User.Password()
	}
	if strings.HasPrefix(scheme, "rediss") {
		// The server name is each address's host, which crypto/tls fills in at dial time.
		o.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return nil, errors.New("rediskv: malformed query in the redis URL")
	}
	if strings.HasSuffix(scheme, "+sentinel") {
		o.MasterName = strings.Trim(u.Path, "/")
		if o.MasterName == "" || strings.Contains(o.MasterName, "/") {
			return nil, errors.New("rediskv: redis+sentinel URL needs /<master name>")
		}
		if db := q.Get("db"); db != "" {
			if o.DB, err = strconv.Atoi(db); err != nil || o.DB < 0 {
				return nil, errors.New("rediskv: db in the redis URL is not a database number")
			}
		}
		q.Del("db")
	} else {
		// A cluster has one database and no master name.
		if strings.Trim(u.Path, "/") != "" {
			return nil, errors.New("rediskv: redis+cluster URL takes no path")
		}
		o.IsClusterMode = true
	}
	if len(q) > 0 {
		// Not named: a misplaced password would show.
		return nil, errors.New("rediskv: the redis URL has an unknown query parameter (Sentinel reads only db)")
	}
	return o, nil
}

// wrap maps go-redis errors to the store's: redis.Nil to ErrNotFound, a server's refusal to a
// plain error, anything else (refused dial, timeout, a cluster or replica not ready) to
// ErrUnavailable. go-redis names addresses in its errors, never the password.
func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, redis.Nil) {
		return fmt.Errorf("rediskv: %s: %w", op, store.ErrNotFound)
	}
	var rerr redis.Error
	if errors.As(err, &rerr) && !transient(rerr.Error()) {
		return fmt.Errorf("rediskv: %s: %w", op, err)
	}
	return fmt.Errorf("rediskv: %s: %w: %w", op, store.ErrUnavailable, err)
}

// transient tells the server errors that go away by themselves.
func transient(msg string) bool {
	for _, p := range []string{"LOADING", "CLUSTERDOWN", "MASTERDOWN", "TRYAGAIN", "READONLY"} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

// ms is ttl in whole milliseconds, rounded up: Redis's finest expiry, and never 0 (which it refuses).
func ms(ttl time.Duration) int64 { return int64((ttl + time.Millisecond - 1) / time.Millisecond) }

func pttl(ttl time.Duration) time.Duration { return time.Duration(ms(ttl)) * time.Millisecond }

func (s *Store) k(key string) string { return s.prefix + key }

// Put stores value for ttl.
func (s *Store) Put(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if err := store.CheckEntry(key, ttl); err != nil {
		return err
	}
	return wrap("put", s.c.Set(ctx, s.k(key), value, pttl(ttl)).Err())
}

// PutAll stores entries in one round trip (a pipeline, not MULTI: under Cluster the keys may
// live on different nodes).
func (s *Store) PutAll(ctx context.Context, entries ...store.Entry) error {
	for _, e := range entries {
		if err := store.CheckEntry(e.Key, e.TTL); err != nil {
			return err
		}
	}
	_, err := s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, e := range entries {
			p.Set(ctx, s.k(e.Key), e.Value, pttl(e.TTL))
		}
		return nil
	})
	return wrap("put all", err)
}

// PutIfAbsent stores value if key holds nothing.
func (s *Store) PutIfAbsent(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if err := store.CheckEntry(key, ttl); err != nil {
		return err
	}
	err := s.c.SetArgs(ctx, s.k(key), value, redis.SetArgs{Mode: "NX", TTL: pttl(ttl)}).Err()
	if errors.Is(err, redis.Nil) {
		return fmt.Errorf("rediskv: put if absent: the key exists: %w", store.ErrConflict)
	}
	return wrap("put if absent", err)
}

// Get returns the value of key.
func (s *Store) Get(ctx context.Context, key string) ([]byte, error) {
	if err := store.CheckKey(key); err != nil {
		return nil, err
	}
	b, err := s.c.Get(ctx, s.k(key)).Bytes()
	return b, wrap("get", err)
}

// GetMany reads the keys in one pipeline of GETs: one round trip on one server, and unlike
// MGET it works on a cluster whatever slots the keys hash to.
func (s *Store) GetMany(ctx context.Context, keys ...string) (map[string][]byte, error) {
	for _, k := range keys {
		if err := store.CheckKey(k); err != nil {
			return nil, err
		}
	}
	cmds := make([]*redis.StringCmd, len(keys))
	pipe := s.c.Pipeline()
	for i, k := range keys {
		cmds[i] = pipe.Get(ctx, s.k(k))
	}
	_, _ = pipe.Exec(ctx) // each command's own error is read below
	out := make(map[string][]byte, len(keys))
	for i, c := range cmds {
		b, err := c.Bytes()
		switch {
		case err == nil:
			out[keys[i]] = b
		case !errors.Is(err, redis.Nil):
			return nil, wrap("get", err)
		}
	}
	return out, nil
}

// Delete removes key.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := store.CheckKey(key); err != nil {
		return err
	}
	return wrap("delete", s.c.Del(ctx, s.k(key)).Err())
}

// Take returns and removes the value of key (GETDEL, atomic in Redis).
func (s *Store) Take(ctx context.Context, key string) ([]byte, error) {
	if err := store.CheckKey(key); err != nil {
		return nil, err
	}
	b, err := s.c.GetDel(ctx, s.k(key)).Bytes()
	return b, wrap("take", err)
}

// casScript swaps the value only when it is the expected one: 1 swapped, 0 changed, -1 absent.
var casScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if not cur then return -1 end
if cur ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1`)

// CompareAndSwap replaces old with new.
func (s *Store) CompareAndSwap(ctx context.Context, key string, old, new []byte, ttl time.Duration) error {
	if err := store.CheckEntry(key, ttl); err != nil {
		return err
	}
	n, err := casScript.Run(ctx, s.c, []string{s.k(key)}, old, new, ms(ttl)).Int()
	if err != nil {
		return wrap("compare and swap", err)
	}
	switch n {
	case -1:
		return fmt.Errorf("rediskv: compare and swap: %w", store.ErrNotFound)
	case 0:
		return fmt.Errorf("rediskv: compare and swap: the value changed: %w", store.ErrConflict)
	}
	return nil
}

// incrScript counts and starts the window on the first increment, in one step.
var incrScript = redis.NewScript(`
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n`)

// Incr counts within a fixed window.
func (s *Store) Incr(ctx context.Context, key string, window time.Duration) (int64, error) {
	if err := store.CheckEntry(key, window); err != nil {
		return 0, err
	}
	n, err := incrScript.Run(ctx, s.c, []string{s.k(key)}, ms(window)).Int64()
	return n, wrap("incr", err)
}

// SeenOnce records key and reports whether it is new.
func (s *Store) SeenOnce(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	if err := store.CheckEntry(key, ttl); err != nil {
		return false, err
	}
	err := s.c.SetArgs(ctx, s.k(key), []byte{1}, redis.SetArgs{Mode: "NX", TTL: pttl(ttl)}).Err()
	if errors.Is(err, redis.Nil) {
		return false, nil
	}
	return err == nil, wrap("seen once", err)
}

// Ping reports whether Redis answers.
func (s *Store) Ping(ctx context.Context) error { return wrap("ping", s.c.Ping(ctx).Err()) }

// Close closes the client.
func (s *Store) Close() error { return s.c.Close() }
