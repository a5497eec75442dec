package e2e

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/digitorus/timestamp"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/vula-eid/vula/internal/apitest"
	"github.com/vula-eid/vula/internal/audit"
	"github.com/vula-eid/vula/internal/signing/signingtest"
	"github.com/vula-eid/vula/internal/store/sqlstore"
)

// TestAuditWitness runs the real binary: a witness follows its signed checkpoints, a seal's and
// a TSA token's audit records are proven included in the tree, and a rewritten tail and a cut
// tail are each found by `vula audit verify` and by the witness (issue #16).
func TestAuditWitness(t *testing.T) {
	t.Parallel()
	data, env, secret := sealedSetup(t)
	vkey := strings.TrimSpace(vula(t, env, "audit", "key")) // made before the first start, as serve would
	srv := startReplicaAt(t, freePort(t), data, env)
	srv.ready(t, http.StatusOK)
	base := "http://" + srv.addr

	v, err := audit.ParseVerifierKey(vkey)
	if err != nil || strings.Contains(vkey, "\n") {
		t.Fatalf("vula audit key printed %q: %v", vkey, err)
	}
	state := filepath.Join(t.TempDir(), "witness.json")
	witness := func() (string, error) {
		out, errs, err := vulaRun(env, "audit", "witness", "--state", state, "--key", vkey, base)
		return out + errs, err
	}
	if out, err := witness(); err != nil || !strings.HasPrefix(out, "ok: ") {
		t.Fatalf("first witness run: %v %s", err, out)
	}

	// A seal and a timestamp, then the witness again: the log grew consistently.
	resp, body := postDoc(t, sealHTTP(base, "tax-batch", secret), base+"/api/v1/seal", "application/pdf", signingtest.PDF("Vendim"))
	if resp.StatusCode != 200 {
		t.Fatalf("seal: %d %s", resp.StatusCode, body)
	}
	tok := timestampOnce(t, base, "registry extract 42")
	if out, err := witness(); err != nil || !strings.HasPrefix(out, "ok: ") {
		t.Fatalf("witness after a seal and a token: %v %s", err, out)
	}

	// Both audit records are in the tree of the signed checkpoint: tlog checks the proofs.
	spec := apitest.Load(t)
	cp := checkpoint(t, base, v)
	export := vula(t, env, "audit", "export")
	for what, match := range map[string]func(d map[string]string) bool{
		"the seal":  func(d map[string]string) bool { return d["purpose"] == "seal:tax" },
		"the token": func(d map[string]string) bool { return d["serial"] == tok.SerialNumber.Text(16) },
	} {
		seq, hash := auditRecord(t, export, match)
		var p audit.Proof
		getJSON(t, spec, fmt.Sprintf("%s/audit/proof/inclusion?seq=%d&size=%d", base, seq, cp.Size), http.StatusOK, &p)
		if err := tlog.CheckRecord(tlogHashes(t, p.Hashes), cp.Size, cp.Root, seq-1, tlog.RecordHash(hash)); err != nil {
			t.Fatalf("inclusion of %s's record %d in the tree of %d: %v", what, seq, cp.Size, err)
		}
	}
	for _, q := range []string{"inclusion?seq=0&size=1", "inclusion?seq=1&size=" + fmt.Sprint(cp.Size+1), "inclusion?seq=x&size=1",
		"consistency?from=5&size=4", "consistency?from=1"} {
		getJSON(t, spec, base+"/audit/proof/"+q, http.StatusBadRequest, nil)
	}
	// The software keystore is serve's while it runs: verify with the public key of the vkey.
	pemFile := pemOf(t, vkey)
	if out := vula(t, env, "audit", "verify", "--public-key", pemFile); !strings.Contains(out, fmt.Sprintf("signed tree checkpoint over all %d records", cp.Size)) {
		t.Fatalf("audit verify: %s", out)
	}

	// Someone with the database but not the audit key rewrites the tail, re-hashing the chain
	// and the tree; the service signs on over it. verify and the witness both find it.
	db, err := sqlstore.Open(context.Background(), "sqlite:"+filepath.Join(data, "vula.db"), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rewriteTail(t, db, filepath.Join(data, "vula.db"), cp.Size)
	if _, errs, err := vulaRun(env, "audit", "verify", "--public-key", pemFile); err == nil || !strings.Contains(errs, "rewritten") {
		t.Fatalf("audit verify of a rewritten tail: %v %s", err, errs)
	}
	timestampOnce(t, base, "after the rewrite")
	if out, err := witness(); err == nil || !strings.Contains(out, "not consistent") {
		t.Fatalf("witness after a rewrite: %v %s", err, out)
	}

	// A fresh witness on a fresh log, then the tail after the last group commit is cut off.
	data2 := t.TempDir()
	env2 := []string{"VULA_DATA_DIR=" + data2, "VULA_IDP_DEMO=false"}
	vkey2 := strings.TrimSpace(vula(t, env2, "audit", "key"))
	srv2 := startReplicaAt(t, freePort(t), data2, env2)
	srv2.ready(t, http.StatusOK)
	base2 := "http://" + srv2.addr
	for i := 0; i < 3; i++ {
		timestampOnce(t, base2, fmt.Sprint("doc ", i))
	}
	state2 := filepath.Join(t.TempDir(), "witness.json")
	vula(t, env2, "audit", "witness", "--state", state2, "--key", vkey2, base2)
	before := checkpoint(t, base2, mustVerifier(t, vkey2))
	execSQLite(t, filepath.Join(data2, "vula.db"), fmt.Sprintf(`DELETE FROM audit_log WHERE seq > %d`, before.Size-1))
	if _, errs, err := vulaRun(env2, "audit", "verify", "--public-key", pemOf(t, vkey2)); err == nil || !strings.Contains(errs, "truncated") {
		t.Fatalf("audit verify of a cut tail: %v %s", err, errs)
	}
	// Cut further, and a checkpoint the cutter could have saved put back: only the witness sees it.
	execSQLite(t, filepath.Join(data2, "vula.db"), fmt.Sprintf(`DELETE FROM audit_log WHERE seq > %d`, before.Size-2))
	timestampOnce(t, base2, "after the cut") // the service signs a smaller tree
	out, errs, err := vulaRun(env2, "audit", "witness", "--state", state2, "--key", vkey2, base2)
	if err == nil || !strings.Contains(errs, "not consistent") {
		t.Fatalf("witness after a truncation: %v %s %s", err, out, errs)
	}
	// The state still holds the checkpoint seen before the cut: the next run fails again.
	if _, errs, err := vulaRun(env2, "audit", "witness", "--state", state2, "--key", vkey2, base2); err == nil || !strings.Contains(errs, "not consistent") {
		t.Fatalf("witness rerun after a truncation: %v %s", err, errs)
	}
}

func mustVerifier(t *testing.T, vkey string) note.Verifier {
	t.Helper()
	v, err := audit.ParseVerifierKey(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func timestampOnce(t *testing.T, base, doc string) *timestamp.Timestamp {
	t.Helper()
	d := sha256.Sum256([]byte(doc))
	q, _ := (&timestamp.Request{HashAlgorithm: crypto.SHA256, HashedMessage: d[:], Certificates: true}).Marshal()
	resp, err := http.Post(base+"/tsa", "application/timestamp-query", bytes.NewReader(q))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("POST /tsa: %d %s", resp.StatusCode, body)
	}
	tok, err := timestamp.ParseResponse(body)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func checkpoint(t *testing.T, base string, v note.Verifier) audit.Checkpoint {
	t.Helper()
	resp, err := http.Get(base + "/audit/checkpoint")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	cp, err := audit.OpenCheckpoint(body, note.VerifierList(v))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /audit/checkpoint: %d %q: %v", resp.StatusCode, body, err)
	}
	return cp
}

// getJSON GETs u, wants status want and an answer api/openapi.yaml allows, and decodes it into v.
func getJSON(t *testing.T, spec *apitest.Spec, u string, want int, v any) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	spec.CheckResponse(t, resp.Request, resp.StatusCode, resp.Header, body)
	if resp.StatusCode != want {
		t.Fatalf("GET %s: %d %s, want %d", u, resp.StatusCode, body, want)
	}
	if want >= 400 && !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/problem+json") {
		t.Fatalf("GET %s: %d without a problem body", u, resp.StatusCode)
	}
	if v != nil {
		if err := json.Unmarshal(body, v); err != nil {
			t.Fatal(err)
		}
	}
}

