package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestControlSocket: with serve up (holding the software keystore), the commands that need the
// key layer run inside it through <data_dir>/vula.sock (0600), their signatures audited as made
// through the socket; serve, backup and restore are refused there; the socket is removed at
// stop, and a stale one is replaced at the next start.
func TestControlSocket(t *testing.T) {
	data := t.TempDir()
	env := []string{"VULA_DATA_DIR=" + data, "VULA_IDP_DEMO=false"}
	srv := serveInProcess(t, env)
	sock := filepath.Join(data, socketName)
	fi, err := os.Stat(sock)
	if err != nil || fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket: %v %v", err, fi)
	}

	// The keystore is serve's: these would fail on its lock if they ran here.
	if code, out, errs := run(t, env, "keys", "create", "--label", "arta", "--purpose", "sign:arta", "--output", "json"); code != 0 || !strings.Contains(out, "software:object=arta") {
		t.Fatalf("keys create through the socket: %d %q %q", code, out, errs)
	}
	if code, out, errs := run(t, env, "keys", "list"); code != 0 || !strings.Contains(out, "software:object=arta") {
		t.Fatalf("keys list: %d %q %q", code, out, errs)
	}
	if code, out, errs := run(t, env, "orgs", "list", "--output", "json"); code != 0 || strings.TrimSpace(out) != "[]" {
		t.Fatalf("orgs list: %d %q %q", code, out, errs)
	}
	code, _, errs := run(t, env, "pki", "issue", "--key", "software:object=arta", "--given-name", "Arta", "--family-name", "Krasniqi", "--number", "1234567890")
	if code != 0 || !strings.Contains(errs, "under person-ca") {
		t.Fatalf("pki issue: %d %q", code, errs)
	}
	crl := filepath.Join(t.TempDir(), "person-ca.crl")
	if code, _, errs := run(t, env, "pki", "crl", "--ca", "person-ca", "-f", crl); code != 0 {
		t.Fatalf("pki crl: %d %q", code, errs)
	}
	if _, err := os.Stat(crl); err != nil {
		t.Fatal(err)
	}
	// A failing command's message and exit status come back as they are.
	if code, _, errs := run(t, env, "keys", "show", "software:object=nobody"); code != 1 || !strings.Contains(errs, "vula: ") || strings.Count(errs, "vula: ") != 1 {
		t.Fatalf("keys show of a missing key: %d %q", code, errs)
	}
	if code, out, errs := run(t, env, "audit", "verify"); code != 0 || !strings.HasPrefix(out, "ok: ") {
		t.Fatalf("audit verify: %d %q %q", code, out, errs)
	}
	// The certificate's signature is in the audit log as made through the socket.
	_, export, _ := run(t, env, "audit", "export")
	if !strings.Contains(export, `"actor":"cli via socket (uid `+strconv.Itoa(os.Getuid())+`)"`) {
		t.Fatalf("no audit record names the socket:\n%s", tail(export, 2000))
	}

	// What must not run inside the server is refused there, even from a hand-made request.
	for _, args := range [][]string{{"serve"}, {"backup", "--output", "/tmp/x"}, {"restore", "--input", "/tmp/x"}, {"status"}} {
		code, errs := rawRequest(t, sock, args)
		if code != 2 || !strings.Contains(errs, "does not run through the control socket") {
			t.Fatalf("%v through the socket: %d %q", args, code, errs)
		}
	}

	// A peer of another user is refused without an answer.
	if os.Getuid() == 0 {
		if _, err := os.Stat("/usr/bin/python3"); err == nil { // not a shim under /root, which the other user cannot run
			os.Chmod(filepath.Dir(data), 0o755)
			os.Chmod(data, 0o755)
			os.Chmod(sock, 0o666) // so that only SO_PEERCRED stands in the way
			py := exec.Command("/usr/bin/python3", "-c", `import socket,sys
s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
try:
    s.sendall(b'{"args":["keys","list"],"dir":"/"}\n'); got=s.recv(100)
except OSError:
    got=b''
sys.stdout.write(repr(got))`, sock)
			py.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
			out, err := py.CombinedOutput()
			if err != nil || string(out) != "b''" {
				t.Fatalf("a peer of uid 65534: %v %s", err, out)
			}
			os.Chmod(sock, 0o600)
			os.Chmod(data, 0o700)
		}
	}

	srv.stop(t)
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Fatalf("the socket outlived serve: %v", err)
	}
	// Served no more: the commands open the keystore here again.
	if code, out, errs := run(t, env, "keys", "list"); code != 0 || !strings.Contains(out, "software:object=arta") {
		t.Fatalf("keys list without a server: %d %q %q", code, out, errs)
	}

	// A socket file left by a killed server answers nobody: the next start replaces it.
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	if code, _, errs := run(t, env, "keys", "list"); code != 0 {
		t.Fatalf("keys list beside a stale socket: %q", errs)
	}
	srv = serveInProcess(t, env)
	if code, out, _ := run(t, env, "keys", "list"); code != 0 || !strings.Contains(out, "arta") {
		t.Fatal("no answer on the replaced socket")
	}
	if _, err := listenSocket(sock); !errors.Is(err, errSocketInUse) {
		t.Fatalf("a second listener on a live socket: %v", err)
	}
	// A second replica on the same data directory (PKCS#11) starts without a socket of its own.
	cfg, _ := (&globals{env: Env{Environ: env}}).load()
	stop, err := (&globals{}).startSocket(context.Background(), cfg, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("a second replica's socket: %v", err)
	}
	stop()
	if code, _, _ := run(t, env, "keys", "list"); code != 0 {
		t.Fatal("the first server's socket is gone")
	}
	srv.stop(t)
}

// rawRequest sends one request by hand and returns the exit code and standard error.
func rawRequest(t *testing.T, sock string, args []string) (int, string) {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	b, _ := json.Marshal(socketRequest{Args: args, Dir: "/"})
	c.Write(append(b, '\n'))
	r := bufio.NewReader(c)
	var errs strings.Builder
	for {
		kind, p, err := readFrame(r)
		if err != nil {
			t.Fatalf("reading the answer: %v", err)
		}
		switch kind {
		case 'e':
			errs.Write(p)
		case 'x':
			return int(p[3]), errs.String()
		}
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// FuzzReadFrame: the CLI's reader of the server's answer is bounded whatever the bytes.
func FuzzReadFrame(f *testing.F) {
	f.Add([]byte("o\x00\x00\x00\x03abcx\x00\x00\x00\x04\x00\x00\x00\x01"))
	f.Add([]byte("e\xff\xff\xff\xff"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bufio.NewReader(strings.NewReader(string(b)))
		for i := 0; i < 64; i++ {
			_, p, err := readFrame(r)
			if err != nil {
				return
			}
			if len(p) > maxFrame {
				t.Fatalf("a frame of %d bytes", len(p))
			}
		}
	})
}
