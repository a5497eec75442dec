package cli

import (
	"context"
	"crypto"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
	"go.step.sm/crypto/pemutil"

	"github.com/vula-eid/vula/internal/audit"
	"github.com/vula-eid/vula/internal/store/sqlstore"
)

func auditCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "audit", Short: "Verify or export the audit log"}

	var exportFile, pubFile, expectHead string
	var expectSeq int64
	verify := &cobra.Command{
		Use:   "verify",
		Short: "Check the hash chain and every signed checkpoint; name the first bad record",
		Long: `Checks the audit log in the configured database, or an export with --file (offline).
Checkpoint signatures are checked with the audit key's public key from the key layer, or from
--public-key (PEM) when verifying offline. --expect-seq (a length the log must at least have)
and --expect-head (that record's hash) give a head seen before, from an earlier report, to catch
a truncated tail.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.Flag("output").Value.String()
			if err := checkOutput(out); err != nil {
				return err
			}
			opts := audit.VerifyOptions{ExpectSeq: expectSeq}
			if expectHead != "" {
				h, err := hex.DecodeString(expectHead)
				if err != nil || len(h) != 32 {
					return fmt.Errorf("--expect-head: want 64 hex digits")
				}
				opts.ExpectHead = h
			}
			if opts.ExpectSeq < 0 || opts.ExpectHead != nil && opts.ExpectSeq == 0 {
				return fmt.Errorf("--expect-head needs --expect-seq (a positive sequence number)")
			}
			keys, closeKeys, err := g.publicKeys(cmd.Context(), pubFile)
			if err != nil {
				return err
			}
			defer closeKeys()
			var rep audit.Report
			if exportFile != "" {
				f, err := os.Open(exportFile)
				if err != nil {
					return err
				}
				defer func() { _ = f.Close() }() // read only
				rep, err = audit.VerifyExport(f, keys, opts)
				if err != nil {
					return err
				}
			} else if err := g.withDB(cmd, func(ctx context.Context, db *sqlstore.DB) error {
				rep, err = audit.Verify(ctx, db, keys, opts)
				return err
			}); err != nil {
				return err
			}
			if out == "json" {
				return printJSON(cmd.OutOrStdout(), rep)
			}
			return say(cmd.OutOrStdout(), "ok: %d records, %d checkpoints, last checkpoint at %d, %d records after it\nhead %d %s\n",
				rep.Records, rep.Checkpoints, rep.LastCheckpointSeq, rep.Unprotected, rep.Records, rep.Head)
		},
	}
	verify.Flags().StringVar(&exportFile, "file", "", "verify this export (JSON lines) instead of the database")
	verify.Flags().StringVar(&pubFile, "public-key", "", "PEM public key of the audit key (offline verification)")
	verify.Flags().Int64Var(&expectSeq, "expect-seq", 0, "sequence number of a head seen before: the log must reach it")
	verify.Flags().StringVar(&expectHead, "expect-head", "", "hash (hex) that record must have")
	outputFlag(verify, "table")

	var outFile string
	export := &cobra.Command{
		Use:   "export",
		Short: "Write the audit log as JSON lines",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			w := cmd.OutOrStdout()
			if outFile != "" {
				f, ferr := os.OpenFile(outFile, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
				if ferr != nil {
					return ferr
				}
				// The export is evidence: it is on disk, or the command fails.
				defer func() {
					if err == nil {
						err = f.Sync()
					}
					err = errors.Join(err, f.Close())
				}()
				w = f
			}
			return g.withDB(cmd, func(ctx context.Context, db *sqlstore.DB) error { return audit.Export(ctx, db, w) })
		},
	}
	export.Flags().StringVarP(&outFile, "out", "f", "", "file to write (default standard output)")
	cmd.AddCommand(verify, export)
	return cmd
}

// publicKeys finds audit public keys in a PEM file, or else among the audit keys of the
// configured key layer.
func (g *globals) publicKeys(ctx context.Context, pemFile string) (audit.PublicKeys, func(), error) {
	if pemFile != "" {
		pub, err := pemutil.Read(pemFile)
		if err != nil {
			return nil, nil, fmt.Errorf("--public-key: %w", err)
		}
		return func(string) (crypto.PublicKey, error) { return pub, nil }, func() {}, nil
	}
	cfg, err := g.load()
	if err != nil {
		return nil, nil, err
	}
	m, err := g.openKeys(ctx, cfg, newLogger(io.Discard, cfg.Log))
	if err != nil {
		return nil, nil, err
	}
	return audit.KeysOf(ctx, m), func() { _ = m.Close() }, nil // only public keys were read
}
