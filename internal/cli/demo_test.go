package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vula-eid/vula/internal/app"
	"github.com/vula-eid/vula/internal/idp/idptest"
)

// serving is `vula serve` run in-process on a free port until stop.
type serving struct {
	addr   string
	stdout *syncBuffer
	cancel context.CancelFunc
	done   chan int
}

// serveInProcess starts serve with environ and waits until it is ready.
func serveInProcess(t *testing.T, environ []string) *serving {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &serving{addr: l.Addr().String(), stdout: &syncBuffer{b: &bytes.Buffer{}}, done: make(chan int, 1)}
	l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	ready := make(chan string, 1)
	go func() {
		s.done <- Run(ctx, Env{Args: []string{"serve", "--listen", s.addr}, Environ: environ, Stdout: s.stdout, Stderr: io.Discard,
			Ready: func(a string) { ready <- a }})
	}()
	select {
	case <-ready:
	case code := <-s.done:
		t.Fatalf("serve exited %d", code)
	}
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if code, _ := readiness(t, s.addr); code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("serve not ready")
		}
	}
	t.Cleanup(func() { s.cancel() })
	return s
}

// stop ends serve and waits for it (the software keystore is one process's).
func (s *serving) stop(t *testing.T) {
	t.Helper()
	s.cancel()
	if code := <-s.done; code != 0 {
		t.Fatalf("serve exited %d", code)
	}
}

// TestDemoShow: the first start in dev mode prints the demo citizen's login as a block on stdout;
// `vula demo show` prints the same again, and it logs in at /demo/; later starts print where the
// demo is without the password (issue #17 item 7).
func TestDemoShow(t *testing.T) {
	env := []string{"VULA_DATA_DIR=" + t.TempDir()}
	if code, _, errs := run(t, env, "demo", "show"); code == 0 || !strings.Contains(errs, "no demo") {
		t.Fatalf("demo show before any serve: %d %q", code, errs)
	}
	s := serveInProcess(t, env)
	first := s.stdout.text()
	m := regexp.MustCompile(`(?m)^  Password:\s+(\S+)$`).FindStringSubmatch(first)
	if !strings.Contains(first, "== Vula demo (dev mode)") || m == nil || !strings.Contains(first, "otpauth://totp/") {
		t.Fatalf("first start's stdout: %q", first)
	}
	code, out, errs := run(t, env, "demo", "show", "--output", "json")
	var dc app.DemoCredentials
	if code != 0 || json.Unmarshal([]byte(out), &dc) != nil || dc.Password != m[1] || dc.PersonalNumber != "1000000001" ||
		!strings.Contains(first, dc.OTPAuthURI) || dc.URL != "http://"+s.addr+"/demo/" {
		t.Fatalf("demo show: %d %q %q", code, out, errs)
	}
	if code, out, _ := run(t, env, "demo", "show"); code != 0 || !strings.Contains(out, "Password:        "+dc.Password) {
		t.Fatalf("demo show as text: %q", out)
	}

	// The shown login works at the demo relying party.
	b := idptest.New(t, "http://"+s.addr)
	r := b.Get(dc.URL)
	if r.Status != 200 || !strings.Contains(r.Body, `name="password"`) {
		t.Fatalf("demo login page: %d %s", r.Status, r.URL)
	}
	r.Form.Set("identifier", dc.PersonalNumber)
	r.Form.Set("password", dc.Password)
	r = b.Post("/login", r.Form)
	if strings.Contains(r.Body, `name="decision"`) {
		r.Form.Set("decision", "allow")
		r = b.Post("/consent", r.Form)
	}
	if r.Status != 200 || !strings.Contains(r.Body, "You are logged in") || !strings.Contains(r.Body, "1000000001") {
		t.Fatalf("demo login with the shown password: %d %s\n%s", r.Status, r.URL, r.Body)
	}
	s.stop(t)

	s = serveInProcess(t, env)
	later := s.stdout.text()
	if !strings.Contains(later, "vula demo show") || strings.Contains(later, dc.Password) || strings.Contains(later, "otpauth://") {
		t.Fatalf("a later start's stdout: %q", later)
	}
}
