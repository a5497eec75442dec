package cli

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/vula-eid/vula/internal/app"
	"github.com/vula-eid/vula/internal/pid"
	"github.com/vula-eid/vula/internal/store"
	"github.com/vula-eid/vula/internal/store/sqlstore"
)

func pidCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "pid", Short: "Issue and revoke citizens' person identification data (the digital wallet)"}
	// Revoking writes an audit record: it needs the key layer, as every command that signs.
	with := func(cmd *cobra.Command, f func(ctx context.Context, s *pid.Service, db *sqlstore.DB) error) error {
		return g.withParts(cmd, func(ctx context.Context, p *app.Parts) error {
			eph, err := app.OpenEphemeral(ctx, p.Config.Store.Ephemeral, newLogger(cmd.ErrOrStderr(), p.Config.Log))
			if err != nil {
				return fmt.Errorf("store.ephemeral: %w", err)
			}
			defer func() { _ = eph.Close() }() // nothing was written that a failed close could lose
			s, err := p.PID(ctx, eph)
			if err != nil {
				return err
			}
			return f(ctx, s, p.DB)
		})
	}
	// An offer needs only the persons and the ephemeral store, not the key layer: it can be made
	// beside a running server even on the software backend, whose keystore one process holds.
	withOffers := func(cmd *cobra.Command, f func(ctx context.Context, s *pid.Service) error) error {
		cfg, err := g.load()
		if err != nil {
			return err
		}
		log := newLogger(cmd.ErrOrStderr(), cfg.Log)
		eph, err := app.OpenEphemeral(cmd.Context(), cfg.Store.Ephemeral, log)
		if err != nil {
			return fmt.Errorf("store.ephemeral: %w", err)
		}
		defer func() { _ = eph.Close() }() // the offer is written before f returns
		return g.withDB(cmd, func(ctx context.Context, db *sqlstore.DB) error {
			cfg, err := app.ServedConfig(ctx, cfg, db)
			if err != nil {
				return err
			}
			return f(ctx, app.PIDService(cfg, nil, nil, db, eph, nil, log))
		})
	}
	var operator string
	offer := &cobra.Command{
		Use:   "offer PERSONAL_NUMBER",
		Short: "Offer the person their PID: a pre-authorized credential offer and its transaction code",
		Long: "Offer the person their PID (OpenID4VCI pre-authorized code flow). Prints the\n" +
			"openid-credential-offer:// URI (the offer by reference: its credential_offer_uri serves it\n" +
			"until it is redeemed), the page that shows it as a QR code, and the six-digit transaction\n" +
			"code to tell the person apart from the QR code. The offer lasts 15 minutes; five wrong\n" +
			"transaction codes withdraw it. -o json adds the offer by value (credential_offer).",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			out := cmd.Flag("output").Value.String()
			if err := checkOutput(out); err != nil {
				return err
			}
			return withOffers(cmd, func(ctx context.Context, s *pid.Service) error {
				o, err := s.NewOffer(ctx, args[0], operator)
				if err != nil {
					return err
				}
				page := s.OfferPage(o.ID)
				if out == "json" {
					return printJSON(cmd.OutOrStdout(), map[string]any{"offer": o.URI, "credential_offer_uri": o.OfferURI,
						"credential_offer": o.Value, "page": page, "tx_code": o.TxCode, "expires": o.Until.UTC().Format(time.RFC3339)})
				}
				return say(cmd.OutOrStdout(), "offer:   %s\npage:    %s\ntx code: %s\nexpires: %s\n", o.URI, page, o.TxCode,
					o.Until.UTC().Format(time.RFC3339))
			})
		},
	}
	offer.Flags().StringVar(&operator, "operator", "cli", "who makes the offer (in the audit record of the issuance)")
	outputFlag(offer, "table")

	var reason string
	revoke := &cobra.Command{
		Use:   "revoke PERSONAL_NUMBER",
		Short: "Revoke every PID of the person: the next status list shows them revoked",
		Long: "Revoke every PID of the person: the next status list shows them revoked. It writes an audit\n" +
			"record, so it needs the key layer: on the software backend stop the server first.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return with(cmd, func(ctx context.Context, s *pid.Service, db *sqlstore.DB) error {
				p, err := db.PersonByPersonalNumber(ctx, args[0])
				if errors.Is(err, store.ErrNotFound) {
					return fmt.Errorf("no person with personal number %s", args[0])
				}
				if err != nil {
					return err
				}
				n, err := s.Revoke(ctx, p.SubjectID, operator, reason)
				if err != nil {
					return err
				}
				return say(cmd.OutOrStdout(), "revoked %d credential(s) of %s\n", n, args[0])
			})
		},
	}
	revoke.Flags().StringVar(&operator, "operator", "cli", "who revokes (in the audit log)")
	revoke.Flags().StringVar(&reason, "reason", "operator", "why (in the audit log)")
	cmd.AddCommand(offer, revoke)
	return cmd
}
