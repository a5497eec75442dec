package cli

import (
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"go.step.sm/crypto/pemutil"

	"github.com/vula-eid/vula/pkg/tsclient"
)

func timestampCmd(g *globals) *cobra.Command {
	var url, caFile string
	cmd := &cobra.Command{
		Use:   "timestamp FILE",
		Short: "Get an RFC 3161 timestamp over FILE, verify it, and write FILE.tsr",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if url == "" {
				cfg, err := g.load()
				if err != nil {
					return err
				}
				url = strings.TrimRight(cfg.BaseURL, "/") + "/tsa"
			}
			anchors, err := pemutil.ReadCertificateBundle(caFile)
			if err != nil {
				return fmt.Errorf("--ca: %w", err)
			}
			roots := x509.NewCertPool()
			for _, c := range anchors {
				roots.AddCert(c)
			}
			f, err := os.Open(args[0])
			if err != nil {
				return err
			}
			h := sha256.New()
			_, err = io.Copy(h, f)
			_ = f.Close() // read only
			if err != nil {
				return err
			}
			reply, ts, err := (&tsclient.Client{URL: url, Roots: roots}).Timestamp(cmd.Context(), crypto.SHA256, h.Sum(nil))
			if err != nil {
				return err
			}
			out := args[0] + ".tsr"
			if err := os.WriteFile(out, reply, 0o644); err != nil {
				return err
			}
			return say(cmd.OutOrStdout(), "%s: timestamped %s, serial %x, verified; reply in %s\n", args[0], ts.Time.UTC().Format("2006-01-02T15:04:05Z"), ts.SerialNumber, out)
		},
	}
	cmd.Flags().StringVar(&url, "url", "", "the TSA (default <base_url>/tsa)")
	cmd.Flags().StringVar(&caFile, "ca", "", "trust anchors (PEM) for the TSA certificate")
	cmd.MarkFlagRequired("ca")
	return cmd
}
