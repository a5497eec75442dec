package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/digitorus/timestamp"

	"github.com/vula-eid/vula/internal/signing/signingtest"
	"github.com/vula-eid/vula/internal/validation"
)

// sealedSetup makes an institution and its sealing client in a fresh data directory.
func sealedSetup(t *testing.T) (data string, env []string, secret string) {
	t.Helper()
	vulaBinary(t)
	data = t.TempDir()
	env = []string{"VULA_DATA_DIR=" + data, "VULA_IDP_DEMO=false"}
	vula(t, env, "orgs", "create", "tax", "--name", "Tax Administration", "--registry-number", "810000001")
	return data, env, sealClient(t, env, "tax-batch", "--scope", "seal", "--organization", "tax")
}

// openSpoolFiles lists the process's open files under dir (unlinked ones end in "(deleted)").
func openSpoolFiles(pid int, dir string) []string {
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	var out []string
	for _, fd := range fds {
		if l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name())); err == nil && strings.HasPrefix(l, dir+"/") {
			out = append(out, l)
		}
	}
	return out
}

// TestSpoolAfterCrash: request bodies are spooled under the data directory, never in TMPDIR,
// in files unlinked as soon as they are made, so a SIGKILL with uploads in flight leaves
// nothing behind; files an older process left in the spool are removed at start. (Before,
// each kill left its vula-doc-* and vula-sealed-* files in TMPDIR for good.)
func TestSpoolAfterCrash(t *testing.T) {
	t.Parallel()
	data, env, secret := sealedSetup(t)
	spool := filepath.Join(data, "spool")
	tmp := t.TempDir()
	env = append(env, "TMPDIR="+tmp)
	os.MkdirAll(filepath.Join(spool, "vula-preview-7"), 0o700)
	for _, f := range []string{"vula-doc-1", "vula-sealed-2", "vula-preview-7/in.pdf", "operator-notes.txt"} {
		os.WriteFile(filepath.Join(spool, f), []byte("left"), 0o600)
	}
	addr := freePort(t)
	srv := startReplicaAt(t, addr, data, env)
	srv.ready(t, http.StatusOK)
	if left, _ := os.ReadDir(spool); len(left) != 1 || left[0].Name() != "operator-notes.txt" {
		t.Fatalf("left in the spool after start: %v", left)
	}
	base := "http://" + addr
	// In flight: a seal and a validation, each with half its body sent (past the in-memory part).
	doc := append(signingtest.PDF("in flight"), bytes.Repeat([]byte("%"), 1<<20)...)
	var writers []*io.PipeWriter
	for _, c := range []struct {
		client *http.Client
		path   string
	}{{sealHTTP(base, "tax-batch", secret), "/api/v1/seal"}, {http.DefaultClient, "/api/v1/validate"}} {
		pr, pw := io.Pipe()
		writers = append(writers, pw)
		go func() {
			if resp, err := c.client.Post(base+c.path, "application/pdf", pr); err == nil {
				resp.Body.Close()
			}
		}()
		go pw.Write(doc[:len(doc)/2])
	}
	defer func() {
		for _, pw := range writers {
			pw.Close()
		}
	}()
	var open []string
	for deadline := time.Now().Add(30 * time.Second); len(open) < 2 && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		open = openSpoolFiles(srv.cmd.Process.Pid, spool)
	}
	if len(open) < 2 {
		t.Fatalf("the server does not hold two spool files: %v\n%s", open, srv.logs)
	}
	for _, f := range open {
		if !strings.HasSuffix(f, "(deleted)") {
			t.Fatalf("a spool file has a name on disk while in use: %s", f)
		}
	}
	srv.cmd.Process.Kill()
	srv.cmd.Wait()
	if left, _ := os.ReadDir(spool); len(left) != 1 {
		t.Fatalf("left in the spool after SIGKILL: %v", left)
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Fatalf("left in TMPDIR after SIGKILL: %v", left)
	}
}

// vmKiB reads a VmRSS/VmHWM-style line of /proc/<pid>/status.
func vmKiB(t *testing.T, pid int, field string) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// from dials from a loopback address of its own, so that each hostile client is a different
// client address to the server.
func from(ip string) *net.Dialer {
	return &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 10 * time.Second}
}

