package cli

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/vula-eid/vula/internal/app"
	"github.com/vula-eid/vula/internal/eid"
	"github.com/vula-eid/vula/internal/store"
)

// registrarOf finds the registrar named by personal number or subject id.
func registrarOf(ctx context.Context, db store.Persons, id string) (string, error) {
	if p, err := db.PersonByPersonalNumber(ctx, id); err == nil {
		return p.SubjectID, nil
	}
	p, err := db.Person(ctx, id)
	if err != nil {
		return "", fmt.Errorf("registrar %s: %w", id, err)
	}
	return p.SubjectID, nil
}

// registerCmd is `vula persons register`: the registration desk's registration, for a
// registrar at the command line until the desk's pages are there. It prints the activation code.
func registerCmd(g *globals) *cobra.Command {
	var in eid.Registration
	var registrar string
	cmd := &cobra.Command{
		Use:   "register PERSONAL_NUMBER --registrar REGISTRAR ...",
		Short: "Register a person proofed in person at high (ID document checked) and print their activation letter's code",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			in.PersonalNumber = args[0]
			return g.withParts(cmd, func(ctx context.Context, parts *app.Parts) error {
				reg, err := registrarOf(ctx, parts.DB, registrar)
				if err != nil {
					return err
				}
				l, err := parts.Desk().Register(ctx, reg, in)
				if err != nil {
					return err
				}
				_, err = fmt.Fprintf(cmd.OutOrStdout(), "person %s (%s)\nactivation code %s\nvalid until %s\n",
					l.Person.PersonalNumber, l.Person.SubjectID, l.Code, l.Expires.Format("2006-01-02 15:04 MST"))
				return err
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&registrar, "registrar", "", "the registrar's personal number or subject id (a person with --role registrar)")
	f.StringVar(&in.GivenName, "given-name", "", "given name, as on the ID document")
	f.StringVar(&in.FamilyName, "family-name", "", "family name, as on the ID document")
	f.StringVar(&in.BirthDate, "birthdate", "", "date of birth, YYYY-MM-DD")
	f.StringVar(&in.DocumentNumber, "document", "", "the ID document's number")
	f.StringVar(&in.DocumentExpiry, "document-expiry", "", "the ID document's expiry, YYYY-MM-DD")
	f.StringVar(&in.Email, "email", "", "e-mail address")
	return cmd
}

// eidStatusCmd is `vula persons eid-status`: suspend, resume or revoke an eID means.
func eidStatusCmd(g *globals) *cobra.Command {
	var registrar, status string
	cmd := &cobra.Command{
		Use:   "eid-status PERSONAL_NUMBER --registrar REGISTRAR --set suspended|active|revoked",
		Short: "Suspend, resume or revoke (final) a person's eID means",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withParts(cmd, func(ctx context.Context, parts *app.Parts) error {
				reg, err := registrarOf(ctx, parts.DB, registrar)
				if err != nil {
					return err
				}
				p, err := parts.DB.PersonByPersonalNumber(ctx, args[0])
				if err != nil {
					return fmt.Errorf("person %s: %w", args[0], err)
				}
				return parts.Desk().SetStatus(ctx, reg, p.SubjectID, status)
			})
		},
	}
	cmd.Flags().StringVar(&registrar, "registrar", "", "the registrar's personal number or subject id")
	cmd.Flags().StringVar(&status, "set", "", "suspended, active or revoked")
	return cmd
}
