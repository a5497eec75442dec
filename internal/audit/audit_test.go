package audit

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

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
	return fixture{keys: m, keyURI: k.URI, pubs: KeysOf(ctx, m)}
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
	_, cp, err := db.AuditCheckpoint(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	orep, err := VerifyExport(bytes.NewReader(buf.Bytes()), f.pubs, VerifyOptions{Checkpoint: cp})
	if err != nil || orep != rep || rep.TreeSize != 39 {
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
	// The caller's detail lands in the same record; it cannot rename the purpose or the hash.
	sctx := hsm.WithAuditDetail(hsm.WithRequestID(hsm.WithActor(ctx, "anyone"), "req-1"),
		map[string]string{"serial": "1f", "purpose": "seal", "hash": "MD5"})
	if _, err := cs.SignContext(sctx, rand.Reader, d[:], crypto.SHA256); err != nil {
		t.Fatal(err)
	}
	recs, _ := db.AuditRecords(ctx, 1, 10)
	if len(recs) != 1 || recs[0].Action != "sign" || recs[0].Key != k.URI || !bytes.Equal(recs[0].Digest, d[:]) ||
		recs[0].Actor != "anyone" || recs[0].RequestID != "req-1" || recs[0].Result != "ok" ||
		string(recs[0].Detail) != `{"hash":"SHA-256","purpose":"tsa","serial":"1f"}` {
		t.Fatalf("audit record of a signature: %+v (detail %s)", recs, recs[0].Detail)
	}
	// With the database gone, the signature is withheld.
	db.Close()
	if sig, err := cs.SignContext(ctx, rand.Reader, d[:], crypto.SHA256); err == nil || sig != nil {
		t.Fatal("a signature was returned without its audit record")
	}
}

// A transaction given with WithTransaction is stored in the commit of the audit record of the
// first signature by its key, and by no other signature's (another key, a second signature).
func TestTransactionRides(t *testing.T) {
	f := newKeys(t)
	db := openDB(t, "sqlite:"+filepath.Join(t.TempDir(), "a.db"))
	l := newLog(t, db, f, 1000)
	ctx := context.Background()
	seal, _ := f.keys.CreateKey(ctx, hsm.KeySpec{Label: "seal", Algorithm: hsm.ECP256, Purpose: hsm.SealPurpose("tax")})
	other, _ := f.keys.CreateKey(ctx, hsm.KeySpec{Label: "tsa", Algorithm: hsm.ECP256, Purpose: hsm.PurposeTSA})
	inst := hsm.Instrument(f.keys, hsm.NewMetrics(prometheus.NewRegistry()), l, time.Now)
	sign := func(ctx context.Context, uri string, p hsm.Purpose) {
		t.Helper()
		s, err := inst.Signer(ctx, uri, p)
		if err != nil {
			t.Fatal(err)
		}
		d := sha256.Sum256([]byte(uri))
		if _, err := s.(hsm.ContextSigner).SignContext(ctx, rand.Reader, d[:], crypto.SHA256); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now().UTC().Truncate(time.Microsecond)
	tx := store.Transaction{ID: "t-1", Kind: "seal", Actor: "tax-batch", OrganizationID: "tax", Digests: [][]byte{{1, 2}},
		Format: "pades", Level: "B-B", State: "completed", Created: now, Completed: now}
	rctx, rider := WithTransaction(ctx, seal.URI, tx)
	sign(rctx, other.URI, hsm.PurposeTSA)
	if rider.Written() {
		t.Fatal("the transaction rode on another key's signature")
	}
	if _, err := db.Transaction(ctx, "t-1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("transaction after another key's signature: %v", err)
	}
	sign(rctx, seal.URI, hsm.SealPurpose("tax"))
	if !rider.Written() {
		t.Fatal("the transaction did not ride on its key's signature")
	}
	got, err := db.Transaction(ctx, "t-1")
	if err != nil || got.Actor != "tax-batch" || got.Level != "B-B" || len(got.Digests) != 1 || !got.Created.Equal(now) {
		t.Fatalf("transaction %+v, %v", got, err)
	}
	// A second signature with the same context carries nothing (it would be a duplicate id and
	// fail its whole batch).
	sign(rctx, seal.URI, hsm.SealPurpose("tax"))
	if st := l.Stats(); st.Commits != 3 || st.Records != 3 {
		t.Fatalf("stats %+v, want 3 records in 3 commits", st)
	}
	if _, err := Verify(ctx, db, f.pubs, VerifyOptions{}); err != nil {
		t.Fatal(err)
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
		{"changed actor", `UPDATE audit_log SET actor = 'someone else' WHERE seq = 9`, nil, 9, "hash mismatch"},
		{"changed checkpoint statement", `UPDATE audit_log SET detail = CAST(replace(CAST(detail AS TEXT), '"seq":22', '"seq":23') AS BLOB) WHERE seq = 22`, nil, 22, "hash mismatch"},
		{"deleted record", `DELETE FROM audit_log WHERE seq = 7`, nil, 7, "missing records 7..7"},
		{"swapped order", `UPDATE audit_log SET seq = -3 WHERE seq = 3; UPDATE audit_log SET seq = 3 WHERE seq = 4; UPDATE audit_log SET seq = 4 WHERE seq = -3`, nil, 3, "broken link"},
		{"truncated tail", `DELETE FROM audit_log WHERE seq > 27`, func(head []byte) VerifyOptions { return VerifyOptions{ExpectSeq: 32, ExpectHead: head} }, 28, "truncated"},
		{"truncated tail, length known", `DELETE FROM audit_log WHERE seq > 27`, func([]byte) VerifyOptions { return VerifyOptions{ExpectSeq: 32} }, 28, "truncated"},
		{"truncated back to a checkpoint", `DELETE FROM audit_log WHERE seq > 22`, func([]byte) VerifyOptions { return VerifyOptions{ExpectSeq: 32} }, 23, "truncated"},
		{"tail rewritten", `UPDATE audit_log SET result = 'x' WHERE seq = 32`, func(head []byte) VerifyOptions { return VerifyOptions{ExpectSeq: 32, ExpectHead: head} }, 32, "hash mismatch"},
		{"inserted record", `UPDATE audit_log SET seq = -seq WHERE seq >= 20; UPDATE audit_log SET seq = 1 - seq WHERE seq < 0; INSERT INTO audit_log SELECT 20, time, actor, action, key_uri, digest, result, request_id, detail, signature, prev_hash, hash, tree, subject FROM audit_log WHERE seq = 19`, nil, 20, "broken link"},
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
	for _, tc := range []struct {
		name  string
		forge func(t *testing.T, r []store.AuditRecord) // r[i] is record i+1; checkpoints at 11 and 22
		seq   int64
	}{
		{"rewritten chain after a checkpoint", func(_ *testing.T, r []store.AuditRecord) { r[14].Result = "forged" }, 22},
		{"forged checkpoint signature", func(_ *testing.T, r []store.AuditRecord) { r[21].Signature = []byte{0x30, 6, 2, 1, 1, 2, 1, 1} }, 22},
		// An institution's seal key signs any hash its clients send: checkpoints it signed,
		// valid as signatures, must still be refused.
		{"checkpoints signed by a seal key", func(t *testing.T, r []store.AuditRecord) {
			r[3].Result = "forged"
			s := sealSigner(t, f)
			for i := 1; i < len(r); i++ {
				r[i].PrevHash = r[i-1].Hash
				if r[i].Action == ActionCheckpoint {
					st, _ := json.Marshal(Statement{Seq: r[i].Seq, Head: hex.EncodeToString(r[i].PrevHash), Time: r[i].Time, Key: s.uri})
					d := sha256.Sum256(st)
					sig, err := s.Sign(rand.Reader, d[:], crypto.SHA256)
					if err != nil {
						t.Fatal(err)
					}
					r[i].Key, r[i].Detail, r[i].Digest, r[i].Signature = s.uri, st, d[:], sig
				}
				r[i].Hash = Hash(r[i])
			}
		}, 11},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := openDB(t, "sqlite:"+filepath.Join(t.TempDir(), "a.db"))
			l := newLog(t, db, f, 10)
			appendN(t, l, 30)
			recs, _ := db.AuditRecords(context.Background(), 1, 100)
			tc.forge(t, recs)
			for i := 1; i < len(recs); i++ {
				recs[i].PrevHash = recs[i-1].Hash
				recs[i].Hash = Hash(recs[i])
			}
			_, err := Verify(context.Background(), &memLog{recs: recs}, f.pubs, VerifyOptions{})
			var p *Problem
			if !errors.As(err, &p) || p.Seq != tc.seq || !strings.Contains(p.Reason, "checkpoint") {
				t.Fatalf("err = %v, want the checkpoint at %d", err, tc.seq)
			}
		})
	}
}

type uriSigner struct {
	crypto.Signer
	uri string
}

// sealSigner makes an institution's seal key in the fixture's key layer.
func sealSigner(t *testing.T, f fixture) uriSigner {
	t.Helper()
	ctx := context.Background()
	k, err := f.keys.CreateKey(ctx, hsm.KeySpec{Label: "seal-" + strings.ReplaceAll(t.Name(), "/", "-"), Algorithm: hsm.ECP256, Purpose: hsm.SealPurpose("tax")})
	if err != nil {
		t.Fatal(err)
	}
	s, err := f.keys.Signer(ctx, k.URI, hsm.SealPurpose("tax"))
	if err != nil {
		t.Fatal(err)
	}
	return uriSigner{s, k.URI}
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
			t.Logf("%d checkpoints for 200 events, one every 25 wanted", rep.Checkpoints)
		})
	}
}

