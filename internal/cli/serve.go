package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

	"github.com/vula-eid/vula/certs"
	"github.com/vula-eid/vula/hsm"
	"github.com/vula-eid/vula/internal/audit"
	"github.com/vula-eid/vula/internal/config"
	"github.com/vula-eid/vula/internal/seal"
	"github.com/vula-eid/vula/internal/server"
	"github.com/vula-eid/vula/internal/store/sqlstore"
	"github.com/vula-eid/vula/internal/tsa"
	"github.com/vula-eid/vula/internal/upload"
	"github.com/vula-eid/vula/internal/validation"
)

func serveCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "serve",
		Short: "Run the platform's HTTP services",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.load()
			if err != nil {
				return err
			}
			return g.serve(cmd.Context(), cfg)
		},
	}
}

// serve wires the platform from cfg, top to bottom, and runs it until ctx ends.
func (g *globals) serve(ctx context.Context, cfg config.Config) error {
	log := newLogger(g.env.Stderr, cfg.Log)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	raw, err := g.openKeys(ctx, cfg, log)
	if err != nil {
		return fmt.Errorf("key layer: %w", err)
	}
	// At shutdown a close that fails is only worth a line in the log.
	defer closeLogged(log, "key layer", raw.Close)
	// Every signature is recorded in the audit log before it is returned; until the durable
	// store answers, the gate refuses and no key signs.
	gate := &durableGate{}
	defer closeLogged(log, "durable store", gate.close)
	// Services that sign are given keys, never raw.
	keys := hsm.Instrument(raw, hsm.NewMetrics(reg), gate, time.Now)

	eph, err := openEphemeral(ctx, cfg.Store.Ephemeral, log)
	if err != nil {
		return fmt.Errorf("store.ephemeral: %w", err)
	}
	defer closeLogged(log, "ephemeral store", eph.Close)

	// Request bodies wait here, not in TMPDIR; what a killed process left is removed now.
	spool, err := upload.Open(cfg.HTTP.SpoolDir, cfg.HTTP.MinUploadRate, time.Now)
	if err != nil {
		return fmt.Errorf("http.spool_dir: %w", err)
	}
	srv := server.New(log, reg, time.Now, server.Options{TrustedProxies: cfg.HTTP.Proxies(),
		HSTS: strings.HasPrefix(cfg.BaseURL, "https://") && !cfg.Dev})
	srv.AddCheck("keys", keys)
	srv.AddCheck("ephemeral", eph)
	srv.AddCheck("durable", gate)
	clockCfg := tsa.ClockConfig{RequireSync: cfg.TSA.RequireSync || !cfg.Dev, NTP: cfg.TSA.NTPServers,
		MaxOffset: time.Duration(cfg.TSA.NTPMaxOffset), Interval: time.Duration(cfg.TSA.NTPInterval)}
	if !clockCfg.RequireSync {
		log.Warn("dev mode: the TSA does not require a synchronised clock")
	}
	clock := tsa.NewSystemClock(clockCfg, log)
	go clock.Run(ctx)
	pki := &pkiGate{clock: clock}
	srv.AddCheck("clock", clock)
	fatal := make(chan error, 1)
	srv.AddCheck("pki", pki)
	srv.Handle("/pki", pki)
	srv.Handle("/pki/", pki)
	// The anonymous endpoints that cost the server something: one client may have only
	// http.per_client requests in flight on each.
	for _, paths := range [][]string{{"/tsa"}, {"/api/v1/validate"}, {"/pki/ocsp", "/pki/ocsp/"}} {
		lim := server.NewPerClient(cfg.HTTP.PerClient)
		for _, p := range paths {
			srv.Handle(p, lim.Wrap(pki))
		}
	}
	for _, p := range append(idpPaths, "/api/v1/seal", "/api/v1/seal/", "/csc/", "/portal/", "/audit/") {
		srv.Handle(p, pki)
	}
	go gate.open(ctx, cfg, raw, log, func(db *sqlstore.DB, l *audit.Log) {
		log.Info("durable store open", "dsn", redactDSN(cfg.Store.Durable))
		// Commands run beside the server write this URL into the certificates they issue.
		if err := db.PutSetting(ctx, servedBaseURL, []byte(cfg.BaseURL)); err != nil {
			log.Warn("could not record base_url for the CLI", "err", err)
		}
		go l.Run(ctx)
		// CA signatures go through the instrumented layer: each is in the audit log.
		// A CA key that does not match its certificate stops the process: nothing may be
		// signed under a hierarchy that is not what it claims.
		more := func(mux *http.ServeMux, a *certs.Authority, ts *tsa.Responder) error {
			p, err := openIdP(ctx, mux, keys, db, eph, cfg, log, g.env.Stdout)
			if err != nil {
				return err
			}
			seal.Handler{S: sealService(cfg, a, keys, db, ts, log), Auth: p, Log: log, Spool: spool}.Register(mux)
			validation.Handler{TrustAnchors: platformAnchors(a), Fetch: validation.RevocationFetcher{R: a}, Log: log,
				Spool: spool, MaxUploads: cfg.HTTP.MaxUploads}.Register(mux)
			audit.Handler{Store: db, Log: log}.Register(mux)
			if err := registerCSC(mux, cfg, a, keys, db, eph, l, p, ts, log); err != nil {
				return err
			}
			if err := registerPortal(ctx, mux, cfg, a, keys, db, eph, l, ts, log); err != nil {
				return err
			}
			return nil
		}
		if err := pki.open(ctx, keys, db, eph, cfg, log, more); err != nil {
			fatal <- err
		}
	})

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	hs := &http.Server{
		Handler:           srv.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      120 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
	log.Info("vula serving", "addr", ln.Addr().String(), "base_url", cfg.BaseURL,
		"keys", cfg.HSM.Backend, "durable", redactDSN(cfg.Store.Durable), "ephemeral", redactDSN(cfg.Store.Ephemeral))
	if g.env.Ready != nil {
		g.env.Ready(ln.Addr().String())
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	var stopErr error
	select {
	case err := <-errc:
		return err
	case stopErr = <-fatal:
		log.Error("stopping", "err", stopErr)
	case <-ctx.Done():
	}
	// Not ready first, still serving, so that the load balancer moves new requests elsewhere;
	// then the listener closes and the requests in flight finish within the timeout.
	srv.Drain()
	log.Info("draining", "delay", time.Duration(cfg.DrainDelay).String())
	if stopErr == nil {
		select {
		case <-time.After(time.Duration(cfg.DrainDelay)):
		case err := <-errc:
			return err
		}
	}
	log.Info("shutting down", "timeout", time.Duration(cfg.ShutdownTimeout).String())
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Duration(cfg.ShutdownTimeout))
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	log.Info("stopped")
	return stopErr
}

func closeLogged(log *slog.Logger, what string, close func() error) {
	if err := close(); err != nil {
		log.Warn("closing the "+what, "err", err)
	}
}
