// Package cli is the vula command line: every subcommand, and the wiring of `vula serve`.
// Run is what main calls; tests call it in-process with their own arguments and buffers.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/vula-eid/vula/internal/config"
	"github.com/vula-eid/vula/internal/store/sqlstore"
)

// Env is everything a run of the CLI takes from its process.
type Env struct {
	Args           []string
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	Environ        []string
	Version        string
	// Ready, when set, receives the address serve listens on (tests use port 0).
	Ready func(addr string)
}

type globals struct {
	env        Env
	configPath string
	overrides  config.Overrides
	// server is set when the command runs inside `vula serve`, sent through the control socket.
	server *inServer
}

// Run runs one command line and returns the process exit code.
func Run(ctx context.Context, env Env) int { return runLine(ctx, env, nil) }

// runLine runs one command line, in a server's process when server is set.
func runLine(ctx context.Context, env Env, server *inServer) int {
	g := &globals{env: env, server: server}
	root := &cobra.Command{
		Use:           "vula",
		Short:         "Vula national eID trust services: identity, signing, sealing, timestamping",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetArgs(env.Args)
	root.SetIn(env.Stdin)
	root.SetOut(env.Stdout)
	root.SetErr(env.Stderr)
	pf := root.PersistentFlags()
	pf.StringVar(&g.configPath, "config", "", "YAML configuration file")
	pf.StringVar(&g.overrides.DataDir, "data-dir", "", "state directory (default ./var)")
	pf.StringVar(&g.overrides.Listen, "listen", "", "listen address (default 127.0.0.1:8080)")
	root.AddCommand(serveCmd(g), configCmd(g), keysCmd(g), pkiCmd(g), timestampCmd(g), auditCmd(g), clientsCmd(g), personsCmd(g), idpCmd(g), orgsCmd(g), pidCmd(g), sealCmd(g), renewCmd(g), verifyCmd(g), demoCmd(g), statusCmd(g), backupCmd(g), restoreCmd(g), walletCmd(g), versionCmd(g))
	g.markRemote(root)
	if server != nil {
		// Only the commands that need the server's key layer run inside it: never serve,
		// backup or restore, nor anything that reads the CLI's own files.
		if c, _, err := root.Find(env.Args); err != nil || c.Annotations[annotRemote] != "yes" {
			_, _ = fmt.Fprintf(env.Stderr, "vula: %q does not run through the control socket\n", commandName(env.Args)) // the exit status says it too
			return 2
		}
	}
	if err := root.ExecuteContext(ctx); err != nil {
		var code exitCode
		if errors.As(err, &code) {
			return int(code) // the server wrote why
		}
		_, _ = fmt.Fprintln(env.Stderr, "vula:", err) // nowhere else to report; the exit status says it
		return 1
	}
	return 0
}

// load reads and validates the configuration from the file, the environment and the flags.
func (g *globals) load() (config.Config, error) {
	if g.server != nil {
		return g.server.cfg, nil // the server's own, whatever the CLI's flags said
	}
	cfg, err := config.Load(g.configPath, g.env.Environ, g.overrides)
	if err != nil {
		return cfg, err
	}
	return cfg, cfg.Validate()
}

func (g *globals) lookupEnv(name string) (string, bool) {
	for _, kv := range g.env.Environ {
		if len(kv) > len(name) && kv[:len(name)] == name && kv[len(name)] == '=' {
			return kv[len(name)+1:], true
		}
	}
	return "", false
}

func newLogger(w io.Writer, c config.Log) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Level)) // config.Validate has refused any other level
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

func versionCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return say(cmd.OutOrStdout(), "%s\n", g.env.Version)
		},
	}
}

// outputFlag adds --output to a listing command.
func outputFlag(cmd *cobra.Command, def string) *string {
	return cmd.Flags().StringP("output", "o", def, "output format: json or table")
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func checkOutput(o string) error {
	if o != "json" && o != "table" && o != "yaml" {
		return fmt.Errorf("--output: want json or table, got %q", o)
	}
	return nil
}

// say writes a command's result; a failed write (a closed pipe, a full disk) fails the command,
// so that a script does not take a missing line for success.
func say(w io.Writer, format string, a ...any) error {
	_, err := fmt.Fprintf(w, format, a...)
	return err
}

// withDB runs f with the configured durable store, for commands that work beside a server.
func (g *globals) withDB(cmd *cobra.Command, f func(ctx context.Context, db *sqlstore.DB) error) (err error) {
	cfg, err := g.load()
	if err != nil {
		return err
	}
	db, err := sqlstore.Open(cmd.Context(), cfg.Store.Durable, newLogger(io.Discard, cfg.Log))
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, db.Close()) }()
	return f(cmd.Context(), db)
}
