package cli

import (
	"context"
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
}

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
	const lock = "pki:init"
	for {
		err := eph.PutIfAbsent(ctx, lock, []byte("init"), 2*time.Minute)
		if err == nil {
			break
		}
		if !errors.Is(err, store.ErrConflict) {
			return fmt.Errorf("pki: init lock: %w", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	defer func() {
		if err := eph.Delete(context.WithoutCancel(ctx), lock); err != nil {
			log.Warn("pki: init lock not released; other replicas wait for its expiry", "err", err)
		}
	}()
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

// Ping is the PKI's readiness: ready once the hierarchy is loaded.
func (g *pkiGate) Ping(context.Context) error {
	if g.mux.Load() == nil {
		return errors.New("the PKI is starting")
	}
	return nil
}
