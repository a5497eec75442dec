package cli

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/vula-eid/vula/certs"
	"github.com/vula-eid/vula/hsm"
	"github.com/vula-eid/vula/internal/config"
	"github.com/vula-eid/vula/internal/store"
	"github.com/vula-eid/vula/internal/tsa"
)

// pkiConfig turns the validated configuration into the authority's.
func pkiConfig(cfg config.Config) certs.Config {
	var oids []asn1.ObjectIdentifier
	for _, s := range cfg.PKI.PolicyOIDs {
		oid, _ := config.ParseOID(s) // Validate checked them
		oids = append(oids, oid)
	}
	p := cfg.PKI
	return certs.Config{Country: p.Country, Organization: p.Organization,
		Policy:      certs.Policy{BaseURL: cfg.BaseURL, PolicyOIDs: oids, PDSURL: p.PDSURL},
		CAAlgorithm: hsm.Algorithm(p.CAAlgorithm), ServiceAlgorithm: hsm.Algorithm(p.ServiceAlgorithm),
		RootYears: p.RootYears, CAYears: p.CAYears, ServiceYears: p.ServiceYears}
}

// pkiGate serves /pki, /tsa and the identity provider once the authority is open (they need the
// durable store), 503 before.
type pkiGate struct {
	mux   atomic.Pointer[http.ServeMux]
	clock tsa.Clock
	// lockTTL bounds how long a start that died holding the init lock delays the next one
	// (the ephemeral store persists now); 0 means initLockTTL.
	lockTTL time.Duration
}

// initLockTTL is the life of the init lock; its holder renews it every third of it.
const initLockTTL = 15 * time.Second

func (g *pkiGate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if m := g.mux.Load(); m != nil {
		m.ServeHTTP(w, r)
		return
	}
	http.Error(w, "the PKI is starting", http.StatusServiceUnavailable)
}

// open opens (on first start: creates) the hierarchy and starts serving it, with the timestamp
// authority and the services that more registers on the same mux (the identity provider, the
// sealing service). Replicas that start together take
// turns through a lock in the shared ephemeral store, so that only the first creates the
// hierarchy (and what more creates on first start) and the others load it.
func (g *pkiGate) open(ctx context.Context, keys hsm.Manager, recs certs.Records, eph store.Ephemeral, cfg config.Config, log *slog.Logger,
	more func(mux *http.ServeMux, a *certs.Authority, ts *tsa.Responder) error) error {
	release, err := g.lock(ctx, eph, log)
	if err != nil {
		return err
	}
	defer release()
	a, err := certs.Open(ctx, keys, recs, pkiConfig(cfg), time.Now)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	certs.Handlers{A: a, Log: log}.Register(mux)
	// The timestamp authority signs with the timestamping unit's key and certificate.
	policy, _ := config.ParseOID(cfg.TSA.PolicyOID) // Validate checked it
	seal, _ := a.Certificate(certs.NameSealCA)
	tsu := a.TSA()
	responder, err := tsa.New(tsa.Config{Policy: policy, Accuracy: time.Duration(cfg.TSA.Accuracy),
		Qualified: cfg.TSA.Qualified, Chain: []*x509.Certificate{seal}}, tsu.Cert, tsu.Signer, g.clock, log)
	if err != nil {
		return err
	}
	mux.Handle("POST /tsa", responder)
	if err := more(mux, a, responder); err != nil {
		return err
	}
	g.mux.Store(mux)
	return nil
}

// initLock names the lock replicas take turns through at start.
const initLock = "pki:init"

// lock takes the init lock, waiting while another process holds it, and keeps it alive until
// release. The lock lives lockTTL and is renewed every third of it: the store is persistent, so
// a process that dies holding it must not delay the next start by more than lockTTL.
func (g *pkiGate) lock(ctx context.Context, eph store.Ephemeral, log *slog.Logger) (release func(), err error) {
	ttl := g.lockTTL
	if ttl == 0 {
		ttl = initLockTTL
	}
	token := make([]byte, 16)
	_, _ = rand.Read(token) // never fails (crypto/rand)
	for {
		err := eph.PutIfAbsent(ctx, initLock, token, ttl)
		if err == nil {
			break
		}
		if !errors.Is(err, store.ErrConflict) {
			return nil, fmt.Errorf("pki: init lock: %w", err)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(ttl / 3)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				// A failed renewal is not fatal: at worst another replica starts to
				// initialise too, and the durable store's unique keys settle it.
				if err := eph.CompareAndSwap(ctx, initLock, token, token, ttl); err != nil {
					log.Warn("pki: init lock not renewed", "err", err)
				}
			}
		}
	}()
	return func() {
		close(stop)
		<-done
		// Only our own lock is removed: it may have expired and been taken by another.
		c := context.WithoutCancel(ctx)
		if v, err := eph.Get(c, initLock); err == nil && bytes.Equal(v, token) {
			if err := eph.Delete(c, initLock); err != nil {
				log.Warn("pki: init lock not released; other replicas wait for its expiry", "err", err)
			}
		}
	}, nil
}

// Ping is the PKI's readiness: ready once the hierarchy is loaded.
func (g *pkiGate) Ping(context.Context) error {
	if g.mux.Load() == nil {
		return errors.New("the PKI is starting")
	}
	return nil
}
