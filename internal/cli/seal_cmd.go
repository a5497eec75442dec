package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/spf13/cobra"
	"golang.org/x/oauth2/clientcredentials"
)

// sealCmd seals a folder through the sealing API, as an institution's system would: a
// client_credentials token with the seal scope, one request a document, a few at a time.
// An output is written under a temporary name and renamed when complete, so an interrupted run
// can be started again: documents whose output exists are not sent again, and none is sealed
// twice.
func sealCmd(g *globals) *cobra.Command {
	var o struct {
		out, url, clientID, secretFile, match string
		format, level, packaging, reason, loc string
		page, rect, text                      string
		parallel                              int
	}
	cmd := &cobra.Command{
		Use:   "seal DIR --out DIR",
		Short: "Seal every document of a folder through the sealing API (resumable)",
		Long: "Seal every document of a folder through the sealing API, as a client bound to an institution\n" +
			"(vula clients create ... --grant-type client_credentials --scope seal --organization ORG).\n" +
			"The client secret comes from --client-secret-file or VULA_CLIENT_SECRET. Outputs keep the\n" +
			"folder's layout; a run that was interrupted skips what is already sealed.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.out == "" {
				return errors.New("--out is required")
			}
			secret, base, err := g.sealingClient(o.clientID, o.secretFile, o.url)
			if err != nil {
				return err
			}
			q := url.Values{}
			for k, v := range map[string]string{"format": o.format, "level": o.level, "packaging": o.packaging, "reason": o.reason,
				"location": o.loc, "page": o.page, "rect": o.rect, "text": o.text} {
				if v != "" {
					q.Set(k, v)
				}
			}
			if o.match == "" {
				o.match = map[string]string{"": "*.pdf", "pades": "*.pdf", "xades": "*.xml"}[strings.ToLower(o.format)]
			}
			cc := clientcredentials.Config{ClientID: o.clientID, ClientSecret: secret, TokenURL: base + "/oauth2/token", Scopes: []string{"seal"}}
			s := &folderSealer{client: cc.Client(cmd.Context()), endpoint: base + "/api/v1/seal", query: q,
				in: args[0], out: o.out, match: o.match, ext: outputExt(o.format, o.packaging), progress: cmd.ErrOrStderr()}
			sum, err := s.run(cmd.Context(), max(1, o.parallel))
			if err != nil {
				return err
			}
			if err := say(cmd.OutOrStdout(), "sealed %d, already sealed %d, failed %d\n", sum.sealed, sum.skipped, len(sum.failed)); err != nil {
				return err
			}
			for _, f := range sum.failed {
				if err := say(cmd.OutOrStdout(), "  %s: %s\n", f.name, f.err); err != nil {
					return err
				}
			}
			if len(sum.failed) > 0 {
				return fmt.Errorf("%d documents not sealed", len(sum.failed))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.out, "out", "", "folder for the sealed documents (made if missing)")
	f.StringVar(&o.url, "url", "", "Vula's base URL (default base_url of the configuration)")
	f.StringVar(&o.clientID, "client-id", "", "the sealing client")
	f.StringVar(&o.secretFile, "client-secret-file", "", "file holding the client secret (else VULA_CLIENT_SECRET)")
	f.StringVar(&o.match, "match", "", "which files to seal, a glob on the name (default *.pdf for pades, *.xml for xades, * otherwise)")
	f.StringVar(&o.format, "format", "pades", "pades, xades or cades")
	f.StringVar(&o.level, "level", "", "B-B, B-T, B-LT or B-LTA (default B-LT)")
	f.StringVar(&o.packaging, "packaging", "", "xades: enveloped (default), enveloping or detached")
	f.StringVar(&o.reason, "reason", "", "pades: the reason in the signature")
	f.StringVar(&o.loc, "location", "", "pades: the location in the signature")
	f.StringVar(&o.page, "page", "", "pades: a visible seal on this page")
	f.StringVar(&o.rect, "rect", "", "pades: the visible seal's rectangle llx,lly,urx,ury in points")
	f.StringVar(&o.text, "text", "", "pades: the visible seal's text (default: signer, date, reason)")
	f.IntVar(&o.parallel, "parallel", 4, "documents in flight at once")
	return cmd
}

// outputExt is what the output's name gets after the input's: nothing for PAdES and enveloped
// or enveloping XAdES (the document itself, signed), the signature's ending for detached ones.
func outputExt(format, packaging string) string {
	switch strings.ToLower(format) {
	case "cades":
		return ".p7s"
	case "xades":
		if strings.ToLower(packaging) == "detached" {
			return ".xades.xml"
		}
	}
	return ""
}

type folderSealer struct {
	client         *http.Client
	endpoint       string
	query          url.Values
	in, out, match string
	ext            string
	progress       io.Writer
}

