package e2e

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/vula-eid/vula/internal/signing/signingtest"
	"github.com/vula-eid/vula/internal/testenv"
)

// TestBackupRestore backs up a serving platform while seals and timestamps go on, restores the
// archive into a fresh data directory, and starts a server on it: the audit log verifies, a
// witness that saw the log at the backup sees the restored one extend it, and a seal made
// before the backup still validates against the restored platform.
func TestBackupRestore(t *testing.T) {
	t.Parallel()
	vulaBinary(t)
	testenv.Need(t, "pdfsig")
	data := filepath.Join(t.TempDir(), "var")
	env := []string{"VULA_DATA_DIR=" + data, "VULA_IDP_DEMO=false"}
	vula(t, env, "orgs", "create", "tax", "--name", "Tax Administration", "--registry-number", "810000001")
	secret := sealClient(t, env, "tax-batch", "--scope", "seal", "--organization", "tax")
	vkey := strings.TrimSpace(vula(t, env, "audit", "key"))
	srv := startReplicaAt(t, freePort(t), data, env)
	srv.ready(t, http.StatusOK)
	base := "http://" + srv.addr

	tax := sealHTTP(base, "tax-batch", secret)
	resp, sealed := postDoc(t, tax, base+"/api/v1/seal?level=B-LT", "application/pdf", signingtest.PDF("Vendim 7/2026"))
	if resp.StatusCode != 200 {
		t.Fatalf("seal: %d %s", resp.StatusCode, sealed)
	}
	timestampOnce(t, base, "before the backup")
	state := filepath.Join(t.TempDir(), "witness.json")
	if out, errs, err := vulaRun(env, "audit", "witness", "--state", state, "--key", vkey, base); err != nil {
		t.Fatalf("witness: %v %s %s", err, out, errs)
	}

	// The backup runs while tokens are being signed.
	archive := filepath.Join(t.TempDir(), "vula-backup.tar.gz")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
				timestampOnce(t, base, "during the backup")
			}
		}
	}()
	out, errs, err := vulaRun(env, "backup", "--output", archive)
	close(stop)
	wg.Wait()
	if err != nil || !strings.HasPrefix(out, "wrote "+archive) || !strings.Contains(errs, "ephemeral store") {
		t.Fatalf("backup: %v\n%s\n%s", err, out, errs)
	}
	if fi, err := os.Stat(archive); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("archive: %v %v", err, fi)
	}
	if _, _, err := vulaRun(env, "backup", "--output", archive); err == nil {
		t.Fatal("backup overwrote an existing archive")
	}

	// Restore: refused into the running data dir, done into a fresh one, its log verified.
	if _, errs, err := vulaRun(env, "restore", "--input", archive); err == nil || !strings.Contains(errs, "not empty") {
		t.Fatalf("restore into a data dir in use: %v %s", err, errs)
	}
	data2 := filepath.Join(t.TempDir(), "restored")
	env2 := []string{"VULA_DATA_DIR=" + data2, "VULA_IDP_DEMO=false"}
	out = vula(t, env2, "restore", "--input", archive)
	if !strings.Contains(out, "audit log ok") {
		t.Fatalf("restore: %s", out)
	}
	if out := vula(t, env2, "audit", "verify"); !strings.HasPrefix(out, "ok: ") {
		t.Fatalf("audit verify on the restored copy: %s", out)
	}
	if fi, err := os.Stat(data2); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("restored data dir: %v %v", err, fi)
	}

	// The first server stops (its state was copied); the restored one serves the same
	// platform: the witness sees its log extend what it saw, the old seal validates, and the
	// institution's client still gets tokens and seals.
	srv.cmd.Process.Signal(syscall.SIGTERM)
	srv.cmd.Wait()
	srv2 := startReplicaAt(t, freePort(t), data2, env2)
	srv2.ready(t, http.StatusOK)
	base2 := "http://" + srv2.addr
	timestampOnce(t, base2, "after the restore")
	if out, errs, err := vulaRun(env2, "audit", "witness", "--state", state, "--key", vkey, base2); err != nil || !strings.HasPrefix(out, "ok: ") {
		t.Fatalf("witness on the restored log: %v %s %s", err, out, errs)
	}
	p := filepath.Join(t.TempDir(), "sealed.pdf")
	os.WriteFile(p, sealed, 0o600)
	if out := vula(t, env2, "verify", p); !strings.Contains(out, "TOTAL-PASSED") {
		t.Fatalf("the seal made before the backup, verified on the restored platform:\n%s", out)
	}
	resp, body := postDoc(t, sealHTTP(base2, "tax-batch", secret), base2+"/api/v1/seal", "application/pdf", signingtest.PDF("after"))
	if resp.StatusCode != 200 {
		t.Fatalf("seal on the restored platform: %d %s", resp.StatusCode, body)
	}
}
