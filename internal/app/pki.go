package app

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

	"github.com/vula-eid/vula/hsm"
	"github.com/vula-eid/vula/internal/certs"
	"github.com/vula-eid/vula/internal/config"
	"github.com/vula-eid/vula/internal/problem"
	"github.com/vula-eid/vula/internal/server"
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

// platformGate serves the platform's routes once they are built (they need the durable store),
// 503 before.
type platformGate struct {
	mux atomic.Pointer[http.ServeMux]
}

func (g *platformGate) serve(mux *http.ServeMux) { g.mux.Store(mux) }

func (g *platformGate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if m := g.mux.Load(); m != nil {
		m.ServeHTTP(w, r)
		return
	}
	server.WriteError(w, r, problem.Errorf(problem.Unavailable, "the platform is starting"))
}

// Ping is the platform's readiness (reported as "pki"): ready once it is built.
func (g *platformGate) Ping(context.Context) error {
	if g.mux.Load() == nil {
		return errors.New("the PKI is starting")
	}
	return nil
}

// newTSA is the timestamp authority: it signs with the timestamping unit's key and certificate.
func newTSA(cfg config.Config, a *certs.Authority, clock tsa.Clock, log *slog.Logger) (*tsa.Responder, error) {
	policy, _ := config.ParseOID(cfg.TSA.PolicyOID) // Validate checked it
	seal, _ := a.Certificate(certs.NameSealCA)
	tsu := a.TSA()
	return tsa.New(tsa.Config{Policy: policy, Accuracy: time.Duration(cfg.TSA.Accuracy),
		Qualified: cfg.TSA.Qualified, Chain: []*x509.Certificate{seal}}, tsu.Cert, tsu.Signer, clock, log)
}

// initLockTTL is the life of the init lock; its holder renews it every third of it.
const initLockTTL = 15 * time.Second

// initLock names the lock replicas take turns through at start.
const initLock = "pki:init"

// lock takes the init lock, waiting while another process holds it, and keeps it alive until
// release. Replicas that start together take turns through it, so that only the first creates
// the hierarchy (and what else a first start creates) and the others load it. The lock lives
// ttl and is renewed every third of it: the store is persistent, so a process that dies holding
// it must not delay the next start by more than ttl.
func lock(ctx context.Context, eph store.Ephemeral, ttl time.Duration, log *slog.Logger) (release func(), err error) {
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
