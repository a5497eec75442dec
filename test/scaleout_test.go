package e2e

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/vula-eid/vula/internal/testenv"
)

type replica struct {
	addr string
	cmd  *exec.Cmd
	logs *bytes.Buffer
}

func startReplica(t *testing.T, env []string) *replica {
	t.Helper()
	return startReplicaAt(t, freePort(t), t.TempDir(), env)
}

func startReplicaAt(t *testing.T, addr, data string, env []string) *replica {
	t.Helper()
	r := &replica{addr: addr, logs: &bytes.Buffer{}}
	r.cmd = exec.Command(binPath, "serve", "--data-dir", data, "--listen", r.addr)
	r.cmd.Env = append(r.cmd.Environ(), env...)
	r.cmd.Stderr = r.logs
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.cmd.Process.Kill(); r.cmd.Wait() })
	return r
}

// ready polls /readyz until it answers want or the bounded wait ends, and returns the last report.
func (r *replica) ready(t *testing.T, want int) map[string]any {
	t.Helper()
	var body map[string]any
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		resp, err := http.Get("http://" + r.addr + "/readyz")
		if err != nil {
			continue
		}
		body = nil
		json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode == want {
			return body
		}
	}
	t.Fatalf("replica %s: /readyz never answered %d; last %v\n%s", r.addr, want, body, r.logs)
	return nil
}

// TestScaleOut runs two replicas on one PostgreSQL, one Redis and one SoftHSM2 token. Both
// become ready; when Redis goes down both say so, and both recover when it returns.
func TestScaleOut(t *testing.T) {
	vulaBinary(t)
	pg := testenv.Postgres(t)
	rd := testenv.Redis(t)
	tok := testenv.SoftHSM(t)
	env := []string{"SOFTHSM2_CONF=" + tok.Conf, "VULA_HSM_BACKEND=pkcs11", "VULA_HSM_PKCS11_MODULE=" + tok.Module,
		"VULA_HSM_PKCS11_TOKEN_LABEL=" + tok.Label, "VULA_HSM_PKCS11_PIN_ENV=TEST_HSM_PIN", "TEST_HSM_PIN=" + tok.PIN,
		"VULA_STORE_DURABLE=" + pg.DSN, "VULA_STORE_EPHEMERAL=" + rd.URL}
	// One after the other: SoftHSM2 keeps its tokens in files, and a process that initialises
	// the library while another writes the token can miss the token (a real HSM has no such
	// race). Once both run, they share the token and the databases for real.
	var replicas []*replica
	for i := 0; i < 2; i++ {
		r := startReplica(t, env)
		replicas = append(replicas, r)
		rep := r.ready(t, http.StatusOK)
		comps, _ := rep["components"].(map[string]any)
		for _, c := range []string{"keys", "durable", "ephemeral"} {
			if st, _ := comps[c].(map[string]any); st["ok"] != true {
				t.Fatalf("replica %s: %s not ok: %v", r.addr, c, rep)
			}
		}
	}
	rd.Stop(t)
	for _, r := range replicas {
		rep := r.ready(t, http.StatusServiceUnavailable)
		comps, _ := rep["components"].(map[string]any)
		if st, _ := comps["ephemeral"].(map[string]any); st["ok"] != false {
			t.Fatalf("replica %s: Redis down but %v", r.addr, rep)
		}
	}
	rd.Start(t)
	for _, r := range replicas {
		r.ready(t, http.StatusOK)
	}
	for _, r := range replicas {
		r.cmd.Process.Signal(syscall.SIGTERM)
		if err := r.cmd.Wait(); err != nil {
			t.Fatalf("replica %s exit: %v\n%s", r.addr, err, r.logs)
		}
	}
	// The two replicas share one audit key on the token.
	var keys []map[string]any
	json.Unmarshal([]byte(vula(t, env, "keys", "list", "--output", "json")), &keys)
	audits := 0
	for _, k := range keys {
		if k["purpose"] == "audit" {
			audits++
		}
	}
	if audits < 1 {
		t.Fatalf("no audit key on the token: %v", keys)
	}
}
