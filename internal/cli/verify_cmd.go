package cli

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	"go.step.sm/crypto/pemutil"

	"github.com/vula-eid/vula/internal/app"
	"github.com/vula-eid/vula/internal/certs"
	"github.com/vula-eid/vula/internal/store/sqlstore"
	"github.com/vula-eid/vula/internal/trustlist"
	"github.com/vula-eid/vula/internal/validation"
)

// errNotPassed makes vula verify exit non-zero when the document did not pass.
var errNotPassed = errors.New("the document did not pass validation")

func verifyCmd(g *globals) *cobra.Command {
	var contentFile, output string
	var caFiles []string
	var online bool
	var freshness time.Duration
	cmd := &cobra.Command{
		Use:   "verify FILE",
		Short: "Validate the signatures and timestamps of FILE (PDF, CMS, RFC 3161, XML-DSig/XAdES, ASiC-E) and print a report",
		Long: "Validate a signed document in the manner of ETSI EN 319 102-1. The trust anchors are the\n" +
			"--ca files, else the platform's root from the configured store; the configured trusted lists\n" +
			"(validation.trusted_lists, validation.lotl) are trusted too, as the server's validation trusts them.\n" +
			"Exit status 0 only for TOTAL-PASSED.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "text" && output != "json" {
				return fmt.Errorf("--output: %q (want text or json)", output)
			}
			// Without a configuration the defaults apply, as they did before one was asked for.
			cfg, cfgErr := g.load()
			var lists *trustlist.Set
			if cfgErr == nil {
				var err error
				if lists, err = app.TrustedLists(cfg); err != nil {
					return fmt.Errorf("validation: %w", err)
				}
			}
			var anchors []*x509.Certificate
			for _, f := range caFiles {
				cs, err := pemutil.ReadCertificateBundle(f)
				if err != nil {
					return fmt.Errorf("--ca %s: %w", f, err)
				}
				anchors = append(anchors, cs...)
			}
			if len(anchors) == 0 {
				var err error
				if anchors, err = g.platformRoots(cmd); err != nil && lists == nil {
					return fmt.Errorf("no trust anchors: give --ca (the platform's root is not available: %w)", err)
				}
			}
			// Validate reads a PDF where it lies, so the file is not read into memory here.
			doc, err := os.Open(args[0])
			if err != nil {
				return err
			}
			defer func() { _ = doc.Close() }() // read only
			st, err := doc.Stat()
			if err != nil {
				return err
			}
			opts := validation.Options{TrustAnchors: anchors, TrustedLists: lists, RevocationFreshness: freshness}
			if !cmd.Flags().Changed("revocation-freshness") && cfgErr == nil {
				opts.RevocationFreshness = time.Duration(cfg.Validation.RevocationFreshness)
			}
			if online {
				opts.Fetch = validation.HTTPFetcher{}
			}
			if contentFile != "" {
				c, err := os.ReadFile(contentFile)
				if err != nil {
					return err
				}
				opts.Content, opts.ContentSize = bytes.NewReader(c), int64(len(c))
			}
			rep, err := validation.Validate(cmd.Context(), doc, st.Size(), opts)
			if err != nil {
				return err
			}
			if output == "json" {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				if err := enc.Encode(rep); err != nil {
					return err
				}
			} else if err := say(cmd.OutOrStdout(), "%s", rep.Text()); err != nil {
				return err
			}
			if rep.Indication != validation.TotalPassed {
				cmd.SilenceUsage = true
				return errNotPassed
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&contentFile, "content", "", "the signed content of a detached CMS or XAdES signature, or the data a timestamp is over")
	cmd.Flags().StringArrayVar(&caFiles, "ca", nil, "trust anchors (PEM), repeatable; default: the platform's root")
	cmd.Flags().StringVar(&output, "output", "text", "text or json")
	cmd.Flags().DurationVar(&freshness, "revocation-freshness", 0, "the most revocation data may predate the best-signature-time (EN 319 102-1 §5.2.5); 0 turns the check off (default: validation.revocation_freshness of the configuration)")
	cmd.Flags().BoolVar(&online, "online", false, "fetch OCSP/CRL at the certificates' URLs when the document embeds no revocation data")
	return cmd
}

// platformRoots reads the platform's root certificates from the configured store, without
// opening the key layer or creating anything.
func (g *globals) platformRoots(cmd *cobra.Command) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	err := g.withDB(cmd, func(ctx context.Context, db *sqlstore.DB) error {
		recs, err := db.CertificatesByCA(ctx, certs.NameRoot)
		if err != nil {
			return err
		}
		for _, r := range recs {
			c, err := x509.ParseCertificate(r.DER)
			if err == nil && !r.Revoked && c.IsCA && bytes.Equal(c.RawSubject, c.RawIssuer) {
				out = append(out, c)
			}
		}
		return nil
	})
	if err == nil && len(out) == 0 {
		err = errors.New("the store holds no root certificate")
	}
	return out, err
}
