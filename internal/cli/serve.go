package cli

import (
	"github.com/spf13/cobra"

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
			return app.Run(cmd.Context(), cfg, app.Options{Log: newLogger(g.env.Stderr, cfg.Log), Stdout: g.env.Stdout,
				LookupEnv: g.lookupEnv, Ready: g.env.Ready})
		},
	}
}
