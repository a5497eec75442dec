package testenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// PG is one test's database on the PostgreSQL server its test process shares.
type PG struct {
	// DSN names a fresh, empty database of this test's own.
	DSN    string
	server *pgServer
}

// Stop shuts the shared server down (fast shutdown: open connections are cut), to test outages.
// Every database of the test process goes down with it until Start.
func (p *PG) Stop(t testing.TB) {
	t.Helper()
	p.server.stop(syscall.SIGINT)
}

// Start starts the server again on the same port and waits until it takes connections.
func (p *PG) Start(t testing.TB) {
	t.Helper()
	if err := p.server.start(); err != nil {
		t.Fatal(err)
	}
}

var (
	pgOnce     sync.Once
	pgShared   *pgServer
	pgErr      error
	pgSyncOnce sync.Once
	pgSynced   *pgServer
	pgSyncErr  error
	pgDBs      atomic.Int64
	errPGNotIn = errors.New("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb)")
)

// Postgres gives the test a database of its own on a PostgreSQL server started once per test
// process: initdb in a temporary directory, the server on a free loopback port with its unix
// socket in that directory, fsync off (the tests need speed, not durability). As root, the
// server runs as the postgres system user, since PostgreSQL refuses to run as root.
//
// The server dies with the test process, even one killed by a timeout panic; TestMain calls
// Cleanup (or StopPostgres) after m.Run to stop it at once and remove its files. Without
// PostgreSQL the test is skipped, or fails when CI=true.
func Postgres(t testing.TB) *PG {
	t.Helper()
	pgOnce.Do(func() { pgShared, pgErr = startPostgres(false) })
	return database(t, pgShared, pgErr)
}

// PostgresDurable is Postgres on a second server of the test process that runs as production
// does: fsync and synchronous_commit on, so that each commit waits for the disk. Benchmarks use
// it; a commit costs there what it costs in production.
func PostgresDurable(t testing.TB) *PG {
	t.Helper()
	pgSyncOnce.Do(func() { pgSynced, pgSyncErr = startPostgres(true) })
	return database(t, pgSynced, pgSyncErr)
}

// database makes a fresh database on server s (started with error startErr).
func database(t testing.TB, s *pgServer, startErr error) *PG {
	t.Helper()
	if errors.Is(startErr, errPGNotIn) {
		Missing(t, startErr.Error())
	}
	if startErr != nil {
		t.Fatalf("PostgreSQL: %v", startErr)
	}
	// A test that stopped the server and failed before restarting it must not break the next.
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("test_%d", pgDBs.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgconn.Connect(ctx, s.dsn("postgres"))
	if err != nil {
		t.Fatalf("PostgreSQL: %v", err)
	}
	defer func() { _ = c.Close(ctx) }() // the database is made or the test has failed
	if _, err := c.Exec(ctx, "CREATE DATABASE "+name).ReadAll(); err != nil {
		t.Fatalf("PostgreSQL: create database: %v", err)
	}
	return &PG{DSN: s.dsn(name), server: s}
}

// PID is the server's postmaster process, for benchmarks that count its CPU time.
func (p *PG) PID() int {
	p.server.mu.Lock()
	defer p.server.mu.Unlock()
	if p.server.cmd == nil {
		return 0
	}
	return p.server.cmd.Process.Pid
}

// StopPostgres stops the process's PostgreSQL servers, if any were started, and removes their files.
func StopPostgres() {
	for _, s := range []*pgServer{pgShared, pgSynced} {
		if s == nil {
			continue
		}
		s.stop(syscall.SIGQUIT) // immediate shutdown: the data goes anyway
		if err := os.RemoveAll(s.dir); err != nil {
			fmt.Fprintln(os.Stderr, "testenv:", err)
		}
		_ = s.lock.Close() // the lock goes with the process anyway
	}
}

// Missing fails the test under CI=true, where every component must be there, and skips it
// otherwise.
func Missing(t testing.TB, what string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s (CI=true: tests that need it must run; run test/deps.sh)", what)
	}
	t.Skip(what)
}

type pgServer struct {
	bin, dir string
	durable  bool                // fsync and synchronous_commit on
	cred     *syscall.Credential // the postgres user's when the tests run as root, else nil
	lock     *os.File            // the directory, flocked while this process lives (see sweepStalePostgres)

	mu   sync.Mutex
	port string
	cmd  *exec.Cmd     // nil while stopped
	done chan struct{} // closed when cmd has exited
}

func (s *pgServer) dsn(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%s/%s?sslmode=disable", s.port, db)
}

