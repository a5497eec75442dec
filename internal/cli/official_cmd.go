package cli

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/vula-eid/vula/internal/app"
	"github.com/vula-eid/vula/internal/csc"
	"github.com/vula-eid/vula/internal/idp"
)

// credentialView is a signing credential as the CLI shows it.
type credentialView struct {
	CredentialID string    `json:"credential_id"`
	Subject      string    `json:"sub"`
	KeyURI       string    `json:"key"`
	CertSubject  string    `json:"certificate_subject"`
	NotAfter     time.Time `json:"not_after"`
	Revoked      bool      `json:"revoked"`
}

// issueSigningKeyCmd is `vula persons issue-signing-key`: an official's signing key and
// certificate. Revocation is `vula pki revoke --ca person-ca --serial <credential id>`.
func issueSigningKeyCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "issue-signing-key PERSONAL_NUMBER|SUB",
		Short: "Give an official a signing key in the key layer (purpose sign:SUB) and a natural-person signature certificate",
		Long: "Give an official (vula persons create --official) a signing key in the key layer (purpose sign:SUB) and a\n" +
			"natural-person signature certificate under person-ca with their names and personal number. The credential\n" +
			"id (the certificate's serial) is what the CSC API names; revoke it with\n" +
			"  vula pki revoke --ca person-ca --serial CREDENTIAL_ID",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			out := cmd.Flag("output").Value.String()
			if err := checkOutput(out); err != nil {
				return err
			}
			return g.withParts(cmd, func(ctx context.Context, parts *app.Parts) error {
				db := parts.DB
				p, err := db.PersonByPersonalNumber(ctx, args[0])
				if err != nil {
					if p, err = db.Person(ctx, args[0]); err != nil {
						return fmt.Errorf("person %s: %w", args[0], err)
					}
				}
				s := parts.CSC()
				c, err := s.Enrol(ctx, p)
				if err != nil {
					return err
				}
				return printCredential(cmd, out, c)
			})
		},
	}
	outputFlag(cmd, "table")
	return cmd
}

func printCredential(cmd *cobra.Command, out string, c csc.Credential) error {
	v := credentialView{CredentialID: c.ID, Subject: c.Subject, KeyURI: c.KeyURI, CertSubject: c.Cert.Subject.String(),
		NotAfter: c.Cert.NotAfter}
	if out == "json" {
		return printJSON(cmd.OutOrStdout(), v)
	}
	tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CREDENTIAL ID\tSUBJECT\tNOT AFTER\tKEY")
	fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", v.CredentialID, v.CertSubject, v.NotAfter.Format(time.DateOnly), v.KeyURI)
	return tw.Flush()
}

// renewSigningKeyCmd is `vula persons renew-signing-key`: a new certificate for an official's
// existing signing key.
func renewSigningKeyCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "renew-signing-key PERSONAL_NUMBER|SUB --credential CREDENTIAL_ID",
		Short: "Give an official's signing key a new certificate (same key, same purpose)",
		Long: "Give the signing key of one of an official's credentials a new natural-person signature certificate under\n" +
			"person-ca, with the names now in the store and a fresh validity. The new certificate is a new credential;\n" +
			"the old one stays listed, and can sign, until it expires or is revoked. A revoked credential is not renewed.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			out := cmd.Flag("output").Value.String()
			if err := checkOutput(out); err != nil {
				return err
			}
			id := cmd.Flag("credential").Value.String()
			if id == "" {
				return fmt.Errorf("--credential is required (the credential id, as issue-signing-key printed it)")
			}
			return g.withParts(cmd, func(ctx context.Context, parts *app.Parts) error {
				db := parts.DB
				p, err := db.PersonByPersonalNumber(ctx, args[0])
				if err != nil {
					if p, err = db.Person(ctx, args[0]); err != nil {
						return fmt.Errorf("person %s: %w", args[0], err)
					}
				}
				s := parts.CSC()
				c, err := s.Renew(ctx, p.SubjectID, id)
				if err != nil {
					return fmt.Errorf("credential %s of %s: %w", id, args[0], err)
				}
				return printCredential(cmd, out, c)
			})
		},
	}
	cmd.Flags().String("credential", "", "the credential id (certificate serial) to renew")
	outputFlag(cmd, "table")
	return cmd
}

// credentialLevelCmd is `vula persons credential-level`: the level of assurance the
// authorizations of one of an official's credentials require.
func credentialLevelCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "credential-level PERSONAL_NUMBER|SUB --credential CREDENTIAL_ID --level high|substantial",
		Short: "Require a login at LoA high (or back to substantial) to authorize signatures with a credential",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, level := cmd.Flag("credential").Value.String(), cmd.Flag("level").Value.String()
			if id == "" {
				return fmt.Errorf("--credential is required (the credential id, as issue-signing-key printed it)")
			}
			acr := map[string]string{"high": idp.LoAHigh, "substantial": idp.LoASubstantial}[level]
			if acr == "" {
				return fmt.Errorf("--level %q: want high or substantial", level)
			}
			return g.withParts(cmd, func(ctx context.Context, parts *app.Parts) error {
				db := parts.DB
				p, err := db.PersonByPersonalNumber(ctx, args[0])
				if err != nil {
					if p, err = db.Person(ctx, args[0]); err != nil {
						return fmt.Errorf("person %s: %w", args[0], err)
					}
				}
				if err := parts.CSC().SetCredentialLevel(ctx, p.SubjectID, id, acr); err != nil {
					return fmt.Errorf("credential %s of %s: %w", id, args[0], err)
				}
				_, err = fmt.Fprintf(cmd.OutOrStdout(), "credential %s: authorizations need LoA %s\n", id, level)
				return err
			})
		},
	}
	cmd.Flags().String("credential", "", "the credential id (certificate serial)")
	cmd.Flags().String("level", "high", "high or substantial")
	return cmd
}
