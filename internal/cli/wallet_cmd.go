package cli

import (
	"bufio"
	"crypto/x509"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/vula-eid/vula/internal/holder"
)

// walletCmd is `vula wallet`, the reference holder: a pure client of OpenID4VCI and OpenID4VP.
// It reads no configuration, data dir or control socket of a server.
func walletCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "wallet",
		Short: "A reference wallet: receive credentials (OpenID4VCI), list them, present them (OpenID4VP)",
		Long: "A reference wallet for tests and demos. Its keys (P-256) and credentials are in one local\n" +
			"file (--file, mode 0600). With VULA_WALLET_PASSPHRASE set when the wallet is made, the\n" +
			"private keys in it are encrypted (Argon2id, AES-256-GCM); the credentials are not.",
	}
	var file string
	cmd.PersistentFlags().StringVar(&file, "file", "wallet.json", "the wallet file")
	passphrase := func() string { p, _ := g.lookupEnv("VULA_WALLET_PASSPHRASE"); return p }
	readTrust := func(files []string) ([]*x509.Certificate, error) {
		var out []*x509.Certificate
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				return nil, fmt.Errorf("--trust: %w", err)
			}
			cs, err := holder.ParseCertificates(b)
			if err != nil {
				return nil, fmt.Errorf("--trust %s: %w", f, err)
			}
			out = append(out, cs...)
		}
		return out, nil
	}

	var initTrust []string
	initCmd := &cobra.Command{
		Use:   "init",
		Short: "Make a new wallet file with the holder's key",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			trust, err := readTrust(initTrust)
			if err != nil {
				return err
			}
			w, err := holder.Create(file, passphrase(), trust)
			if err != nil {
				return err
			}
			enc := "not encrypted (set VULA_WALLET_PASSPHRASE to encrypt them)"
			if w.Encrypted() {
				enc = "encrypted with the passphrase"
			}
			return say(cmd.OutOrStdout(), "wallet %s made: key %s, private keys %s, %d trust anchor(s)\n", file, w.KeyIDs()[0], enc, len(w.Trust()))
		},
	}
	initCmd.Flags().StringSliceVar(&initTrust, "trust", nil, "PEM or DER certificate(s) of the issuers' trust anchors (e.g. Vula's /pki/root.crt)")

	var txCode string
	var acceptTrust []string
	var batch int
	accept := &cobra.Command{
		Use:   "accept OFFER_URI",
		Short: "Accept a credential offer (openid-credential-offer://...): receive, check and keep the credentials",
		Long: "Accept a credential offer by the OpenID4VCI pre-authorized code flow: read the offer (by value\n" +
			"or by credential_offer_uri), the issuer's and the authorization server's metadata, redeem the\n" +
			"code with the transaction code (--tx-code, or asked for), and ask for each credential offered\n" +
			"with one new key per credential. Every credential is checked — the issuer's signature and\n" +
			"certificate chain to the wallet's trust anchors (and --trust), the SD-JWT disclosures or the\n" +
			"mdoc's digests, the key it is bound to — before it is kept.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			w, err := holder.Open(file, passphrase())
			if err != nil {
				return err
			}
			trust, err := readTrust(acceptTrust)
			if err != nil {
				return err
			}
			w.AddTrust(trust)
			c := holder.Client{}
			o, err := c.ParseOfferURI(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if pa := o.Grants.PreAuthorized; pa.TxCode != nil && txCode == "" {
				desc := pa.TxCode.Description
				if desc == "" {
					desc = "The transaction code"
				}
				if _, err := fmt.Fprintf(cmd.ErrOrStderr(), "%s (%d characters): ", desc, pa.TxCode.Length); err != nil {
					return err
				}
				line, err := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
				if err != nil && line == "" {
					return fmt.Errorf("no transaction code given (--tx-code): %w", err)
				}
				txCode = strings.TrimSpace(line)
			}
			got, err := c.Accept(cmd.Context(), w, o, txCode, batch)
			if err != nil {
				return err
			}
			if err := w.Save(); err != nil {
				return err
			}
			for _, cr := range got.Credentials {
				if err := say(cmd.OutOrStdout(), "%s  %-9s  %s  from %s, until %s\n", cr.ID, cr.Format, cr.Type, cr.Issuer,
					cr.Expires.UTC().Format(time.DateOnly)); err != nil {
					return err
				}
			}
			return say(cmd.OutOrStdout(), "%d credential(s) checked and kept in %s\n", len(got.Credentials), file)
		},
	}
	accept.Flags().StringVar(&txCode, "tx-code", "", "the transaction code the issuer gave apart from the offer (asked for when not given)")
	accept.Flags().StringSliceVar(&acceptTrust, "trust", nil, "more trust anchors for the issuer's certificate chain (kept in the wallet)")
	accept.Flags().IntVar(&batch, "batch", 0, "credentials per configuration, each with its own key (default: the issuer's batch size, at most 10)")

	list := &cobra.Command{
		Use:   "list",
		Short: "List the credentials held, with their status from the issuer's status list",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.Flag("output").Value.String()
			if err := checkOutput(out); err != nil {
				return err
			}
			w, err := holder.Open(file, passphrase())
			if err != nil {
				return err
			}
			listed := holder.Client{}.List(cmd.Context(), w)
			if out == "json" {
				if listed == nil {
					listed = []holder.Listed{}
				}
				return printJSON(cmd.OutOrStdout(), listed)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 4, 2, ' ', 0)
			_, _ = fmt.Fprintln(tw, "ID\tFORMAT\tTYPE\tISSUER\tEXPIRES\tSTATUS\tCLAIMS")
			for _, l := range listed {
				_, _ = fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", l.ID, l.Format, l.Type, l.Issuer,
					l.Expires.UTC().Format(time.DateOnly), l.Status, strings.Join(l.Claims, ","))
			}
			return tw.Flush()
		},
	}
	outputFlag(list, "table")

	cmd.AddCommand(initCmd, accept, list, presentCmd(g, &file, passphrase))
	return cmd
}
