package cli

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/vula-eid/vula/internal/app"
	"github.com/vula-eid/vula/internal/certs"
	"github.com/vula-eid/vula/internal/config"
	"github.com/vula-eid/vula/internal/store/sqlitekv"
	"github.com/vula-eid/vula/internal/store/sqlstore"
	"github.com/vula-eid/vula/internal/tsa"
)

// statusReport is what `vula status` shows. It is gathered read-only, without the key layer, so
// it runs beside a server on any backend.
type statusReport struct {
	Version   string           `json:"version"`
	Config    statusConfig     `json:"config"`
	Server    statusServer     `json:"server"`
	Durable   statusDurable    `json:"durable_store"`
	Ephemeral statusEphemeral  `json:"ephemeral_store"`
	Keys      statusKeys       `json:"keys"`
	PKI       []statusCert     `json:"pki"`
	TSA       statusTSA        `json:"tsa"`
	Audit     *statusAudit     `json:"audit,omitempty"`
	Counts    map[string]int64 `json:"counts,omitempty"`
}

type statusConfig struct {
	File    string `json:"file,omitempty"`
	Dev     bool   `json:"dev"`
	Listen  string `json:"listen"`
	BaseURL string `json:"base_url"`
	DataDir string `json:"data_dir"`
}

type statusServer struct {
	URL        string            `json:"url"`
	State      string            `json:"state"` // ready, not ready, not running
	Components map[string]string `json:"components,omitempty"`
}

type statusDurable struct {
	DSN           string `json:"dsn"`
	State         string `json:"state"`
	SchemaVersion int64  `json:"schema_version,omitempty"`
}

type statusEphemeral struct {
	Store   string `json:"store"`
	State   string `json:"state"`
	Entries *int64 `json:"entries,omitempty"`
}

type statusKeys struct {
	Backend string `json:"backend"`
	Where   string `json:"where"`
}

type statusCert struct {
	Name     string    `json:"name"`
	Subject  string    `json:"subject"`
	Serial   string    `json:"serial"`
	NotAfter time.Time `json:"not_after"`
	Key      string    `json:"key"`
}

type statusTSA struct {
	RequireSync bool     `json:"require_sync"`
	NTPServers  []string `json:"ntp_servers,omitempty"`
	Clock       string   `json:"clock"`
}

type statusAudit struct {
	Records        int64     `json:"records"`
	HeadSeq        int64     `json:"head_seq"`
	HeadHash       string    `json:"head_hash"`
	HeadTime       time.Time `json:"head_time"`
	CheckpointSeq  int64     `json:"checkpoint_seq,omitempty"`
	CheckpointTime time.Time `json:"checkpoint_time,omitzero"`
}

func statusCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show what runs: version, server, stores, key backend, PKI, TSA clock, audit head, counts",
		Long: "Show what runs: the server's readiness, both stores, the key backend, the CA hierarchy, the TSA's clock,\n" +
			"the audit log's head and the record counts. Read-only: it runs beside a server. Exits 1 when the\n" +
			"durable store does not answer.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.Flag("output").Value.String()
			if out != "text" && out != "json" {
				return fmt.Errorf("--output: want text or json, got %q", out)
			}
			cfg, err := g.load()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			r, err := g.status(ctx, cfg)
			if out == "json" {
				if perr := printJSON(cmd.OutOrStdout(), r); perr != nil {
					return perr
				}
			} else {
				if perr := printStatus(cmd.OutOrStdout(), r); perr != nil {
					return perr
				}
			}
			return err
		},
	}
	cmd.Flags().StringP("output", "o", "text", "text or json")
	return cmd
}