func startPostgres(durable bool) (*pgServer, error) {
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(bins) == 0 {
		return nil, errPGNotIn
	}
	sweepStalePostgres()
	s := &pgServer{bin: filepath.Dir(bins[len(bins)-1]), durable: durable}
	dir, err := os.MkdirTemp("", "vula-pg-")
	if err != nil {
		return nil, err
	}
	s.dir = dir
	if s.lock, err = os.Open(dir); err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(s.lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return nil, fmt.Errorf("lock %s: %v", dir, err)
	}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("running as root and no postgres user to run the server as: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			return nil, err
		}
	}
	initdb := s.command("initdb", "-D", filepath.Join(dir, "data"), "-U", "postgres", "-A", "trust",
		"-E", "UTF8", "--locale=C", "--no-sync")
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("initdb: %v\n%s", err, out)
	}
	// A free port found now may be taken before the server binds it: try a few.
	for attempt := 0; attempt < 3; attempt++ {
		if s.port, err = freePort(); err != nil {
			return nil, err
		}
		if err = s.start(); err == nil {
			return s, nil
		}
	}
	return nil, err
}

// command prepares a PostgreSQL program to run in the server's directory, as the postgres user
// when the tests run as root.
func (s *pgServer) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(s.bin, name), args...)
	cmd.Dir = s.dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	return cmd
}

// start starts the server, if it is not running, and waits until it accepts connections.
func (s *pgServer) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return nil
	}
	logPath := filepath.Join(s.dir, "log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o666)
	if err != nil {
		return err
	}
	defer func() { _ = logFile.Close() }() // the server has its own copy
	sync := "off"                          // the tests need speed, not durability
	if s.durable {
		sync = "on"
	}
	cmd := s.command("postgres", "-D", filepath.Join(s.dir, "data"),
		"-c", "listen_addresses=127.0.0.1", "-c", "port="+s.port, "-c", "unix_socket_directories="+s.dir,
		"-c", "fsync="+sync, "-c", "synchronous_commit="+sync, "-c", "full_page_writes="+sync, "-c", "max_connections=200")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Run as a child, not daemonized by pg_ctl, so that the server dies with the test process
	// even when a timeout panic skips TestMain's cleanup. (The kernel sends the signal when the
	// forking thread ends; Go keeps its threads for the life of the process.)
	cmd.SysProcAttr.Pdeathsig = syscall.SIGQUIT
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start postgres: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }() // a server stopped by a signal exits with an error
	s.cmd, s.done = cmd, done

	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-done:
			s.cmd = nil
			return fmt.Errorf("postgres exited while starting; its log:\n%s", tail(logPath))
		case <-time.After(50 * time.Millisecond):
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		c, err := pgconn.Connect(ctx, s.dsn("postgres"))
		cancel()
		if err == nil {
			_ = c.Close(context.Background()) // only a probe
			return nil
		}
		if time.Now().After(deadline) {
			s.stopLocked(syscall.SIGQUIT)
			return fmt.Errorf("postgres did not accept connections on port %s: %v; its log:\n%s", s.port, err, tail(logPath))
		}
	}
}

// stop signals the server (SIGINT: fast shutdown, SIGQUIT: immediate) and waits until it is gone.
func (s *pgServer) stop(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopLocked(sig)
}

func (s *pgServer) stopLocked(sig syscall.Signal) {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(sig) // fails only when the process has ended: done is closed then
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
	s.cmd = nil
}

// sweepStalePostgres removes the directories left by test processes that died before their
// cleanup. A live process holds a lock on its directory; a directory younger than a minute may
// be one that another process has just created and not locked yet.
func sweepStalePostgres() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "vula-pg-*"))
	for _, d := range dirs {
		fi, err := os.Stat(d)
		if err != nil || !fi.IsDir() || time.Since(fi.ModTime()) < time.Minute {
			continue
		}
		f, err := os.Open(d)
		if err != nil {
			continue
		}
		if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil && !postmasterAlive(d) {
			_ = os.RemoveAll(d) // best effort: the next sweep tries again
		}
		_ = f.Close()
	}
}

// postmasterAlive reports whether the server recorded in dir's postmaster.pid still runs (one
// started by an older harness, daemonized): its files are left alone.
func postmasterAlive(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, "data", "postmaster.pid"))
	if err != nil {
		return false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	if err != nil || pid <= 0 {
		return false
	}
	err = syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer func() { _ = l.Close() }() // only to learn a free port
	_, port, err := net.SplitHostPort(l.Addr().String())
	return port, err
}

// tail returns the end of a log file, for error messages.
func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}
