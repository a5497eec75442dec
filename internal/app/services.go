package app

import (
	"crypto/x509"
	"log/slog"
	"time"

	"github.com/vula-eid/vula/hsm"
	"github.com/vula-eid/vula/internal/audit"
	"github.com/vula-eid/vula/internal/auth"
	"github.com/vula-eid/vula/internal/certs"
	"github.com/vula-eid/vula/internal/config"
	"github.com/vula-eid/vula/internal/csc"
	"github.com/vula-eid/vula/internal/pid"
	"github.com/vula-eid/vula/internal/seal"
	"github.com/vula-eid/vula/internal/signing"
	"github.com/vula-eid/vula/internal/store"
	"github.com/vula-eid/vula/internal/store/sqlstore"
	"github.com/vula-eid/vula/internal/tsa"
)

// SealService is the sealing service on the configuration. A command passes no timestamper
// (onboarding needs none).
func SealService(cfg config.Config, a *certs.Authority, keys hsm.Manager, db *sqlstore.DB, ts signing.Timestamper, log *slog.Logger) *seal.Service {
	return seal.New(seal.Config{Country: cfg.PKI.Country, Algorithm: hsm.Algorithm(cfg.Seal.Algorithm), Years: cfg.Seal.Years,
		MaxSize: cfg.Seal.MaxSize}, keys, a, db, ts, log, time.Now)
}

// CSCService is the officials' remote signing service on the configuration. A command passes
// no ephemeral store, factors, audit log or TSA: it enrols and renews, and authorizes nothing.
func CSCService(cfg config.Config, a *certs.Authority, keys hsm.Manager, db *sqlstore.DB, eph store.Ephemeral, f csc.Factors,
	l *audit.Log, ts *tsa.Responder, log *slog.Logger) *csc.Service {
	var au csc.Auditor
	if l != nil { // a nil *audit.Log must not become a non-nil Auditor
		au = l
	}
	c := csc.Config{Country: cfg.PKI.Country, LoginMaxAge: time.Duration(cfg.CSC.LoginMaxAge)}
	if ts != nil { // a nil *tsa.Responder must not become a non-nil Timestamper
		c.Timestamper = ts
	}
	return csc.New(c, keys, a, db, eph, f, au, log, time.Now)
}

// PIDService is the wallet issuer on the configuration. A command that only makes offers passes
// no key layer, authority or audit log.
func PIDService(cfg config.Config, a *certs.Authority, keys hsm.Manager, db *sqlstore.DB, eph store.Ephemeral, l *audit.Log,
	log *slog.Logger) *pid.Service {
	authority := cfg.Wallet.Authority
	if authority == "" {
		authority = cfg.PKI.Organization
	}
	var au pid.Auditor
	if l != nil { // a nil *audit.Log must not become a non-nil Auditor
		au = l
	}
	var pki pid.PKI
	if a != nil {
		pki = a
	}
	return pid.New(pid.Config{Issuer: cfg.BaseURL, Country: cfg.PKI.Country, Authority: authority,
		Validity: time.Duration(cfg.Wallet.Validity), BatchSize: cfg.Wallet.BatchSize, LoA: walletLoA(cfg),
		StatusTTL: time.Duration(cfg.Wallet.StatusTTL)}, keys, pki, db, db, au, eph, log, time.Now)
}

// walletLoA is wallet.loa as an eIDAS level: what a login must reach for a PID.
func walletLoA(cfg config.Config) string {
	return map[string]string{"low": auth.LoALow, "substantial": auth.LoASubstantial, "high": auth.LoAHigh}[cfg.Wallet.LoA]
}

// platformAnchors is the running platform's root, the trust anchor of POST /api/v1/validate.
func platformAnchors(a *certs.Authority) []*x509.Certificate {
	if root, ok := a.Certificate(certs.NameRoot); ok {
		return []*x509.Certificate{root}
	}
	return nil
}
