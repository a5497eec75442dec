package rediskv

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/vula-eid/vula/internal/store"
	"github.com/vula-eid/vula/internal/store/ephemeraltest"
	"github.com/vula-eid/vula/internal/testenv"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func TestConformance(t *testing.T) {
	r := testenv.Redis(t)
	ephemeraltest.Run(t, func(t *testing.T) store.Ephemeral {
		s, err := Open(context.Background(), r.URL, quiet)
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// TestOutage stops Redis under a store and starts it again: errors in between are
// ErrUnavailable, and the same store works afterwards.
func TestOutage(t *testing.T) {
	r := testenv.Redis(t)
	ctx := context.Background()
	s, err := Open(ctx, r.URL, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Put(ctx, "k", []byte("v"), time.Minute); err != nil {
		t.Fatal(err)
	}
	r.Stop(t)
	for name, op := range map[string]func() error{
		"ping": func() error { return s.Ping(ctx) },
		"put":  func() error { return s.Put(ctx, "k2", []byte("v"), time.Minute) },
		"take": func() error { _, err := s.Take(ctx, "k"); return err },
		"incr": func() error { _, err := s.Incr(ctx, "c", time.Minute); return err },
		"cas":  func() error { return s.CompareAndSwap(ctx, "k", []byte("v"), []byte("w"), time.Minute) },
		"seen": func() error { _, err := s.SeenOnce(ctx, "jti", time.Minute); return err },
	} {
		start := time.Now()
		if err := op(); !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("%s with Redis down: %v", name, err)
		}
		t.Logf("%s with Redis down failed after %v", name, time.Since(start).Round(time.Millisecond))
	}
	r.Start(t)
	var perr error
	start := time.Now()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if perr = s.Ping(ctx); perr == nil {
			break
		}
	}
	if perr != nil {
		t.Fatalf("no recovery: %v", perr)
	}
	t.Logf("recovered %v after the restart", time.Since(start).Round(time.Millisecond))
	if err := s.Put(ctx, "k3", []byte("v"), time.Minute); err != nil {
		t.Fatalf("put after recovery: %v", err)
	}
}

func TestOpenDownAndURLs(t *testing.T) {
	ctx := context.Background()
	// Nothing listens on port 1: Open works, Ping says why; neither the log nor an error
	// shows the password.
	var logged bytes.Buffer
	s, err := Open(ctx, "redis://:s3cret-pw@127.0.0.1:1/0", slog.New(slog.NewTextHandler(&logged, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Ping(ctx); !errors.Is(err, store.ErrUnavailable) || strings.Contains(err.Error(), "s3cret-pw") {
		t.Fatalf("ping of a down Redis: %v", err)
	}
	if !strings.Contains(logged.String(), "127.0.0.1:1") || strings.Contains(logged.String(), "s3cret-pw") {
		t.Fatalf("log: %s", logged.String())
	}
	for _, u := range []string{
		"http://x", "", "redis+sentinel://h1:26379,h2:26379", "redis://:s3cret-pw@[bad",
		"redis+cluster://:s3cret-pw@", "redis://:s3cret-pw@h:1/notadb",
		"redis+cluster://:s3cret-pw@h1:7000,,h2:7001", "redis+sentinel://:s3cret-pw@h1:26379/m?db=x",
		"redis+sentinel://:s3cret-pw@h1:26379/m?db=-1", "redis+sentinel://h1:26379/m?s3cret-pw",
		"redis+sentinel://h1:26379/m/extra", "redis+cluster://h1:7000/3", "redis+cluster://h1:7000?db=1",
		"redis+sentinel://h1:26379/m?db=1&x=%zz",
	} {
		if _, err := Open(ctx, u, quiet); err == nil || strings.Contains(err.Error(), "s3cret-pw") {
			t.Errorf("%q: %v", u, err)
		}
	}
	for _, c := range []struct {
		url                   string
		addrs, master, passwd string
		db                    int
		cluster, tls          bool
	}{
		{url: "redis://:pw@127.0.0.1:6379/2", addrs: "127.0.0.1:6379", passwd: "pw", db: 2},
		{url: "rediss://h:6380", addrs: "h:6380", tls: true},
		{url: "redis+sentinel://:pw@h1:26379,h2:26379/mymaster", addrs: "h1:26379,h2:26379", master: "mymaster", passwd: "pw"},
		{url: "redis+sentinel://h1:26379/mymaster?db=3", addrs: "h1:26379", master: "mymaster", db: 3},
		{url: "rediss+sentinel://h1:26379/m", addrs: "h1:26379", master: "m", tls: true},
		{url: "redis+cluster://h1:7000,h2:7001,h3:7002", addrs: "h1:7000,h2:7001,h3:7002", cluster: true},
		{url: "rediss+cluster://:pw@h1:7000/", addrs: "h1:7000", passwd: "pw", cluster: true, tls: true},
	} {
		o, err := parseURL(c.url)
		if err != nil {
			t.Errorf("%s: %v", c.url, err)
			continue
		}
		if strings.Join(o.Addrs, ",") != c.addrs || o.MasterName != c.master || o.Password != c.passwd ||
			o.DB != c.db || o.IsClusterMode != c.cluster || (o.TLSConfig != nil) != c.tls {
			t.Errorf("%s: options %+v", c.url, o)
		}
	}
}

// TestStartsDown opens the store while Redis is down, as a replica may start before Redis:
// the same store works once Redis is up, without reopening.
func TestStartsDown(t *testing.T) {
	r := testenv.Redis(t)
	ctx := context.Background()
	r.Stop(t)
	s, err := Open(ctx, r.URL, quiet)
	if err != nil {
		t.Fatalf("open with Redis down: %v", err)
	}
	defer s.Close()
	if err := s.Ping(ctx); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("ping with Redis down: %v", err)
	}
	if _, err := s.Take(ctx, "code:1"); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("take with Redis down: %v", err)
	}
	r.Start(t)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.Ping(ctx))
	must(s.Put(ctx, "code:1", []byte("grant"), time.Minute))
	if v, err := s.Take(ctx, "code:1"); err != nil || string(v) != "grant" {
		t.Fatalf("take after Redis came up: %q %v", v, err)
	}
}

func BenchmarkTakeOnce(b *testing.B) {
	r := testenv.Redis(b)
	s, err := Open(context.Background(), r.URL, quiet)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ephemeraltest.BenchmarkTakeOnce(b, s)
}
