package cli

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/vula-eid/vula/hsm"
	"github.com/vula-eid/vula/internal/app"
	"github.com/vula-eid/vula/internal/certs"
	"github.com/vula-eid/vula/internal/store/sqlstore"
)

func pkiCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "pki", Short: "The certificate authority: hierarchy, issuance, revocation, CRLs"}

	withAuthority := g.withAuthority

	list := &cobra.Command{
		Use:   "list",
		Short: "List the hierarchy's certificates (creating the hierarchy on first use)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.Flag("output").Value.String()
			if err := checkOutput(out); err != nil {
				return err
			}
			return withAuthority(cmd, func(_ context.Context, a *certs.Authority, _ hsm.Manager) error {
				return printHierarchy(cmd.OutOrStdout(), out, a)
			})
		},
	}
	outputFlag(list, "table")
	initCmd := &cobra.Command{
		Use:   "init",
		Short: "Create the CA hierarchy (root, person-ca, seal-ca, OCSP responders, TSA) if missing",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withAuthority(cmd, func(_ context.Context, a *certs.Authority, _ hsm.Manager) error {
				return printHierarchy(cmd.OutOrStdout(), "table", a)
			})
		},
	}

	var profile, given, family, number, orgName, keyURI string
	var years int
	issue := &cobra.Command{
		Use:   "issue",
		Short: "Issue a natural-person or legal-person certificate for a key of the key layer; prints its serial and PEM",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.Flag("output").Value.String()
			if out != "pem" && out != "json" {
				return fmt.Errorf("--output: want pem or json, got %q", out)
			}
			return withAuthority(cmd, func(ctx context.Context, a *certs.Authority, keys hsm.Manager) error {
				cfg, _ := g.load()
				pub, err := keys.PublicKey(ctx, keyURI)
				if err != nil {
					return err
				}
				var subject pkix.Name
				switch certs.Profile(profile) {
				case certs.NaturalPerson:
					subject = certs.NaturalPersonName(given, family, number, cfg.PKI.Country)
				case certs.LegalPerson:
					subject = certs.LegalPersonName(orgName, number, cfg.PKI.Country)
				default:
					return fmt.Errorf("--profile: want natural-person or legal-person")
				}
				now := time.Now()
				c, err := a.IssueLeaf(ctx, certs.Request{Profile: certs.Profile(profile), Subject: subject, PublicKey: pub,
					NotBefore: now.Add(-time.Minute), NotAfter: now.AddDate(years, 0, 0)}, keyURI)
				if err != nil {
					return err
				}
				issuer := certs.NamePersonCA
				if certs.Profile(profile) == certs.LegalPerson {
					issuer = certs.NameSealCA
				}
				return printIssued(cmd.OutOrStdout(), cmd.ErrOrStderr(), out, issuer, c)
			})
		},
	}
	issue.Flags().StringP("output", "o", "pem", "pem (the certificate on stdout, its serial on stderr) or json")
	issue.Flags().StringVar(&profile, "profile", "natural-person", "natural-person or legal-person")
	issue.Flags().StringVar(&given, "given-name", "", "natural person: given name")
	issue.Flags().StringVar(&family, "family-name", "", "natural person: family name")
	issue.Flags().StringVar(&number, "number", "", "personal number, or the organization's registry number")
	issue.Flags().StringVar(&orgName, "organization", "", "legal person: name")
	issue.Flags().StringVar(&keyURI, "key", "", "URI of the subject's key in the key layer")
	issue.Flags().IntVar(&years, "years", 2, "validity in years")
	issue.MarkFlagRequired("key")
	issue.MarkFlagRequired("number")

	var ca, serialHex string
	var reason int
	revoke := &cobra.Command{
		Use:   "revoke",
		Short: "Revoke a certificate (OCSP answers change at once; the next CRL lists it)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			sn, ok := new(big.Int).SetString(serialHex, 16)
			if !ok || reason < 0 || reason > 10 || reason == 7 {
				return fmt.Errorf("want --serial in hex and --reason an RFC 5280 CRLReason (0-10, not 7)")
			}
			return g.withDB(cmd, func(ctx context.Context, db *sqlstore.DB) error {
				if err := db.Revoke(ctx, ca, fmt.Sprintf("%x", sn), time.Now(), reason); err != nil {
					return err
				}
				return say(cmd.OutOrStdout(), "revoked %s/%x\n", ca, sn)
			})
		},
	}
	revoke.Flags().StringVar(&ca, "ca", certs.NamePersonCA, "issuing CA: person-ca or seal-ca")
	revoke.Flags().StringVar(&serialHex, "serial", "", "serial number, hex")
	revoke.Flags().IntVar(&reason, "reason", 0, "RFC 5280 CRLReason code (1 keyCompromise, 4 superseded, 5 cessationOfOperation, ...)")
	revoke.MarkFlagRequired("serial")

	var crlOut string
	crl := &cobra.Command{
		Use:   "crl",
		Short: "Write a fresh CRL of a CA (DER)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withAuthority(cmd, func(ctx context.Context, a *certs.Authority, _ hsm.Manager) error {
				der, err := a.CRL(ctx, ca)
				if err != nil {
					return err
				}
				if crlOut == "" {
					_, err = cmd.OutOrStdout().Write(der)
					return err
				}
				return os.WriteFile(g.path(crlOut), der, 0o644)
			})
		},
	}
	crl.Flags().StringVar(&ca, "ca", certs.NamePersonCA, "root, person-ca or seal-ca")
	crl.Flags().StringVarP(&crlOut, "out", "f", "", "file to write (default standard output)")
	cmd.AddCommand(initCmd, list, issue, revoke, crl)
	return cmd
}

