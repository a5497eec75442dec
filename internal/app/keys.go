package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/vula-eid/vula/hsm"
	"github.com/vula-eid/vula/hsm/pkcs11"
	"github.com/vula-eid/vula/hsm/software"
	"github.com/vula-eid/vula/internal/config"
)

// OpenKeys opens the configured key backend, not instrumented: the caller decides whether its
// signatures are audited (Run and Open do; reading public keys needs no audit). lookupEnv
// resolves the environment references of the PIN or passphrase.
func OpenKeys(ctx context.Context, cfg config.Config, lookupEnv func(string) (string, bool), log *slog.Logger) (hsm.Manager, error) {
	switch cfg.HSM.Backend {
	case "pkcs11":
		p := cfg.HSM.PKCS11
		pin, err := config.Secret(p.PINEnv, p.PINFile, lookupEnv)
		if err != nil {
			return nil, fmt.Errorf("hsm.pkcs11: %w", err)
		}
		return pkcs11.Open(ctx, pkcs11.Config{Module: p.Module, TokenLabel: p.TokenLabel, PIN: pin, PoolSize: p.PoolSize}, log)
	default:
		s := cfg.HSM.Software
		sc := software.Config{Dir: s.Dir, KeyFile: s.KeyFile}
		if s.PassphraseEnv != "" || s.PassphraseFile != "" {
			p, err := config.Secret(s.PassphraseEnv, s.PassphraseFile, lookupEnv)
			if err != nil {
				return nil, fmt.Errorf("hsm.software: %w", err)
			}
			sc.Passphrase, sc.KeyFile = p, ""
		} else if err := os.MkdirAll(filepath.Dir(s.KeyFile), 0o700); err != nil {
			return nil, fmt.Errorf("hsm.software.key_file: %w", err)
		} else if err := software.CreateKeyFile(s.KeyFile); err == nil {
			// First start of the embedded default: a random master key, so that no one has to
			// type a passphrase. The operator must keep this file with the keystore.
			log.Info("created the software keystore's master key file", "path", s.KeyFile)
		} else if !errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("hsm.software.key_file: %w", err)
		}
		return software.Open(ctx, sc, log)
	}
}
