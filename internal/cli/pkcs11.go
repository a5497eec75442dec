package cli

import (
	"context"
	"errors"
	"log/slog"

	"github.com/vula-eid/vula/hsm"
	"github.com/vula-eid/vula/internal/config"
)

func (g *globals) openPKCS11(ctx context.Context, cfg config.Config, log *slog.Logger) (hsm.Manager, error) {
	return nil, errors.New("pending")
}
