// Package stack builds, for a service's tests, what every trust service of Vula stands on: the
// software key layer, instrumented so that every signature is audited, an SQLite store, the
// audit log (hash chain, signed checkpoints) and the platform's PKI (certs.Authority with its
// default hierarchy), all in a temporary directory that goes when the test ends.
package stack

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vula-eid/vula/hsm"
	"github.com/vula-eid/vula/hsm/software"
	"github.com/vula-eid/vula/internal/audit"
	"github.com/vula-eid/vula/internal/certs"
	"github.com/vula-eid/vula/internal/store/sqlstore"
)

// Stack is one service's ground, on the real components; its clock is time.Now.
type Stack struct {
	Dir   string           // the temporary directory everything lives in
	Log   *slog.Logger     // discards
	Keys  hsm.Manager      // the software key layer, every signature audited in Audit
	DB    *sqlstore.DB     // SQLite in Dir
	Audit *audit.Log       // signed by its own key, which is not itself audited
	PKI   *certs.Authority // certs.DefaultConfig's hierarchy
}

// New builds a Stack for t.
func New(t testing.TB) *Stack {
	t.Helper()
	ctx := context.Background()
	s := &Stack{Dir: t.TempDir(), Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	kf := filepath.Join(s.Dir, "master.key")
	if err := software.CreateKeyFile(kf); err != nil {
		t.Fatal(err)
	}
	raw, err := software.Open(ctx, software.Config{Dir: filepath.Join(s.Dir, "keys"), KeyFile: kf}, s.Log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = raw.Close() })
	if s.DB, err = sqlstore.Open(ctx, "sqlite:"+filepath.Join(s.Dir, "vula.db"), s.Log); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.DB.Close() })
	ak, err := raw.CreateKey(ctx, hsm.KeySpec{Label: "audit", Algorithm: hsm.ECP256, Purpose: hsm.PurposeAudit})
	if err != nil {
		t.Fatal(err)
	}
	if s.Audit, err = audit.New(ctx, s.DB, raw, ak.URI, audit.Options{}, time.Now, s.Log); err != nil {
		t.Fatal(err)
	}
	s.Keys = hsm.Instrument(raw, hsm.NewMetrics(prometheus.NewRegistry()), s.Audit, time.Now)
	if s.PKI, err = certs.Open(ctx, s.Keys, s.DB, certs.DefaultConfig(), time.Now); err != nil {
		t.Fatal(err)
	}
	return s
}
