package testenv

import (
	"bytes"
	"database/sql"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the pgx driver, to create databases
)

// PG is the PostgreSQL server a test process shares, and one database of it.
type PG struct {
	// DSN names a fresh database of its own on the shared server.
	DSN    string
	server *pgServer
}

// Stop stops the server (every database of the process goes down with it), to test outages.
func (p *PG) Stop(t testing.TB) {
	t.Helper()
	if out, err := p.server.ctl("stop", "-m", "fast"); err != nil {
		t.Fatalf("pg_ctl stop: %v\n%s", err, out)
	}
}

// Start starts the server again on the same port.
func (p *PG) Start(t testing.TB) {
	t.Helper()
	if out, err := p.server.start(); err != nil {
		t.Fatalf("pg_ctl start: %v\n%s", err, out)
	}
}

type pgServer struct {
	bin, dir, port string
	asPostgres     bool
	admin          *sql.DB
}

var (
	pgOnce   sync.Once
	pgShared *pgServer
	pgErr    error
	pgDBs    atomic.Int64
)

// Postgres gives the test a database of its own on a PostgreSQL server started once per test
// process (initdb and pg_ctl in a temporary directory, loopback only, fsync off). Call
// StopPostgres from TestMain after m.Run. With CI=true a missing PostgreSQL fails the test.
func Postgres(t testing.TB) *PG {
	t.Helper()
	pgOnce.Do(func() { pgShared, pgErr = startPostgres() })
	if pgErr != nil {
		Missing(t, "PostgreSQL: "+pgErr.Error())
	}
	name := fmt.Sprintf("t_%d_%d", os.Getpid(), pgDBs.Add(1))
	// After a test stopped and restarted the server, pooled admin connections are dead: the
	// first use fails and drops them, so try again with fresh ones.
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		if _, err = pgShared.admin.Exec("CREATE DATABASE " + name); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("create database: %v", err)
	}
	return &PG{DSN: pgShared.dsn(name), server: pgShared}
}

// StopPostgres stops the process's PostgreSQL server, if one was started, and removes its files.
func StopPostgres() {
	if pgShared == nil {
		return
	}
	pgShared.admin.Close()
	pgShared.ctl("stop", "-m", "immediate")
	os.RemoveAll(pgShared.dir)
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

func (s *pgServer) dsn(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%s/%s?sslmode=disable", s.port, db)
}

func (s *pgServer) run(name string, args ...string) ([]byte, error) {
	bin := filepath.Join(s.bin, name)
	var cmd *exec.Cmd
	if s.asPostgres {
		// PostgreSQL refuses to run as root: run it as the postgres system user.
		cmd = exec.Command("runuser", append([]string{"-u", "postgres", "--", bin}, args...)...)
	} else {
		cmd = exec.Command(bin, args...)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.Bytes(), err
}

func (s *pgServer) ctl(args ...string) ([]byte, error) {
	return s.run("pg_ctl", append([]string{"-D", filepath.Join(s.dir, "data"), "-w"}, args...)...)
}

func (s *pgServer) start() ([]byte, error) {
	opts := fmt.Sprintf("-c listen_addresses=127.0.0.1 -c port=%s -c unix_socket_directories=%s -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200",
		s.port, s.dir)
	return s.ctl("-l", filepath.Join(s.dir, "log"), "-o", opts, "start")
}

func startPostgres() (*pgServer, error) {
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(bins) == 0 {
		return nil, fmt.Errorf("initdb not found under /usr/lib/postgresql/*/bin")
	}
	s := &pgServer{bin: filepath.Dir(bins[len(bins)-1]), asPostgres: os.Geteuid() == 0}
	dir, err := os.MkdirTemp("", "vula-pg-")
	if err != nil {
		return nil, err
	}
	s.dir = dir
	if s.asPostgres {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("running as root and no postgres user: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			return nil, err
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	_, s.port, _ = net.SplitHostPort(l.Addr().String())
	l.Close()
	if out, err := s.run("initdb", "-D", filepath.Join(dir, "data"), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"); err != nil {
		return nil, fmt.Errorf("initdb: %v\n%s", err, out)
	}
	if out, err := s.start(); err != nil {
		return nil, fmt.Errorf("pg_ctl start: %v\n%s", err, out)
	}
	s.admin, err = sql.Open("pgx", s.dsn("postgres"))
	if err != nil {
		return nil, err
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if err = s.admin.Ping(); err == nil || time.Now().After(deadline) {
			break
		}
	}
	return s, err
}
