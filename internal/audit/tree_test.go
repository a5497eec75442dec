package audit

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/vula-eid/vula/internal/store"
	"github.com/vula-eid/vula/internal/testenv"
)

// treeOf is the tree tlog itself computes over records, all hashes in memory: the reference
// the log's stored hashes and checkpoints are checked against.
func treeOf(t *testing.T, recs []store.AuditRecord) hashMap {
	t.Helper()
	m := hashMap{}
	for i, r := range recs {
		hs, err := tlog.StoredHashes(int64(i), r.Hash, m)
		if err != nil {
			t.Fatal(err)
		}
		for j, h := range hs {
			m[tlog.StoredHashCount(int64(i))+int64(j)] = h
		}
	}
	return m
}

func allRecords(t *testing.T, st store.AuditLog) []store.AuditRecord {
	t.Helper()
	recs, err := st.AuditRecords(context.Background(), 1, 100000)
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

// Every commit ends with a signed checkpoint over all records so far, whose root is tlog's own
// over the records' hashes; the stored tree hashes serve inclusion proofs of every record and
// consistency proofs between any two sizes that tlog checks — on SQLite and PostgreSQL.
func TestTreeProofs(t *testing.T) {
	f := newKeys(t)
	ctx := context.Background()
	for name, dsn := range map[string]func(t *testing.T) string{
		"sqlite":   func(t *testing.T) string { return "sqlite:" + filepath.Join(t.TempDir(), "a.db") },
		"postgres": func(t *testing.T) string { return testenv.Postgres(t).DSN },
	} {
		t.Run(name, func(t *testing.T) {
			db := openDB(t, dsn(t))
			l := newLog(t, db, f, 10)
			var sizes []int64
			for i := 0; i < 40; i++ {
				appendN(t, l, 1)
				size, signed, err := db.AuditCheckpoint(ctx)
				if err != nil {
					t.Fatal(err)
				}
				cp, err := OpenCheckpoint(signed, keyVerifiers{f.pubs})
				if err != nil {
					t.Fatal(err)
				}
				recs := allRecords(t, db)
				if cp.Size != size || size != int64(len(recs)) || cp.Origin != "vula/audit" {
					t.Fatalf("after append %d: checkpoint %+v (stored as %d) over %d records", i, cp, size, len(recs))
				}
				if root, err := tlog.TreeHash(size, treeOf(t, recs)); err != nil || root != cp.Root {
					t.Fatalf("checkpoint root %v, tlog's %v (%v)", cp.Root, root, err)
				}
				sizes = append(sizes, size)
			}
			recs := allRecords(t, db)
			ref := treeOf(t, recs)
			for _, size := range []int64{1, 2, 7, 16, 33, sizes[len(sizes)-1]} {
				root, _ := tlog.TreeHash(size, ref)
				for seq := int64(1); seq <= size; seq++ {
					p, err := InclusionProof(ctx, db, seq, size)
					if err != nil {
						t.Fatal(err)
					}
					if err := tlog.CheckRecord(p, size, root, seq-1, LeafHash(recs[seq-1])); err != nil {
						t.Fatalf("record %d in tree %d: %v", seq, size, err)
					}
				}
				for _, from := range []int64{1, 3, 8, size} {
					if from > size {
						continue
					}
					old, _ := tlog.TreeHash(from, ref)
					p, err := ConsistencyProof(ctx, db, from, size)
					if err != nil {
						t.Fatal(err)
					}
					if err := tlog.CheckTree(p, size, root, from, old); err != nil {
						t.Fatalf("tree %d in tree %d: %v", from, size, err)
					}
				}
			}
			last := sizes[len(sizes)-1]
			for _, bad := range [][2]int64{{0, 5}, {6, 5}, {1, last + 1}, {-1, 3}} {
				if _, err := InclusionProof(ctx, db, bad[0], bad[1]); !errors.Is(err, ErrBadRequest) {
					t.Errorf("inclusion %v: %v", bad, err)
				}
				if _, err := ConsistencyProof(ctx, db, bad[0], bad[1]); !errors.Is(err, ErrBadRequest) {
					t.Errorf("consistency %v: %v", bad, err)
				}
			}
			if _, err := Verify(ctx, db, f.pubs, VerifyOptions{}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// forge rewrites the stored records as one without the audit key would: each changed record
// and every one after it re-hashed and re-linked, and the tree hashes recomputed too.
func forge(t *testing.T, path string, recs []store.AuditRecord, change func(r []store.AuditRecord)) {
	t.Helper()
	change(recs)
	for i := range recs {
		if i > 0 {
			recs[i].PrevHash = recs[i-1].Hash
		}
		recs[i].Hash = Hash(recs[i])
	}
	if _, _, err := extend(frontier{hashes: map[int64]tlog.Hash{}}, recs); err != nil {
		t.Fatal(err)
	}
	raw, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	for _, r := range recs {
		if _, err := raw.Exec(`UPDATE audit_log SET actor = $1, result = $2, prev_hash = $3, hash = $4, tree = $5 WHERE seq = $6`,
			r.Actor, r.Result, r.PrevHash, r.Hash, r.Tree, r.Seq); err != nil {
			t.Fatal(err)
		}
	}
}

// Issue #16: records after the last chain checkpoint could be rewritten and re-hashed, or cut
// off, and Verify still passed. Every commit now carries a signed tree checkpoint: both are
// found from the database alone.
func TestTailTamperingDetected(t *testing.T) {
	f := newKeys(t)
	for _, tc := range []struct {
		name   string
		tamper func(t *testing.T, path string, recs []store.AuditRecord)
		seq    int64
		reason string
	}{
		{"tail record rewritten and re-hashed", func(t *testing.T, path string, recs []store.AuditRecord) {
			forge(t, path, recs, func(r []store.AuditRecord) { r[26].Result = "error: forged" })
		}, 30, "rewritten"},
		{"last record rewritten and re-hashed", func(t *testing.T, path string, recs []store.AuditRecord) {
			forge(t, path, recs, func(r []store.AuditRecord) { r[len(r)-1].Actor = "someone else" })
		}, 30, "rewritten"},
		{"tail cut after the last group commit", func(t *testing.T, path string, _ []store.AuditRecord) {
			execSQL(t, path, `DELETE FROM audit_log WHERE seq > 27`)
		}, 28, "truncated"},
		{"tail cut back to a chain checkpoint", func(t *testing.T, path string, _ []store.AuditRecord) {
			execSQL(t, path, `DELETE FROM audit_log WHERE seq > 22`)
		}, 23, "truncated"},
		{"checkpoint removed too", func(t *testing.T, path string, _ []store.AuditRecord) {
			execSQL(t, path, `DELETE FROM audit_log WHERE seq > 27`)
			execSQL(t, path, `DELETE FROM audit_checkpoint`)
		}, 1, "no signed tree checkpoint"},
		{"checkpoint of another log", func(t *testing.T, path string, _ []store.AuditRecord) {
			execSQL(t, path, `UPDATE audit_checkpoint SET checkpoint = CAST(replace(CAST(checkpoint AS TEXT), 'vula/audit', 'vula/other') AS BLOB)`)
		}, 30, "does not verify"},
		{"tree hashes rewritten", func(t *testing.T, path string, _ []store.AuditRecord) {
			execSQL(t, path, `UPDATE audit_log SET tree = zeroblob(32) WHERE seq = 17`)
		}, 17, "stored tree hashes"},
		{"record appended without the key", func(t *testing.T, path string, recs []store.AuditRecord) {
			r := recs[len(recs)-1]
			r.Seq, r.PrevHash, r.Actor = r.Seq+1, r.Hash, "intruder"
			r.Hash = Hash(r)
			execSQL(t, path, `INSERT INTO audit_log SELECT 31, time, $1, action, key_uri, digest, result, request_id, detail, signature, $2, $3, NULL, subject FROM audit_log WHERE seq = 30`,
				r.Actor, r.PrevHash, r.Hash)
		}, 31, "after the latest signed tree checkpoint"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "a.db")
			db := openDB(t, "sqlite:"+path)
			l := newLog(t, db, f, 10)
			appendN(t, l, 28) // 30 records, chain checkpoints at 11 and 22: 8 records after the last
			if _, err := Verify(context.Background(), db, f.pubs, VerifyOptions{}); err != nil {
				t.Fatal(err)
			}
			tc.tamper(t, path, allRecords(t, db))
			_, err := Verify(context.Background(), db, f.pubs, VerifyOptions{})
			var p *Problem
			if !errors.As(err, &p) || p.Seq != tc.seq || !strings.Contains(p.Reason, tc.reason) {
				t.Fatalf("err = %v, want record %d: %s", err, tc.seq, tc.reason)
			}
		})
	}
}

func execSQL(t *testing.T, path, stmt string, args ...any) {
	t.Helper()
	raw, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if _, err := raw.Exec(stmt, args...); err != nil {
		t.Fatalf("%s: %v", stmt, err)
	}
}

// A log from before the tree gets its tree hashes and a signed checkpoint when a Log opens it.
func TestTreeFilledIn(t *testing.T) {
	f := newKeys(t)
	path := filepath.Join(t.TempDir(), "a.db")
	db := openDB(t, "sqlite:"+path)
	appendN(t, newLog(t, db, f, 10), 25)
	execSQL(t, path, `UPDATE audit_log SET tree = NULL`)
	execSQL(t, path, `DELETE FROM audit_checkpoint`)
	if _, err := Verify(context.Background(), db, f.pubs, VerifyOptions{}); !isProblem(err, 1) {
		t.Fatalf("a log without a tree checkpoint: %v", err)
	}
	l := newLog(t, db, f, 10)
	rep, err := Verify(context.Background(), db, f.pubs, VerifyOptions{})
	if err != nil || rep.TreeSize != 28 {
		t.Fatalf("after the fill: %+v %v", rep, err)
	}
	appendN(t, l, 3)
	if rep, err := Verify(context.Background(), db, f.pubs, VerifyOptions{}); err != nil || rep.TreeSize != 31 {
		t.Fatalf("appending after the fill: %+v %v", rep, err)
	}
}

// The verifier key a witness is given reads back into a verifier that accepts the log's
// checkpoints and no other key's.
func TestVerifierKey(t *testing.T) {
	f := newKeys(t)
	ctx := context.Background()
	db := openDB(t, "sqlite:"+filepath.Join(t.TempDir(), "a.db"))
	appendN(t, newLog(t, db, f, 10), 3)
	_, signed, err := db.AuditCheckpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := f.keys.PublicKey(ctx, f.keyURI)
	vkey, err := VerifierKey(f.keyURI, pub)
	if err != nil {
		t.Fatal(err)
	}
	v, err := ParseVerifierKey(vkey)
	if err != nil {
		t.Fatal(err)
	}
	if cp, err := OpenCheckpoint(signed, note.VerifierList(v)); err != nil || cp.Size != 3 {
		t.Fatalf("checkpoint with the verifier key: %+v %v", cp, err)
	}
	other := sealSigner(t, f)
	ov, _ := NewVerifier(f.keyURI, other.Public()) // same name, another key
	if _, err := OpenCheckpoint(signed, note.VerifierList(ov)); err == nil {
		t.Fatal("a checkpoint verified under another key")
	}
	for _, bad := range []string{"", "a+b", vkey[:len(vkey)-8], strings.Replace(vkey, "+", "+0", 1)} {
		if _, err := ParseVerifierKey(bad); err == nil {
			t.Errorf("verifier key %q accepted", bad)
		}
	}
}

// An export held to the checkpoint published with it: whole, it passes; with its last line cut
// off, it is truncated; under another log's checkpoint, it does not verify.
func TestVerifyExportWithCheckpoint(t *testing.T) {
	f := newKeys(t)
	ctx := context.Background()
	db := openDB(t, "sqlite:"+filepath.Join(t.TempDir(), "a.db"))
	appendN(t, newLog(t, db, f, 10), 12)
	_, cp, err := db.AuditCheckpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var buf strings.Builder
	if err := Export(ctx, db, &buf); err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(buf.String(), "\n")
	if rep, err := VerifyExport(strings.NewReader(buf.String()), f.pubs, VerifyOptions{Checkpoint: cp}); err != nil || rep.TreeSize != 13 {
		t.Fatalf("whole export: %+v %v", rep, err)
	}
	cut := strings.Join(lines[:len(lines)-2], "")
	if _, err := VerifyExport(strings.NewReader(cut), f.pubs, VerifyOptions{Checkpoint: cp}); !isProblem(err, 13) {
		t.Fatalf("export without its last record: %v", err)
	}
	other := openDB(t, "sqlite:"+filepath.Join(t.TempDir(), "b.db"))
	appendN(t, newLog(t, other, f, 10), 12)
	_, otherCP, _ := other.AuditCheckpoint(ctx)
	if _, err := VerifyExport(strings.NewReader(buf.String()), f.pubs, VerifyOptions{Checkpoint: otherCP}); !isProblem(err, 13) {
		t.Fatalf("export under another log's checkpoint: %v", err)
	}
}
