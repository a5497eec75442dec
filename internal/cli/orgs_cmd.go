package cli

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/vula-eid/vula/hsm"
	"github.com/vula-eid/vula/internal/app"
	"github.com/vula-eid/vula/internal/seal"
	"github.com/vula-eid/vula/internal/store/sqlstore"
)

// orgView is an organization as the CLI shows it, with its seal.
type orgView struct {
	ID         string    `json:"id"`
	Name       string    `json:"name"`
	Identifier string    `json:"identifier"`
	Created    time.Time `json:"created"`
	SealKey    string    `json:"seal_key,omitempty"`
	SealSerial string    `json:"seal_certificate_serial,omitempty"`
	SealUntil  time.Time `json:"seal_not_after,omitzero"`
	SealError  string    `json:"seal_error,omitempty"`
}

func printOrgs(w io.Writer, out string, os []orgView, asList bool) error {
	if out == "json" {
		if asList {
			return printJSON(w, os)
		}
		return printJSON(w, os[0])
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ORGANIZATION\tIDENTIFIER\tNAME\tSEAL CERTIFICATE\tNOT AFTER")
	for _, o := range os {
		serial, until := o.SealSerial, ""
		if serial == "" {
			serial = "none: " + o.SealError
		} else {
			until = o.SealUntil.Format(time.DateOnly)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", o.ID, o.Identifier, o.Name, serial, until)
	}
	return tw.Flush()
}

func orgsCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "orgs", Short: "Onboard and list the institutions that seal"}
	with := func(cmd *cobra.Command, f func(ctx context.Context, s *seal.Service, db *sqlstore.DB) error) error {
		return g.withParts(cmd, func(ctx context.Context, p *app.Parts) error { return f(ctx, p.Seal(), p.DB) })
	}
	view := func(ctx context.Context, s *seal.Service, id string, db *sqlstore.DB) (orgView, error) {
		o, err := db.Organization(ctx, id)
		if err != nil {
			return orgView{}, err
		}
		v := orgView{ID: o.ID, Name: o.Name, Identifier: o.Identifier, Created: o.Created}
		recs, err := db.KeyRecords(ctx)
		if err != nil {
			return orgView{}, err
		}
		for _, k := range recs {
			if k.Purpose == string(hsm.SealPurpose(id)) && k.State == string(hsm.StateActive) {
				v.SealKey = k.URI
			}
		}
		sealer, err := s.Sealer(ctx, id)
		if err != nil {
			v.SealError = err.Error()
			return v, nil
		}
		v.SealSerial, v.SealUntil = sealer.Cert.SerialNumber.Text(16), sealer.Cert.NotAfter
		return v, nil
	}

	var o seal.Organization
	create := &cobra.Command{
		Use:   "create ORG_ID",
		Short: "Onboard an institution: a seal key in the key layer (purpose seal:ORG_ID) and a seal certificate",
		Long: "Onboard an institution: a seal key in the key layer (purpose seal:ORG_ID) and a legal-person seal\n" +
			"certificate under seal-ca. Then register its systems as clients bound to it:\n" +
			"  vula clients create tax-batch --grant-type client_credentials --scope seal --organization ORG_ID",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			out := cmd.Flag("output").Value.String()
			if err := checkOutput(out); err != nil {
				return err
			}
			o.ID = args[0]
			return with(cmd, func(ctx context.Context, s *seal.Service, db *sqlstore.DB) error {
				if _, err := s.Onboard(ctx, o); err != nil {
					return err
				}
				v, err := view(ctx, s, o.ID, db)
				if err != nil {
					return err
				}
				return printOrgs(cmd.OutOrStdout(), out, []orgView{v}, false)
			})
		},
	}
	create.Flags().StringVar(&o.Name, "name", "", "legal name (in the seal certificate)")
	create.Flags().StringVar(&o.RegistryNumber, "registry-number", "", "national trade register number (organizationIdentifier NTR<country>-<number>)")
	create.MarkFlagRequired("name")
	create.MarkFlagRequired("registry-number")
	outputFlag(create, "table")

	list := &cobra.Command{
		Use: "list", Short: "List institutions and their seals", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.Flag("output").Value.String()
			if err := checkOutput(out); err != nil {
				return err
			}
			return with(cmd, func(ctx context.Context, s *seal.Service, db *sqlstore.DB) error {
				orgs, err := db.Organizations(ctx)
				if err != nil {
					return err
				}
				views := []orgView{}
				for _, o := range orgs {
					v, err := view(ctx, s, o.ID, db)
					if err != nil {
						return err
					}
					views = append(views, v)
				}
				return printOrgs(cmd.OutOrStdout(), out, views, true)
			})
		},
	}
	outputFlag(list, "table")

	show := &cobra.Command{
		Use: "show ORG_ID", Short: "Show one institution and its seal", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			out := cmd.Flag("output").Value.String()
			if err := checkOutput(out); err != nil {
				return err
			}
			return with(cmd, func(ctx context.Context, s *seal.Service, db *sqlstore.DB) error {
				v, err := view(ctx, s, args[0], db)
				if err != nil {
					return err
				}
				return printOrgs(cmd.OutOrStdout(), out, []orgView{v}, false)
			})
		},
	}
	outputFlag(show, "table")
	cmd.AddCommand(create, list, show)
	return cmd
}
