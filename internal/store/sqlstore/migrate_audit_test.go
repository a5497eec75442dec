package sqlstore

import (
	"context"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/vula-eid/vula/internal/store"
	"github.com/vula-eid/vula/internal/testenv"
)

// TestAuditSubjectBackfill: records written before migration 0007 are found by AuditOf after
// it — idp.* events under their actor, eid.* events under the subject their detail names;
// other records stay out of the index. The log is taken back to before 0007 by hand, then
// reopened.
func TestAuditSubjectBackfill(t *testing.T) {
	for _, tc := range []struct {
		name string
		dsn  func(t *testing.T) string
		back []string // the statements that undo 0007
	}{
		{"sqlite", func(t *testing.T) string { return "sqlite:" + filepath.Join(t.TempDir(), "vula.db") },
			[]string{`DROP INDEX audit_log_subject`, `ALTER TABLE audit_log DROP COLUMN subject`, `DELETE FROM schema_migrations WHERE version = 7`}},
		{"postgres", func(t *testing.T) string { return testenv.Postgres(t).DSN },
			[]string{`DROP INDEX audit_log_subject`, `ALTER TABLE audit_log DROP COLUMN subject`, `DELETE FROM schema_migrations WHERE version = 7`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			dsn := tc.dsn(t)
			db, err := Open(ctx, dsn, discard())
			if err != nil {
				t.Fatal(err)
			}
			recs := []store.AuditRecord{
				{Actor: "arta", Action: "idp.login", Result: "high"},
				{Actor: "reg", Action: "eid.register", Result: "ok", Detail: []byte(`{"subject":"arta","proofing":"high"}`)},
				{Actor: "reg", Action: "eid.letter", Result: "ok", Detail: []byte(`{"subject":"besa"}`)},
				{Actor: "arta", Action: "sign", Result: "ok"},
				{Actor: "reg", Action: "eid.suspend", Result: "ok"},
			}
			if _, err := db.AppendAudit(ctx, func(*store.AuditRecord) ([]store.AuditRecord, error) {
				for i := range recs {
					recs[i].Seq, recs[i].PrevHash, recs[i].Hash = int64(i+1), make([]byte, 32), make([]byte, 32)
				}
				return recs, nil
			}); err != nil {
				t.Fatal(err)
			}
			for _, q := range tc.back {
				if _, err := db.db.ExecContext(ctx, q); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			db.Close()
			db, err = Open(ctx, dsn, discard())
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			for subject, want := range map[string][]int64{"arta": {1, 2}, "besa": {3}, "reg": nil} {
				got, err := db.AuditOf(ctx, subject, 1, 10)
				if err != nil {
					t.Fatal(err)
				}
				var seqs []int64
				for _, r := range got {
					seqs = append(seqs, r.Seq)
				}
				if len(seqs) != len(want) || (len(want) > 0 && (seqs[0] != want[0] || seqs[len(seqs)-1] != want[len(want)-1])) {
					t.Errorf("%s: records %v, want %v", subject, seqs, want)
				}
			}
		})
	}
}

// TestAuditRowidMigration: on SQLite, migration 0009 makes the audit log's seq its rowid, so no
// second B-tree (the unique index of a BIGINT PRIMARY KEY) is written by every record; a log
// from before keeps every record, byte for byte, and its subject index.
func TestAuditRowidMigration(t *testing.T) {
	ctx := context.Background()
	dsn := "sqlite:" + filepath.Join(t.TempDir(), "vula.db")
	db, err := Open(ctx, dsn, discard())
	if err != nil {
		t.Fatal(err)
	}
	autoIndexes := func(db *DB) int {
		var n int
		if err := db.db.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type = 'index' AND tbl_name = 'audit_log'
			AND name LIKE 'sqlite_autoindex_%'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := autoIndexes(db); n != 0 {
		t.Fatalf("a new log has %d automatic indexes on audit_log", n)
	}
	// The layout before 0009, with records in it.
	for _, q := range []string{
		`DROP TABLE audit_log`,
		`CREATE TABLE audit_log (seq BIGINT PRIMARY KEY, time BIGINT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
			key_uri TEXT NOT NULL, digest BLOB, result TEXT NOT NULL, request_id TEXT NOT NULL, detail BLOB, signature BLOB,
			prev_hash BLOB NOT NULL, hash BLOB NOT NULL, tree BLOB, subject TEXT NOT NULL DEFAULT '')`,
		`CREATE INDEX audit_log_subject ON audit_log (subject, seq) WHERE subject <> ''`,
		`DELETE FROM schema_migrations WHERE version = 9`,
	} {
		if _, err := db.db.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if n := autoIndexes(db); n != 1 {
		t.Fatalf("the old layout has %d automatic indexes on audit_log, want 1", n)
	}
	recs := []store.AuditRecord{
		{Actor: "arta", Action: "idp.login", Result: "high", Subject: "arta", Digest: []byte{1, 2}, Tree: []byte{3}},
		{Actor: "tsa", Action: "sign", Key: "software:tsa", Result: "ok", RequestID: "r1", Detail: []byte(`{"serial":"1f"}`), Signature: []byte{9}},
		{Actor: "vula", Action: "checkpoint", Result: "ok"},
	}
	if _, err := db.AppendAudit(ctx, func(*store.AuditRecord) ([]store.AuditRecord, error) {
		for i := range recs {
			recs[i].Seq, recs[i].PrevHash, recs[i].Hash = int64(i+1), make([]byte, 32), []byte{byte(i)}
			recs[i].Time = fromMicros(int64(1_700_000_000_000_000 + i))
		}
		return recs, nil
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if db, err = Open(ctx, dsn, discard()); err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if n := autoIndexes(db); n != 0 {
		t.Fatalf("after 0009: %d automatic indexes on audit_log", n)
	}
	got, err := db.AuditRecords(ctx, 1, 10)
	if err != nil || len(got) != len(recs) {
		t.Fatalf("after 0009: %d records, %v", len(got), err)
	}
	for i := range recs {
		if !reflect.DeepEqual(got[i], recs[i]) {
			t.Errorf("record %d after 0009:\n%+v\nwant\n%+v", i+1, got[i], recs[i])
		}
	}
	if of, err := db.AuditOf(ctx, "arta", 1, 10); err != nil || len(of) != 1 || of[0].Seq != 1 {
		t.Errorf("AuditOf after 0009: %+v %v", of, err)
	}
	// The chain's next record follows on, and a second record with a taken seq is refused.
	if _, err := db.AppendAudit(ctx, func(last *store.AuditRecord) ([]store.AuditRecord, error) {
		if last == nil || last.Seq != 3 {
			t.Fatalf("head after 0009: %+v", last)
		}
		return []store.AuditRecord{{Seq: 4, Actor: "a", Action: "sign", Result: "ok", PrevHash: last.Hash, Hash: []byte{4}}}, nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.db.ExecContext(ctx, `INSERT INTO audit_log (seq, time, actor, action, key_uri, result, request_id, prev_hash, hash)
		VALUES (4, 0, 'x', 'sign', '', 'ok', '', x'00', x'00')`); err == nil {
		t.Fatal("a second record 4 was accepted")
	}
}