func isProblem(err error, seq int64) bool {
	var p *Problem
	return errors.As(err, &p) && p.Seq == seq
}

// memLog serves records an attacker prepared, for Verify.
type memLog struct{ recs []store.AuditRecord }

func (m *memLog) AppendAudit(context.Context, func(*store.AuditRecord) ([]store.AuditRecord, error)) ([]store.AuditRecord, error) {
	return nil, errors.New("read-only")
}

func (m *memLog) AuditTree(context.Context, []int64) (map[int64][]byte, error) { return nil, nil }

func (m *memLog) AuditCheckpoint(context.Context) (int64, []byte, error) {
	return 0, nil, store.ErrNotFound
}

func (m *memLog) FillAuditTree(context.Context, map[int64][]byte) error {
	return errors.New("read-only")
}

func (m *memLog) AuditOf(context.Context, string, int64, int) ([]store.AuditRecord, error) {
	return nil, errors.New("not indexed")
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

func checkpointSeqs(t *testing.T, st store.AuditLog) []int64 {
	t.Helper()
	recs, err := st.AuditRecords(context.Background(), 1, 10000)
	if err != nil {
		t.Fatal(err)
	}
	var seqs []int64
	for _, r := range recs {
		if r.Action == ActionCheckpoint {
			seqs = append(seqs, r.Seq)
		}
	}
	return seqs
}

// Checkpoints are counted from the chain: two writers taking turns, and a writer that starts on
// an existing chain, checkpoint exactly as one writer would.
func TestCheckpointsCountedFromChain(t *testing.T) {
	f := newKeys(t)
	path := "sqlite:" + filepath.Join(t.TempDir(), "a.db")
	a, b := openDB(t, path), openDB(t, path)
	la, lb := newLog(t, a, f, 10), newLog(t, b, f, 10)
	for i := 0; i < 45; i++ {
		appendN(t, []*Log{la, lb}[i%2], 1)
	}
	// A process started now knows nothing of the last checkpoint (44) but the chain does.
	lc := newLog(t, openDB(t, path), f, 10)
	appendN(t, lc, 5)
	if got := fmt.Sprint(checkpointSeqs(t, a)); got != "[11 22 33 44 55]" {
		t.Fatalf("checkpoints at %s", got)
	}
	if _, err := Verify(context.Background(), a, f.pubs, VerifyOptions{}); err != nil {
		t.Fatal(err)
	}
}

// racingLog lets another writer append just before each of the next n calls, as a writer in
// another process would between a checkpoint's reading of the head and its append.
type racingLog struct {
	store.AuditLog
	other *Log
	n     int
}

func (r *racingLog) AppendAudit(ctx context.Context, next func(*store.AuditRecord) ([]store.AuditRecord, error)) ([]store.AuditRecord, error) {
	if r.n > 0 {
		r.n--
		if _, err := r.other.Append(ctx, Event{Actor: "other", Action: "seal", Result: "ok"}); err != nil {
			return nil, err
		}
	}
	return r.AuditLog.AppendAudit(ctx, next)
}

// A checkpoint signed outside the lock is appended only over the head it names; when others
// keep appending it is signed again, and in the end under the lock.
func TestCheckpointRacesAnotherWriter(t *testing.T) {
	f := newKeys(t)
	for _, tc := range []struct {
		name      string
		interfere int   // appends by the other writer, one before each call to the store
		seq       int64 // where the checkpoint lands after 5 records
	}{
		{"alone", 0, 6},
		{"head moved before it was read", 1, 7},
		{"head moved once after signing", 2, 8},
		{"head kept moving: signed under the lock", 6, 12},
		{"head moved every time", 100, 13},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := openDB(t, "sqlite:"+filepath.Join(t.TempDir(), "a.db"))
			race := &racingLog{AuditLog: db, other: newLog(t, db, f, 1000)}
			l := newLog(t, race, f, 1000)
			appendN(t, l, 5)
			race.n = tc.interfere
			rec, err := l.Checkpoint(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if rec.Seq != tc.seq {
				t.Fatalf("checkpoint at %d, want %d", rec.Seq, tc.seq)
			}
			rep, err := Verify(context.Background(), db, f.pubs, VerifyOptions{})
			if err != nil || rep.Checkpoints != 1 || rep.LastCheckpointSeq != tc.seq {
				t.Fatalf("report %+v, %v", rep, err)
			}
		})
	}
}

