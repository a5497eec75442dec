package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
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
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vula-eid/vula/internal/testenv"
)

// TestWalletSuite runs test/wallet/wallet.mjs: @openid4vc/openid4vci as the wallet receives a
// PID from the real binary by the pre-authorized code flow (offer from `vula pid offer`), and
// @sd-jwt/sd-jwt-vc and @sd-jwt/jwt-status-list verify the credentials, their disclosures, key
// binding and status; then `vula pid revoke` and the same libraries see them revoked. Vula
// sits behind a TLS proxy: the libraries refuse plain-http issuers by default.
func TestWalletSuite(t *testing.T) {
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Missing(t, tool+" is not installed (test/deps.sh installs it)")
		}
	}
	dir := walletSuiteDir(t)
	vulaBinary(t)
	work := t.TempDir()
	data := filepath.Join(work, "var")

	addr := freePort(t)
	target, _ := url.Parse("http://" + addr)
	var mu sync.Mutex
	var findings []string
	proxy := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) { r.SetURL(target); r.SetXForwarded() },
		ModifyResponse: func(resp *http.Response) error {
			mu.Lock()
			defer mu.Unlock()
			if resp.StatusCode >= 500 {
				findings = append(findings, fmt.Sprintf("%s %s: %d", resp.Request.Method, resp.Request.URL.Path, resp.StatusCode))
			}
			p := resp.Request.URL.Path
			if (p == "/pid/token" || p == "/pid/credential" || p == "/pid/nonce") && !strings.Contains(resp.Header.Get("Cache-Control"), "no-store") {
				findings = append(findings, p+" without Cache-Control: no-store")
			}
			return nil
		},
	}
	front := httptest.NewUnstartedServer(proxy)
	front.Config.ErrorLog = log.New(io.Discard, "", 0)
	front.StartTLS()
	defer front.Close()
	issuer := front.URL
	caFile := filepath.Join(work, "proxy-ca.pem")
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: front.Certificate().Raw}), 0o600)

	env := []string{"VULA_DATA_DIR=" + data, "VULA_IDP_DEMO=false", "VULA_BASE_URL=" + issuer}
	const number, password = "3344556677", "a long and secret passphrase"
	vula(t, append(env, "CITIZEN_PW="+password), "persons", "create", number, "--given-name", "Drita", "--family-name", "Berisha",
		"--birthdate", "1985-11-02", "--password-env", "CITIZEN_PW")
	srv := startReplicaAt(t, addr, data, env)
	srv.ready(t, http.StatusOK)

	var offer struct {
		URI    string `json:"credential_offer_uri"`
		Page   string `json:"page"`
		TxCode string `json:"tx_code"`
	}
	if err := json.Unmarshal([]byte(vula(t, env, "pid", "offer", number, "--operator", "desk-7", "-o", "json")), &offer); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(offer.URI, "openid-credential-offer://?credential_offer=") || len(offer.TxCode) != 6 {
		t.Fatalf("pid offer printed %+v", offer)
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: front.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs}}}
	resp, err := hc.Get(issuer + "/pki/root.crt")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("root certificate: %v %v", err, resp)
	}
	rootDER, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	rootFile := filepath.Join(work, "root.crt")
	os.WriteFile(rootFile, rootDER, 0o600)

	wenv := []string{"NODE_EXTRA_CA_CERTS=" + caFile, "WALLET_ISSUER=" + issuer, "WALLET_OFFER=" + offer.URI, "WALLET_TX=" + offer.TxCode,
		"WALLET_ROOT=" + rootFile, "WALLET_STATE=" + filepath.Join(work, "wallet.json"), "WALLET_NUMBER=" + number,
		"WALLET_GIVEN=Drita", "WALLET_FAMILY=Berisha", "WALLET_BIRTHDATE=1985-11-02"}
	runWalletScript(t, dir, append(wenv, "WALLET_MODE=issue"))
	if t.Failed() {
		t.Logf("server log:\n%s", srv.logs)
		return
	}
	// The software keystore belongs to one process: the server stops for the operator's command
	// (on PKCS#11 both run at once), and the revocation shows once it is back.
	srv.cmd.Process.Signal(syscall.SIGTERM)
	srv.cmd.Wait()
	logs := srv.logs.String()
	if out := vula(t, env, "pid", "revoke", number, "--reason", "lost phone"); !strings.Contains(out, "revoked 4 credential") {
		t.Fatalf("pid revoke: %s", out)
	}
	srv = startReplicaAt(t, addr, data, env)
	srv.ready(t, http.StatusOK)
	runWalletScript(t, dir, append(wenv, "WALLET_MODE=revoked"))

	mu.Lock()
	defer mu.Unlock()
	if len(findings) > 0 {
		t.Errorf("through the proxy: %v", findings)
	}
	for _, line := range strings.Split(logs+srv.logs.String(), "\n") {
		var rec struct {
			Msg    string `json:"msg"`
			Path   string `json:"path"`
			Status int    `json:"status"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && (rec.Status >= 500 && rec.Path != "/readyz" || strings.Contains(rec.Msg, "panic")) {
			t.Errorf("server log: %s", line)
		}
	}
	srv.cmd.Process.Signal(syscall.SIGTERM)
	srv.cmd.Wait()
	// The audit log has the issuance and the revocation, with the claims' names and no values.
	export := vula(t, env, "audit", "export")
	if !strings.Contains(export, "pid.issue") || !strings.Contains(export, "pid.revoke") {
		t.Error("the audit export lacks pid.issue or pid.revoke")
	}
	for _, v := range []string{"Berisha", "1985-11-02", number} {
		if strings.Contains(export, v) {
			t.Errorf("the audit export holds the claim value %q", v)
		}
	}
}

// runWalletScript runs wallet.mjs with env and makes each case it reports a subtest.
func runWalletScript(t *testing.T, dir string, env []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", filepath.Join(dir, "wallet.mjs"))
	cmd.Dir = dir
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
			t.Logf("wallet.mjs: %s", sc.Text())
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
		t.Errorf("wallet.mjs: %v\n%s", err, stderr.String())
	}
	if ran == 0 {
		t.Fatalf("wallet.mjs reported no case\n%s", stderr.String())
	}
}

var (
	walletOnce sync.Once
	walletErr  error
)

// walletSuiteDir installs the suite's npm packages once (npm ci, from the committed lock file)
// when test/deps.sh has not.
func walletSuiteDir(t testing.TB) string {
	t.Helper()
	dir, _ := filepath.Abs("wallet")
	walletOnce.Do(func() {
		if _, err := os.Stat(filepath.Join(dir, "node_modules", "@openid4vc", "openid4vci")); err == nil {
			return
		}
		cmd := exec.Command("npm", "ci", "--no-audit", "--no-fund")
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			walletErr = fmt.Errorf("npm ci: %v\n%s", err, out)
		}
	})
	if walletErr != nil {
		t.Fatal(walletErr)
	}
	return dir
}
