package app

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/vula-eid/vula/hsm"
	"github.com/vula-eid/vula/internal/config"
	"github.com/vula-eid/vula/internal/idp"
	"github.com/vula-eid/vula/internal/store"
)

// idpConfig is the provider's configuration; the key of idp.seed_key_file seals its token
// secret as it does TOTP seeds.
func idpConfig(cfg config.Config, sealer *store.SeedSealer) idp.Config {
	return idp.Config{Issuer: cfg.BaseURL, Algorithm: cfg.IdP.Algorithm,
		AccessTokenTTL: time.Duration(cfg.IdP.AccessTokenTTL), IDTokenTTL: time.Duration(cfg.IdP.IDTokenTTL),
		RefreshTokenTTL: time.Duration(cfg.IdP.RefreshTokenTTL), Secrets: sealer}
}

// enablePasskeys turns passkeys on with the attestation trust anchors of
// idp.passkey_trust_roots. WebAuthn needs a domain name: a base URL on an IP address has none
// and the platform runs without passkeys.
func enablePasskeys(pages *idp.Pages, cfg config.Config, log *slog.Logger) error {
	var t idp.PasskeyTrust
	for _, f := range cfg.IdP.PasskeyTrustRoots {
		b, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("idp.passkey_trust_roots: %w", err)
		}
		n := len(t.Anchors)
		for blk, rest := pem.Decode(b); blk != nil; blk, rest = pem.Decode(rest) {
			if blk.Type != "CERTIFICATE" {
				continue
			}
			c, err := x509.ParseCertificate(blk.Bytes)
			if err != nil {
				return fmt.Errorf("idp.passkey_trust_roots: %s: %w", f, err)
			}
			t.Anchors = append(t.Anchors, c)
		}
		if len(t.Anchors) == n {
			return fmt.Errorf("idp.passkey_trust_roots: %s holds no PEM certificate", f)
		}
	}
	if err := pages.EnablePasskeys(t); err != nil {
		log.Warn("passkeys off", "err", err)
	}
	return nil
}

// NewProvider is the OpenID provider on the configuration (its pages and routes are the
// platform's; a command uses it for upkeep such as rotating the signing key).
func NewProvider(ctx context.Context, cfg config.Config, keys hsm.Manager, db store.Durable, eph store.Ephemeral, log *slog.Logger) (*idp.Provider, error) {
	sealer, err := SeedSealer(cfg)
	if err != nil {
		return nil, err
	}
	return idp.New(ctx, idpConfig(cfg, sealer), keys, db, eph, log, time.Now)
}

// NewAccounts makes the credential checker with the TOTP seed sealing key.
func NewAccounts(db store.Durable, eph store.Ephemeral, cfg config.Config) (*idp.Accounts, error) {
	sealer, err := SeedSealer(cfg)
	if err != nil {
		return nil, err
	}
	return idp.NewAccounts(db, eph, sealer, cfg.PKI.Organization, time.Now), nil
}

// SeedSealer seals secrets kept in the database with the key of idp.seed_key_file.
func SeedSealer(cfg config.Config) (*store.SeedSealer, error) {
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
