package e2e

import (
	"bufio"
	"context"
	"crypto"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vula-eid/vula/hsm"
	"github.com/vula-eid/vula/hsm/software"
	"github.com/vula-eid/vula/internal/audit"
	"github.com/vula-eid/vula/internal/store/sqlstore"
	"github.com/vula-eid/vula/internal/testenv"
)

// The test binary doubles as an audit writer: with VULA_E2E_AUDIT_WRITER set it appends records
// to the durable store named by VULA_E2E_DSN, with a software keystore under the data directory
// VULA_E2E_DATA laid out as `vula serve` lays it out, and prints each acknowledged seq.
func init() {
	if os.Getenv("VULA_E2E_AUDIT_WRITER") == "" {
		return
	}
	n, _ := strconv.Atoi(os.Getenv("VULA_E2E_AUDIT_WRITER"))
	if err := auditWriter(os.Getenv("VULA_E2E_DATA"), os.Getenv("VULA_E2E_DSN"), n); err != nil {
		fmt.Fprintln(os.Stderr, "writer:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func auditWriter(data, dsn string, n int) error {
	ctx := context.Background()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	kf := filepath.Join(data, "keystore.key")
	software.CreateKeyFile(kf) // exists already when the parent made it
	keys, err := software.Open(ctx, software.Config{Dir: filepath.Join(data, "keys"), KeyFile: kf}, quiet)
	if err != nil {
		return err
	}
	k, err := keys.CreateKey(ctx, hsm.KeySpec{Label: fmt.Sprintf("audit-%d", os.Getpid()), Algorithm: hsm.ECP256, Purpose: hsm.PurposeAudit})
	if err != nil {
		return err
	}
	db, err := sqlstore.Open(ctx, dsn, quiet)
	if err != nil {
		return err
	}
	l, err := audit.New(ctx, db, keys, k.URI, audit.Options{Every: 50}, time.Now, quiet)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(os.Stdout)
	for i := 0; n == 0 || i < n; i++ {
		rec, err := l.Append(ctx, audit.Event{Actor: fmt.Sprintf("writer-%d", os.Getpid()), Action: "seal", Result: "ok", Digest: []byte{byte(i)}})
		if err != nil {
			return err
		}
		// Acknowledged: the append returned, so the record must survive a kill from now on.
		fmt.Fprintln(w, rec.Seq)
		w.Flush()
	}
	return nil
}

func writer(t *testing.T, data, dsn string, n int) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "VULA_E2E_AUDIT_WRITER="+strconv.Itoa(n), "VULA_E2E_DATA="+data, "VULA_E2E_DSN="+dsn)
	cmd.Stderr = os.Stderr
	return cmd
}

