package cli

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/vula-eid/vula/hsm"
	"github.com/vula-eid/vula/internal/app"
	"github.com/vula-eid/vula/internal/config"
)

// openKeys opens the configured key backend, not instrumented.
func (g *globals) openKeys(ctx context.Context, cfg config.Config, log *slog.Logger) (hsm.Manager, error) {
	if g.server != nil {
		return sharedKeys{g.server.keys}, nil
	}
	return app.OpenKeys(ctx, cfg, g.lookupEnv, log)
}

func keysCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "keys", Short: "Manage keys in the configured key backend"}
	withKeys := func(cmd *cobra.Command, f func(ctx context.Context, m hsm.Manager) error) (err error) {
		cfg, err := g.load()
		if err != nil {
			return err
		}
		log := newLogger(cmd.ErrOrStderr(), cfg.Log)
		m, err := g.openKeys(cmd.Context(), cfg, log)
		if err != nil {
			return err
		}
		defer func() { err = errors.Join(err, m.Close()) }()
		return f(cmd.Context(), m)
	}

	var spec hsm.KeySpec
	var alg, purpose string
	create := &cobra.Command{
		Use:   "create",
		Short: "Create a key pair inside the backend",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.Flag("output").Value.String()
			if err := checkOutput(out); err != nil {
				return err
			}
			spec.Algorithm, spec.Purpose = hsm.Algorithm(alg), hsm.Purpose(purpose)
			return withKeys(cmd, func(ctx context.Context, m hsm.Manager) error {
				k, err := m.CreateKey(ctx, spec)
				if err != nil {
					return err
				}
				return printKeys(cmd.OutOrStdout(), out, []hsm.KeyInfo{k}, false)
			})
		},
	}
	create.Flags().StringVar(&spec.Label, "label", "", "key label, unique in the backend")
	create.Flags().StringVar(&alg, "algorithm", string(hsm.ECP256), "EC-P256, EC-P384, RSA-3072 or RSA-4096")
	create.Flags().StringVar(&purpose, "purpose", "", "oidc-token, tsa, ca, ocsp, audit, seal:<org> or sign:<person>")
	create.Flags().StringVar(&spec.Owner, "owner", "", "who the key belongs to")
	outputFlag(create, "table")
	create.MarkFlagRequired("label")
	create.MarkFlagRequired("purpose")

	list := &cobra.Command{
		Use:   "list",
		Short: "List keys",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.Flag("output").Value.String()
			if err := checkOutput(out); err != nil {
				return err
			}
			return withKeys(cmd, func(ctx context.Context, m hsm.Manager) error {
				ks, err := m.Keys(ctx)
				if err != nil {
					return err
				}
				return printKeys(cmd.OutOrStdout(), out, ks, true)
			})
		},
	}
	outputFlag(list, "table")

	show := &cobra.Command{
		Use:   "show URI",
		Short: "Show one key",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			out := cmd.Flag("output").Value.String()
			if out == "pem" {
				// The public key alone, e.g. for an auditor's offline `vula audit verify --public-key`.
				return withKeys(cmd, func(ctx context.Context, m hsm.Manager) error {
					pub, err := m.PublicKey(ctx, args[0])
					if err != nil {
						return err
					}
					der, err := x509.MarshalPKIXPublicKey(pub)
					if err != nil {
						return err
					}
					return pem.Encode(cmd.OutOrStdout(), &pem.Block{Type: "PUBLIC KEY", Bytes: der})
				})
			}
			if err := checkOutput(out); err != nil {
				return err
			}
			return withKeys(cmd, func(ctx context.Context, m hsm.Manager) error {
				k, err := m.Key(ctx, args[0])
				if err != nil {
					return err
				}
				return printKeys(cmd.OutOrStdout(), out, []hsm.KeyInfo{k}, false)
			})
		},
	}
	outputFlag(show, "table")
	show.Flag("output").Usage = "output format: json, table, or pem (the public key)"

	retire := &cobra.Command{
		Use:   "retire URI",
		Short: "Stop a key from signing; its public key stays available",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withKeys(cmd, func(ctx context.Context, m hsm.Manager) error {
				if err := m.Retire(ctx, args[0]); err != nil {
					return err
				}
				return say(cmd.OutOrStdout(), "retired %s\n", args[0])
			})
		},
	}
	var yes bool
	destroy := &cobra.Command{
		Use:   "destroy URI",
		Short: "Delete a key's material for good (asks for --yes)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !yes {
				return fmt.Errorf("destroying %s cannot be undone: repeat with --yes", args[0])
			}
			return withKeys(cmd, func(ctx context.Context, m hsm.Manager) error {
				if err := m.Destroy(ctx, args[0]); err != nil {
					return err
				}
				return say(cmd.OutOrStdout(), "destroyed %s\n", args[0])
			})
		},
	}
	destroy.Flags().BoolVar(&yes, "yes", false, "confirm destruction")
	cmd.AddCommand(create, list, show, retire, destroy)
	return cmd
}

func printKeys(w io.Writer, out string, ks []hsm.KeyInfo, asList bool) error {
	if out == "json" {
		if asList {
			if ks == nil {
				ks = []hsm.KeyInfo{}
			}
			return printJSON(w, ks)
		}
		return printJSON(w, ks[0])
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "URI\tALGORITHM\tPURPOSE\tOWNER\tSTATE\tCREATED")
	for _, k := range ks {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", k.URI, k.Algorithm, k.Purpose, k.Owner, k.State, k.Created.UTC().Format(time.RFC3339))
	}
	return tw.Flush()
}