func TestRefusals(t *testing.T) {
	f := newKeys(t)
	ctx := context.Background()
	db := openDB(t, "sqlite:"+filepath.Join(t.TempDir(), "a.db"))
	l := newLog(t, db, f, 10)
	for _, action := range []string{"", ActionCheckpoint} {
		if _, err := l.Append(ctx, Event{Actor: "x", Action: action}); err == nil {
			t.Errorf("an event with action %q was appended", action)
		}
	}
	// An instrumented manager's audit signer would append from inside an append.
	inst := hsm.Instrument(f.keys, hsm.NewMetrics(prometheus.NewRegistry()), l, time.Now)
	if _, err := New(ctx, db, inst, f.keyURI, Options{}, time.Now, quiet); err == nil {
		t.Error("New took an instrumented manager")
	}
	// A key of another purpose is no audit key.
	s := sealSigner(t, f)
	if _, err := f.pubs(s.uri); !errors.Is(err, hsm.ErrWrongPurpose) {
		t.Errorf("KeysOf gave a seal key: %v", err)
	}
	for _, o := range []VerifyOptions{{ExpectSeq: -1}, {ExpectHead: make([]byte, 32)}, {ExpectSeq: 3, ExpectHead: []byte{1}}} {
		if _, err := Verify(ctx, db, f.pubs, o); err == nil {
			t.Errorf("Verify took options %+v", o)
		}
	}
	if recs, _ := db.AuditRecords(ctx, 1, 10); len(recs) != 0 {
		t.Fatalf("refused events left records: %+v", recs)
	}
}

