package app

import (
	"context"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
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
		RefreshTokenTTL: time.Duration(cfg.IdP.RefreshTokenTTL), FlowsPerMinute: cfg.IdP.LoginFlowsPerMinute, Secrets: sealer}
}

// enablePasskeys turns passkeys on with the attestation trust lists: the anchors of
// idp.passkey_trust_roots and the FIDO MDS3 BLOB of idp.passkey_mds3_file, read now and only
// now (a new BLOB takes a restart). A BLOB that does not verify under idp.passkey_mds3_root
// stops the start; one out of date is a warning, and no passkey counts as high through it.
// WebAuthn needs a domain name: a base URL on an IP address has none and the platform runs
// without passkeys.
func enablePasskeys(pages *idp.Pages, cfg config.Config, log *slog.Logger) error {
	var t idp.PasskeyTrust
	for _, f := range cfg.IdP.PasskeyTrustRoots {
		certs, err := readCertificates("idp.passkey_trust_roots", f)
		if err != nil {
			return err
		}
		t.Anchors = append(t.Anchors, certs...)
	}
	if f := cfg.IdP.PasskeyMDS3File; f != "" {
		roots, err := readCertificates("idp.passkey_mds3_root", cfg.IdP.PasskeyMDS3Root)
		if err != nil {
			return err
		}
		blob, err := readBounded(f, idp.MaxMDS3Size)
		if err != nil {
			return fmt.Errorf("idp.passkey_mds3_file: %w", err)
		}
		now := time.Now()
		m, err := idp.ParseMDS3(blob, roots, now)
		if err != nil {
			return fmt.Errorf("idp.passkey_mds3_file: %s: %w", f, err)
		}
		if m.Expired(now) {
			log.Warn("idp.passkey_mds3_file is out of date: no passkey counts as high through it; put a current blob there and restart",
				"file", f, "number", m.Number, "next_update", m.NextUpdate.Format(time.DateOnly))
		} else {
			log.Info("passkey trust: FIDO MDS3 blob", "file", f, "number", m.Number, "entries", m.Len(),
				"next_update", m.NextUpdate.Format(time.DateOnly))
			t.MDS3 = m
		}
	}
	if err := pages.EnablePasskeys(t); err != nil {
		log.Warn("passkeys off", "err", err)
	}
	return nil
}

// readCertificates reads the PEM certificates of file, the value of field; a file with none is
// an error.
func readCertificates(field, file string) ([]*x509.Certificate, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", field, err)
	}
	var out []*x509.Certificate
	for blk, rest := pem.Decode(b); blk != nil; blk, rest = pem.Decode(rest) {
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", field, file, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: %s holds no PEM certificate", field, file)
	}
	return out, nil
}

// readBounded reads file, refusing one above limit bytes.
func readBounded(file string, limit int64) ([]byte, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }() // read only
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", file, limit)
	}
	return b, nil
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

// LoginKey seals the pages' logins in progress (the portal's, the desk's) in the browser's
// cookies: derived from the key of idp.seed_key_file, which every replica shares, under a name
// of its own, so it opens nothing the seed key seals.
func LoginKey(cfg config.Config) (*[32]byte, error) {
	seed, err := seedKey(cfg.IdP.SeedKeyFile)
	if err != nil {
		return nil, fmt.Errorf("idp.seed_key_file: %w", err)
	}
	k, err := hkdf.Key(sha256.New, seed, nil, "vula rp login cookie", 32)
	if err != nil {
		return nil, err
	}
	return (*[32]byte)(k), nil
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
