// Package e2e tests the real vula binary from the outside: built with `go build`, started as a
// process, driven over HTTP and its command line, checked with tools nobody here wrote.
package e2e

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/digitorus/timestamp"

	"github.com/vula-eid/vula/internal/testenv"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// vulaBinary builds cmd/vula once per test process.
func vulaBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "vula-e2e-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "vula")
		args := []string{"build", "-o", binPath}
		if os.Getenv("BENCH_PPROF_DIR") != "" { // see BenchmarkHTTP
			args = append(args, "-tags", "pprof")
		}
		out, err := exec.Command("go", append(args, "../cmd/vula")...).CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func TestMain(m *testing.M) {
	if addr := os.Getenv(benchTrivialEnv); addr != "" {
		serveTrivial(addr) // BenchmarkHTTP's limit: this binary as a trivial server
	}
	code := m.Run()
	testenv.Cleanup()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

var (
	portsMu    sync.Mutex
	portsGiven = map[int]bool{}
)

// freePort is a loopback address free now, for a server the test starts next. It is drawn
// below the kernel's ephemeral range (32768–60999 on Linux), so that no client connection of a
// test running in parallel is given it meanwhile, and never twice in this process.
func freePort(t testing.TB) string {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 1000 {
		p := 20000 + rand.IntN(12000)
		if portsGiven[p] {
			continue
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		l.Close()
		portsGiven[p] = true
		return l.Addr().String()
	}
	t.Fatal("no free loopback port between 20000 and 32000")
	return ""
}

// vula runs one command of the binary and returns its stdout, failing the test on a non-zero exit.
func vula(t testing.TB, env []string, args ...string) string {
	t.Helper()
	out, errb, err := vulaRun(env, args...)
	if err != nil {
		t.Fatalf("vula %s: %v\n%s", strings.Join(args, " "), err, errb)
	}
	return out
}

func vulaRun(env []string, args ...string) (string, string, error) {
	cmd := exec.Command(binPath, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), err
}

// TestServeLifecycle starts `vula serve` on the embedded default, waits for readiness, and stops it
// with SIGTERM: it must drain and exit 0.
func TestServeLifecycle(t *testing.T) {
	t.Parallel()
	bin := vulaBinary(t)
	data := filepath.Join(t.TempDir(), "var")
	addr := freePort(t)
	cmd := exec.Command(bin, "serve", "--data-dir", data, "--listen", addr)
	var logs bytes.Buffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })

	ready := false
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			var body map[string]any
			json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
			if resp.StatusCode == 200 && body["status"] == "ready" {
				ready = true
				break
			}
		}
	}
	if !ready {
		t.Fatalf("not ready: %s", logs.String())
	}
	// The embedded default made its PKI on first start: openssl reads the CRL and verifies the
	// issuing CA under the root.
	pki := t.TempDir()
	for _, f := range []string{"root.crt", "person-ca.crt", "seal-ca.crt", "tsa.crt", "person-ca.crl"} {
		resp, err := http.Get("http://" + addr + "/pki/" + f)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET /pki/%s: %v %v", f, err, resp)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.HasSuffix(f, ".crt") { // DER on the wire; openssl verify reads PEM
			b = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: b})
		}
		os.WriteFile(filepath.Join(pki, f), b, 0o600)
	}
	if out, err := exec.Command("openssl", "verify", "-CAfile", filepath.Join(pki, "root.crt"), filepath.Join(pki, "person-ca.crt")).CombinedOutput(); err != nil {
		t.Fatalf("openssl verify of person-ca: %v\n%s", err, out)
	}
	if out, err := exec.Command("openssl", "crl", "-inform", "DER", "-in", filepath.Join(pki, "person-ca.crl"), "-noout", "-CAfile", filepath.Join(pki, "person-ca.crt")).CombinedOutput(); err != nil || !strings.Contains(string(out), "verify OK") {
		t.Fatalf("openssl crl: %v\n%s", err, out)
	}

	// The timestamp authority answers an openssl query, and openssl verifies the token.
	doc := filepath.Join(pki, "doc.txt")
	os.WriteFile(doc, []byte("registry extract 42"), 0o600)
	query := filepath.Join(pki, "q.tsq")
	if out, err := exec.Command("openssl", "ts", "-query", "-data", doc, "-sha256", "-cert", "-out", query).CombinedOutput(); err != nil {
		t.Fatalf("openssl ts -query: %v\n%s", err, out)
	}
	qb, _ := os.ReadFile(query)
	tresp, err := http.Post("http://"+addr+"/tsa", "application/timestamp-query", bytes.NewReader(qb))
	if err != nil || tresp.StatusCode != 200 {
		t.Fatalf("POST /tsa: %v %v", err, tresp)
	}
	reply, _ := io.ReadAll(tresp.Body)
	tresp.Body.Close()
	os.WriteFile(filepath.Join(pki, "r.tsr"), reply, 0o600)
	if out, err := exec.Command("openssl", "ts", "-verify", "-data", doc, "-in", filepath.Join(pki, "r.tsr"),
		"-CAfile", filepath.Join(pki, "root.crt"), "-untrusted", filepath.Join(pki, "seal-ca.crt")).CombinedOutput(); err != nil || !strings.Contains(string(out), "Verification: OK") {
		t.Fatalf("openssl ts -verify: %v\n%s", err, out)
	}

	// `vula timestamp` gets, verifies and writes a token that openssl also verifies.
	if out := vula(t, nil, "timestamp", doc, "--url", "http://"+addr+"/tsa", "--ca", filepath.Join(pki, "root.crt")); !strings.Contains(out, "verified") {
		t.Fatalf("vula timestamp: %q", out)
	}
	if out, err := exec.Command("openssl", "ts", "-verify", "-data", doc, "-in", doc+".tsr",
		"-CAfile", filepath.Join(pki, "root.crt"), "-untrusted", filepath.Join(pki, "seal-ca.crt")).CombinedOutput(); err != nil || !strings.Contains(string(out), "Verification: OK") {
		t.Fatalf("openssl ts -verify of vula timestamp's token: %v\n%s", err, out)
	}

	// An in-flight request (a slow-reading client) must not stop the drain from finishing.
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, logs.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no exit 30 s after SIGTERM")
	}
	// The token is in the audit log, in the record of the signature under it (its serial, message
	// imprint and time), and the chain verifies.
	export := vula(t, nil, "audit", "export", "--data-dir", data)
	tok, err := timestamp.ParseResponse(reply)
	if err != nil {
		t.Fatal(err)
	}
	if d := tokenRecord(t, export, tok.SerialNumber.Text(16)); d["imprint"] != hex.EncodeToString(tok.HashedMessage) ||
		d["time"] != tok.Time.UTC().Format(time.RFC3339Nano) || d["purpose"] != "tsa" {
		t.Errorf("the token's audit record says %v", d)
	}
	vula(t, nil, "audit", "verify", "--data-dir", data)
	for _, want := range []string{`"msg":"request"`, `"path":"/readyz"`, `"msg":"stopped"`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %s", want)
		}
	}
	if fi, err := os.Stat(filepath.Join(data, "keystore.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("master key file: %v %v", fi, err)
	}
}

