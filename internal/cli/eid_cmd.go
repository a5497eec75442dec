package cli

import (
	"context"
	"fmt"
	"os"
	"slices"

	"github.com/spf13/cobra"

	"github.com/vula-eid/vula/internal/app"
	"github.com/vula-eid/vula/internal/eid"
	"github.com/vula-eid/vula/internal/letter"
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

// registrarAndPerson are the subjects of the registrar (personal number or subject id) and of
// the person (personal number) a desk command acts on.
func registrarAndPerson(ctx context.Context, db store.Persons, registrar, number string) (string, string, error) {
	reg, err := registrarOf(ctx, db, registrar)
	if err != nil {
		return "", "", err
	}
	p, err := db.PersonByPersonalNumber(ctx, number)
	if err != nil {
		return "", "", fmt.Errorf("person %s: %w", number, err)
	}
	return reg, p.SubjectID, nil
}

// registerCmd is `vula persons register`: the registration desk's registration, for a
// registrar at the command line until the desk's pages are there. It prints the activation
// code and, with --letter, writes the sealed activation letter.
func registerCmd(g *globals) *cobra.Command {
	var in eid.Registration
	var registrar, letterFile, lang string
	cmd := &cobra.Command{
		Use:   "register PERSONAL_NUMBER --registrar REGISTRAR ... [--letter FILE.pdf]",
		Short: "Register a person proofed in person at high (ID document checked) and print their activation letter's code",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			in.PersonalNumber = args[0]
			return g.withParts(cmd, func(ctx context.Context, parts *app.Parts) error {
				reg, err := registrarOf(ctx, parts.DB, registrar)
				if err != nil {
					return err
				}
				return g.issueLetter(ctx, cmd, parts, letterFile, lang, func() (eid.Letter, error) { return parts.Desk().Register(ctx, reg, in) })
			})
		},
	}
	f := cmd.Flags()
	letterFlags(cmd, &letterFile, &lang)
	f.StringVar(&registrar, "registrar", "", "the registrar's personal number or subject id (a person with --role registrar)")
	f.StringVar(&in.GivenName, "given-name", "", "given name, as on the ID document")
	f.StringVar(&in.FamilyName, "family-name", "", "family name, as on the ID document")
	f.StringVar(&in.BirthDate, "birthdate", "", "date of birth, YYYY-MM-DD")
	f.StringVar(&in.DocumentNumber, "document", "", "the ID document's number")
	f.StringVar(&in.DocumentExpiry, "document-expiry", "", "the ID document's expiry, YYYY-MM-DD")
	f.StringVar(&in.Email, "email", "", "e-mail address")
	return cmd
}

func letterFlags(cmd *cobra.Command, file, lang *string) {
	cmd.Flags().StringVar(file, "letter", "", "write the activation letter, sealed with the agency's seal (seal.agency) at PAdES B-LT, to this PDF file")
	cmd.Flags().StringVar(lang, "lang", "sq", "the letter's language: sq, sr or en")
}

// issueLetter runs issue, which makes a new activation code, prints the code and, when file is
// set, writes the sealed letter there. Whether the letter can be sealed is checked first: no
// code is issued for a letter that cannot be.
func (g *globals) issueLetter(ctx context.Context, cmd *cobra.Command, parts *app.Parts, file, lang string, issue func() (eid.Letter, error)) error {
	var printer *app.LetterPrinter
	if file != "" {
		if !slices.Contains(letter.Languages, lang) {
			return fmt.Errorf("--lang %q: want sq, sr or en", lang)
		}
		var err error
		if printer, err = parts.Letters(ctx); err != nil {
			return err
		}
		if _, err := printer.Agency(ctx); err != nil {
			return err
		}
	}
	l, err := issue()
	if err != nil {
		return err
	}
	if printer != nil {
		pdf, err := printer.Print(ctx, l, lang)
		if err != nil {
			return fmt.Errorf("person %s: a new code was issued, but the letter: %w (a reset gives another)", l.Person.PersonalNumber, err)
		}
		// The letter holds a secret until it is used: readable by its owner only.
		if err := os.WriteFile(g.path(file), pdf, 0o600); err != nil {
			return err
		}
	}
	return say(cmd.OutOrStdout(), "person %s (%s)\nactivation code %s\nvalid until %s\n",
		l.Person.PersonalNumber, l.Person.SubjectID, l.Code, l.Expires.Format("2006-01-02 15:04 MST"))
}

// resetCmd is `vula persons reset`: the desk's credential reset (a lost phone, a forgotten
// password): the password, authenticator app and passkeys go, and a new letter is issued.
func resetCmd(g *globals) *cobra.Command {
	var registrar, letterFile, lang string
	cmd := &cobra.Command{
		Use:   "reset PERSONAL_NUMBER --registrar REGISTRAR [--letter FILE.pdf]",
		Short: "Clear a person's password, authenticator app and passkeys and issue a new activation letter",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withParts(cmd, func(ctx context.Context, parts *app.Parts) error {
				reg, sub, err := registrarAndPerson(ctx, parts.DB, registrar, args[0])
				if err != nil {
					return err
				}
				return g.issueLetter(ctx, cmd, parts, letterFile, lang, func() (eid.Letter, error) { return parts.Desk().Reset(ctx, reg, sub) })
			})
		},
	}
	cmd.Flags().StringVar(&registrar, "registrar", "", "the registrar's personal number or subject id")
	letterFlags(cmd, &letterFile, &lang)
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
				reg, sub, err := registrarAndPerson(ctx, parts.DB, registrar, args[0])
				if err != nil {
					return err
				}
				return parts.Desk().SetStatus(ctx, reg, sub, status)
			})
		},
	}
	cmd.Flags().StringVar(&registrar, "registrar", "", "the registrar's personal number or subject id")
	cmd.Flags().StringVar(&status, "set", "", "suspended, active or revoked")
	return cmd
}