// status gathers the report; the error says the durable store does not answer.
func (g *globals) status(ctx context.Context, cfg config.Config) (statusReport, error) {
	r := statusReport{Version: g.env.Version,
		Config: statusConfig{File: g.configPath, Dev: cfg.Dev, Listen: cfg.Listen, BaseURL: cfg.BaseURL, DataDir: cfg.DataDir},
		Keys:   statusKeys{Backend: cfg.HSM.Backend},
		TSA:    statusTSA{RequireSync: cfg.TSA.RequireSync || !cfg.Dev, NTPServers: cfg.TSA.NTPServers}}
	switch cfg.HSM.Backend {
	case "pkcs11":
		r.Keys.Where = fmt.Sprintf("module %s, token %q", cfg.HSM.PKCS11.Module, cfg.HSM.PKCS11.TokenLabel)
	default:
		r.Keys.Where = "keystore " + cfg.HSM.Software.Dir
	}
	r.TSA.Clock = clockState(cfg)
	r.Ephemeral = ephemeralState(ctx, cfg.Store.Ephemeral)

	var durableErr error
	r.Durable = statusDurable{DSN: app.RedactDSN(cfg.Store.Durable)}
	db, err := openExisting(ctx, cfg.Store.Durable)
	if err == nil {
		defer func() { _ = db.Close() }() // read-only: nothing to lose
		cfg, err = app.ServedConfig(ctx, cfg, db)
	}
	var st sqlstore.Status
	if err == nil {
		st, err = db.Status(ctx)
	}
	if err != nil {
		r.Durable.State = "not answering: " + err.Error()
		durableErr = fmt.Errorf("the durable store does not answer: %w", err)
	} else {
		r.Durable.State = "ok"
		r.Durable.SchemaVersion = st.SchemaVersion
		r.Counts = st.Counts
		for name, c := range st.Hierarchy {
			r.PKI = append(r.PKI, statusCert{Name: name, Subject: c.Subject, Serial: c.Serial, NotAfter: c.NotAfter, Key: c.KeyURI})
		}
		sort.Slice(r.PKI, func(i, j int) bool { return hierarchyRank(r.PKI[i].Name) < hierarchyRank(r.PKI[j].Name) })
		if h := st.AuditHead; h != nil {
			r.Audit = &statusAudit{Records: st.Counts["audit_records"], HeadSeq: h.Seq, HeadHash: hex.EncodeToString(h.Hash), HeadTime: h.Time}
			if c := st.AuditCheckpoint; c != nil {
				r.Audit.CheckpointSeq, r.Audit.CheckpointTime = c.Seq, c.Time
			}
		}
	}
	// The server is asked at the base_url it last ran with (recorded in the durable store).
	r.Server = serverState(ctx, cfg.BaseURL)
	return r, durableErr
}

// openExisting opens the durable store without creating a SQLite file that is not there.
func openExisting(ctx context.Context, dsn string) (*sqlstore.DB, error) {
	if path, ok := sqlitePath(dsn); ok {
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("no database yet at %s (the first vula serve or command makes it)", path)
		}
	}
	return sqlstore.Open(ctx, dsn, newLogger(io.Discard, config.Log{}))
}

// sqlitePath returns the file of a sqlite: DSN.
func sqlitePath(dsn string) (string, bool) {
	path, ok := strings.CutPrefix(dsn, "sqlite:")
	if strings.HasPrefix(path, "///") {
		path = path[2:]
	}
	return path, ok
}

func hierarchyRank(name string) int {
	for i, n := range []string{certs.NameRoot, certs.NamePersonCA, certs.NameSealCA, "ocsp-" + certs.NamePersonCA, "ocsp-" + certs.NameSealCA, certs.NameTSA, certs.NameTSLSigner} {
		if n == name {
			return i
		}
	}
	return 99
}

// clockState is the TSA's view of the clock: the kernel's synchronisation and, when configured,
// one comparison with the NTP servers.
func clockState(cfg config.Config) string {
	c := tsa.NewSystemClock(tsa.ClockConfig{RequireSync: true, NTP: cfg.TSA.NTPServers, MaxOffset: time.Duration(cfg.TSA.NTPMaxOffset),
		Interval: time.Duration(cfg.TSA.NTPInterval)}, newLogger(io.Discard, config.Log{}))
	if len(cfg.TSA.NTPServers) > 0 {
		if err := c.Compare(); err != nil {
			return "not trusted: " + err.Error()
		}
	}
	if err := c.Synced(context.Background()); err != nil {
		return "not synchronised: " + err.Error()
	}
	return "synchronised"
}