// countingLog counts the store's commits and can fail them.
type countingLog struct {
	store.AuditLog
	commits atomic.Int64
	fail    atomic.Bool
}

func (c *countingLog) AppendAudit(ctx context.Context, next func(*store.AuditRecord) ([]store.AuditRecord, error)) ([]store.AuditRecord, error) {
	if c.fail.Load() {
		return nil, store.ErrUnavailable
	}
	recs, err := c.AuditLog.AppendAudit(ctx, next)
	if err == nil && len(recs) > 0 {
		c.commits.Add(1)
	}
	return recs, err
}

// Concurrent appends share commits: every caller gets its own record back, in one unbroken
// chain, in fewer commits than records. When the store fails, every caller in the batch gets
// the error and nothing is written.
func TestGroupCommit(t *testing.T) {
	f := newKeys(t)
	ctx := context.Background()
	db := &countingLog{AuditLog: openDB(t, "sqlite:"+filepath.Join(t.TempDir(), "a.db"))}
	l := newLog(t, db, f, 1_000_000)
	const writers, each = 32, 20
	var wg sync.WaitGroup
	var mu sync.Mutex
	seen := map[int64]string{}
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				actor := fmt.Sprintf("w%d-%d", w, i)
				rec, err := l.Append(ctx, Event{Actor: actor, Action: "sign", Result: "ok"})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if other, dup := seen[rec.Seq]; dup {
					t.Errorf("seq %d given to %s and %s", rec.Seq, other, actor)
				}
				seen[rec.Seq] = actor
				mu.Unlock()
				if rec.Actor != actor {
					t.Errorf("%s got the record of %s", actor, rec.Actor)
				}
			}
		}()
	}
	wg.Wait()
	rep, err := Verify(ctx, db, f.pubs, VerifyOptions{})
	if err != nil || rep.Records != writers*each {
		t.Fatalf("report %+v, %v", rep, err)
	}
	if n := db.commits.Load(); n >= writers*each {
		t.Fatalf("%d commits for %d records: nothing was grouped", n, writers*each)
	} else {
		t.Logf("%d records in %d commits", writers*each, n)
	}

	db.fail.Store(true)
	errs := make(chan error, writers)
	for w := 0; w < writers; w++ {
		go func() {
			_, err := l.Append(ctx, Event{Actor: "down", Action: "sign", Result: "ok"})
			errs <- err
		}()
	}
	for w := 0; w < writers; w++ {
		if err := <-errs; !errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("append with the store down: %v", err)
		}
	}
	db.fail.Store(false)
	if _, err := l.Append(ctx, Event{Actor: "back", Action: "sign", Result: "ok"}); err != nil {
		t.Fatalf("append after the store came back: %v", err)
	}
	rep, err = Verify(ctx, db, f.pubs, VerifyOptions{})
	if err != nil || rep.Records != writers*each+1 {
		t.Fatalf("after the outage: report %+v, %v", rep, err)
	}
}

