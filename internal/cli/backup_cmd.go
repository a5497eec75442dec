package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/vula-eid/vula/internal/audit"
	"github.com/vula-eid/vula/internal/backup"
	"github.com/vula-eid/vula/internal/config"
	"github.com/vula-eid/vula/internal/store/sqlstore"
)

// backupLayout is where cfg keeps the state an archive holds, and notes on what it does not.
func backupLayout(cfg config.Config) (backup.Layout, []string) {
	var l backup.Layout
	var notes []string
	if path, ok := strings.CutPrefix(cfg.Store.Durable, "sqlite:"); ok {
		if strings.HasPrefix(path, "///") {
			path = path[2:]
		}
		l.SQLite = path
	} else {
		notes = append(notes, "store.durable is PostgreSQL: back it up with pg_dump (pg_dump -Fc), restore with pg_restore into an empty database")
	}
	if cfg.HSM.Backend == "software" {
		l.KeystoreDir = cfg.HSM.Software.Dir
		l.KeyFile = cfg.HSM.Software.KeyFile
		if l.KeyFile == "" {
			notes = append(notes, "the software keystore is sealed under a passphrase, which is not in the archive: keep it apart")
		}
	} else {
		notes = append(notes, fmt.Sprintf("the keys are in the PKCS#11 token %q: back it up with the HSM vendor's tools (SoftHSM2: its token directory, while no process writes it)",
			cfg.HSM.PKCS11.TokenLabel))
	}
	l.SeedKeyFile = cfg.IdP.SeedKeyFile
	notes = append(notes, "the ephemeral store (sessions, codes, tokens' state) is not in the archive: after a restore everyone logs in again")
	return l, notes
}

func backupCmd(g *globals) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "backup --output FILE",
		Short: "Write a consistent copy of the state (database, keystore, key files) while serve runs",
		Long: `Writes one archive (tar.gz, owner-only) of the embedded default's state: a consistent
snapshot of the durable SQLite database (SQLite's VACUUM INTO, beside a running server), then the
software keystore (sealed keys), its master key file and idp.seed_key_file. The archive unseals
every key: keep it as safe as the data directory. What is not in files here is named on standard
error: a PostgreSQL database (pg_dump), a PKCS#11 token (the vendor's backup). 'vula restore'
writes it back into an empty data directory.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			if output == "" {
				return errors.New("--output: name the archive to write")
			}
			cfg, err := g.load()
			if err != nil {
				return err
			}
			l, notes := backupLayout(cfg)
			f, err := os.OpenFile(output, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				return err
			}
			defer func() {
				if err == nil {
					err = f.Sync()
				}
				err = errors.Join(err, f.Close())
				if err != nil {
					_ = os.Remove(output) // a part of an archive is no backup
				}
			}()
			m, err := backup.Write(cmd.Context(), f, l, filepath.Dir(output), g.env.Version, time.Now(), notes)
			if err != nil {
				return err
			}
			for _, n := range m.Notes {
				if _, err := fmt.Fprintln(cmd.ErrOrStderr(), "note:", n); err != nil {
					return err
				}
			}
			var size int64
			for _, f := range m.Files {
				size += f.Size
			}
			return say(cmd.OutOrStdout(), "wrote %s: %d files, %d bytes before compression\n", output, len(m.Files), size)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "archive to write (must not exist)")
	return cmd
}

func restoreCmd(g *globals) *cobra.Command {
	var input string
	cmd := &cobra.Command{
		Use:   "restore --input FILE",
		Short: "Restore a backup into an empty data directory, then verify its audit log",
		Long: `Writes the archive of 'vula backup' into the configured places (data_dir, or the
paths the configuration gives) and refuses a data directory that is not empty and any file that
exists. Then it verifies the restored audit log as 'vula audit verify' does. Records written
after the backup are not in it: a witness that saw them reports the log as cut back, rightly.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if input == "" {
				return errors.New("--input: name the archive to restore")
			}
			cfg, err := g.load()
			if err != nil {
				return err
			}
			if err := emptyDir(cfg.DataDir); err != nil {
				return err
			}
			f, err := os.Open(input)
			if err != nil {
				return err
			}
			defer func() { _ = f.Close() }() // read only
			if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
				return err
			}
			l, _ := backupLayout(cfg)
			m, err := backup.Restore(f, l)
			if err != nil {
				return err
			}
			if err := say(cmd.OutOrStdout(), "restored %d files into %s (backup of %s, vula %s)\n", len(m.Files), cfg.DataDir,
				m.Created.Format(time.RFC3339), m.Version); err != nil {
				return err
			}
			for _, n := range m.Notes {
				if _, err := fmt.Fprintln(cmd.ErrOrStderr(), "note:", n); err != nil {
					return err
				}
			}
			rep, err := g.verifyAudit(cmd.Context(), cfg)
			if err != nil {
				return fmt.Errorf("the restored audit log does not verify: %w", err)
			}
			return say(cmd.OutOrStdout(), "audit log ok: %d records, signed tree checkpoint over %d\n", rep.Records, rep.TreeSize)
		},
	}
	cmd.Flags().StringVarP(&input, "input", "i", "", "archive written by vula backup")
	return cmd
}

// emptyDir refuses a directory that exists with anything in it.
func emptyDir(dir string) error {
	d, err := os.Open(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer func() { _ = d.Close() }() // read only
	names, err := d.Readdirnames(1)
	if len(names) > 0 {
		return fmt.Errorf("data_dir %s is not empty: restore only into an empty one", dir)
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

// verifyAudit checks the audit log of cfg's durable store with the key layer's audit keys.
func (g *globals) verifyAudit(ctx context.Context, cfg config.Config) (audit.Report, error) {
	m, err := g.openKeys(ctx, cfg, newLogger(io.Discard, cfg.Log))
	if err != nil {
		return audit.Report{}, err
	}
	defer func() { _ = m.Close() }() // only public keys were read
	db, err := sqlstore.Open(ctx, cfg.Store.Durable, newLogger(io.Discard, cfg.Log))
	if err != nil {
		return audit.Report{}, err
	}
	defer func() { _ = db.Close() }() // only read
	return audit.Verify(ctx, db, audit.KeysOf(ctx, m), audit.VerifyOptions{})
}