func clientFrom(ip string) *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: from(ip).DialContext, DisableKeepAlives: true}}
}

// rawPost sends a request's head with the given Content-Length from ip and returns the
// connection, to send (or not) the body.
func rawPost(ip, addr, path, ctype string, length int64) (net.Conn, error) {
	c, err := from(ip).Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	_, err = fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n", path, addr, ctype, length)
	return c, err
}

// TestHostileClients runs the real binary against hostile anonymous clients at once: 1000
// connections from one address that announce a body and send none, clients sending 100 MB
// bodies (chunked and with a Content-Length), clients trickling their bodies. Meanwhile an
// honest client validates a sealed PDF and gets timestamps, every time; the hostile ones get
// 429 (beyond their per-client bound), 413 (too large) or 408 (too slow); and the server's
// peak resident memory stays within the README's bound for the validations that actually ran
// plus what bodies being received may hold.
func TestHostileClients(t *testing.T) {
	data, env, secret := sealedSetup(t)
	addr := freePort(t)
	srv := startReplicaAt(t, addr, data, env)
	srv.ready(t, http.StatusOK)
	base := "http://" + addr
	resp, sealed := postDoc(t, sealHTTP(base, "tax-batch", secret), base+"/api/v1/seal?level=B-LT", "application/pdf", signingtest.PDF("Vendim 7"))
	if resp.StatusCode != 200 {
		t.Fatalf("seal: %d %s", resp.StatusCode, sealed)
	}
	d := sha256.Sum256([]byte("honest"))
	tsq, _ := (&timestamp.Request{HashAlgorithm: crypto.SHA256, HashedMessage: d[:], Certificates: true}).Marshal()
	honest := clientFrom("127.0.0.1")
	serveHonest := func() error {
		resp, err := honest.Post(base+"/api/v1/validate", "application/pdf", bytes.NewReader(sealed))
		if err != nil {
			return err
		}
		var rep validation.Report
		err = json.NewDecoder(resp.Body).Decode(&rep)
		resp.Body.Close()
		if resp.StatusCode != 200 || err != nil || rep.Indication != validation.TotalPassed {
			return fmt.Errorf("validate: %d %v %s", resp.StatusCode, err, rep.Indication)
		}
		resp, err = honest.Post(base+"/tsa", "application/timestamp-query", bytes.NewReader(tsq))
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("tsa: %d", resp.StatusCode)
		}
		return nil
	}
	if err := serveHonest(); err != nil {
		t.Fatal(err)
	}
	pid := srv.cmd.Process.Pid
	idle := vmKiB(t, pid, "VmHWM")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	codes := map[string]map[int]int{}
	count := func(kind string, code int) {
		mu.Lock()
		defer mu.Unlock()
		if codes[kind] == nil {
			codes[kind] = map[int]int{}
		}
		codes[kind][code]++
	}
	var wg sync.WaitGroup
	// 1000 connections from one address, each announcing 1 MB and sending nothing.
	for range 1000 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := rawPost("127.0.0.2", addr, "/api/v1/validate", "application/pdf", 1<<20)
			if err != nil {
				count("silent", -1)
				return
			}
			defer c.Close()
			c.SetReadDeadline(time.Now().Add(2 * time.Minute)) // a guard, not a timing check
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				count("silent", 0)
				return
			}
			count("silent", resp.StatusCode)
		}()
	}
	// Large bodies: chunked ones read until they pass the limit, and ones whose
	// Content-Length says too much, each from its own address.
	for i := range 8 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			body := io.MultiReader(strings.NewReader("%PDF-1.7\n"), io.LimitReader(zeroReader{}, 100<<20))
			resp, err := clientFrom(fmt.Sprintf("127.0.1.%d", i+1)).Post(base+"/api/v1/validate", "application/pdf", body)
			if err != nil {
				count("large chunked", 0)
				return
			}
			resp.Body.Close()
			count("large chunked", resp.StatusCode)
		}()
		go func() {
			defer wg.Done()
			c, err := rawPost(fmt.Sprintf("127.0.2.%d", i+1), addr, "/api/v1/validate", "application/pdf", 100<<20)
			if err != nil {
				count("large announced", -1)
				return
			}
			defer c.Close()
			c.SetReadDeadline(time.Now().Add(2 * time.Minute))
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				count("large announced", 0)
				return
			}
			count("large announced", resp.StatusCode)
		}()
	}
	// Trickles: a few bytes a second, from four addresses.
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pr, pw := io.Pipe()
			go func() {
				for ctx.Err() == nil {
					if _, err := pw.Write([]byte("%PDF")); err != nil {
						return
					}
					time.Sleep(time.Second)
				}
				pw.Close()
			}()
			resp, err := clientFrom(fmt.Sprintf("127.0.3.%d", i+1)).Post(base+"/api/v1/validate", "application/pdf", pr)
			pr.Close()
			if err != nil {
				count("trickle", 0)
				return
			}
			resp.Body.Close()
			count("trickle", resp.StatusCode)
		}()
	}
	// The honest client, throughout.
	hostile := make(chan struct{})
	go func() { wg.Wait(); close(hostile) }()
	served := 0
	for done := false; !done; {
		select {
		case <-hostile:
			done = true
		default:
		}
		if err := serveHonest(); err != nil {
			t.Fatalf("the honest client, while hostile ones run: %v\nhostile so far: %v", err, codes)
		}
		served++
	}
	peak := vmKiB(t, pid, "VmHWM")
	t.Logf("honest rounds served: %d; hostile answers: %v", served, codes)
	t.Logf("peak RSS: idle %d MiB, under attack %d MiB", idle>>10, peak>>10)
	if codes["silent"][http.StatusTooManyRequests] < 990 || codes["silent"][http.StatusTooManyRequests]+codes["silent"][http.StatusRequestTimeout] != 1000 {
		t.Errorf("1000 silent connections from one address: %v, want 429 beyond the per-client bound, 408 for the rest", codes["silent"])
	}
	for kind, want := range map[string]int{"large chunked": 413, "large announced": 413, "trickle": 408} {
		if codes[kind][want] == 0 || len(codes[kind]) != 1 {
			t.Errorf("%s: %v, want all %d", kind, codes[kind], want)
		}
	}
	// The bound: what running validations hold (MemoryPerDocument × the honest document, at
	// most one at a time here) plus what bodies being received hold (DefaultMaxUploads ×
	// upload buffers), plus the Go runtime's per-connection cost for the 1000 connections.
	bound := int64(validation.MemoryPerDocument*len(sealed))>>10 + validation.DefaultMaxUploads*128 + 1000*32 + 32<<10
	if grew := peak - idle; grew > bound {
		t.Errorf("peak RSS grew %d KiB under attack, over the bound %d KiB", grew, bound)
	}
	if err := serveHonest(); err != nil {
		t.Fatalf("after the attack: %v", err)
	}
}

