package e2e

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v3"
	"golang.org/x/oauth2"

	"github.com/vula-eid/vula/internal/auth"
	"github.com/vula-eid/vula/internal/idp/idptest"
	"github.com/vula-eid/vula/internal/testenv"
)

// TestWalletSuite runs test/wallet/wallet.mjs: @openid4vc/openid4vci as the wallet receives a
// PID from the real binary by the pre-authorized code flow (offer from `vula pid offer`), and
// @sd-jwt/sd-jwt-vc and @sd-jwt/jwt-status-list verify the credentials, their disclosures, key
// binding and status; then `vula pid revoke` and the same libraries see them revoked. Vula
// sits behind a TLS proxy: the libraries refuse plain-http issuers by default.
func TestWalletSuite(t *testing.T) {
	t.Parallel()
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
	proxy := startTLSProxy(t, addr, "/pid/token", "/pid/credential", "/pid/nonce")
	issuer, caFile := proxy.URL, proxy.CAFile

	// Two outside issuers for the verifier's negative cases: one under a CA the verifier is
	// configured to trust, one under a CA it does not know.
	trusted, stranger := newOutsideIssuer(t, "Outside"), newOutsideIssuer(t, "Stranger")
	anchors := filepath.Join(work, "anchors.pem")
	os.WriteFile(anchors, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: trusted.ca}), 0o600)
	env := []string{"VULA_DATA_DIR=" + data, "VULA_IDP_DEMO=false", "VULA_BASE_URL=" + issuer, "VULA_WALLET_VERIFIER_TRUST_ANCHORS=" + anchors}
	const number, password = "3344556677", "a long and secret passphrase"
	vula(t, append(env, "CITIZEN_PW="+password), "persons", "create", number, "--given-name", "Drita", "--family-name", "Berisha",
		"--birthdate", "1985-11-02", "--password-env", "CITIZEN_PW")
	// Two relying parties of the verifier.
	rpSecret := make([]string, 2)
	for i, id := range []string{"shop", "other-shop"} {
		var cc struct {
			Secret string `json:"client_secret"`
		}
		if err := json.Unmarshal([]byte(vula(t, env, "clients", "create", id, "--grant-type", "client_credentials", "--scope", "verify",
			"-o", "json")), &cc); err != nil || cc.Secret == "" {
			t.Fatalf("clients create %s: %v %+v", id, err, cc)
		}
		rpSecret[i] = cc.Secret
	}
	var enrolled struct {
		URI string `json:"otpauth_uri"`
	}
	json.Unmarshal([]byte(vula(t, env, "persons", "enroll-totp", number, "-o", "json")), &enrolled)
	otp, _ := url.Parse(enrolled.URI)
	// The wallet app as a public client of the identity provider: PAR and DPoP required.
	const walletClient, walletRedirect = "eudi-wallet", "http://127.0.0.1:9/wallet/callback"
	vula(t, env, "clients", "create", walletClient, "--auth-method", "none", "--redirect-uri", walletRedirect, "--scope", "openid,"+auth.ScopePID,
		"--require-par", "--dpop", "required", "--name", "EUDI wallet")
	srv := startReplicaAt(t, addr, data, env)
	srv.ready(t, http.StatusOK)

	var offer struct {
		URI    string `json:"offer"`
		Page   string `json:"page"`
		TxCode string `json:"tx_code"`
	}
	if err := json.Unmarshal([]byte(vula(t, env, "pid", "offer", number, "--operator", "desk-7", "-o", "json")), &offer); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(offer.URI, "openid-credential-offer://?credential_offer_uri="+url.QueryEscape(issuer+"/pid/credential-offer/")) || len(offer.TxCode) != 6 {
		t.Fatalf("pid offer printed %+v", offer)
	}
	resp, err := proxy.Client.Get(issuer + "/pki/root.crt")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("root certificate: %v %v", err, resp)
	}
	rootDER, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	rootFile := filepath.Join(work, "root.crt")
	os.WriteFile(rootFile, rootDER, 0o600)

	wenv := []string{"NODE_EXTRA_CA_CERTS=" + caFile, "WALLET_ISSUER=" + issuer, "WALLET_OFFER=" + offer.URI, "WALLET_TX=" + offer.TxCode,
		"WALLET_ROOT=" + rootFile, "WALLET_STATE=" + filepath.Join(work, "wallet.json"), "WALLET_NUMBER=" + number,
		"WALLET_GIVEN=Drita", "WALLET_FAMILY=Berisha", "WALLET_BIRTHDATE=1985-11-02",
		"WALLET_RP_ID=shop", "WALLET_RP_SECRET=" + rpSecret[0], "WALLET_RP2_ID=other-shop", "WALLET_RP2_SECRET=" + rpSecret[1],
		"WALLET_OUTSIDE_KEY=" + trusted.key, "WALLET_OUTSIDE_X5C=" + trusted.x5c, "WALLET_STRANGER_KEY=" + stranger.key, "WALLET_STRANGER_X5C=" + stranger.x5c}
	runWalletScript(t, dir, "wallet.mjs", append(wenv, "WALLET_MODE=issue"))
	if t.Failed() {
		t.Logf("server log:\n%s", srv.logs)
		return
	}
	// @openid4vc/openid4vp presents the PIDs to Vula's verifier.
	runWalletScript(t, dir, "present.mjs", append(wenv, "PRESENT_MODE=valid"))
	if t.Failed() {
		t.Logf("server log:\n%s", srv.logs)
		return
	}
	// Beside the running server: the command runs inside it over the control socket.
	if out := vula(t, env, "pid", "revoke", number, "--reason", "lost phone"); !strings.Contains(out, "revoked 5 credential") {
		t.Fatalf("pid revoke: %s", out)
	}
	runWalletScript(t, dir, "wallet.mjs", append(wenv, "WALLET_MODE=revoked"))
	runWalletScript(t, dir, "present.mjs", append(wenv, "PRESENT_MODE=revoked"))

	// The authorization code flow, driven by the same library: it pushes the request (PKCE,
	// DPoP, authorization_details), the citizen logs in (password and one-time code), and the
	// library redeems the code and gets the credential by its credential_identifier.
	cenv := append(wenv, "WALLET_CLIENT="+walletClient, "WALLET_REDIRECT="+walletRedirect, "WALLET_STATE="+filepath.Join(work, "code.json"))
	runWalletScript(t, dir, "wallet.mjs", append(cenv, "WALLET_MODE=code-start"))
	var started struct {
		URL string `json:"url"`
	}
	if b, err := os.ReadFile(filepath.Join(work, "code.json")); err != nil || json.Unmarshal(b, &started) != nil || started.URL == "" {
		t.Fatalf("code-start left no authorization URL: %v", err)
	}
	cb := idptest.New(t, issuer).WithTransport(proxy.Client.Transport).Login(started.URL, walletRedirect, number, password, otp.Query().Get("secret"))
	runWalletScript(t, dir, "wallet.mjs", append(cenv, "WALLET_MODE=code-finish", "WALLET_CALLBACK="+cb.String()))

	proxy.check(t)
	checkServerLog(t, srv.logs.String())
	srv.cmd.Process.Signal(syscall.SIGTERM)
	srv.cmd.Wait()
	// The audit log has the issuance and the revocation, with the claims' names and no values.
	export := vula(t, env, "audit", "export")
	for _, action := range []string{"pid.issue", "pid.revoke", "verifier.request", "verifier.response"} {
		if !strings.Contains(export, action) {
			t.Errorf("the audit export lacks %s", action)
		}
	}
	for _, v := range []string{"Berisha", "1985-11-02", number} {
		if strings.Contains(export, v) {
			t.Errorf("the audit export holds the claim value %q", v)
		}
	}
}

