package app

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vula-eid/vula/hsm"
	"github.com/vula-eid/vula/internal/certs"
	"github.com/vula-eid/vula/internal/config"
	"github.com/vula-eid/vula/internal/csc"
	"github.com/vula-eid/vula/internal/eid"
	"github.com/vula-eid/vula/internal/pid"
	"github.com/vula-eid/vula/internal/seal"
	"github.com/vula-eid/vula/internal/store"
	"github.com/vula-eid/vula/internal/store/sqlstore"
)

// Parts are the platform's lower layers opened for one command run beside a server: the key
// layer (its signatures audited as the server's are), the durable store and the CA hierarchy
// (created when missing). The services a command works with are built over them.
type Parts struct {
	// Config is the configuration with the base_url the server last ran with (ServedConfig).
	Config    config.Config
	Keys      hsm.Manager // instrumented: every signature is in the audit log
	DB        *sqlstore.DB
	Authority *certs.Authority
	log       *slog.Logger
	raw       hsm.Manager
	gate      *durableGate
}

// Open opens the parts for a command. Close them when done.
func Open(ctx context.Context, cfg config.Config, lookupEnv func(string) (string, bool), log *slog.Logger) (*Parts, error) {
	raw, err := OpenKeys(ctx, cfg, lookupEnv, log)
	if err != nil {
		return nil, err
	}
	return OpenOn(ctx, cfg, raw, log)
}

// OpenOn is Open over a key layer already open (a server's, lent to a command that runs inside
// it); Close closes raw with the rest, and on an error OpenOn does.
func OpenOn(ctx context.Context, cfg config.Config, raw hsm.Manager, log *slog.Logger) (_ *Parts, err error) {
	p := &Parts{raw: raw, log: log}
	defer func() {
		if err != nil {
			err = errors.Join(err, p.Close())
		}
	}()
	if p.DB, err = sqlstore.Open(ctx, cfg.Store.Durable, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
		return nil, err
	}
	if p.Config, err = ServedConfig(ctx, cfg, p.DB); err != nil {
		return nil, err
	}
	gate := &durableGate{}
	uri, err := AuditKey(ctx, raw, time.Now())
	if err != nil {
		return nil, err
	}
	if err := gate.use(ctx, p.DB, raw, uri, p.Config, log); err != nil {
		return nil, err
	}
	p.gate = gate
	// Nobody scrapes a command's metrics.
	p.Keys = hsm.Instrument(raw, hsm.NewMetrics(prometheus.NewRegistry()), gate, time.Now)
	if p.Authority, err = certs.Open(ctx, p.Keys, p.DB, pkiConfig(p.Config), time.Now); err != nil {
		return nil, err
	}
	return p, nil
}

// Close closes the store and the key layer.
func (p *Parts) Close() error {
	var err error
	if p.DB != nil {
		err = p.DB.Close()
	}
	return errors.Join(err, p.raw.Close())
}

// Seal is the sealing service over the parts, without a timestamper (onboarding needs none).
func (p *Parts) Seal() *seal.Service {
	return SealService(p.Config, p.Authority, p.Keys, p.DB, nil, p.log)
}

// CSC is the remote signing service over the parts: it enrols and renews, and authorizes
// nothing.
func (p *Parts) CSC() *csc.Service {
	return CSCService(p.Config, p.Authority, p.Keys, p.DB, nil, nil, nil, nil, p.log)
}

// PID is the wallet issuer over the parts, its key and certificate made when missing; eph holds
// offers and nonces (the server's ephemeral store).
func (p *Parts) PID(ctx context.Context, eph store.Ephemeral) (*pid.Service, error) {
	s := PIDService(p.Config, p.Authority, p.Keys, p.DB, eph, p.gate.log.Load(), p.log)
	return s, s.Provision(ctx)
}

// servedBaseURL names the setting where serve records its base_url.
const servedBaseURL = "serve.base_url"

// ServedConfig gives cfg the base_url the server last ran with, when cfg's own is only derived
// from the command's --listen default: certificates issued from the command line then point
// their OCSP, CRL and issuer URLs where the server answers.
func ServedConfig(ctx context.Context, cfg config.Config, db store.Settings) (config.Config, error) {
	if !cfg.BaseURLDerived() {
		return cfg, nil
	}
	u, err := db.Setting(ctx, servedBaseURL)
	if errors.Is(err, store.ErrNotFound) {
		return cfg, nil
	}
	if err != nil {
		return cfg, err
	}
	return cfg.WithServedBaseURL(string(u)), nil
}

// Desk is the registration desk's service over the parts (its actions audited in the log).
func (p *Parts) Desk() *eid.Desk {
	return eid.New(eid.Config{}, p.DB, p.gate.log.Load(), time.Now)
}