// TestKeysSoftware drives `vula keys` on the embedded default and reads its JSON.
func TestKeysSoftware(t *testing.T) {
	t.Parallel()
	vulaBinary(t)
	data := t.TempDir()
	var k map[string]any
	out := vula(t, nil, "keys", "create", "--data-dir", data, "--label", "seal-tax", "--algorithm", "EC-P256",
		"--purpose", "seal:tax", "--owner", "tax", "--output", "json")
	if err := json.Unmarshal([]byte(out), &k); err != nil || k["uri"] != "software:object=seal-tax" || k["state"] != "active" {
		t.Fatalf("create: %q %v", out, err)
	}
	vula(t, nil, "keys", "retire", "--data-dir", data, "software:object=seal-tax")
	var list []map[string]any
	out = vula(t, nil, "keys", "list", "--data-dir", data, "--output", "json")
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list) != 1 || list[0]["state"] != "retired" {
		t.Fatalf("list: %q %v", out, err)
	}
	if _, errs, err := vulaRun(nil, "keys", "show", "--data-dir", data, "software:object=ghost"); err == nil || !strings.Contains(errs, "not found") {
		t.Fatalf("unknown key: %v %q", err, errs)
	}
}

// TestKeysPKCS11 makes a key with `vula keys create` on a SoftHSM2 token and asks OpenSC's
// pkcs11-tool what the token holds: sensitive, never extractable, sign only.
func TestKeysPKCS11(t *testing.T) {
	t.Parallel()
	vulaBinary(t)
	tok := testenv.SoftHSM(t)
	env := []string{"SOFTHSM2_CONF=" + tok.Conf, "VULA_HSM_BACKEND=pkcs11", "VULA_HSM_PKCS11_MODULE=" + tok.Module,
		"VULA_HSM_PKCS11_TOKEN_LABEL=" + tok.Label, "VULA_HSM_PKCS11_PIN_ENV=TEST_HSM_PIN", "TEST_HSM_PIN=" + tok.PIN}
	data := t.TempDir()
	var k map[string]any
	out := vula(t, env, "keys", "create", "--data-dir", data, "--label", "tsa-2026", "--algorithm", "EC-P384", "--purpose", "tsa", "--output", "json")
	if err := json.Unmarshal([]byte(out), &k); err != nil || k["uri"] != "pkcs11:token="+tok.Label+";object=tsa-2026;type=private" {
		t.Fatalf("create: %q %v", out, err)
	}
	vula(t, env, "keys", "create", "--data-dir", data, "--label", "ca-root", "--algorithm", "RSA-3072", "--purpose", "ca")
	var list []map[string]any
	json.Unmarshal([]byte(vula(t, env, "keys", "list", "--data-dir", data, "--output", "json")), &list)
	if len(list) != 2 || list[0]["label"] != "ca-root" || list[1]["algorithm"] != "EC-P384" {
		t.Fatalf("list: %v", list)
	}
	if _, err := exec.LookPath("pkcs11-tool"); err != nil {
		testenv.Missing(t, "pkcs11-tool (opensc)")
	}
	ptool, err := exec.Command("pkcs11-tool", "--module", tok.Module, "--token-label", tok.Label, "--login", "--pin", tok.PIN,
		"--list-objects", "--type", "privkey").CombinedOutput()
	if err != nil {
		t.Fatalf("pkcs11-tool: %v\n%s", err, ptool)
	}
	objects := strings.Split(string(ptool), "Private Key Object")
	if len(objects) != 3 {
		t.Fatalf("pkcs11-tool lists %d private keys:\n%s", len(objects)-1, ptool)
	}
	for _, o := range objects[1:] {
		if !strings.Contains(o, "Usage:      sign\n") || !strings.Contains(o, "Access:     sensitive, always sensitive, never extractable, local") {
			t.Errorf("private key not sign-only, sensitive, never extractable:\n%s", o)
		}
	}
	// The PIN never shows, even when it is wrong.
	badEnv := append(env[:len(env):len(env)], "TEST_HSM_PIN=9999-not-the-pin")
	_, errs, err := vulaRun(badEnv, "keys", "list", "--data-dir", data)
	if err == nil || !strings.Contains(errs, "wrong PIN") || strings.Contains(errs, "9999-not-the-pin") {
		t.Fatalf("wrong PIN: %v %q", err, errs)
	}
}

// tokenRecord finds, in an audit export, the signature record of the timestamp token with
// serial (hex), and returns its detail.
func tokenRecord(t *testing.T, export, serial string) map[string]string {
	t.Helper()
	for _, line := range strings.Split(strings.TrimSpace(export), "\n") {
		var r struct {
			Action string `json:"action"`
			Detail string `json:"detail"`
		}
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("export line %q: %v", line, err)
		}
		raw, _ := hex.DecodeString(r.Detail)
		var d map[string]string
		if r.Action == "sign" && json.Unmarshal(raw, &d) == nil && d["serial"] == serial {
			return d
		}
	}
	t.Fatalf("no audit record of the token with serial %s", serial)
	return nil
}