type zeroReader struct{}

func (zeroReader) Read(b []byte) (int, error) {
	clear(b)
	return len(b), nil
}

// TestDrainOnSIGTERM: on SIGTERM a replica says it is not ready (503 "draining") while it still
// serves everything for drain_delay, then closes its listener and lets the requests in flight
// finish: a validation whose body is still arriving at SIGTERM (and after the listener closed),
// a seal sent during the delay and every request of a client that goes on until /readyz says
// draining all succeed, and the process exits 0.
func TestDrainOnSIGTERM(t *testing.T) {
	data, env, secret := sealedSetup(t)
	addr := freePort(t)
	srv := startReplicaAt(t, addr, data, append(env, "VULA_DRAIN_DELAY=2s"))
	srv.ready(t, http.StatusOK)
	base := "http://" + addr
	sealer := sealHTTP(base, "tax-batch", secret)
	resp, sealed := postDoc(t, sealer, base+"/api/v1/seal?level=B-LT", "application/pdf", signingtest.PDF("Vendim 9"))
	if resp.StatusCode != 200 {
		t.Fatalf("seal: %d %s", resp.StatusCode, sealed)
	}
	// In flight at SIGTERM: a validation with half its body sent.
	pr, pw := io.Pipe()
	inflight := make(chan error, 1)
	go func() {
		resp, err := http.Post(base+"/api/v1/validate", "application/pdf", pr)
		if err != nil {
			inflight <- err
			return
		}
		var rep validation.Report
		err = json.NewDecoder(resp.Body).Decode(&rep)
		resp.Body.Close()
		if resp.StatusCode != 200 || err != nil || rep.Indication != validation.TotalPassed {
			err = fmt.Errorf("%d %v %s", resp.StatusCode, err, rep.Indication)
		}
		inflight <- err
	}()
	if _, err := pw.Write(sealed[:len(sealed)/2]); err != nil {
		t.Fatal(err)
	}
	termAt := time.Now()
	if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// A client that keeps going until the replica says it is draining: nothing fails.
	for deadline := time.Now().Add(10 * time.Second); ; {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			t.Fatalf("readyz during the drain delay: %v", err)
		}
		var r map[string]any
		json.NewDecoder(resp.Body).Decode(&r)
		resp.Body.Close()
		if resp.StatusCode == http.StatusServiceUnavailable && r["status"] == "draining" {
			break
		}
		if resp, body := postDoc(t, http.DefaultClient, base+"/api/v1/validate", "application/pdf", sealed); resp.StatusCode != 200 {
			t.Fatalf("a validation before the drain showed: %d %s", resp.StatusCode, body)
		}
		if time.Now().After(deadline) {
			t.Fatal("/readyz never said draining")
		}
	}
	// Within the delay, a seal is still served.
	if resp, body := postDoc(t, sealer, base+"/api/v1/seal", "application/pdf", signingtest.PDF("Vendim 10")); resp.StatusCode != 200 {
		t.Fatalf("a seal while draining: %d %s", resp.StatusCode, body)
	}
	// The listener closes at the end of the delay; the validation in flight then gets the rest
	// of its body and is answered.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("the listener is still open 10 s after SIGTERM")
		}
	}
	go func() {
		pw.Write(sealed[len(sealed)/2:])
		pw.Close()
	}()
	if err := <-inflight; err != nil {
		t.Fatalf("the validation in flight at SIGTERM: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, srv.logs)
		}
		t.Logf("exited %v after SIGTERM", time.Since(termAt).Round(time.Millisecond))
	case <-time.After(60 * time.Second):
		t.Fatal("no exit a minute after SIGTERM")
	}
	if !strings.Contains(srv.logs.String(), `"msg":"draining"`) {
		t.Errorf("no draining line in the log")
	}
}

