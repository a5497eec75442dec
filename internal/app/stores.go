package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/vula-eid/vula/hsm"
	"github.com/vula-eid/vula/internal/audit"
	"github.com/vula-eid/vula/internal/config"
	"github.com/vula-eid/vula/internal/store"
	"github.com/vula-eid/vula/internal/store/memstore"
	"github.com/vula-eid/vula/internal/store/rediskv"
	"github.com/vula-eid/vula/internal/store/sqlitekv"
	"github.com/vula-eid/vula/internal/store/sqlstore"
)

// AuditKey returns the active audit-purpose key, creating one on first start.
func AuditKey(ctx context.Context, keys hsm.Manager, now time.Time) (string, error) {
	ks, err := keys.Keys(ctx)
	if err != nil {
		return "", err
	}
	for _, k := range ks {
		if k.Purpose == hsm.PurposeAudit && k.State == hsm.StateActive {
			return k.URI, nil
		}
	}
	k, err := keys.CreateKey(ctx, hsm.KeySpec{Label: "audit-" + now.UTC().Format("20060102-150405"),
		Algorithm: hsm.ECP256, Purpose: hsm.PurposeAudit, Owner: "vula"})
	if errors.Is(err, hsm.ErrConflict) { // another replica made it in the same second
		return AuditKey(ctx, keys, now.Add(time.Second))
	}
	return k.URI, err
}

// auditOrigin names the audit log in its tree checkpoints after the platform's base URL, as
// c2sp.org/tlog-checkpoint recommends: a schema-less URL, "vula.example/audit".
func auditOrigin(baseURL string) string {
	host := strings.TrimSuffix(baseURL, "/")
	if _, rest, ok := strings.Cut(host, "://"); ok {
		host = rest
	}
	return host + "/audit"
}

// durableGate holds the durable store and the audit log once the database answers. Until then
// the audit hook refuses, so no key signs anything that could not be recorded, and readiness
// says why.
type durableGate struct {
	db      atomic.Pointer[sqlstore.DB]
	log     atomic.Pointer[audit.Log]
	lastErr atomic.Pointer[error]
}

var _ hsm.AuditHook = (*durableGate)(nil)

func (g *durableGate) RecordSignature(ctx context.Context, ev hsm.SignEvent) error {
	l := g.log.Load()
	if l == nil {
		return fmt.Errorf("%w: audit log not open yet", store.ErrUnavailable)
	}
	return l.RecordSignature(ctx, ev)
}

// Ping is the durable store's readiness.
func (g *durableGate) Ping(ctx context.Context) error {
	db := g.db.Load()
	if db == nil {
		if e := g.lastErr.Load(); e != nil {
			return fmt.Errorf("not open yet: %w", *e)
		}
		return errors.New("not open yet")
	}
	return db.Ping(ctx)
}

// open retries opening the durable store and the audit log until it works or ctx ends (then ok
// is false).
func (g *durableGate) open(ctx context.Context, cfg config.Config, keys hsm.Manager, log *slog.Logger) (db *sqlstore.DB, l *audit.Log, ok bool) {
	backoff := 500 * time.Millisecond
	for {
		err := func() error {
			db, err := sqlstore.Open(ctx, cfg.Store.Durable, log)
			if err != nil {
				return err
			}
			db.SizePool(cfg.Store.DurablePool)
			uri, err := AuditKey(ctx, keys, time.Now())
			// Closing after an error: that error is the one to report.
			if err != nil {
				_ = db.Close()
				return fmt.Errorf("audit key: %w", err)
			}
			if err := g.use(ctx, db, keys, uri, cfg, log); err != nil {
				_ = db.Close()
				return err
			}
			return nil
		}()
		if err == nil {
			return g.db.Load(), g.log.Load(), true
		}
		g.lastErr.Store(&err)
		log.Warn("durable store not open, retrying", "err", err, "in", backoff.String())
		select {
		case <-ctx.Done():
			return nil, nil, false
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 15*time.Second)
	}
}

// use makes db and the audit log over it, checkpointed with the key at uri, the gate's.
func (g *durableGate) use(ctx context.Context, db *sqlstore.DB, keys hsm.Manager, uri string, cfg config.Config, log *slog.Logger) error {
	l, err := audit.New(ctx, db, keys, uri, audit.Options{Every: cfg.Audit.CheckpointEvery, Interval: time.Duration(cfg.Audit.CheckpointInterval),
		Origin: auditOrigin(cfg.BaseURL), Linger: time.Duration(cfg.Audit.GroupCommitLinger)}, time.Now, log)
	if err != nil {
		return err
	}
	g.db.Store(db)
	g.log.Store(l)
	return nil
}

func (g *durableGate) close() error {
	if db := g.db.Load(); db != nil {
		return db.Close()
	}
	return nil
}

// OpenEphemeral opens the SQLite file of the embedded default, the in-memory store, or Redis. A
// Redis that is down does not stop the start: readiness reports it until it answers.
func OpenEphemeral(ctx context.Context, url string, log *slog.Logger) (store.Ephemeral, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	switch {
	case url == "memory":
		log.Warn("ephemeral store in memory: a restart logs everyone out")
		return memstore.New(time.Now), nil
	case strings.HasPrefix(url, "sqlite:"):
		path := strings.TrimPrefix(url, "sqlite:")
		if strings.HasPrefix(path, "///") {
			path = path[2:]
		}
		s, err := sqlitekv.Open(ctx, path, time.Now)
		if err == nil && s.MovedAside != "" {
			log.Warn("the ephemeral store's file was damaged (a crash of the machine?): moved aside, sessions and codes start afresh", "moved_to", s.MovedAside)
		}
		return s, err
	}
	return rediskv.Open(ctx, url, log)
}
