// Package app is Vula's composition root: the one place the platform is built from a
// config.Config, in dependency order — key layer, stores, audit log, PKI, TSA, identity
// provider, the services, their HTTP routes — and where it is started and shut down.
//
// Run is `vula serve`. The commands that work beside a server (issuing, onboarding, rotating)
// open what they need through Open and the constructors here, so that each part is built one
// way whoever uses it. No service imports another: what one needs of another is a small
// interface, satisfied here.
//
// Adding to the platform: a service is built and its routes registered in platform.build, one
// line for its routes; an anonymous endpoint that costs the server something is bounded in
// boundedPaths; another listener is one more listener given to serveHTTP, behind srv.Wrap.
package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	stdlog "log"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/vula-eid/vula/hsm"
	"github.com/vula-eid/vula/internal/config"
	"github.com/vula-eid/vula/internal/server"
	"github.com/vula-eid/vula/internal/tsa"
	"github.com/vula-eid/vula/internal/upload"
)

// Options are what a run takes from its process besides the configuration.
type Options struct {
	// Log receives the platform's log lines.
	Log *slog.Logger
	// Stdout receives what is meant for the console rather than the log: the dev-mode demo's
	// login block. Nil discards it.
	Stdout io.Writer
	// LookupEnv resolves the environment references of secrets (a PIN, a passphrase). Nil
	// finds nothing.
	LookupEnv func(name string) (string, bool)
	// Ready, when set, receives the address the HTTP listener is bound to (tests use port 0).
	Ready func(addr string)
	// Admin, when set, is started as soon as the key layer is open, with it (not instrumented):
	// the control socket the admin commands run through. Run calls the stop it returns before
	// the key layer closes.
	Admin func(ctx context.Context, keys hsm.Manager) (stop func(), err error)
}

func (o Options) withDefaults() Options {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Stdout == nil {
		o.Stdout = io.Discard
	}
	if o.LookupEnv == nil {
		o.LookupEnv = func(string) (string, bool) { return "", false }
	}
	return o
}

// boundedPaths are the anonymous endpoints that cost the server something: one client may have
// only http.per_client requests in flight on each group.
var boundedPaths = [][]string{{"/tsa"}, {"/api/v1/validate"}, {"/pki/ocsp", "/pki/ocsp/"}, {"/pid/status/"}, {"/openid4vp/"}}

