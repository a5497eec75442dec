package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vula-eid/vula/internal/testenv"
)

// TestHolderWallet runs `vula wallet`, the reference holder, against the real binary's issuer:
// `vula pid offer` → `vula wallet accept` with the transaction code → `vula wallet list` shows
// the PID as SD-JWT VC and mdoc, valid → `vula pid revoke` → list shows them revoked. And the
// refusals: a wrong transaction code, an issuer whose chain ends at no trust anchor of the
// wallet, a wallet file others may read.
func TestHolderWallet(t *testing.T) {
	t.Parallel()
	vulaBinary(t)
	work := t.TempDir()
	data := filepath.Join(work, "var")
	addr := freePort(t)
	issuer := "http://" + addr
	env := []string{"VULA_DATA_DIR=" + data, "VULA_IDP_DEMO=false", "VULA_BASE_URL=" + issuer}
	const number = "5566778899"
	vula(t, append(env, "CITIZEN_PW=a long and secret passphrase"), "persons", "create", number, "--given-name", "Arben",
		"--family-name", "Gashi", "--birthdate", "1990-04-17", "--password-env", "CITIZEN_PW")
	// A relying party of Vula's verifier.
	var rp struct {
		Secret string `json:"client_secret"`
	}
	if err := json.Unmarshal([]byte(vula(t, env, "clients", "create", "shop", "--grant-type", "client_credentials", "--scope", "verify",
		"-o", "json")), &rp); err != nil || rp.Secret == "" {
		t.Fatalf("clients create: %v %+v", err, rp)
	}
	srv := startReplicaAt(t, addr, data, env)
	srv.ready(t, http.StatusOK)

	resp, err := http.Get(issuer + "/pki/root.crt")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("root certificate: %v %v", err, resp)
	}
	root, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	rootFile := filepath.Join(work, "root.crt")
	os.WriteFile(rootFile, root, 0o600)

	offer := func() (string, string) {
		var o struct {
			URI    string `json:"offer"`
			TxCode string `json:"tx_code"`
		}
		if err := json.Unmarshal([]byte(vula(t, env, "pid", "offer", number, "-o", "json")), &o); err != nil {
			t.Fatal(err)
		}
		return o.URI, o.TxCode
	}
	wenv := []string{"VULA_WALLET_PASSPHRASE=correct horse battery staple"}
	wallet := filepath.Join(work, "wallet.json")
	if out := vula(t, wenv, "wallet", "init", "--file", wallet, "--trust", rootFile); !strings.Contains(out, "encrypted with the passphrase") {
		t.Fatalf("wallet init: %s", out)
	}
	if fi, err := os.Stat(wallet); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the wallet file: %v %v", fi.Mode(), err)
	}
	if _, errb, err := vulaRun(nil, "wallet", "list", "--file", wallet); err == nil || !strings.Contains(errb, "VULA_WALLET_PASSPHRASE") {
		t.Errorf("list without the passphrase: %v %s", err, errb)
	}

	uri, tx := offer()
	wrong := "000000"
	if tx == wrong {
		wrong = "111111"
	}
	t.Run("wrong tx code", func(t *testing.T) {
		_, errb, err := vulaRun(wenv, "wallet", "accept", uri, "--file", wallet, "--tx-code", wrong)
		if err == nil || !strings.Contains(errb, "transaction code") {
			t.Fatalf("accept with a wrong tx code: %v %s", err, errb)
		}
	})
	t.Run("untrusted issuer", func(t *testing.T) {
		other := filepath.Join(work, "other.pem")
		os.WriteFile(other, selfSigned(t), 0o600)
		w2 := filepath.Join(work, "wallet2.json")
		vula(t, nil, "wallet", "init", "--file", w2, "--trust", other)
		uri2, tx2 := offer()
		_, errb, err := vulaRun(nil, "wallet", "accept", uri2, "--file", w2, "--tx-code", tx2)
		if err == nil || !strings.Contains(errb, "trust anchor") {
			t.Fatalf("accept from an untrusted issuer: %v %s", err, errb)
		}
		if out := vula(t, nil, "wallet", "list", "--file", w2, "-o", "json"); strings.TrimSpace(out) != "[]" {
			t.Errorf("a refused credential was kept: %s", out)
		}
	})
	out := vula(t, wenv, "wallet", "accept", uri, "--file", wallet, "--tx-code", tx, "--batch", "2")
	if !strings.Contains(out, "4 credential(s) checked and kept") {
		t.Fatalf("accept: %s", out)
	}
	type listed struct {
		Format string   `json:"format"`
		Type   string   `json:"type"`
		Issuer string   `json:"issuer"`
		Key    string   `json:"key"`
		Claims []string `json:"claims"`
		Status string   `json:"status"`
	}
	list := func() []listed {
		var l []listed
		if err := json.Unmarshal([]byte(vula(t, wenv, "wallet", "list", "--file", wallet, "-o", "json")), &l); err != nil {
			t.Fatal(err)
		}
		return l
	}
	l := list()
	formats := map[string]int{}
	keys := map[string]bool{}
	for _, c := range l {
		formats[c.Format]++
		keys[c.Key] = true
		if c.Status != "valid" || c.Issuer != issuer {
			t.Errorf("after issuance: %+v", c)
		}
		if !slices.Contains(c.Claims, "family_name") || !slices.Contains(c.Claims, "given_name") {
			t.Errorf("claims of %s: %v", c.Format, c.Claims)
		}
	}
	if formats["dc+sd-jwt"] != 2 || formats["mso_mdoc"] != 2 || len(keys) != 4 {
		t.Errorf("credentials %v, %d keys (want 2 SD-JWT VC, 2 mdoc, one key each)", formats, len(keys))
	}
	t.Run("present", func(t *testing.T) {
		for _, tool := range []string{"node", "npm"} {
			if _, err := exec.LookPath(tool); err != nil {
				testenv.Missing(t, tool+" is not installed (test/deps.sh installs it)")
			}
		}
		dir := walletSuiteDir(t)
		certs := verifierCerts(t, work)
		venv := append(certs, "VERIFIER_ROOT="+rootFile)
		t.Run("direct_post, age only", func(t *testing.T) {
			out := runVerifier(t, dir, append(venv, "VERIFIER_MODE=direct_post", "VERIFIER_CLAIMS=age_equal_or_over.18",
				`VERIFIER_EXPECT={"age_equal_or_over":{"18":true}}`), wenv, wallet, "--yes", "--trust", certs[0][len("VERIFIER_CA="):])
			if !strings.Contains(out, "the verifier answered 200") || !strings.Contains(out, "redirect_uri: https://localhost:") {
				t.Errorf("present: %s", out)
			}
		})
		t.Run("direct_post.jwt, names chosen with --disclose", func(t *testing.T) {
			// Asked for three claims, the holder discloses two.
			runVerifier(t, dir, append(venv, "VERIFIER_MODE=direct_post.jwt", "VERIFIER_CLAIMS=family_name,given_name,birthdate",
				`VERIFIER_EXPECT={"family_name":"Gashi","given_name":"Arben"}`), wenv, wallet, "--disclose", "family_name,given_name")
		})
		t.Run("mdoc, direct_post.jwt", func(t *testing.T) {
			runVerifier(t, dir, append(venv, "VERIFIER_FORMAT=mso_mdoc", "VERIFIER_MODE=direct_post.jwt", "VERIFIER_CLAIMS=family_name,age_over_18",
				`VERIFIER_EXPECT={"family_name":"Gashi","age_over_18":true}`), wenv, wallet, "--yes")
		})
	})
	t.Run("present to Vula's verifier", func(t *testing.T) {
		tok := rpToken(t, issuer, "shop", rp.Secret)
		const ns = "eu.europa.ec.eudi.pid.1"
		for _, tc := range []struct {
			format, mode string
			ask          [][]any
			flags        []string
			want         map[string]any
		}{
			{"dc+sd-jwt", "direct_post", [][]any{{"family_name"}, {"birthdate"}}, []string{"--yes"}, map[string]any{"family_name": "Gashi", "birthdate": "1990-04-17"}},
			{"dc+sd-jwt", "direct_post.jwt", [][]any{{"age_equal_or_over", "18"}}, []string{"--disclose", "age_equal_or_over.18"}, map[string]any{"age_equal_or_over.18": true}},
			{"mso_mdoc", "direct_post.jwt", [][]any{{ns, "family_name"}, {ns, "age_over_18"}}, []string{"--yes"},
				map[string]any{ns + ".family_name": "Gashi", ns + ".age_over_18": true}},
			{"mso_mdoc", "direct_post", [][]any{{ns, "birth_date"}}, []string{"--yes"}, map[string]any{ns + ".birth_date": "1990-04-17"}},
		} {
			t.Run(tc.format+" "+tc.mode, func(t *testing.T) {
				claims := []any{}
				for _, p := range tc.ask {
					claims = append(claims, map[string]any{"path": p})
				}
				meta := map[string]any{"vct_values": []string{"urn:eudi:pid:1"}}
				if tc.format == "mso_mdoc" {
					meta = map[string]any{"doctype_value": ns}
				}
				body, _ := json.Marshal(map[string]any{"response_mode": tc.mode, "dcql_query": map[string]any{"credentials": []any{
					map[string]any{"id": "pid", "format": tc.format, "meta": meta, "claims": claims}}}})
				req, _ := http.NewRequest(http.MethodPost, issuer+"/api/v1/presentations", bytes.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+tok)
				req.Header.Set("Content-Type", "application/json")
				var created struct {
					DeepLink  string `json:"deep_link"`
					ResultURI string `json:"result_uri"`
				}
				holderJSON(t, req, http.StatusCreated, &created)
				out := vula(t, wenv, append([]string{"wallet", "present", created.DeepLink, "--file", wallet}, tc.flags...)...)
				if !strings.Contains(out, "the verifier answered 200") {
					t.Errorf("present: %s", out)
				}
				req, _ = http.NewRequest(http.MethodGet, created.ResultURI, nil)
				req.Header.Set("Authorization", "Bearer "+tok)
				var res struct {
					Status      string `json:"status"`
					Reason      string `json:"reason"`
					Credentials []struct {
						Trust      string `json:"trust"`
						Status     string `json:"status"`
						KeyBinding string `json:"key_binding"`
						Claims     []struct {
							Path  []any `json:"path"`
							Value any   `json:"value"`
						} `json:"claims"`
					} `json:"credentials"`
				}
				holderJSON(t, req, http.StatusOK, &res)
				if res.Status != "accepted" || len(res.Credentials) != 1 {
					t.Fatalf("result: %+v", res)
				}
				c := res.Credentials[0]
				if c.Trust != "trusted" || c.Status != "valid" || c.KeyBinding != "ok" {
					t.Errorf("result: %+v", c)
				}
				got := map[string]any{}
				for _, cl := range c.Claims {
					parts := make([]string, len(cl.Path))
					for i, p := range cl.Path {
						parts[i] = fmt.Sprint(p)
					}
					got[strings.Join(parts, ".")] = cl.Value
				}
				if fmt.Sprint(got) != fmt.Sprint(tc.want) {
					t.Errorf("disclosed %v, want only %v", got, tc.want)
				}
			})
		}
	})
	// Also those the untrusting wallet refused: the issuer made them.
	if out := vula(t, env, "pid", "revoke", number, "--reason", "lost phone"); !strings.Contains(out, "revoked ") {
		t.Fatalf("pid revoke: %s", out)
	}
	for _, c := range list() {
		if c.Status != "revoked" {
			t.Errorf("after revocation: %s %s", c.Format, c.Status)
		}
	}
	os.Chmod(wallet, 0o644)
	if _, errb, err := vulaRun(wenv, "wallet", "list", "--file", wallet); err == nil || !strings.Contains(errb, "chmod 600") {
		t.Errorf("a world-readable wallet: %v %s", err, errb)
	}
}

