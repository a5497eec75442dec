package cli

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/vula-eid/vula/hsm"
	"github.com/vula-eid/vula/internal/app"
)

// serveCmd is `vula serve`: the platform, as the composition root builds it.
func serveCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "serve",
		Short: "Run the platform's HTTP services",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.load()
			if err != nil {
				return err
			}
			log := newLogger(g.env.Stderr, cfg.Log)
			// The admin commands that need the key layer run inside the server through the
			// control socket while it holds the keys.
			admin := func(ctx context.Context, keys hsm.Manager) (func(), error) { return g.startSocket(ctx, cfg, keys, log) }
			return app.Run(cmd.Context(), cfg, app.Options{Log: log, Stdout: g.env.Stdout,
				LookupEnv: g.lookupEnv, Ready: g.env.Ready, Admin: admin})
		},
	}
}