// runWalletScript runs script (wallet.mjs, present.mjs) with env and makes each case it reports
// a subtest.
func runWalletScript(t *testing.T, dir, script string, env []string) {
	t.Helper()
	runNodeSuite(t, dir, script, 4*time.Minute, env)
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
		_, err := os.Stat(filepath.Join(dir, "node_modules", "@openid4vc", "openid4vci"))
		if _, jerr := os.Stat(filepath.Join(dir, "node_modules", "jose")); err == nil && jerr == nil {
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

// TestWalletAuthorizationCode: a wallet registered as a client of Vula's identity provider gets
// the PID scope through the citizen's own login (PAR, PKCE, private_key_jwt) and redeems the
// provider's access token at the credential endpoint. A login asked below the configured level
// of assurance (substantial) steps up to it (the one-time code page).
func TestWalletAuthorizationCode(t *testing.T) {
	t.Parallel()
	vulaBinary(t)
	data := t.TempDir()
	addr := freePort(t)
	issuer := "http://" + addr
	env := []string{"VULA_DATA_DIR=" + data, "VULA_IDP_DEMO=false", "VULA_BASE_URL=" + issuer}
	citizen := &struct {
		officialUser
		lastStep int64
	}{officialUser: officialUser{number: "5566778899", pw: "the citizen's long passphrase", used: map[int64]bool{}}}
	vula(t, append(env, "CITIZEN_PW="+citizen.pw), "persons", "create", citizen.number, "--given-name", "Besa", "--family-name", "Gashi",
		"--birthdate", "2001-02-03", "--password-env", "CITIZEN_PW")
	var enrolled struct {
		URI string `json:"otpauth_uri"`
	}
	json.Unmarshal([]byte(vula(t, env, "persons", "enroll-totp", citizen.number, "-o", "json")), &enrolled)
	u, _ := url.Parse(enrolled.URI)
	citizen.seed = u.Query().Get("secret")
	wallet := newRP(t, env, "wallet-app", "--scope", "openid,"+auth.ScopePID, "--require-par")
	srv := startReplicaAt(t, addr, data, env)
	srv.ready(t, http.StatusOK)

	var meta struct {
		AuthServers []string `json:"authorization_servers"`
	}
	getJSONPlain(t, issuer+"/.well-known/openid-credential-issuer", &meta)
	if len(meta.AuthServers) != 2 || meta.AuthServers[0] != issuer {
		t.Fatalf("authorization_servers %v: want the identity provider first", meta.AuthServers)
	}

	login := func(acr string) string {
		verifier := oauth2.GenerateVerifier()
		push := wallet.assertion(t, issuer)
		for k, v := range map[string]string{"client_id": wallet.id, "response_type": "code", "redirect_uri": wallet.callback,
			"scope": auth.ScopePID, "state": "s-" + verifier[:8], "code_challenge": oauth2.S256ChallengeFromVerifier(verifier),
			"code_challenge_method": "S256", "acr_values": acr} {
			push.Set(k, v)
		}
		code, par := post(t, issuer+"/oauth2/par", push)
		if code != 201 {
			t.Fatalf("PAR: %d %v", code, par)
		}
		authURL := issuer + "/oauth2/auth?client_id=" + wallet.id + "&request_uri=" + url.QueryEscape(par["request_uri"].(string))
		b := idptest.New(t, issuer)
		// Asked at low or not, a login for the PID steps up to wallet.loa: the one-time code.
		for time.Now().Unix()/30 == citizen.lastStep {
			time.Sleep(time.Second) // each code is accepted once
		}
		citizen.lastStep = time.Now().Unix() / 30
		cb := b.Login(authURL, wallet.callback, citizen.number, citizen.pw, citizen.seed)
		tf := wallet.assertion(t, issuer)
		tf.Set("grant_type", "authorization_code")
		tf.Set("code", cb.Query().Get("code"))
		tf.Set("redirect_uri", wallet.callback)
		tf.Set("code_verifier", verifier)
		code, tok := post(t, issuer+"/oauth2/token", tf)
		if code != 200 || !strings.Contains(fmt.Sprint(tok["scope"]), auth.ScopePID) {
			t.Fatalf("code exchange: %d %v", code, tok)
		}
		return tok["access_token"].(string)
	}
	request := func(token string) (int, map[string]any) {
		code, n := post(t, issuer+"/pid/nonce", url.Values{})
		if code != 200 {
			t.Fatalf("nonce: %d %v", code, n)
		}
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		s, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key},
			(&jose.SignerOptions{}).WithType("openid4vci-proof+jwt").WithHeader("jwk", jose.JSONWebKey{Key: key.Public()}))
		claims, _ := json.Marshal(map[string]any{"aud": issuer, "iat": time.Now().Unix(), "nonce": n["c_nonce"]})
		o, _ := s.Sign(claims)
		proof, _ := o.CompactSerialize()
		body, _ := json.Marshal(map[string]any{"credential_configuration_id": "eu.europa.ec.eudi.pid.1.dc+sd-jwt", "proofs": map[string]any{"jwt": []string{proof}}})
		req, _ := http.NewRequest("POST", issuer+"/pid/credential", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}

	if code, out := request(login(auth.LoASubstantial)); code != 200 || len(out["credentials"].([]any)) != 1 {
		t.Fatalf("credential after a substantial login: %d %v", code, out)
	}
	if code, out := request(login(auth.LoALow)); code != 200 {
		t.Fatalf("credential after a login asked at low (stepped up to substantial): %d %v", code, out)
	}
}

func getJSONPlain(t *testing.T, u string, v any) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d", u, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

// outsideIssuer is a credential issuer outside Vula for the verifier's tests: a CA of its own
// and a leaf for signing SD-JWT VCs, handed to present.mjs as a PKCS#8 PEM key and an x5c.
type outsideIssuer struct {
	ca  []byte // DER
	key string // PEM
	x5c string // base64 DER of the leaf
}

func newOutsideIssuer(t *testing.T, name string) outsideIssuer {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name + " Root CA", Country: []string{"XK"}},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leafTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: name + " PID issuer", Country: []string{"XK"}},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), KeyUsage: x509.KeyUsageDigitalSignature}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, key.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	p8, _ := x509.MarshalPKCS8PrivateKey(key)
	return outsideIssuer{ca: caDER, key: string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8})),
		x5c: base64.StdEncoding.EncodeToString(leafDER)}
}