// runVerifier starts test/wallet/verifier.mjs with env, answers its request with `vula wallet
// present` and the flags, and makes each case the verifier reports a subtest. It returns what
// present printed.
func runVerifier(t *testing.T, dir string, env, wenv []string, wallet string, flags ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", filepath.Join(dir, "verifier.mjs"))
	cmd.Dir = dir
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
	defer cmd.Wait()
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var first struct {
		RequestURI string `json:"request_uri"`
	}
	if !sc.Scan() || json.Unmarshal(sc.Bytes(), &first) != nil || first.RequestURI == "" {
		cmd.Process.Kill()
		t.Fatalf("verifier.mjs gave no request: %s\n%s", sc.Text(), stderr.String())
	}
	// The verifier serves TLS with a certificate of its CA: the wallet trusts it for this run.
	wenv = append(wenv, "SSL_CERT_FILE="+envValue(env, "VERIFIER_CA"))
	out, errb, err := vulaRun(wenv, append([]string{"wallet", "present", first.RequestURI, "--file", wallet}, flags...)...)
	if err != nil {
		cmd.Process.Kill()
		t.Fatalf("wallet present: %v\n%s\n%s", err, errb, stderr.String())
	}
	ran := 0
	for sc.Scan() {
		var res struct {
			Case  string `json:"case"`
			OK    bool   `json:"ok"`
			Error string `json:"error"`
		}
		if json.Unmarshal(sc.Bytes(), &res) != nil || res.Case == "" {
			t.Logf("verifier.mjs: %s", sc.Text())
			continue
		}
		ran++
		t.Run(res.Case, func(t *testing.T) {
			if !res.OK {
				t.Error(res.Error)
			}
		})
	}
	if ran < 3 {
		t.Errorf("verifier.mjs reported %d cases\n%s", ran, stderr.String())
	}
	return out
}