// Run builds the platform from cfg and serves it until ctx ends, then drains and shuts down.
// The listener answers at once; the services answer 503 until the durable store is open and
// they are built (readiness says which part is missing).
func Run(ctx context.Context, cfg config.Config, o Options) error {
	o = o.withDefaults()
	log := o.Log
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	// 1. The key layer.
	raw, err := OpenKeys(ctx, cfg, o.LookupEnv, log)
	if err != nil {
		return fmt.Errorf("key layer: %w", err)
	}
	// At shutdown a close that fails is only worth a line in the log.
	defer closeLogged(log, "key layer", raw.Close)
	if o.Admin != nil {
		stop, err := o.Admin(ctx, raw)
		if err != nil {
			return fmt.Errorf("control socket: %w", err)
		}
		defer stop() // before the key layer closes: the commands in flight use it
	}
	// Every signature is recorded in the audit log before it is returned; until the durable
	// store answers, the gate refuses and no key signs.
	durable := &durableGate{}
	defer closeLogged(log, "durable store", durable.close)
	// Services that sign are given keys, never raw.
	keys := hsm.Instrument(raw, hsm.NewMetrics(reg), durable, time.Now)

	// 2. The ephemeral store, the request spool and the checked clock.
	eph, err := OpenEphemeral(ctx, cfg.Store.Ephemeral, log)
	if err != nil {
		return fmt.Errorf("store.ephemeral: %w", err)
	}
	defer closeLogged(log, "ephemeral store", eph.Close)
	// Request bodies wait here, not in TMPDIR; what a killed process left is removed now.
	spool, err := upload.Open(cfg.HTTP.SpoolDir, cfg.HTTP.MinUploadRate, time.Now)
	if err != nil {
		return fmt.Errorf("http.spool_dir: %w", err)
	}
	clockCfg := clockConfig(cfg)
	if !clockCfg.RequireSync {
		log.Warn("dev mode: the TSA does not require a synchronised clock")
	}
	clock := tsa.NewSystemClock(clockCfg, log)
	go clock.Run(ctx)

	// 3. The HTTP edge. Everything but health and metrics goes to the platform's routes, which
	// exist once the durable store is open.
	srv := server.New(log, reg, time.Now, server.Options{TrustedProxies: cfg.HTTP.Proxies(),
		HSTS: strings.HasPrefix(cfg.BaseURL, "https://") && !cfg.Dev})
	routes := &platformGate{}
	srv.AddCheck("keys", keys)
	srv.AddCheck("ephemeral", eph)
	srv.AddCheck("durable", durable)
	srv.AddCheck("clock", clock)
	srv.AddCheck("pki", routes)
	srv.Handle("/", routes)
	for _, paths := range boundedPaths {
		lim := server.NewPerClient(cfg.HTTP.PerClient)
		for _, p := range paths {
			srv.Handle(p, lim.Wrap(routes))
		}
	}

	// The ID card login's listener, when configured: its files are read now, so that a wrong
	// one stops the start.
	card, err := newCardListener(cfg.IdP.Card)
	if err != nil {
		return err
	}

	// 4. In the background: the durable store and the audit log (retried until they answer),
	// then everything built on them.
	fatal := make(chan error, 1)
	p := &platform{cfg: cfg, log: log, stdout: o.Stdout, keys: keys, eph: eph, spool: spool, clock: clock, card: card}
	go func() {
		db, l, ok := durable.open(ctx, cfg, raw, log)
		if !ok {
			return // ctx ended
		}
		log.Info("durable store open", "dsn", RedactDSN(cfg.Store.Durable))
		// Commands run beside the server write this URL into the certificates they issue.
		if err := db.PutSetting(ctx, servedBaseURL, []byte(cfg.BaseURL)); err != nil {
			log.Warn("could not record base_url for the CLI", "err", err)
		}
		go l.Run(ctx)
		reg.MustRegister(l.Metrics()...) // once: this goroutine runs once a process
		mux, err := p.build(ctx, db, l)
		if err != nil {
			fatal <- err
			return
		}
		routes.serve(mux)
	}()

	// 5. The listener, until ctx ends or the platform cannot be built.
	var tlsConfig *tls.Config // nil: plain HTTP, behind a proxy or in dev mode
	if cfg.HTTP.TLS.CertFile != "" {
		files, err := server.LoadCertFiles(cfg.HTTP.TLS.CertFile, cfg.HTTP.TLS.KeyFile, server.CertCheckInterval, time.Now, log)
		if err != nil {
			return fmt.Errorf("http.tls: %w", err)
		}
		tlsConfig = server.TLSConfig(files)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	log.Info("vula serving", "addr", ln.Addr().String(), "tls", tlsConfig != nil, "base_url", cfg.BaseURL,
		"keys", cfg.HSM.Backend, "durable", RedactDSN(cfg.Store.Durable), "ephemeral", RedactDSN(cfg.Store.Ephemeral))
	listeners := []listener{{ln: ln, tls: tlsConfig, handler: srv.Handler()}}
	if card != nil {
		cln, err := net.Listen("tcp", cfg.IdP.Card.Listen)
		if err != nil {
			_ = ln.Close() // the card listener's error is the one to report
			return fmt.Errorf("idp.card.listen: %w", err)
		}
		log.Info("ID card login serving", "addr", cln.Addr().String(), "url", cfg.IdP.Card.URL)
		listeners = append(listeners, card.listener(cln, srv, cfg.HTTP.PerClient, log))
	}
	if o.Ready != nil {
		o.Ready(ln.Addr().String())
	}
	return serveHTTP(ctx, cfg, srv, listeners, fatal, log)
}

// listener is one of the sockets serveHTTP serves: the main one and, when configured, the ID
// card login's. Each handler is behind srv's edge.
type listener struct {
	ln      net.Listener
	tls     *tls.Config // nil: plain HTTP, behind a proxy or in dev mode
	handler http.Handler
	// errorLog receives net/http's own complaints (failed handshakes); nil: the standard logger.
	errorLog *stdlog.Logger
}

// serveHTTP serves the listeners (each over TLS when its tls is set) until ctx ends or fatal
// reports, then drains: not ready first, still serving, so that the load balancer moves new
// requests elsewhere; then the listeners close and the requests in flight finish within the
// shutdown timeout.
func serveHTTP(ctx context.Context, cfg config.Config, srv *server.Server, listeners []listener, fatal <-chan error, log *slog.Logger) error {
	servers := make([]*http.Server, len(listeners))
	errc := make(chan error, len(listeners))
	for i, l := range listeners {
		hs := &http.Server{
			TLSConfig:         l.tls,
			Handler:           l.handler,
			ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout:       60 * time.Second,
			WriteTimeout:      120 * time.Second,
			IdleTimeout:       120 * time.Second,
			MaxHeaderBytes:    64 << 10,
			ErrorLog:          l.errorLog,
		}
		servers[i] = hs
		go func() {
			if l.tls != nil {
				errc <- hs.ServeTLS(l.ln, "", "") // the certificate comes from TLSConfig; HTTP/2 by ALPN
				return
			}
			errc <- hs.Serve(l.ln)
		}()
	}
	var stopErr error
	select {
	case err := <-errc:
		return err
	case stopErr = <-fatal:
		log.Error("stopping", "err", stopErr)
	case <-ctx.Done():
	}
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
	var shutdownErr error
	for _, hs := range servers {
		if err := hs.Shutdown(sctx); err != nil && shutdownErr == nil {
			shutdownErr = fmt.Errorf("shutdown: %w", err)
		}
	}
	if shutdownErr != nil {
		return shutdownErr
	}
	for range servers {
		if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
			return err
		}
	}
	log.Info("stopped")
	return stopErr
}

func closeLogged(log *slog.Logger, what string, close func() error) {
	if err := close(); err != nil {
		log.Warn("closing the "+what, "err", err)
	}
}

// clockConfig is how the TSA's clock is checked: the kernel's word outside dev mode, and the
// configured NTP servers.
func clockConfig(cfg config.Config) tsa.ClockConfig {
	return tsa.ClockConfig{RequireSync: cfg.TSA.RequireSync || !cfg.Dev, NTP: cfg.TSA.NTPServers,
		MaxOffset: time.Duration(cfg.TSA.NTPMaxOffset), Interval: time.Duration(cfg.TSA.NTPInterval)}
}
