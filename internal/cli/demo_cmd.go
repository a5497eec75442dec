package cli

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/vula-eid/vula/internal/app"
	"github.com/vula-eid/vula/internal/store/sqlstore"
)

// demoCmd is `vula demo show`: the demo's credentials again, from the durable store.
func demoCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "demo", Short: "The dev-mode demo: a relying party under /demo/ and a demo citizen"}
	show := &cobra.Command{
		Use:   "show",
		Short: "Print the demo citizen's login (made by the first `vula serve` in dev mode)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.Flag("output").Value.String()
			if out != "text" && out != "json" {
				return fmt.Errorf("--output: want text or json, got %q", out)
			}
			cfg, err := g.load()
			if err != nil {
				return err
			}
			return g.withDB(cmd, func(ctx context.Context, db *sqlstore.DB) error {
				dc, err := app.ReadDemo(ctx, cfg, db)
				if errors.Is(err, app.ErrNoDemo) {
					return fmt.Errorf("no demo in %s: the first `vula serve` in dev mode makes it (idp.demo, on by default in dev mode)", app.RedactDSN(cfg.Store.Durable))
				}
				if err != nil {
					return err
				}
				if out == "json" {
					return printJSON(cmd.OutOrStdout(), dc)
				}
				return app.PrintDemo(cmd.OutOrStdout(), dc, false)
			})
		},
	}
	show.Flags().StringP("output", "o", "text", "text or json")
	cmd.AddCommand(show)
	return cmd
}