// rpToken is a relying party's client_credentials token with scope verify.
func rpToken(t *testing.T, base, id, secret string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/oauth2/token", strings.NewReader("grant_type=client_credentials&scope=verify"))
	req.SetBasicAuth(id, secret)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	holderJSON(t, req, http.StatusOK, &tok)
	return tok.AccessToken
}

// holderJSON sends req and decodes its JSON answer, which must have status want.
func holderJSON(t *testing.T, req *http.Request, want int, v any) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want || json.Unmarshal(b, v) != nil {
		t.Fatalf("%s %s: %d %s", req.Method, req.URL, resp.StatusCode, b)
	}
}

func envValue(env []string, name string) string {
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, name+"="); ok {
			return v
		}
	}
	return ""
}

// verifierCerts makes the relying party's CA and its request-signing certificate (SAN localhost)
// and returns them as verifier.mjs's environment: VERIFIER_CA first.
func verifierCerts(t *testing.T, dir string) []string {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Relying parties' CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leafDER, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(2),
		Subject: pkix.Name{CommonName: "A test relying party"}, DNSNames: []string{"localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature}, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(key)
	files := map[string][]byte{
		"rp-ca.pem":   pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		"rp-cert.pem": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leafDER}),
		"rp-key.pem":  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}),
	}
	for name, b := range files {
		os.WriteFile(filepath.Join(dir, name), b, 0o600)
	}
	return []string{"VERIFIER_CA=" + filepath.Join(dir, "rp-ca.pem"), "VERIFIER_CERT=" + filepath.Join(dir, "rp-cert.pem"),
		"VERIFIER_KEY=" + filepath.Join(dir, "rp-key.pem")}
}

// selfSigned is a CA certificate that has nothing to do with Vula's PKI.
func selfSigned(t *testing.T) []byte {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "someone else's root"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
