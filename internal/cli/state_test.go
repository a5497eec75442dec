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
	"testing"
	"time"

	"github.com/vula-eid/vula/internal/server"
	"github.com/vula-eid/vula/internal/testenv"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.Cleanup()
	os.Exit(code)
}

func readiness(t *testing.T, addr string) (int, server.Readiness) {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r server.Readiness
	json.NewDecoder(resp.Body).Decode(&r)
	return resp.StatusCode, r
}

// TestServeWaitsForDatabase starts serve while PostgreSQL is down: it must stay up, say why it is
// not ready, and become ready on its own when the database comes back.
func TestServeWaitsForDatabase(t *testing.T) {
	pg := testenv.Postgres(t)
	pg.Stop(t)
	started := false
	defer func() {
		if !started {
			pg.Start(t)
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addrc := make(chan string, 1)
	done := make(chan int, 1)
	var logs bytes.Buffer
	go func() {
		done <- Run(ctx, Env{Args: []string{"serve", "--data-dir", t.TempDir(), "--listen", "127.0.0.1:0"},
			Environ: []string{"VULA_STORE_DURABLE=" + pg.DSN}, Stdout: io.Discard, Stderr: &syncBuffer{b: &logs},
			Ready: func(a string) { addrc <- a }})
	}()
	addr := <-addrc
	// The first attempt to open runs in the background: wait (bounded) until it has failed.
	code, r := readiness(t, addr)
	for deadline := time.Now().Add(30 * time.Second); r.Components["durable"].Error == "not open yet" && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		code, r = readiness(t, addr)
	}
	if code != http.StatusServiceUnavailable || r.Components["durable"].OK || !r.Components["keys"].OK ||
		!strings.Contains(r.Components["durable"].Error, "unavailable") {
		t.Fatalf("readiness with the database down: %d %+v", code, r)
	}
	if strings.Contains(r.Components["durable"].Error, "password") {
		t.Fatalf("readiness shows connection secrets: %q", r.Components["durable"].Error)
	}
	pg.Start(t)
	started = true
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		code, r = readiness(t, addr)
		if code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready a minute after the database came back: %+v", r)
		}
	}
	cancel()
	if c := <-done; c != 0 {
		t.Fatalf("exit %d", c)
	}
}

// TestTwoReplicasOneHierarchy starts two replicas at the same moment on one PostgreSQL, one
// Redis and one SoftHSM2 token (in one process, as SoftHSM2's file store cannot take two
// processes initialising at once): they must end up serving the same root, made once.
func TestTwoReplicasOneHierarchy(t *testing.T) {
	pg, rd, tok := testenv.Postgres(t), testenv.Redis(t), testenv.SoftHSM(t)
	env := []string{"VULA_HSM_BACKEND=pkcs11", "VULA_HSM_PKCS11_MODULE=" + tok.Module, "VULA_HSM_PKCS11_TOKEN_LABEL=" + tok.Label,
		"VULA_HSM_PKCS11_PIN_ENV=PIN", "PIN=" + tok.PIN, "VULA_STORE_DURABLE=" + pg.DSN, "VULA_STORE_EPHEMERAL=" + rd.URL,
		// One sealing key for the secrets in the shared database, as every replica needs.
		"VULA_IDP_SEED_KEY_FILE=" + filepath.Join(t.TempDir(), "totp-seal.key")}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addrs := make(chan string, 2)
	done := make(chan int, 2)
	logs := [2]*syncBuffer{{b: &bytes.Buffer{}}, {b: &bytes.Buffer{}}}
	for i := 0; i < 2; i++ {
		go func() {
			done <- Run(ctx, Env{Args: []string{"serve", "--data-dir", t.TempDir(), "--listen", "127.0.0.1:0"}, Environ: env,
				Stdout: io.Discard, Stderr: logs[i], Ready: func(a string) { addrs <- a }})
		}()
	}
	var roots [][]byte
	for i := 0; i < 2; i++ {
		var addr string
		select {
		case addr = <-addrs:
		case c := <-done:
			t.Fatalf("a replica exited with %d before listening:\n%s\n%s", c, logs[0].text(), logs[1].text())
		case <-time.After(60 * time.Second):
			t.Fatalf("a replica is not listening after a minute:\n%s\n%s", logs[0].text(), logs[1].text())
		}
		for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			if code, _ := readiness(t, addr); code == http.StatusOK {
				break
			}
			if time.Now().After(deadline) {
				_, r := readiness(t, addr)
				t.Fatalf("replica %s not ready: %+v", addr, r)
			}
		}
		resp, err := http.Get("http://" + addr + "/pki/root.crt")
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("root.crt: %v", err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		roots = append(roots, b)
	}
	if !bytes.Equal(roots[0], roots[1]) {
		t.Fatal("the two replicas made two different roots")
	}
	cancel()
	for i := 0; i < 2; i++ {
		if c := <-done; c != 0 {
			t.Fatalf("exit %d", c)
		}
	}
}