// TestAuditSurvivesSIGKILL kills a writer in the middle of a burst; every acknowledged record
// must be there and `vula audit verify` must pass.
func TestAuditSurvivesSIGKILL(t *testing.T) {
	t.Parallel()
	vulaBinary(t)
	data := t.TempDir()
	dsn := "sqlite:" + filepath.Join(data, "vula.db")
	cmd := writer(t, data, dsn, 0)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acked := map[int64]bool{}
	sc := bufio.NewScanner(out)
	for sc.Scan() && len(acked) < 300 {
		n, _ := strconv.ParseInt(sc.Text(), 10, 64)
		acked[n] = true
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for sc.Scan() { // acknowledgements written before the kill landed
		n, _ := strconv.ParseInt(sc.Text(), 10, 64)
		acked[n] = true
	}
	cmd.Wait()
	if len(acked) < 300 {
		t.Fatalf("only %d acknowledgements", len(acked))
	}

	var rep audit.Report
	if err := json.Unmarshal([]byte(vula(t, nil, "audit", "verify", "--data-dir", data, "--output", "json")), &rep); err != nil {
		t.Fatal(err)
	}
	export := vula(t, nil, "audit", "export", "--data-dir", data)
	present := map[int64]bool{}
	for _, line := range strings.Split(strings.TrimSpace(export), "\n") {
		var r struct {
			Seq int64 `json:"seq"`
		}
		json.Unmarshal([]byte(line), &r)
		present[r.Seq] = true
	}
	for seq := range acked {
		if !present[seq] {
			t.Fatalf("acknowledged record %d lost after SIGKILL (report %+v)", seq, rep)
		}
	}
	if rep.Records < int64(len(acked)) || rep.Checkpoints == 0 {
		t.Fatalf("report %+v for %d acknowledged records", rep, len(acked))
	}

	// The head of this report, given back later, holds; a longer log than there is, does not.
	vula(t, nil, "audit", "verify", "--data-dir", data, "--expect-seq", fmt.Sprint(rep.Records), "--expect-head", rep.Head)
	_, errs, err := vulaRun(nil, "audit", "verify", "--data-dir", data, "--expect-seq", fmt.Sprint(rep.Records+5))
	if want := fmt.Sprintf("audit record %d: truncated", rep.Records+1); err == nil || !strings.Contains(errs, want) {
		t.Fatalf("verify of a log shorter than expected: %v %q", err, errs)
	}

	// An auditor verifies the export offline with the audit key's PEM, no key layer needed.
	exportFile := filepath.Join(t.TempDir(), "audit.jsonl")
	os.WriteFile(exportFile, []byte(export), 0o600)
	var keys []map[string]any
	json.Unmarshal([]byte(vula(t, nil, "keys", "list", "--data-dir", data, "--output", "json")), &keys)
	pemFile := filepath.Join(t.TempDir(), "audit.pem")
	os.WriteFile(pemFile, []byte(vula(t, nil, "keys", "show", "--data-dir", data, keys[0]["uri"].(string), "--output", "pem")), 0o600)
	if out := vula(t, nil, "audit", "verify", "--file", exportFile, "--public-key", pemFile); !strings.HasPrefix(out, "ok: ") {
		t.Fatalf("offline verify: %q", out)
	}
	if out, _ := exec.Command("openssl", "pkey", "-pubin", "-in", pemFile, "-noout", "-text").CombinedOutput(); !strings.Contains(string(out), "prime256v1") {
		t.Fatalf("openssl does not read the exported public key: %s", out)
	}

	// Tampering with the file is found by the real binary, which names the record.
	os.WriteFile(exportFile, []byte(strings.Replace(export, `"action":"seal"`, `"action":"sael"`, 1)), 0o600)
	_, errs, err = vulaRun(nil, "audit", "verify", "--data-dir", data, "--file", exportFile)
	if err == nil || !strings.Contains(errs, "audit record 1: hash mismatch") {
		t.Fatalf("tampered export: %v %q", err, errs)
	}
}

// TestAuditTwoProcesses runs two writer processes at once on one PostgreSQL, and on one SQLite
// file; they must keep one chain holding every record of both.
func TestAuditTwoProcesses(t *testing.T) {
	t.Parallel()
	for name, dsn := range map[string]func(t *testing.T) string{
		"sqlite":   func(t *testing.T) string { return "sqlite:" + filepath.Join(t.TempDir(), "shared.db") },
		"postgres": func(t *testing.T) string { return testenv.Postgres(t).DSN },
	} {
		t.Run(name, func(t *testing.T) { twoWriters(t, dsn(t)) })
	}
}

func twoWriters(t *testing.T, dsn string) {
	dirs := []string{t.TempDir(), t.TempDir()}
	var wg sync.WaitGroup
	for _, d := range dirs {
		cmd := writer(t, d, dsn, 150)
		cmd.Stdout = io.Discard
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := cmd.Run(); err != nil {
				t.Errorf("writer: %v", err)
			}
		}()
	}
	wg.Wait()
	ctx := context.Background()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	var keys []audit.PublicKeys
	for _, d := range dirs {
		m, err := software.Open(ctx, software.Config{Dir: filepath.Join(d, "keys"), KeyFile: filepath.Join(d, "keystore.key")}, quiet)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		keys = append(keys, audit.KeysOf(ctx, m))
	}
	either := func(uri string) (crypto.PublicKey, error) {
		for _, k := range keys {
			if pub, err := k(uri); err == nil {
				return pub, nil
			}
		}
		return nil, fmt.Errorf("no audit key %s", uri)
	}
	db, err := sqlstore.Open(ctx, dsn, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rep, err := audit.Verify(ctx, db, either, audit.VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Records-rep.Checkpoints != 300 || rep.Checkpoints == 0 {
		t.Fatalf("report %+v, want 300 events and checkpoints", rep)
	}
	t.Logf("%d checkpoints for 300 events, one every 50 wanted", rep.Checkpoints)
}
