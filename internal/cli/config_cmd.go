package cli

import (
	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"
)

func configCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Check or show the configuration"}
	check := &cobra.Command{
		Use:   "check",
		Short: "Validate the configuration; name the bad field",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := g.load(); err != nil {
				return err
			}
			return say(cmd.OutOrStdout(), "ok\n")
		},
	}
	show := &cobra.Command{
		Use:   "show",
		Short: "Print the effective configuration (it holds no secrets, only where they are)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.Flag("output").Value.String()
			if err := checkOutput(out); err != nil {
				return err
			}
			cfg, err := g.load()
			if err != nil {
				return err
			}
			if out == "json" {
				return printJSON(cmd.OutOrStdout(), cfg)
			}
			b, err := yaml.Marshal(cfg)
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(b)
			return err
		},
	}
	outputFlag(show, "yaml")
	cmd.AddCommand(check, show)
	return cmd
}
