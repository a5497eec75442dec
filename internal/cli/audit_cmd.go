package cli

import (
	"context"
	"crypto"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/spf13/cobra"
	"go.step.sm/crypto/pemutil"
	"golang.org/x/mod/sumdb/note"

	"github.com/vula-eid/vula/hsm"
	"github.com/vula-eid/vula/internal/app"
	"github.com/vula-eid/vula/internal/audit"
	"github.com/vula-eid/vula/internal/store/sqlstore"
)

func auditCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "audit", Short: "Verify or export the audit log"}

	var exportFile, pubFile, expectHead, cpFile string
	var expectSeq int64
	verify := &cobra.Command{
		Use:   "verify",
		Short: "Check the hash chain and every signed checkpoint; name the first bad record",
		Long: `Checks the audit log in the configured database, or an export with --file (offline).
Checkpoint signatures are checked with the audit key's public key from the key layer, or from
--public-key (PEM) when verifying offline. The records must match the log's latest signed tree
checkpoint exactly (same number, same Merkle root): a tail rewritten and re-hashed, or cut off,
is named. Offline, --checkpoint gives the checkpoint (GET /audit/checkpoint) to hold an export
to. --expect-seq (a length the log must at least have) and --expect-head (that record's hash)
give a head seen before, from an earlier report, to catch a log cut back to an older checkpoint
(which 'vula audit witness' also catches).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.Flag("output").Value.String()
			if err := checkOutput(out); err != nil {
				return err
			}
			var err error
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
			if cpFile != "" {
				if exportFile == "" {
					return fmt.Errorf("--checkpoint goes with --file (the database has its own)")
				}
				if opts.Checkpoint, err = os.ReadFile(cpFile); err != nil {
					return err
				}
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
			if err := say(cmd.OutOrStdout(), "ok: %d records, %d checkpoints, last checkpoint at %d, %d records after it\nhead %d %s\n",
				rep.Records, rep.Checkpoints, rep.LastCheckpointSeq, rep.Unprotected, rep.Records, rep.Head); err != nil {
				return err
			}
			if rep.TreeSize > 0 {
				return say(cmd.OutOrStdout(), "signed tree checkpoint over all %d records, root %s\n", rep.TreeSize, rep.Root)
			}
			return nil
		},
	}
	verify.Flags().StringVar(&exportFile, "file", "", "verify this export (JSON lines) instead of the database")
	verify.Flags().StringVar(&pubFile, "public-key", "", "PEM public key of the audit key (offline verification)")
	verify.Flags().Int64Var(&expectSeq, "expect-seq", 0, "sequence number of a head seen before: the log must reach it")
	verify.Flags().StringVar(&expectHead, "expect-head", "", "hash (hex) that record must have")
	verify.Flags().StringVar(&cpFile, "checkpoint", "", "with --file: a signed tree checkpoint (GET /audit/checkpoint) the export must match")
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
	key := &cobra.Command{
		Use:   "key",
		Short: "Print the audit keys as signed-note verifier keys, for witnesses",
		Long: `Prints one line per audit key (active or retired) of the key layer:
name+keyid+base64(0x02 || public key), the verifier key that 'vula audit witness --key' takes.
The name is the key's URI, as in the signature lines of the log's checkpoints. Before the first
'vula serve' there is none yet: it is created here, as serve would. With the software backend,
run it while serve is stopped (its keystore is open in one process at a time).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.load()
			if err != nil {
				return err
			}
			m, err := g.openKeys(cmd.Context(), cfg, newLogger(io.Discard, cfg.Log))
			if err != nil {
				return err
			}
			defer func() { _ = m.Close() }() // a key was made at most, and it is stored by then
			if _, err := app.AuditKey(cmd.Context(), m, time.Now()); err != nil {
				return err
			}
			ks, err := m.Keys(cmd.Context())
			if err != nil {
				return err
			}
			for _, k := range ks {
				if k.Purpose != hsm.PurposeAudit || k.State == hsm.StateDestroyed {
					continue
				}
				pub, err := m.PublicKey(cmd.Context(), k.URI)
				if err != nil {
					return err
				}
				vkey, err := audit.VerifierKey(k.URI, pub)
				if err != nil {
					return err
				}
				if err := say(cmd.OutOrStdout(), "%s\n", vkey); err != nil {
					return err
				}
			}
			return nil
		},
	}

	var statePath string
	var vkeys []string
	witness := &cobra.Command{
		Use:   "witness --state FILE --key VKEY URL",
		Short: "Check that the log at URL extends the checkpoint seen before; keep the new one",
		Long: `Fetches URL/audit/checkpoint, checks its signature with the verifier key(s) given
(from 'vula audit key'), and that it extends the checkpoint kept in the state file, by a
consistency proof from URL/audit/proof/consistency. The state file is created on the first run
and replaced only when the new checkpoint is consistent. Exits non-zero on a rewrite, a
truncation, a bad signature or an unreachable log, keeping the old state: what the operator's
own database cannot show, a party outside it can.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			out := cmd.Flag("output").Value.String()
			if err := checkOutput(out); err != nil {
				return err
			}
			if statePath == "" || len(vkeys) == 0 {
				return fmt.Errorf("--state and --key are required")
			}
			var vs []note.Verifier
			for _, k := range vkeys {
				v, err := audit.ParseVerifierKey(k)
				if err != nil {
					return fmt.Errorf("--key: %w", err)
				}
				vs = append(vs, v)
			}
			old, err := audit.ReadWitnessState(statePath)
			if err != nil {
				return err
			}
			c := &http.Client{Timeout: 30 * time.Second}
			next, cp, err := audit.Witness(cmd.Context(), c, args[0], note.VerifierList(vs...), old)
			if err != nil {
				return err
			}
			if err := audit.WriteWitnessState(statePath, next); err != nil {
				return err
			}
			rep := struct {
				Origin string `json:"origin"`
				Size   int64  `json:"size"`
				Root   string `json:"root"`
			}{cp.Origin, cp.Size, base64.StdEncoding.EncodeToString(cp.Root[:])}
			if out == "json" {
				return printJSON(cmd.OutOrStdout(), rep)
			}
			return say(cmd.OutOrStdout(), "ok: %s has %d records, root %s, consistent with what was seen before\n", rep.Origin, rep.Size, rep.Root)
		},
	}
	witness.Flags().StringVar(&statePath, "state", "", "file keeping the last checkpoint seen (created on the first run)")
	witness.Flags().StringArrayVar(&vkeys, "key", nil, "verifier key of the log's audit key (from 'vula audit key'); repeat for several")
	outputFlag(witness, "table")
	cmd.AddCommand(verify, export, key, witness)
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
