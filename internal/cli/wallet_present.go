package cli

import (
	"bufio"
	"crypto/x509"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/vula-eid/vula/internal/holder"
)

// presentCmd is `vula wallet present`: answer an OpenID4VP request with chosen disclosures.
func presentCmd(g *globals, file *string, passphrase func() string) *cobra.Command {
	var trustFiles, disclose []string
	var yes bool
	cmd := &cobra.Command{
		Use:   "present REQUEST_URI",
		Short: "Answer a verifier's OpenID4VP request (openid4vp://...) with the claims you choose",
		Long: "Answer a verifier's OpenID4VP 1.0 request: fetch its signed request object, check it against\n" +
			"the client_id (x509_san_dns or x509_hash; and the chain to --trust when given), read the DCQL\n" +
			"query, pick the matching credentials and show what is asked. Only the asked claims you agree to\n" +
			"are disclosed: all of them with --yes, those named with --disclose (dotted paths, e.g.\n" +
			"age_equal_or_over.18), or as you answer the prompt. The answer is bound to the verifier and its\n" +
			"nonce (a key-binding JWT, or an mdoc device signature) and posted to its response_uri\n" +
			"(direct_post, or encrypted with direct_post.jwt). Prints the verifier's answer.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			w, err := holder.Open(*file, passphrase())
			if err != nil {
				return err
			}
			var trust []*x509.Certificate
			for _, f := range trustFiles {
				b, err := os.ReadFile(f)
				if err != nil {
					return fmt.Errorf("--trust: %w", err)
				}
				cs, err := holder.ParseCertificates(b)
				if err != nil {
					return fmt.Errorf("--trust %s: %w", f, err)
				}
				trust = append(trust, cs...)
			}
			c := holder.Client{}
			r, err := c.ParseRequestURI(cmd.Context(), args[0], trust)
			if err != nil {
				return err
			}
			matches, err := c.Match(cmd.Context(), r, w)
			if err != nil {
				return err
			}
			errw := cmd.ErrOrStderr()
			trusted := "its certificate is not checked against a trust anchor (give --trust)"
			if r.Trusted {
				trusted = "its certificate chains to --trust"
			}
			if _, err := fmt.Fprintf(errw, "%s (%s; %s) asks for:\n", r.ClientID, r.Verifier, trusted); err != nil {
				return err
			}
			in := bufio.NewReader(cmd.InOrStdin())
			chosen := make([][][]any, len(matches))
			for i, m := range matches {
				names := m.ClaimNames()
				_, _ = fmt.Fprintf(errw, "  %s: %s from %s: %s\n", m.QueryID, m.Credential.Type, m.Credential.Issuer, strings.Join(names, ", "))
				for j, p := range m.Claims {
					switch {
					case len(disclose) > 0:
						if slices.Contains(disclose, names[j]) {
							chosen[i] = append(chosen[i], p)
						}
					case yes:
						chosen[i] = append(chosen[i], p)
					}
				}
			}
			if len(disclose) == 0 && !yes {
				_, _ = fmt.Fprint(errw, "Disclose these claims? [y/N] ")
				line, _ := in.ReadString('\n') // no answer is a no
				if a := strings.ToLower(strings.TrimSpace(line)); a != "y" && a != "yes" {
					return holder.ErrDeclined
				}
				for i, m := range matches {
					chosen[i] = m.Claims
				}
			}
			for i, m := range matches {
				var shown []string
				for _, p := range chosen[i] {
					shown = append(shown, holderPathName(p))
				}
				_, _ = fmt.Fprintf(errw, "  disclosing to %s from %s: %s\n", r.ClientID, m.QueryID, strings.Join(shown, ", "))
			}
			resp, err := c.Present(cmd.Context(), w, r, matches, chosen)
			if err != nil {
				return err
			}
			if err := say(cmd.OutOrStdout(), "the verifier answered %d %s\n", resp.Status, resp.Body); err != nil {
				return err
			}
			if resp.RedirectURI != "" {
				return say(cmd.OutOrStdout(), "redirect_uri: %s\n", resp.RedirectURI)
			}
			return nil
		},
	}
	cmd.Flags().StringSliceVar(&trustFiles, "trust", nil, "trust anchor(s) the verifier's certificate must chain to (PEM or DER)")
	cmd.Flags().StringSliceVar(&disclose, "disclose", nil, "disclose only these of the asked claims (dotted paths)")
	cmd.Flags().BoolVar(&yes, "yes", false, "disclose every asked claim without asking")
	return cmd
}

func holderPathName(p []any) string { return holder.Match{Claims: [][]any{p}}.ClaimNames()[0] }