// readCountingLog counts reads of records.
type readCountingLog struct {
	store.AuditLog
	reads atomic.Int64
}

func (r *readCountingLog) AuditRecords(ctx context.Context, from int64, limit int) ([]store.AuditRecord, error) {
	r.reads.Add(1)
	return r.AuditLog.AuditRecords(ctx, from, limit)
}

// A writer that appended every record since the last checkpoint knows when the next is due
// without reading the chain back; one that follows another writer's records reads it, and
// both checkpoint where one writer would.
func TestCheckpointDueFromOwnRecords(t *testing.T) {
	f := newKeys(t)
	path := "sqlite:" + filepath.Join(t.TempDir(), "a.db")
	a := &readCountingLog{AuditLog: openDB(t, path)}
	la := newLog(t, a, f, 10)
	appendN(t, la, 40)
	if n := a.reads.Load(); n != 0 {
		t.Errorf("a lone writer read the chain %d times to find its checkpoints", n)
	}
	if st := la.Stats(); st.Records != 40 || st.Commits == 0 || st.Commits > 40 || st.Time <= 0 {
		t.Errorf("stats %+v after 40 appends", st)
	}
	// The same counts on /metrics.
	reg := prometheus.NewRegistry()
	reg.MustRegister(la.Metrics()...)
	if n, err := testutil.GatherAndCount(reg); err != nil || n != 4 {
		t.Fatalf("metrics: %d %v", n, err)
	}
	if v := testutil.ToFloat64(la.Metrics()[1]); v != 40 {
		t.Errorf("vula_audit_group_committed_records_total %v after 40 appends", v)
	}
	rep, err := Verify(context.Background(), a, f.pubs, VerifyOptions{})
	if err != nil || rep.Records != 44 || rep.LastCheckpointSeq != 44 {
		t.Fatalf("report %+v, %v", rep, err)
	}

	// Another process appends 7 records: a's next checkpoint must count them.
	lb := newLog(t, openDB(t, path), f, 10)
	appendN(t, lb, 7)
	before := a.reads.Load()
	last := rep.LastCheckpointSeq
	appendN(t, la, 15)
	if a.reads.Load() == before {
		t.Error("a writer following another's records did not read them")
	}
	// Whoever writes it, one checkpoint after every 10 records.
	seqs, want := checkpointSeqs(t, a), last
	for _, s := range seqs {
		if s > last && s != want+11 {
			t.Errorf("checkpoints at %v: want one after every 10 records from %d", seqs, last)
		}
		want = s
	}
	if want < last+22 {
		t.Errorf("checkpoints at %v: want two after %d", seqs, last)
	}
	if _, err := Verify(context.Background(), a, f.pubs, VerifyOptions{}); err != nil {
		t.Fatal(err)
	}
}

