package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vula-eid/vula/hsm"
)

// run runs one command line in-process and returns its exit code and output.
func run(t *testing.T, environ []string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Run(context.Background(), Env{Args: args, Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Environ: environ, Version: "test"})
	return code, out.String(), errb.String()
}

func TestConfigCheck(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte("listen: 127.0.0.1:9999\nhsm:\n  backend: software\n"), 0o600)
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("hsm:\n  backend: pkcs11\n  pkcs11:\n    module: /x.so\n    token_label: vula\n    pin_env: PIN\n    pool_size: -2\n"), 0o600)

	if code, out, errs := run(t, nil, "config", "check", "--config", good); code != 0 || out != "ok\n" {
		t.Fatalf("good config: %d %q %q", code, out, errs)
	}
	code, _, errs := run(t, nil, "config", "check", "--config", bad)
	if code == 0 || !strings.Contains(errs, "hsm.pkcs11.pool_size") {
		t.Fatalf("bad config: %d %q", code, errs)
	}
	code, out, _ := run(t, []string{"VULA_LISTEN=127.0.0.1:7777"}, "config", "show", "--config", good, "--output", "json")
	var shown map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &shown) != nil || shown["listen"] != "127.0.0.1:7777" {
		t.Fatalf("config show: %d %q", code, out)
	}
}

func TestKeysCommands(t *testing.T) {
	data := t.TempDir()
	code, out, errs := run(t, nil, "keys", "create", "--data-dir", data, "--label", "tsa-2026", "--algorithm", "EC-P384",
		"--purpose", "tsa", "--owner", "agency", "--output", "json")
	if code != 0 {
		t.Fatalf("create: %s", errs)
	}
	var k hsm.KeyInfo
	if err := json.Unmarshal([]byte(out), &k); err != nil || k.URI != "software:object=tsa-2026" || k.Algorithm != hsm.ECP384 ||
		k.Purpose != hsm.PurposeTSA || k.Owner != "agency" || k.State != hsm.StateActive {
		t.Fatalf("create output %q: %v", out, err)
	}
	if code, _, errs := run(t, nil, "keys", "create", "--data-dir", data, "--label", "tsa-2026", "--purpose", "tsa"); code == 0 || !strings.Contains(errs, "already exists") {
		t.Fatalf("duplicate label: %d %s", code, errs)
	}
	if code, _, errs := run(t, nil, "keys", "create", "--data-dir", data, "--label", "x", "--purpose", "everything"); code == 0 || !strings.Contains(errs, "purpose") {
		t.Fatalf("bad purpose: %d %s", code, errs)
	}
	run(t, nil, "keys", "create", "--data-dir", data, "--label", "ca-root", "--algorithm", "RSA-3072", "--purpose", "ca")
	code, out, _ = run(t, nil, "keys", "list", "--data-dir", data, "--output", "json")
	var list []hsm.KeyInfo
	if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list) != 2 || list[0].Label != "ca-root" {
		t.Fatalf("list: %d %q", code, out)
	}
	if code, out, _ := run(t, nil, "keys", "list", "--data-dir", data); code != 0 || !strings.Contains(out, "software:object=ca-root") || !strings.Contains(out, "STATE") {
		t.Fatalf("list table: %q", out)
	}
	if code, _, _ := run(t, nil, "keys", "retire", "--data-dir", data, k.URI); code != 0 {
		t.Fatal("retire failed")
	}
	if code, _, errs := run(t, nil, "keys", "destroy", "--data-dir", data, k.URI); code == 0 || !strings.Contains(errs, "--yes") {
		t.Fatalf("destroy without --yes: %d %s", code, errs)
	}
	if code, _, _ := run(t, nil, "keys", "destroy", "--data-dir", data, "--yes", k.URI); code != 0 {
		t.Fatal("destroy failed")
	}
	code, out, _ = run(t, nil, "keys", "show", "--data-dir", data, k.URI, "--output", "json")
	if code != 0 || json.Unmarshal([]byte(out), &k) != nil || k.State != hsm.StateDestroyed {
		t.Fatalf("show after destroy: %q", out)
	}
	if code, _, errs := run(t, nil, "keys", "show", "--data-dir", data, "software:object=nope"); code == 0 || !strings.Contains(errs, "not found") {
		t.Fatalf("show unknown: %d %s", code, errs)
	}
}

func TestKeysWrongPassphraseHidden(t *testing.T) {
	data := t.TempDir()
	cfg := filepath.Join(data, "vula.yaml")
	os.WriteFile(cfg, []byte("hsm:\n  software:\n    passphrase_env: VULA_TEST_PASS\n"), 0o600)
	env := []string{"VULA_TEST_PASS=correct horse battery staple"}
	if code, _, errs := run(t, env, "keys", "create", "--config", cfg, "--data-dir", data, "--label", "a", "--purpose", "audit"); code != 0 {
		t.Fatal(errs)
	}
	code, out, errs := run(t, []string{"VULA_TEST_PASS=Tr0ub4dor&3"}, "keys", "list", "--config", cfg, "--data-dir", data)
	if code == 0 || !strings.Contains(errs, "passphrase") {
		t.Fatalf("wrong passphrase: %d %s", code, errs)
	}
	if strings.Contains(out+errs, "Tr0ub4dor") || strings.Contains(out+errs, "correct horse") {
		t.Fatal("a passphrase reached the output")
	}
	if code, _, errs := run(t, nil, "keys", "list", "--config", cfg, "--data-dir", data); code == 0 || !strings.Contains(errs, "VULA_TEST_PASS") {
		t.Fatalf("missing passphrase variable: %d %s", code, errs)
	}
}

func TestServe(t *testing.T) {
	data := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	addrc := make(chan string, 1)
	var logs bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- Run(ctx, Env{Args: []string{"serve", "--data-dir", data, "--listen", "127.0.0.1:0"},
			Stdout: io.Discard, Stderr: &syncBuffer{b: &logs}, Ready: func(a string) { addrc <- a }})
	}()
	var addr string
	select {
	case addr = <-addrc:
	case code := <-done:
		t.Fatalf("serve exited with %d: %s", code, logs.String())
	}
	// The durable store opens in the background: ready within a bounded wait.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if code, _ := readiness(t, addr); code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("never ready: %s", logs.String())
		}
	}
	// /metrics last, so that the requests before it are counted.
	for _, c := range []struct {
		path string
		want int
	}{{"/healthz", 200}, {"/readyz", 200}, {"/no-such-page", 404}, {"/metrics", 200}} {
		path, want := c.path, c.want
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("%s: %d, want %d", path, resp.StatusCode, want)
		}
		if path == "/metrics" {
			for _, m := range []string{"go_goroutines", "process_cpu_seconds_total", "vula_http_requests_total"} {
				if !bytes.Contains(body, []byte(m)) {
					t.Errorf("/metrics lacks %s", m)
				}
			}
		}
	}
	if _, err := os.Stat(filepath.Join(data, "keystore.key")); err != nil {
		t.Errorf("first start made no master key file: %v", err)
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("serve exited with %d after shutdown: %s", code, logs.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not stop")
	}
}

// syncBuffer lets the test read logs the server writes from other goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  *bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) text() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
