package sqlstore

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/vula-eid/vula/internal/store"
	"github.com/vula-eid/vula/internal/testenv"
)

// TestStatus reads counts, the hierarchy and the audit head on both databases.
func TestStatus(t *testing.T) {
	for name, dsn := range map[string]func(t *testing.T) string{
		"sqlite":   func(t *testing.T) string { return "sqlite:" + filepath.Join(t.TempDir(), "vula.db") },
		"postgres": func(t *testing.T) string { return testenv.Postgres(t).DSN },
	} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			d := openT(t, dsn(t))
			s, err := d.Status(ctx)
			if err != nil || s.SchemaVersion < 2 || s.Counts["certificates"] != 0 || s.AuditHead != nil || len(s.Hierarchy) != 0 {
				t.Fatalf("empty database: %+v %v", s, err)
			}
			now := time.Now().UTC().Truncate(time.Microsecond)
			must := func(err error) {
				t.Helper()
				if err != nil {
					t.Fatal(err)
				}
			}
			must(d.PutKeyRecord(ctx, store.KeyRecord{URI: "k:root", Purpose: "ca", Owner: "root", Algorithm: "EC-P384", State: "active", Created: now}))
			must(d.PutKeyRecord(ctx, store.KeyRecord{URI: "k:arta", Purpose: "sign:arta", Owner: "arta", Algorithm: "EC-P256", State: "active", Created: now}))
			for _, c := range []store.Certificate{
				{CA: "root", Serial: "01", Subject: "CN=Root old", KeyURI: "k:root", DER: []byte{1}, NotBefore: now, NotAfter: now.AddDate(10, 0, 0)},
				{CA: "root", Serial: "02", Subject: "CN=Root", KeyURI: "k:root", DER: []byte{2}, NotBefore: now, NotAfter: now.AddDate(20, 0, 0)},
				{CA: "person-ca", Serial: "03", Subject: "CN=Arta", KeyURI: "k:arta", DER: []byte{3}, NotBefore: now, NotAfter: now.AddDate(2, 0, 0)},
			} {
				must(d.CreateCertificate(ctx, c))
			}
			must(d.Revoke(ctx, "person-ca", "03", now, 1))
			_, err = d.AppendAudit(ctx, func(*store.AuditRecord) ([]store.AuditRecord, error) {
				return []store.AuditRecord{
					{Seq: 1, Time: now, Actor: "cli", Action: "sign", Result: "ok", PrevHash: make([]byte, 32), Hash: []byte("h1")},
					{Seq: 2, Time: now, Actor: "vula", Action: "checkpoint", Result: "ok", PrevHash: []byte("h1"), Hash: []byte("h2")},
					{Seq: 3, Time: now, Actor: "cli", Action: "sign", Result: "ok", PrevHash: []byte("h2"), Hash: []byte("h3")},
				}, nil
			})
			must(err)
			s, err = d.Status(ctx)
			must(err)
			if s.Counts["certificates"] != 3 || s.Counts["revoked"] != 1 || s.Counts["keys"] != 2 || s.Counts["audit_records"] != 3 {
				t.Fatalf("counts %v", s.Counts)
			}
			if len(s.Hierarchy) != 1 || s.Hierarchy["root"].Serial != "02" {
				t.Fatalf("hierarchy %+v", s.Hierarchy)
			}
			if s.AuditHead == nil || s.AuditHead.Seq != 3 || string(s.AuditHead.Hash) != "h3" || s.AuditCheckpoint == nil || s.AuditCheckpoint.Seq != 2 {
				t.Fatalf("audit head %+v, checkpoint %+v", s.AuditHead, s.AuditCheckpoint)
			}
		})
	}
}