// The checkpoint an append owes is written even when that append's caller has gone away: it
// was not ("audit checkpoint failed: context canceled" under load, where clients hang up) and
// waited for a later append or the ticker.
func TestCheckpointOutlivesCaller(t *testing.T) {
	f := newKeys(t)
	db := openDB(t, "sqlite:"+filepath.Join(t.TempDir(), "a.db"))
	l := newLog(t, db, f, 3)
	appendN(t, l, 2)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rec, err := l.Append(ctx, Event{Actor: "client:tax", Action: "seal", Key: "k", Result: "ok", RequestID: "gone"})
	if err != nil || rec.Seq != 3 {
		t.Fatalf("append for a caller that left: %v %+v", err, rec)
	}
	next, err := db.AuditRecords(context.Background(), 4, 1)
	if err != nil || len(next) != 1 || next[0].Action != ActionCheckpoint {
		t.Fatalf("no checkpoint after record 3: %v %+v", err, next)
	}
}

// gatedLog holds appends at the store until opened.
type gatedLog struct {
	store.AuditLog
	gate chan struct{}
}

func (g *gatedLog) AppendAudit(ctx context.Context, next func(*store.AuditRecord) ([]store.AuditRecord, error)) ([]store.AuditRecord, error) {
	<-g.gate
	return g.AuditLog.AppendAudit(ctx, next)
}

// eventually polls cond until it holds, failing the test past a bound far beyond any wait of
// the code under test (this is a hang guard, not a timing).
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("never: %s", what)
		}
	}
}

func (l *Log) queued() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.queue)
}

func (l *Log) lingering() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.full != nil
}

// appendAll appends n events at once, calls start, and waits for them.
func appendAll(t *testing.T, l *Log, n int, start func()) {
	t.Helper()
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := l.Append(context.Background(), Event{Actor: fmt.Sprint("w", i), Action: "sign", Result: "ok"}); err != nil {
				t.Error(err)
			}
		}()
	}
	start()
	wg.Wait()
}

