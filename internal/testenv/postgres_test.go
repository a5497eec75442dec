package testenv

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestPostgresDiesWithProcess kills a test process that started a server, as a timeout panic
// would end it, before any cleanup ran: its server must not outlive it.
func TestPostgresDiesWithProcess(t *testing.T) {
	if os.Getenv("VULA_TESTENV_PG_CHILD") == "1" {
		pg := Postgres(t)
		pgShared.mu.Lock()
		fmt.Printf("server %d %s %s\n", pgShared.cmd.Process.Pid, pgShared.dir, pg.DSN)
		pgShared.mu.Unlock()
		os.Stdout.Sync()
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	}
	if _, err := os.Stat("/usr/lib/postgresql"); err != nil {
		Missing(t, "PostgreSQL is not installed")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestPostgresDiesWithProcess$", "-test.v")
	cmd.Env = append(os.Environ(), "VULA_TESTENV_PG_CHILD=1")
	out, _ := cmd.Output() // killed: an error is expected
	var pid int
	var dir, dsn string
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		if n, _ := fmt.Sscanf(sc.Text(), "server %d %s %s", &pid, &dir, &dsn); n == 3 {
			break
		}
	}
	if pid == 0 {
		t.Fatalf("the child started no server:\n%s", out)
	}
	if !strings.HasPrefix(dsn, "postgres://postgres@127.0.0.1:") {
		t.Fatalf("DSN %q", dsn)
	}
	defer os.RemoveAll(dir)
	// Wait for the kernel's signal to take the server down; a server left running fails here.
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
		err := syscall.Kill(pid, 0)
		if errors.Is(err, syscall.ESRCH) {
			break
		}
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGQUIT)
			t.Fatalf("the server (pid %d) outlived its test process", pid)
		}
	}
}
