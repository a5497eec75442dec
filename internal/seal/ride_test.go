package seal_test

import (
	"bytes"
	"context"
	"encoding/asn1"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vula-eid/vula/hsm"
	"github.com/vula-eid/vula/hsm/software"
	"github.com/vula-eid/vula/internal/audit"
	"github.com/vula-eid/vula/internal/seal"
	"github.com/vula-eid/vula/internal/signing/signingtest"
	"github.com/vula-eid/vula/internal/store"
	"github.com/vula-eid/vula/internal/store/sqlstore"
	"github.com/vula-eid/vula/internal/tsa"
)

// lateHook hands signatures to the audit log once it is made (it needs the environment's
// store); the environment's own setup signs before that, unrecorded.
type lateHook struct{ l atomic.Pointer[audit.Log] }

func (h *lateHook) RecordSignature(ctx context.Context, ev hsm.SignEvent) error {
	if l := h.l.Load(); l != nil {
		return l.RecordSignature(ctx, ev)
	}
	return nil
}

// noSecondCommit is the durable store with CreateTransaction refused: a seal that still
// records its transaction stored it with its signature's audit record.
type noSecondCommit struct{ *sqlstore.DB }

func (noSecondCommit) CreateTransaction(context.Context, store.Transaction) error {
	return errors.New("a second commit for the transaction")
}

// unsynced is a TSA clock that has lost its time source: the TSA refuses to timestamp.
type unsynced struct{}

func (unsynced) Now() time.Time { return time.Now() }
func (unsynced) Synced(context.Context) error {
	return errors.New("clock not synchronised")
}

// A seal's transaction is stored in the commit of its signature's audit record, and a seal
// that fails after its signature (here its timestamp) leaves that transaction marked failed.
func TestSealTransactionRides(t *testing.T) {
	ctx := context.Background()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	hook := &lateHook{}
	env := signingtest.New(t, signingtest.Options{Hook: hook})
	dir := t.TempDir()
	kf := filepath.Join(dir, "master.key")
	if err := software.CreateKeyFile(kf); err != nil {
		t.Fatal(err)
	}
	auditKeys, err := software.Open(ctx, software.Config{Dir: filepath.Join(dir, "keys"), KeyFile: kf}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { auditKeys.Close() })
	k, err := auditKeys.CreateKey(ctx, hsm.KeySpec{Label: "audit", Algorithm: hsm.ECP256, Purpose: hsm.PurposeAudit})
	if err != nil {
		t.Fatal(err)
	}
	l, err := audit.New(ctx, env.DB, auditKeys, k.URI, audit.Options{}, time.Now, quiet)
	if err != nil {
		t.Fatal(err)
	}
	hook.l.Store(l)

	recs := noSecondCommit{env.DB}
	svc := seal.New(seal.Config{Country: "XK", MaxSize: 1 << 20}, env.Keys, env.PKI, recs, env.TSA, quiet, time.Now)
	if _, err := svc.Onboard(ctx, seal.Organization{ID: "tax", Name: "Tax Administration", RegistryNumber: "810000001"}); err != nil {
		t.Fatal(err)
	}
	in := signingtest.PDF("Vendim")
	bb, _ := seal.ParseParams(params{"level": "B-B"}.get)
	var out bytes.Buffer
	res, err := svc.Seal(ctx, "tax-batch", "tax", []seal.Document{doc("a.pdf", in)}, bb, &out)
	if err != nil {
		t.Fatalf("seal with the transaction refused as a commit of its own: %v", err)
	}
	if tx, err := env.DB.Transaction(ctx, res.Transaction); err != nil || tx.State != "completed" || tx.Level != "B-B" {
		t.Fatalf("transaction %+v, %v", tx, err)
	}

	// The same seal at B-T from a TSA that refuses: signed, then failed.
	u := env.PKI.TSA()
	down, err := tsa.New(tsa.Config{Policy: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 2, 1}}, u.Cert, u.Signer, unsynced{}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	svc = seal.New(seal.Config{Country: "XK", MaxSize: 1 << 20}, env.Keys, env.PKI, recs, down, quiet, time.Now)
	bt, _ := seal.ParseParams(params{"level": "B-T"}.get)
	if _, err := svc.Seal(ctx, "tax-batch", "tax", []seal.Document{doc("a.pdf", in)}, bt, &out); err == nil {
		t.Fatal("a seal at B-T without a timestamp succeeded")
	}
	txs, err := env.DB.TransactionsByActor(ctx, "tax-batch")
	if err != nil || len(txs) != 2 || txs[1].State != "failed" || txs[1].Level != "B-T" {
		t.Fatalf("transactions %+v, %v; want the B-T one failed", txs, err)
	}
	if _, err := audit.Verify(ctx, env.DB, audit.KeysOf(ctx, auditKeys), audit.VerifyOptions{}); err != nil {
		t.Fatal(err)
	}
}