// printIssued prints a certificate issued on request. PEM output stays a plain PEM file on stdout,
// so `> cert.pem` works; the serial that `pki revoke` wants goes to stderr beside it.
func printIssued(stdout, stderr io.Writer, out, issuer string, c *x509.Certificate) error {
	serial := fmt.Sprintf("%x", c.SerialNumber)
	block := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	if out == "json" {
		return printJSON(stdout, struct {
			Serial      string    `json:"serial"`
			Issuer      string    `json:"issuer"`
			Subject     string    `json:"subject"`
			NotBefore   time.Time `json:"not_before"`
			NotAfter    time.Time `json:"not_after"`
			OCSP        []string  `json:"ocsp,omitempty"`
			CRL         []string  `json:"crl,omitempty"`
			Certificate string    `json:"certificate_pem"`
		}{serial, issuer, c.Subject.String(), c.NotBefore.UTC(), c.NotAfter.UTC(), c.OCSPServer, c.CRLDistributionPoints, string(block)})
	}
	if err := say(stderr, "issued certificate serial %s under %s (revoke: vula pki revoke --ca %s --serial %s)\n", serial, issuer, issuer, serial); err != nil {
		return err
	}
	_, err := stdout.Write(block)
	return err
}

func printHierarchy(w io.Writer, out string, a *certs.Authority) error {
	type row struct {
		Name     string    `json:"name"`
		Subject  string    `json:"subject"`
		Serial   string    `json:"serial"`
		NotAfter time.Time `json:"not_after"`
	}
	var rows []row
	for _, n := range a.Names() {
		c, _ := a.Certificate(n)
		rows = append(rows, row{n, c.Subject.String(), fmt.Sprintf("%x", c.SerialNumber), c.NotAfter})
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].Name < rows[j].Name })
	if out == "json" {
		return printJSON(w, rows)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSUBJECT\tSERIAL\tNOT AFTER")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Name, r.Subject, r.Serial, r.NotAfter.Format(time.DateOnly))
	}
	return tw.Flush()
}

// withAuthority opens the key layer, the store and the hierarchy (creating it if missing) for a
// command. Its signatures are audited like the server's.
func (g *globals) withAuthority(cmd *cobra.Command, f func(ctx context.Context, a *certs.Authority, keys hsm.Manager) error) error {
	return g.withAuthorityDB(cmd, func(ctx context.Context, a *certs.Authority, keys hsm.Manager, _ *sqlstore.DB) error {
		return f(ctx, a, keys)
	})
}

// withAuthorityDB is withAuthority that also hands over the store.
func (g *globals) withAuthorityDB(cmd *cobra.Command, f func(ctx context.Context, a *certs.Authority, keys hsm.Manager, db *sqlstore.DB) error) error {
	return g.withParts(cmd, func(ctx context.Context, p *app.Parts) error { return f(ctx, p.Authority, p.Keys, p.DB) })
}

// withParts runs f over the platform's lower layers (app.Parts), its signatures recorded as
// made by the command line.
func (g *globals) withParts(cmd *cobra.Command, f func(ctx context.Context, p *app.Parts) error) (err error) {
	cfg, err := g.load()
	if err != nil {
		return err
	}
	log := newLogger(cmd.ErrOrStderr(), cfg.Log)
	raw, err := g.openKeys(cmd.Context(), cfg, log)
	if err != nil {
		return err
	}
	// The CA's signers keep the context they are made with (x509.CreateCertificate calls Sign,
	// not SignContext): the actor must be in it already.
	ctx := hsm.WithActor(cmd.Context(), g.actor())
	p, err := app.OpenOn(ctx, cfg, raw, log)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, p.Close()) }()
	return f(ctx, p)
}
