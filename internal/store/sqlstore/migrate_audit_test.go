package sqlstore

import (
	"context"
	"path/filepath"
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