// ephemeralState pings the ephemeral store; a SQLite file that does not exist yet is not made.
func ephemeralState(ctx context.Context, url string) statusEphemeral {
	e := statusEphemeral{Store: app.RedactDSN(url)}
	if url == "memory" {
		e.State = "in the server's memory (lost on restart)"
		return e
	}
	if path, ok := sqlitePath(url); ok {
		if _, err := os.Stat(path); err != nil {
			e.State = "no file yet (the first vula serve makes it)"
			return e
		}
		s, err := sqlitekv.Open(ctx, path, time.Now)
		if err != nil {
			e.State = "not answering: " + err.Error()
			return e
		}
		defer func() { _ = s.Close() }() // read-only: nothing to lose
		n, err := s.Count(ctx)
		if err != nil {
			e.State = "not answering: " + err.Error()
			return e
		}
		e.State, e.Entries = "ok", &n
		return e
	}
	s, err := app.OpenEphemeral(ctx, url, nil)
	if err == nil {
		defer func() { _ = s.Close() }() // read-only: nothing to lose
		err = s.Ping(ctx)
	}
	if err != nil {
		e.State = "not answering: " + err.Error()
	} else {
		e.State = "ok"
	}
	return e
}

// serverState asks base's /readyz.
func serverState(ctx context.Context, base string) statusServer {
	s := statusServer{URL: base}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(base, "/")+"/readyz", nil)
	if err != nil {
		s.State = "not running: " + err.Error()
		return s
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		s.State = "not running (" + err.Error() + ")"
		return s
	}
	defer func() { _ = resp.Body.Close() }() // read to the end or abandoned: nothing to report
	var body struct {
		Status     string `json:"status"`
		Components map[string]struct {
			OK    bool   `json:"ok"`
			Error string `json:"error"`
		} `json:"components"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&body); err != nil {
		s.State = fmt.Sprintf("answers %d, not a Vula readiness report", resp.StatusCode)
		return s
	}
	s.State = "not ready"
	if resp.StatusCode == http.StatusOK {
		s.State = "ready"
	}
	for name, c := range body.Components {
		if !c.OK {
			if s.Components == nil {
				s.Components = map[string]string{}
			}
			s.Components[name] = c.Error
		}
	}
	return s
}

func printStatus(w io.Writer, r statusReport) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	line := func(k, format string, args ...any) { fmt.Fprintf(tw, "%s\t"+format+"\n", append([]any{k}, args...)...) }
	mode := "production"
	if r.Config.Dev {
		mode = "dev (the embedded default; dev: false or VULA_DEV=false to leave it)"
	}
	line("version", "%s", r.Version)
	line("mode", "%s", mode)
	if r.Config.File != "" {
		line("config", "%s", r.Config.File)
	}
	line("data dir", "%s", r.Config.DataDir)
	line("server", "%s at %s", r.Server.State, r.Server.URL)
	names := make([]string, 0, len(r.Server.Components))
	for n := range r.Server.Components {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		line("", "%s: %s", n, r.Server.Components[n])
	}
	d := r.Durable.State
	if r.Durable.SchemaVersion > 0 {
		d += fmt.Sprintf(", schema %d", r.Durable.SchemaVersion)
	}
	line("durable store", "%s (%s)", r.Durable.DSN, d)
	e := r.Ephemeral.State
	if r.Ephemeral.Entries != nil {
		e += fmt.Sprintf(", %d live entries", *r.Ephemeral.Entries)
	}
	line("ephemeral store", "%s (%s)", r.Ephemeral.Store, e)
	line("keys", "%s, %s", r.Keys.Backend, r.Keys.Where)
	if len(r.PKI) == 0 {
		line("pki", "no hierarchy yet (the first vula serve or vula pki init makes it)")
	}
	for i, c := range r.PKI {
		k := ""
		if i == 0 {
			k = "pki"
		}
		line(k, "%s\tserial %s\tuntil %s\t%s", c.Name, c.Serial, c.NotAfter.Format(time.DateOnly), c.Subject)
	}
	req := "not required (dev mode)"
	if r.TSA.RequireSync {
		req = "required"
	}
	line("tsa clock", "%s; sync %s", r.TSA.Clock, req)
	if r.Audit == nil {
		line("audit", "empty")
	} else {
		a := r.Audit
		line("audit", "%d records, head %d %s at %s", a.Records, a.HeadSeq, a.HeadHash, a.HeadTime.Format(time.RFC3339))
		if a.CheckpointSeq > 0 {
			line("", "last checkpoint %d at %s", a.CheckpointSeq, a.CheckpointTime.Format(time.RFC3339))
		}
	}
	if len(r.Counts) > 0 {
		var parts []string
		for _, k := range []string{"clients", "persons", "organizations", "certificates", "revoked", "transactions"} {
			parts = append(parts, fmt.Sprintf("%s %d", k, r.Counts[k]))
		}
		line("counts", "%s", strings.Join(parts, ", "))
	}
	return tw.Flush()
}