// With Linger, the writer of a commit that follows a commit of several records waits until as
// many appends have joined it: a wave of appends arriving one after another is written in one
// commit instead of one commit for its first and another for the rest. Counted through Stats
// (the commit metrics); the linger is an hour, so only the count can end the wait.
func TestLingerGroupsBatch(t *testing.T) {
	f := newKeys(t)
	db := &gatedLog{AuditLog: openDB(t, "sqlite:"+filepath.Join(t.TempDir(), "a.db")), gate: make(chan struct{})}
	l, err := New(context.Background(), db.AuditLog, f.keys, f.keyURI, Options{Every: 1_000_000, Linger: time.Hour}, time.Now, quiet)
	if err != nil {
		t.Fatal(err)
	}
	l.st = db // New's own writes went through the open store
	// A first commit of 4 records: the first append holds the store, three queue behind it.
	appendAll(t, l, 4, func() {
		eventually(t, "four appends queued", func() bool { return l.queued() == 4 })
		close(db.gate)
	})
	if st := l.Stats(); st.Commits != 1 || st.Records != 4 {
		t.Fatalf("stats %+v after the first wave", st)
	}
	// The next wave arrives one append at a time: its first waits for the other three.
	var wg sync.WaitGroup
	for i := range 4 {
		if i == 1 {
			eventually(t, "the writer lingers", l.lingering)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := l.Append(context.Background(), Event{Actor: fmt.Sprint("v", i), Action: "sign", Result: "ok"}); err != nil {
				t.Error(err)
			}
		}()
		if i == 1 || i == 2 {
			eventually(t, "the append queued", func() bool { return l.queued() == i+1 })
		}
	}
	wg.Wait()
	if st := l.Stats(); st.Commits != 2 || st.Records != 8 || st.Lingers != 1 {
		t.Fatalf("stats %+v: want the second wave of 4 in one commit", st)
	}
	if rep, err := Verify(context.Background(), db, f.pubs, VerifyOptions{}); err != nil || rep.Records != 8 {
		t.Fatalf("report %+v, %v", rep, err)
	}
}

// A lone caller never waits for the linger: not when appends come one at a time, and not after
// a wave of appends once the log has been quiet (4×Linger). The linger is an hour, so a wait
// would hang the test.
func TestLingerLoneAppend(t *testing.T) {
	f := newKeys(t)
	var offset atomic.Int64
	now := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	db := &gatedLog{AuditLog: openDB(t, "sqlite:"+filepath.Join(t.TempDir(), "a.db")), gate: make(chan struct{})}
	close(db.gate)
	l, err := New(context.Background(), db, f.keys, f.keyURI, Options{Every: 1_000_000, Linger: time.Hour}, now, quiet)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 10 {
			if _, err := l.Append(context.Background(), Event{Actor: fmt.Sprint("a", i), Action: "sign", Result: "ok"}); err != nil {
				t.Error(err)
			}
		}
	}()
	eventually(t, "ten appends one at a time", func() bool {
		select {
		case <-done:
			return true
		default:
			return false
		}
	})
	if st := l.Stats(); st.Commits != 10 || st.Lingers != 0 {
		t.Fatalf("stats %+v: a lone caller waited", st)
	}
	// A wave: the first append holds the store while three queue behind it, one commit.
	db.gate = make(chan struct{})
	appendAll(t, l, 4, func() {
		eventually(t, "four appends queued", func() bool { return l.queued() == 4 })
		close(db.gate)
	})
	before := l.Stats()
	if before.Commits != 11 {
		t.Fatalf("stats %+v after a wave of 4", before)
	}
	offset.Store(int64(5 * time.Hour))
	lone := make(chan error, 1)
	go func() {
		_, err := l.Append(context.Background(), Event{Actor: "later", Action: "sign", Result: "ok"})
		lone <- err
	}()
	eventually(t, "the lone append after the quiet", func() bool { return len(lone) == 1 })
	if err := <-lone; err != nil {
		t.Fatal(err)
	}
	if st := l.Stats(); st.Commits != before.Commits+1 || st.Lingers != before.Lingers {
		t.Fatalf("stats %+v after %+v: the lone append waited", st, before)
	}
}