// TestPerClientTSAAndOCSP: on the TSA and OCSP endpoints too, a client holding http.per_client
// requests (here, announced bodies it does not send) gets 429 with Retry-After for the next,
// while another client is served.
func TestPerClientTSAAndOCSP(t *testing.T) {
	t.Parallel()
	vulaBinary(t)
	addr := freePort(t)
	srv := startReplicaAt(t, addr, t.TempDir(), []string{"VULA_IDP_DEMO=false", "VULA_HTTP_PER_CLIENT=2"})
	srv.ready(t, http.StatusOK)
	d := sha256.Sum256([]byte("x"))
	tsq, _ := (&timestamp.Request{HashAlgorithm: crypto.SHA256, HashedMessage: d[:]}).Marshal()
	for _, c := range []struct{ path, ctype string }{{"/tsa", "application/timestamp-query"}, {"/pki/ocsp", "application/ocsp-request"}} {
		// Three requests that announce a body and send none: two wait in the handler for
		// their bodies, the third is refused at once.
		answers := make(chan int, 3)
		var held []net.Conn
		for range 3 {
			conn, err := rawPost("127.0.5.1", addr, c.path, c.ctype, 100)
			if err != nil {
				t.Fatal(err)
			}
			held = append(held, conn)
			go func() {
				conn.SetReadDeadline(time.Now().Add(2 * time.Minute)) // a guard, not a timing check
				resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
				if err != nil {
					answers <- 0
					return
				}
				if resp.Header.Get("Retry-After") == "" {
					answers <- -resp.StatusCode
					return
				}
				answers <- resp.StatusCode
			}()
		}
		if code := <-answers; code != http.StatusTooManyRequests {
			t.Fatalf("%s: the first answer to three held requests of one client: %d, want 429 with Retry-After\n%s", c.path, code, srv.logs)
		}
		if c.path == "/tsa" {
			resp, err := clientFrom("127.0.5.2").Post("http://"+addr+c.path, c.ctype, bytes.NewReader(tsq))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("%s: another client: %d", c.path, resp.StatusCode)
			}
		}
		for _, conn := range held {
			conn.Close()
		}
	}
}
