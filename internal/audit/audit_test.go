package audit

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vula-eid/vula/hsm"
	"github.com/vula-eid/vula/hsm/software"
	"github.com/vula-eid/vula/internal/store"
	"github.com/vula-eid/vula/internal/store/sqlstore"
	"github.com/vula-eid/vula/internal/testenv"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.Cleanup()
	os.Exit(code)
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

type fixture struct {
	keys   hsm.Manager
	keyURI string
	pubs   PublicKeys
}

func newKeys(t testing.TB) fixture {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	kf := filepath.Join(dir, "master.key")
	if err := software.CreateKeyFile(kf); err != nil {
		t.Fatal(err)
	}
	m, err := software.Open(ctx, software.Config{Dir: filepath.Join(dir, "keys"), KeyFile: kf}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	k, err := m.CreateKey(ctx, hsm.KeySpec{Label: "audit-1", Algorithm: hsm.ECP256, Purpose: hsm.PurposeAudit})
	if err != nil {
		t.Fatal(err)
	}
	return fixture{keys: m, keyURI: k.URI, pubs: func(uri string) (crypto.PublicKey, error) { return m.PublicKey(ctx, uri) }}
}

func openDB(t testing.TB, dsn string) *sqlstore.DB {
	t.Helper()
	db, err := sqlstore.Open(context.Background(), dsn, quiet)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func newLog(t *testing.T, st store.AuditLog, f fixture, every int64) *Log {
	t.Helper()
	l, err := New(context.Background(), st, f.keys, f.keyURI, Options{Every: every}, time.Now, quiet)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func appendN(t *testing.T, l *Log, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		d := sha256.Sum256(fmt.Appendf(nil, "doc %d", i))
		if _, err := l.Append(context.Background(), Event{Actor: "client:tax", Action: "seal", Key: "k", Digest: d[:], Result: "ok", RequestID: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
}

func TestChainAndCheckpoints(t *testing.T) {
	f := newKeys(t)
	db := openDB(t, "sqlite:"+filepath.Join(t.TempDir(), "a.db"))
	l := newLog(t, db, f, 10)
	appendN(t, l, 35)
	rep, err := Verify(context.Background(), db, f.pubs, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// 35 events and a checkpoint after each 10 records: at 11, 22, 33.
	if rep.Records != 38 || rep.Checkpoints != 3 || rep.LastCheckpointSeq != 33 || rep.Unprotected != 5 {
		t.Fatalf("report %+v", rep)
	}
	// A checkpoint on demand closes the tail; a second one right after adds nothing.
	if _, err := l.Checkpoint(context.Background()); err != nil {
		t.Fatal(err)
	}
	if r, err := l.Checkpoint(context.Background()); err != nil || r.Seq != 0 {
		t.Fatalf("checkpoint over a checkpoint: %+v %v", r, err)
	}
	rep, _ = Verify(context.Background(), db, f.pubs, VerifyOptions{})
	if rep.Unprotected != 0 || rep.Records != 39 {
		t.Fatalf("after checkpoint: %+v", rep)
	}
	// Export and verify offline.
	var buf bytes.Buffer
	if err := Export(context.Background(), db, &buf); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(buf.String(), "\n"); n != 39 {
		t.Fatalf("export has %d lines", n)
	}
	orep, err := VerifyExport(bytes.NewReader(buf.Bytes()), f.pubs, VerifyOptions{})
	if err != nil || orep != rep {
		t.Fatalf("offline verify: %+v %v (online %+v)", orep, err, rep)
	}
	// A flipped byte in the export is found offline too.
	bad := bytes.Replace(buf.Bytes(), []byte(`"actor":"client:tax"`), []byte(`"actor":"client:tay"`), 1)
	if _, err := VerifyExport(bytes.NewReader(bad), f.pubs, VerifyOptions{}); !isProblem(err, 1) {
		t.Fatalf("tampered export: %v", err)
	}
}

func TestSignatureHook(t *testing.T) {
	f := newKeys(t)
	db := openDB(t, "sqlite:"+filepath.Join(t.TempDir(), "a.db"))
	l := newLog(t, db, f, 1000)
	ctx := context.Background()
	k, _ := f.keys.CreateKey(ctx, hsm.KeySpec{Label: "tsa", Algorithm: hsm.ECP256, Purpose: hsm.PurposeTSA})
	inst := hsm.Instrument(f.keys, hsm.NewMetrics(prometheus.NewRegistry()), l, time.Now)
	s, err := inst.Signer(ctx, k.URI, hsm.PurposeTSA)
	if err != nil {
		t.Fatal(err)
	}
	d := sha256.Sum256([]byte("token"))
	cs := s.(hsm.ContextSigner)
	if _, err := cs.SignContext(hsm.WithRequestID(hsm.WithActor(ctx, "anyone"), "req-1"), rand.Reader, d[:], crypto.SHA256); err != nil {
		t.Fatal(err)
	}
	recs, _ := db.AuditRecords(ctx, 1, 10)
	if len(recs) != 1 || recs[0].Action != "sign" || recs[0].Key != k.URI || !bytes.Equal(recs[0].Digest, d[:]) ||
		recs[0].Actor != "anyone" || recs[0].RequestID != "req-1" || recs[0].Result != "ok" {
		t.Fatalf("audit record of a signature: %+v", recs)
	}
	// With the database gone, the signature is withheld.
	db.Close()
	if sig, err := cs.SignContext(ctx, rand.Reader, d[:], crypto.SHA256); err == nil || sig != nil {
		t.Fatal("a signature was returned without its audit record")
	}
}

func TestTamperingDetected(t *testing.T) {
	f := newKeys(t)
	for _, tc := range []struct {
		name   string
		tamper string // SQL run against the database after 30 appends (checkpoints at 11 and 22)
		opts   func(head []byte) VerifyOptions
		seq    int64
		reason string
	}{
		{"changed digest", `UPDATE audit_log SET digest = x'00' WHERE seq = 5`, nil, 5, "hash mismatch"},
		{"changed result", `UPDATE audit_log SET result = 'error' WHERE seq = 14`, nil, 14, "hash mismatch"},
		{"deleted record", `DELETE FROM audit_log WHERE seq = 7`, nil, 7, "missing records 7..7"},
		{"swapped order", `UPDATE audit_log SET seq = -3 WHERE seq = 3; UPDATE audit_log SET seq = 3 WHERE seq = 4; UPDATE audit_log SET seq = 4 WHERE seq = -3`, nil, 3, "broken link"},
		{"truncated tail", `DELETE FROM audit_log WHERE seq > 27`, func(head []byte) VerifyOptions { return VerifyOptions{ExpectSeq: 32, ExpectHead: head} }, 28, "truncated"},
		{"inserted record", `UPDATE audit_log SET seq = -seq WHERE seq >= 20; UPDATE audit_log SET seq = 1 - seq WHERE seq < 0; INSERT INTO audit_log SELECT 20, time, actor, action, key_uri, digest, result, request_id, detail, signature, prev_hash, hash FROM audit_log WHERE seq = 19`, nil, 20, "broken link"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "a.db")
			db := openDB(t, "sqlite:"+path)
			l := newLog(t, db, f, 10)
			appendN(t, l, 30)
			rep, err := Verify(context.Background(), db, f.pubs, VerifyOptions{})
			if err != nil {
				t.Fatal(err)
			}
			head, _ := hex.DecodeString(rep.Head)
			raw, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)")
			if err != nil {
				t.Fatal(err)
			}
			defer raw.Close()
			for _, stmt := range strings.Split(tc.tamper, "; ") {
				if _, err := raw.Exec(stmt); err != nil {
					t.Fatalf("%s: %v", stmt, err)
				}
			}
			opts := VerifyOptions{}
			if tc.opts != nil {
				opts = tc.opts(head)
			}
			_, err = Verify(context.Background(), db, f.pubs, opts)
			var p *Problem
			if !errors.As(err, &p) || p.Seq != tc.seq || !strings.Contains(p.Reason, tc.reason) {
				t.Fatalf("err = %v, want record %d: %s", err, tc.seq, tc.reason)
			}
		})
	}
	// An attacker without the audit key changes a record and recomputes every hash after it:
	// the links hold, but a checkpoint no longer verifies.
	for name, forge := range map[string]func(r []store.AuditRecord){
		"rewritten chain after a checkpoint": func(r []store.AuditRecord) { r[14].Result = "forged" },
		"forged checkpoint signature":        func(r []store.AuditRecord) { r[21].Signature = []byte{0x30, 6, 2, 1, 1, 2, 1, 1} },
	} {
		t.Run(name, func(t *testing.T) {
			db := openDB(t, "sqlite:"+filepath.Join(t.TempDir(), "a.db"))
			l := newLog(t, db, f, 10)
			appendN(t, l, 30)
			recs, _ := db.AuditRecords(context.Background(), 1, 100)
			forge(recs)
			for i := 1; i < len(recs); i++ {
				recs[i].PrevHash = recs[i-1].Hash
				recs[i].Hash = Hash(recs[i])
			}
			_, err := Verify(context.Background(), &memLog{recs: recs}, f.pubs, VerifyOptions{})
			var p *Problem
			if !errors.As(err, &p) || p.Seq != 22 || !strings.Contains(p.Reason, "checkpoint") {
				t.Fatalf("err = %v, want the checkpoint at 22", err)
			}
		})
	}
}

func TestTwoWriters(t *testing.T) {
	f := newKeys(t)
	for name, dsn := range map[string]func(t *testing.T) string{
		"sqlite":   func(t *testing.T) string { return "sqlite:" + filepath.Join(t.TempDir(), "shared.db") },
		"postgres": func(t *testing.T) string { return testenv.Postgres(t).DSN },
	} {
		t.Run(name, func(t *testing.T) {
			d := dsn(t)
			// Two handles, as two replicas would have, each with its own Log.
			a, b := openDB(t, d), openDB(t, d)
			la, lb := newLog(t, a, f, 25), newLog(t, b, f, 25)
			var wg sync.WaitGroup
			for _, l := range []*Log{la, lb} {
				for g := 0; g < 4; g++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for i := 0; i < 25; i++ {
							if _, err := l.Append(context.Background(), Event{Actor: "w", Action: "x", Result: "ok"}); err != nil {
								t.Error(err)
								return
							}
						}
					}()
				}
			}
			wg.Wait()
			rep, err := Verify(context.Background(), a, f.pubs, VerifyOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if rep.Records-rep.Checkpoints != 200 || rep.Checkpoints == 0 {
				t.Fatalf("report %+v, want 200 events and some checkpoints", rep)
			}
		})
	}
}

func isProblem(err error, seq int64) bool {
	var p *Problem
	return errors.As(err, &p) && p.Seq == seq
}

// memLog serves records an attacker prepared, for Verify.
type memLog struct{ recs []store.AuditRecord }

func (m *memLog) AppendAudit(context.Context, func(*store.AuditRecord) (store.AuditRecord, error)) (store.AuditRecord, error) {
	return store.AuditRecord{}, errors.New("read-only")
}

func (m *memLog) AuditRecords(_ context.Context, from int64, limit int) ([]store.AuditRecord, error) {
	var out []store.AuditRecord
	for _, r := range m.recs {
		if r.Seq >= from && len(out) < limit {
			out = append(out, r)
		}
	}
	return out, nil
}
