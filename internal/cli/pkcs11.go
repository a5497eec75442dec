package cli

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/vula-eid/vula/hsm"
	"github.com/vula-eid/vula/hsm/pkcs11"
	"github.com/vula-eid/vula/internal/config"
)

func (g *globals) openPKCS11(ctx context.Context, cfg config.Config, log *slog.Logger) (hsm.Manager, error) {
	p := cfg.HSM.PKCS11
	pin, err := config.Secret(p.PINEnv, p.PINFile, g.lookupEnv)
	if err != nil {
		return nil, fmt.Errorf("hsm.pkcs11: %w", err)
	}
	return pkcs11.Open(ctx, pkcs11.Config{Module: p.Module, TokenLabel: p.TokenLabel, PIN: pin, PoolSize: p.PoolSize}, log)
}
