package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// The harness the end-to-end tests share: a TLS reverse proxy in front of the binary, the
// runner of a node suite, the server log's check, and headless Chromium.

// tlsProxy is a TLS reverse proxy in front of the server at addr (outside libraries refuse
// plain-http issuers by default). It notes every 5xx it passes, and every answer of its
// noStore paths without Cache-Control: no-store.
type tlsProxy struct {
	// URL is the proxy's https origin: the server's base URL.
	URL string
	// CAFile is the proxy's certificate (PEM), for NODE_EXTRA_CA_CERTS.
	CAFile string
	// Client trusts the proxy's certificate.
	Client *http.Client

	mu       sync.Mutex
	findings []string
}

func startTLSProxy(t *testing.T, addr string, noStore ...string) *tlsProxy {
	t.Helper()
	target, _ := url.Parse("http://" + addr)
	p := &tlsProxy{}
	front := httptest.NewUnstartedServer(&httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) { r.SetURL(target); r.SetXForwarded() },
		ModifyResponse: func(resp *http.Response) error {
			p.mu.Lock()
			defer p.mu.Unlock()
			path := resp.Request.URL.Path
			if resp.StatusCode >= 500 {
				p.findings = append(p.findings, fmt.Sprintf("%s %s: %d", resp.Request.Method, path, resp.StatusCode))
			}
			if slices.Contains(noStore, path) && !strings.Contains(resp.Header.Get("Cache-Control"), "no-store") {
				p.findings = append(p.findings, path+" without Cache-Control: no-store")
			}
			return nil
		},
	})
	// Quiet: Chromium drops its first handshake with the test's certificate before it is told to
	// ignore certificate errors. A handshake a client failed fails its case, so nothing is lost.
	front.Config.ErrorLog = log.New(io.Discard, "", 0)
	front.StartTLS()
	t.Cleanup(front.Close)
	p.URL, p.Client = front.URL, front.Client()
	p.CAFile = filepath.Join(t.TempDir(), "proxy-ca.pem")
	if err := os.WriteFile(p.CAFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: front.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// check fails t with what the proxy noted.
func (p *tlsProxy) check(t *testing.T) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.findings) > 0 {
		t.Errorf("through the proxy: %v", p.findings)
	}
}

// checkServerLog fails t for each 5xx (but /readyz's, which is 503 until the server is ready)
// and each panic in a server's log.
func checkServerLog(t *testing.T, logs string) {
	t.Helper()
	for _, line := range strings.Split(logs, "\n") {
		var rec struct {
			Msg    string `json:"msg"`
			Path   string `json:"path"`
			Status int    `json:"status"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && (rec.Status >= 500 && rec.Path != "/readyz" || strings.Contains(rec.Msg, "panic")) {
			t.Errorf("server log: %s", line)
		}
		if strings.HasPrefix(line, "panic:") {
			t.Errorf("server panicked:\n%s", logs)
		}
	}
}

// runNodeSuite runs script (in dir) with env added to the test's, within timeout, and makes
// each case it reports a subtest: one JSON line per case, {"case", "ok", "error", "ms"}. It
// returns the script's stderr.
func runNodeSuite(t *testing.T, dir, script string, timeout time.Duration, env []string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", filepath.Join(dir, script))
	cmd.Dir = dir
	// node and any browser it starts in one process group, ended together at the deadline.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ran := 0
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var res struct {
			Case  string `json:"case"`
			OK    bool   `json:"ok"`
			Error string `json:"error"`
			MS    int    `json:"ms"`
		}
		if err := json.Unmarshal(sc.Bytes(), &res); err != nil || res.Case == "" {
			t.Logf("%s: %s", script, sc.Text())
			continue
		}
		ran++
		t.Run(res.Case, func(t *testing.T) {
			if !res.OK {
				t.Errorf("%s", res.Error)
			}
			t.Logf("%d ms", res.MS)
		})
	}
	if err := cmd.Wait(); err != nil && !t.Failed() {
		t.Errorf("%s: %v\n%s", script, err, stderr.String())
	}
	if ran == 0 {
		t.Fatalf("%s reported no case\n%s", script, stderr.String())
	}
	return stderr.String()
}

// headlessChromium is a headless Chromium for the test, ended with it. Each allocator has a profile
// of its own (chromedp makes a temporary user data directory), so tests do not share one.
func headlessChromium(t *testing.T) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium is needed (test/deps.sh installs it): %v", err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox,
		chromedp.WindowSize(1100, 900), chromedp.Flag("lang", "en-US"))
	alloc, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	return alloc
}

// tab is one browser of alloc's, its steps bounded, a failure reported with where the
// browser was and srv's log.
type tab struct {
	t   *testing.T
	ctx context.Context
	srv *replica
}

// newTab opens a browser and runs setup (a virtual authenticator) first: the first action
// starts the browser and must not carry a deadline, which would end the browser with it.
func newTab(t *testing.T, alloc context.Context, srv *replica, setup ...chromedp.Action[chromedp.Void]) *tab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx, setup...); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return &tab{t: t, ctx: ctx, srv: srv}
}

// stepTimeout bounds one step of a tab: long enough for a loaded machine running tests in
// parallel, short enough that a page that never comes fails the test rather than its timeout.
const stepTimeout = time.Minute

func (b *tab) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		lctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
		defer cancel()
		loc, _ := chromedp.Run(lctx, chromedp.Location())
		b.t.Fatalf("%s (at %s): %v\n%s", what, loc, err, b.srv.logs)
	}
}

// text is the text of the first element sel selects, trimmed.
func (b *tab) text(sel string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		b.t.Fatalf("text of %s: %v", sel, err)
	}
	return strings.TrimSpace(v)
}

// count is how many elements sel selects now.
func (b *tab) count(sel string) int {
	b.t.Helper()
	n, _ := chromedp.Run(b.ctx, chromedp.Evaluate[int](`document.querySelectorAll(`+jsString(sel)+`).length`))
	return n
}

func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