type sealSummary struct {
	sealed, skipped int
	failed          []sealFailure
}

type sealFailure struct{ name, err string }

func (s *folderSealer) run(ctx context.Context, parallel int) (sealSummary, error) {
	var names []string
	err := filepath.WalkDir(s.in, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !d.Type().IsRegular() || strings.HasPrefix(d.Name(), ".") {
			return nil
		}
		if ok, _ := path.Match(s.match, d.Name()); s.match != "" && s.match != "*" && !ok {
			return nil
		}
		rel, err := filepath.Rel(s.in, p)
		if err != nil {
			return err
		}
		names = append(names, rel)
		return nil
	})
	if err != nil {
		return sealSummary{}, err
	}
	sort.Strings(names)
	var sum sealSummary
	var todo []string
	for _, n := range names {
		if _, err := os.Stat(filepath.Join(s.out, n+s.ext)); err == nil {
			sum.skipped++
			continue
		}
		todo = append(todo, n)
	}
	var mu sync.Mutex
	done := 0
	s.report(done, len(todo), sum)
	work := make(chan string)
	var wg sync.WaitGroup
	for range parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range work {
				err := s.sealOne(ctx, n)
				mu.Lock()
				done++
				if err != nil {
					sum.failed = append(sum.failed, sealFailure{n, err.Error()})
				} else {
					sum.sealed++
				}
				s.report(done, len(todo), sum)
				mu.Unlock()
			}
		}()
	}
	for _, n := range todo {
		if ctx.Err() != nil {
			break
		}
		work <- n
	}
	close(work)
	wg.Wait()
	_, _ = fmt.Fprintln(s.progress) // progress only: the summary is what the command reports
	sort.Slice(sum.failed, func(i, j int) bool { return sum.failed[i].name < sum.failed[j].name })
	return sum, ctx.Err()
}

// report draws the progress bar on one line.
func (s *folderSealer) report(done, total int, sum sealSummary) {
	const width = 30
	filled := width
	if total > 0 {
		filled = done * width / total
	}
	// Progress only: a terminal that is gone must not stop the sealing.
	_, _ = fmt.Fprintf(s.progress, "\r[%s%s] %d/%d  sealed %d  failed %d  already sealed %d", strings.Repeat("#", filled),
		strings.Repeat(".", width-filled), done, total, sum.sealed, len(sum.failed), sum.skipped)
}

// sealOne sends one document and writes its seal atomically.
func (s *folderSealer) sealOne(ctx context.Context, name string) error {
	f, err := os.Open(filepath.Join(s.in, name))
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }() // read only
	st, err := f.Stat()
	if err != nil {
		return err
	}
	q := url.Values{}
	for k, v := range s.query {
		q[k] = v
	}
	q.Set("name", filepath.Base(name))
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.endpoint+"?"+q.Encode(), f)
	if err != nil {
		return err
	}
	req.ContentLength = st.Size()
	ct := mime.TypeByExtension(filepath.Ext(name))
	if ct == "" {
		ct = "application/octet-stream"
	}
	req.Header.Set("Content-Type", ct)
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }() // read only
	if resp.StatusCode != http.StatusOK {
		// The status is the error; a problem document that does not decode only loses the detail.
		var p struct{ Title, Detail string }
		_ = json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&p)
		if p.Detail == "" {
			p.Detail = p.Title
		}
		return fmt.Errorf("%d %s", resp.StatusCode, p.Detail)
	}
	dst := filepath.Join(s.out, name+s.ext)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".partial-*")
	if err != nil {
		return err
	}
	// After the rename there is nothing to remove; before it, the copy's error is the one to report.
	defer func() { _ = os.Remove(tmp.Name()) }()
	if _, err := io.Copy(tmp, resp.Body); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), dst)
}

// sealingClient is what vula seal and vula renew need to call the sealing API as a client: the
// client's secret (--client-secret-file, else VULA_CLIENT_SECRET) and the platform's base URL
// (--url, else the configured base_url).
func (g *globals) sealingClient(clientID, secretFile, rawURL string) (secret, base string, err error) {
	secret, ok := g.lookupEnv("VULA_CLIENT_SECRET")
	if secretFile != "" {
		b, err := os.ReadFile(secretFile)
		if err != nil {
			return "", "", fmt.Errorf("--client-secret-file: %w", err)
		}
		secret, ok = strings.TrimSpace(string(b)), true
	}
	if clientID == "" || !ok || secret == "" {
		return "", "", errors.New("--client-id and a secret (--client-secret-file or VULA_CLIENT_SECRET) are required")
	}
	base = strings.TrimRight(rawURL, "/")
	if base == "" {
		cfg, err := g.load()
		if err != nil {
			return "", "", err
		}
		base = strings.TrimRight(cfg.BaseURL, "/")
	}
	return secret, base, nil
}
