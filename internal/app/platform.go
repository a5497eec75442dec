package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/vula-eid/vula/hsm"
	"github.com/vula-eid/vula/internal/audit"
	"github.com/vula-eid/vula/internal/certs"
	"github.com/vula-eid/vula/internal/config"
	"github.com/vula-eid/vula/internal/csc"
	"github.com/vula-eid/vula/internal/eid"
	"github.com/vula-eid/vula/internal/idp"
	"github.com/vula-eid/vula/internal/pid"
	"github.com/vula-eid/vula/internal/portal"
	"github.com/vula-eid/vula/internal/seal"
	"github.com/vula-eid/vula/internal/store"
	"github.com/vula-eid/vula/internal/store/sqlstore"
	"github.com/vula-eid/vula/internal/tsa"
	"github.com/vula-eid/vula/internal/upload"
	"github.com/vula-eid/vula/internal/validation"
	"github.com/vula-eid/vula/internal/verifier"
	"github.com/vula-eid/vula/internal/web"
)

// platform is what Run has made before the durable store answers; build makes the rest.
type platform struct {
	cfg    config.Config
	log    *slog.Logger
	stdout io.Writer
	keys   hsm.Manager // instrumented: every signature audited
	eph    store.Ephemeral
	spool  *upload.Spool
	clock  tsa.Clock
	// card is the ID card login's listener; nil when not configured.
	card *cardListener
	// lockTTL is the init lock's life; 0 means initLockTTL.
	lockTTL time.Duration
}

// build makes, on the durable store db and the audit log l, everything above them in
// dependency order — PKI, TSA, identity provider, the services — and returns their routes.
// A CA key that does not match its certificate is an error: nothing may be signed under a
// hierarchy that is not what it claims.
func (p *platform) build(ctx context.Context, db *sqlstore.DB, l *audit.Log) (*http.ServeMux, error) {
	cfg, log, keys, eph := p.cfg, p.log, p.keys, p.eph
	// What a first start creates (the hierarchy, the portal's client, the demo) is created by
	// one replica; the others wait and load it.
	ttl := p.lockTTL
	if ttl == 0 {
		ttl = initLockTTL
	}
	release, err := lock(ctx, eph, ttl, log)
	if err != nil {
		return nil, err
	}
	defer release()

	// PKI and TSA. CA signatures go through the instrumented layer: each is in the audit log.
	a, err := certs.Open(ctx, keys, db, pkiConfig(cfg), time.Now)
	if err != nil {
		return nil, err
	}
	ts, err := newTSA(cfg, a, p.clock, log)
	if err != nil {
		return nil, err
	}
	lists, err := TrustedLists(cfg)
	if err != nil {
		return nil, err
	}

	// The accounts (the identity provider's; the signing service checks an official's factors
	// with them), the services, then the provider, which asks the signing service about
	// credentials in a credential authorization.
	sealer, err := SeedSealer(cfg)
	if err != nil {
		return nil, err
	}
	accounts := idp.NewAccounts(db, eph, sealer, cfg.PKI.Organization, time.Now)
	sealing := SealService(cfg, a, keys, db, ts, log)
	signing := CSCService(cfg, a, keys, db, eph, accounts, l, ts, log)
	ic := idpConfig(cfg, sealer)
	ic.Credentials, ic.Audit = signing, l                               // l: every login, with its levels
	ic.WalletConfigurations = []string{pid.ConfigSDJWT, pid.ConfigMdoc} // for authorization_details openid_credential
	ic.WalletLoA = walletLoA(cfg)
	provider, err := idp.New(ctx, ic, keys, db, eph, log, time.Now)
	if err != nil {
		return nil, err
	}
	secure := !cfg.Dev || strings.HasPrefix(cfg.BaseURL, "https://")
	pages, err := web.New(log, secure)
	if err != nil {
		return nil, err
	}
	// The wallet issuer makes its key and certificate on a first start.
	wallet := PIDService(cfg, a, keys, db, eph, l, log)
	if err := wallet.Provision(ctx); err != nil {
		return nil, fmt.Errorf("pid issuer: %w", err)
	}
	presentations, err := VerifierService(cfg, a, keys, db, eph, l, wallet, log)
	if err == nil {
		err = presentations.Provision(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("verifier: %w", err)
	}
	loginKey, err := LoginKey(cfg)
	if err != nil {
		return nil, err
	}
	officials := portal.New(portal.Config{Issuer: cfg.BaseURL, Secure: secure, LoginKey: loginKey}, pages, eph, db, portalSigner{signing},
		portal.Pdftoppm{Dir: cfg.HTTP.SpoolDir}, log, time.Now)

	// The routes: each service registers its own, under the prefix it declares.
	mux := http.NewServeMux()
	certs.Handlers{A: a, Log: log}.Register(mux)
	mux.Handle("GET "+TrustedListPath, ownTrustedList(cfg, a, db, log))
	mux.Handle("POST /tsa", ts)
	provider.Register(mux)
	login := idp.NewPages(provider, accounts, pages, secure)
	if err := enablePasskeys(login, cfg, log); err != nil {
		return nil, err
	}
	if p.card != nil {
		if err := p.card.build(cfg.IdP.Card, login, l); err != nil {
			return nil, err
		}
	}
	login.Register(mux)
	mux.Handle("GET /assets/", web.Assets())
	idp.NewAdmin(provider, accounts).Register(mux)
	seal.Handler{S: sealing, Auth: provider, Log: log, Spool: p.spool}.Register(mux)
	validation.Handler{TrustAnchors: platformAnchors(a), TrustedLists: lists, Fetch: validation.RevocationFetcher{R: a}, Log: log,
		Spool: p.spool, MaxUploads: cfg.HTTP.MaxUploads, RevocationFreshness: time.Duration(cfg.Validation.RevocationFreshness)}.Register(mux)
	audit.Handler{Store: db, Log: log}.Register(mux)
	csc.Handler{S: signing, Auth: provider, TSA: ts, Issuer: cfg.BaseURL, Log: log}.Register(mux)
	pid.Handler{S: wallet, Auth: provider, Pages: pages, Sessions: login, Log: log}.Register(mux)
	verifier.Handler{S: presentations, Auth: provider, Pages: pages, Log: log}.Register(mux)
	// The portal is a public client (PKCE) of the provider; its redirect URI follows base_url.
	if err := portalClient(ctx, db, officials.RedirectURI()); errors.Is(err, idp.ErrInvalidClient) {
		// As with the demo: a base_url no redirect URI may name (plain http on a public name)
		// leaves the platform running without the portal.
		log.Warn("no signing portal", "err", err)
	} else if err != nil {
		return nil, err
	} else {
		officials.Register(mux)
	}
	// The registration desk, a public client like the portal. Its letters are PDFs sealed with
	// the agency's seal when seal.agency names the agency, printable pages otherwise.
	var printer eid.Printer
	if cfg.Seal.Agency != "" {
		printer = NewLetterPrinter(cfg, sealing, db)
	}
	desk := deskPages(cfg.BaseURL, secure, loginKey, db, l, printer, pages, eph, log)
	if err := deskClient(ctx, db, desk.RedirectURI()); errors.Is(err, idp.ErrInvalidClient) {
		log.Warn("no registration desk", "err", err)
	} else if err != nil {
		return nil, err
	} else {
		desk.Register(mux)
	}
	if *cfg.IdP.Demo {
		// The demo is a convenience: when it cannot be made, the platform runs without it.
		if err := demo(ctx, mux, db, accounts, sealer, cfg, p.stdout); err != nil {
			log.Warn("no demo relying party", "err", err)
		}
	}
	return mux, nil
}