func tlogHashes(t *testing.T, hs [][]byte) []tlog.Hash {
	t.Helper()
	out := make([]tlog.Hash, len(hs))
	for i, h := range hs {
		if len(h) != tlog.HashSize {
			t.Fatalf("proof hash of %d bytes", len(h))
		}
		out[i] = tlog.Hash(h)
	}
	return out
}

// auditRecord finds the export line of the signature record whose detail match accepts.
func auditRecord(t *testing.T, export string, match func(map[string]string) bool) (int64, []byte) {
	t.Helper()
	for _, line := range strings.Split(strings.TrimSpace(export), "\n") {
		var r struct {
			Seq    int64  `json:"seq"`
			Action string `json:"action"`
			Detail string `json:"detail"`
			Hash   string `json:"hash"`
		}
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatal(err)
		}
		raw, _ := hex.DecodeString(r.Detail)
		var d map[string]string
		if r.Action == "sign" && json.Unmarshal(raw, &d) == nil && match(d) {
			h, _ := hex.DecodeString(r.Hash)
			return r.Seq, h
		}
	}
	t.Fatal("no such audit record")
	return 0, nil
}

// rewriteTail changes the result of the last of the first size records, and re-hashes the chain
// and the tree hashes from there as someone without the audit key would.
func rewriteTail(t *testing.T, db *sqlstore.DB, path string, size int64) {
	t.Helper()
	recs, err := db.AuditRecords(context.Background(), 1, int(size))
	if err != nil {
		t.Fatal(err)
	}
	m := map[int64]tlog.Hash{}
	reader := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			out[i] = m[x]
		}
		return out, nil
	})
	recs[len(recs)-1].Result = "error: forged"
	for i := range recs {
		if i > 0 {
			recs[i].PrevHash = recs[i-1].Hash
		}
		recs[i].Hash = audit.Hash(recs[i])
		hs, err := tlog.StoredHashes(int64(i), recs[i].Hash, reader)
		if err != nil {
			t.Fatal(err)
		}
		recs[i].Tree = nil
		for j, h := range hs {
			m[tlog.StoredHashCount(int64(i))+int64(j)] = h
			recs[i].Tree = append(recs[i].Tree, h[:]...)
		}
	}
	r := recs[len(recs)-1]
	execSQLite(t, path, fmt.Sprintf(`UPDATE audit_log SET result = '%s', hash = x'%x', tree = x'%x' WHERE seq = %d`, r.Result, r.Hash, r.Tree, r.Seq))
}

// execSQLite runs stmt on the SQLite file directly, as someone with the file would.
func execSQLite(t *testing.T, path, stmt string) {
	t.Helper()
	raw, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if _, err := raw.Exec(stmt); err != nil {
		t.Fatalf("%s: %v", stmt, err)
	}
}

// pemOf writes the public key of a verifier key as vula audit key prints it to a PEM file.
func pemOf(t *testing.T, vkey string) string {
	t.Helper()
	parts := strings.SplitN(vkey, "+", 3)
	raw, err := base64.StdEncoding.DecodeString(parts[len(parts)-1])
	if err != nil || len(raw) < 2 || raw[0] != 0x02 {
		t.Fatalf("verifier key %q", vkey)
	}
	f := filepath.Join(t.TempDir(), "audit.pem")
	if err := os.WriteFile(f, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: raw[1:]}), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}
