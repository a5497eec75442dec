package e2e

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/vula-eid/vula/internal/signing/signingtest"
	"github.com/vula-eid/vula/internal/testenv"
	"github.com/vula-eid/vula/internal/validation"
)

// TestValidateEndToEnd: a document sealed through the real binary's API validates through its
// POST /api/v1/validate (the platform's root as anchor, no token needed) and through
// `vula verify` with the platform's root read from the store; a tampered copy fails both.
func TestValidateEndToEnd(t *testing.T) {
	t.Parallel()
	testenv.Need(t, "pdfsig")
	data, env, secret := sealedSetup(t)
	srv := startReplicaAt(t, freePort(t), data, env)
	srv.ready(t, http.StatusOK)
	base := "http://" + srv.addr
	resp, sealed := postDoc(t, sealHTTP(base, "tax-batch", secret), base+"/api/v1/seal?level=B-LTA", "application/pdf", signingtest.PDF("Vendim 42"))
	if resp.StatusCode != 200 {
		t.Fatalf("seal: %d %s", resp.StatusCode, sealed)
	}
	tampered := bytes.Replace(sealed, []byte("(Vendim 42)"), []byte("(Vendim 43)"), 1)

	for _, c := range []struct {
		name string
		doc  []byte
		ind  validation.Indication
	}{{"sealed", sealed, validation.TotalPassed}, {"tampered", tampered, validation.TotalFailed}} {
		resp, body := postDoc(t, http.DefaultClient, base+"/api/v1/validate", "application/pdf", c.doc)
		var rep validation.Report
		if resp.StatusCode != 200 || json.Unmarshal(body, &rep) != nil || rep.Indication != c.ind {
			t.Fatalf("%s: %d %s", c.name, resp.StatusCode, body)
		}
		if c.ind == validation.TotalPassed && (rep.Signatures[0].Level != "B-LTA" || rep.Signatures[0].Qualification != "QESeal") {
			t.Fatalf("%s: %s", c.name, body)
		}
	}
	if resp, body := postDoc(t, http.DefaultClient, base+"/api/v1/validate", "application/pdf", []byte("not a signature")); resp.StatusCode != 400 {
		t.Fatalf("not a signature: %d %s", resp.StatusCode, body)
	}

	// The CLI, offline, with the root from the store: the server is stopped first (the
	// embedded store is one process's).
	srv.cmd.Process.Signal(syscall.SIGTERM)
	srv.cmd.Wait()
	dir := t.TempDir()
	good, bad := filepath.Join(dir, "sealed.pdf"), filepath.Join(dir, "tampered.pdf")
	os.WriteFile(good, sealed, 0o600)
	os.WriteFile(bad, tampered, 0o600)
	if out := vula(t, env, "verify", good); !strings.Contains(out, "Result: TOTAL-PASSED") || !strings.Contains(out, "B-LTA") {
		t.Fatalf("vula verify: %s", out)
	}
	if out, _, err := vulaRun(env, "verify", bad); err == nil || !strings.Contains(out, "HASH_FAILURE") {
		t.Fatalf("vula verify of the tampered file: %v %s", err, out)
	}
}
