package testenv

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// RedisServer is a redis-server of one test, on loopback, without persistence.
type RedisServer struct {
	Addr, URL string
	dir       string
	cmd       *exec.Cmd
}

// Redis starts a redis-server for the test, stopped when the test ends. With CI=true a missing
// redis-server fails the test.
func Redis(t testing.TB) *RedisServer {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		Missing(t, "redis-server: "+err.Error())
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close() // only to learn a free port
	r := &RedisServer{Addr: addr, URL: "redis://" + addr + "/0", dir: t.TempDir()}
	r.Start(t)
	t.Cleanup(func() { r.Stop(t) })
	return r
}

// Start starts (or restarts) the server on its port and waits until it answers.
func (r *RedisServer) Start(t testing.TB) {
	t.Helper()
	_, port, _ := net.SplitHostPort(r.Addr)
	// No persistence: a restart starts empty, as the outage tests expect.
	r.cmd = exec.Command("redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", r.dir, "--logfile", filepath.Join(r.dir, "redis.log"))
	if err := r.cmd.Start(); err != nil {
		t.Fatalf("redis-server: %v", err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		c, err := net.Dial("tcp", r.Addr)
		if err == nil {
			// A failed write or deadline shows as no PONG below.
			_, _ = fmt.Fprintf(c, "PING\r\n")
			buf := make([]byte, 7)
			_ = c.SetReadDeadline(time.Now().Add(time.Second))
			n, _ := c.Read(buf)
			_ = c.Close()
			if string(buf[:n]) == "+PONG\r\n" {
				return
			}
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(r.dir, "redis.log"))
			r.Stop(t)
			t.Fatalf("redis-server on %s did not answer; its log:\n%s", r.Addr, log)
		}
	}
}

// Stop kills the server.
func (r *RedisServer) Stop(t testing.TB) {
	if r.cmd != nil && r.cmd.Process != nil {
		_ = r.cmd.Process.Kill() // fails only when it has ended already
		_ = r.cmd.Wait()         // killed: its exit status says so
		r.cmd = nil
	}
}
