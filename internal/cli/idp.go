package cli

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/vula-eid/vula/hsm"
	"github.com/vula-eid/vula/internal/config"
	"github.com/vula-eid/vula/internal/idp"
	"github.com/vula-eid/vula/internal/store"
	"github.com/vula-eid/vula/internal/web"
)

// idpPaths are the identity provider's routes on the one listener.
var idpPaths = []string{"/.well-known/", "/jwks.json", "/oauth2/", "/userinfo", "/login", "/login/", "/consent",
	"/account/", "/logout", "/demo/", "/api/v1/admin/"}

// openIdP makes the OpenID Connect provider and its pages on mux; on a first start in demo mode
// it also makes the demo relying party and citizen and tells stdout how to log in.
func openIdP(ctx context.Context, mux *http.ServeMux, keys hsm.Manager, db store.Durable, eph store.Ephemeral, cfg config.Config,
	log *slog.Logger, stdout io.Writer) (*idp.Provider, error) {
	ic, err := idpConfig(cfg)
	if err != nil {
		return nil, err
	}
	p, err := idp.New(ctx, ic, keys, db, eph, log, time.Now)
	if err != nil {
		return nil, err
	}
	sealer, err := seedSealer(cfg)
	if err != nil {
		return nil, err
	}
	accounts := idp.NewAccounts(db, eph, sealer, cfg.PKI.Organization, time.Now)
	secure := !cfg.Dev || strings.HasPrefix(cfg.BaseURL, "https://")
	r, err := web.New(log, secure)
	if err != nil {
		return nil, err
	}
	p.Register(mux)
	idp.NewPages(p, accounts, r, secure).Register(mux)
	idp.NewAdmin(p, accounts).Register(mux)
	if *cfg.IdP.Demo {
		// The demo is a convenience: when it cannot be made (say, base_url is plain http on a
		// public name, which no redirect URI may be), the platform runs without it.
		if err := demo(ctx, mux, db, accounts, sealer, cfg, stdout); err != nil {
			log.Warn("no demo relying party", "err", err)
		}
	}
	return p, nil
}

// idpConfig is the provider's configuration; the key of idp.seed_key_file seals its token
// secret as it does TOTP seeds.
func idpConfig(cfg config.Config) (idp.Config, error) {
	sealer, err := seedSealer(cfg)
	if err != nil {
		return idp.Config{}, err
	}
	return idp.Config{Issuer: cfg.BaseURL, Algorithm: cfg.IdP.Algorithm,
		AccessTokenTTL: time.Duration(cfg.IdP.AccessTokenTTL), IDTokenTTL: time.Duration(cfg.IdP.IDTokenTTL),
		RefreshTokenTTL: time.Duration(cfg.IdP.RefreshTokenTTL), Secrets: sealer}, nil
}

// openAccounts makes the credential checker with the TOTP seed sealing key.
func openAccounts(db store.Durable, eph store.Ephemeral, cfg config.Config) (*idp.Accounts, error) {
	sealer, err := seedSealer(cfg)
	if err != nil {
		return nil, err
	}
	return idp.NewAccounts(db, eph, sealer, cfg.PKI.Organization, time.Now), nil
}

// seedSealer seals secrets kept in the database with the key of idp.seed_key_file.
func seedSealer(cfg config.Config) (*store.SeedSealer, error) {
	key, err := seedKey(cfg.IdP.SeedKeyFile)
	if err != nil {
		return nil, fmt.Errorf("idp.seed_key_file: %w", err)
	}
	return store.NewSeedSealer(key)
}

// seedKey reads the 32-byte sealing key, making it (0600) when there is none.
func seedKey(path string) ([]byte, error) {
	key, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		key = make([]byte, 32)
		rand.Read(key)
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, err
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, fs.ErrExist) {
			return seedKey(path) // another process made it just now
		}
		if err != nil {
			return nil, err
		}
		if _, err := f.Write(key); err != nil {
			_ = f.Close() // the write error is the one to report
			return nil, err
		}
		if err := f.Sync(); err != nil {
			_ = f.Close()
			return nil, err
		}
		return key, f.Close()
	}
	if err != nil {
		return nil, err
	}
	if len(key) != 32 {
		return nil, fmt.Errorf("%s holds %d bytes, want 32", path, len(key))
	}
	return key, nil
}
