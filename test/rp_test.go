package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v3"

	"github.com/vula-eid/vula/internal/testenv"
)

// TestRelyingPartySuite runs test/rp/rp.mjs: openid-client, a certified relying-party library,
// with its defaults, and Chromium (driven by playwright-core) logging a citizen in, against the
// real binary behind a TLS reverse proxy (openid-client refuses plain-http issuers by default).
// Each case of the script is a subtest here; the proxy and the server's log show no 5xx and no
// panic over the whole suite.
func TestRelyingPartySuite(t *testing.T) {
	t.Parallel()
	for _, tool := range []string{"node", "npm", "chromium"} {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Missing(t, tool+" is not installed (test/deps.sh installs it)")
		}
	}
	chromium, _ := exec.LookPath("chromium")
	dir := rpSuiteDir(t)
	vulaBinary(t)
	work := t.TempDir()
	data := filepath.Join(work, "var")
	env := []string{"VULA_DATA_DIR=" + data, "VULA_IDP_DEMO=false"}

	// The relying party's redirect URI: a callback server of the script's, on loopback.
	callback := "http://" + freePort(t) + "/cb"
	const number, password = "4455667788", "a long and secret passphrase"
	vula(t, append(env, "CITIZEN_PW="+password), "persons", "create", number, "--given-name", "Arta", "--family-name", "Krasniqi",
		"--birthdate", "1990-04-12", "--password-env", "CITIZEN_PW")
	common := []string{"--redirect-uri", callback, "--post-logout-redirect-uri", strings.TrimSuffix(callback, "/cb") + "/bye",
		"--scope", "openid,profile,personal_number,offline_access", "--name", "Relying party suite"}
	vula(t, env, append([]string{"clients", "create", "rp-public", "--auth-method", "none"}, common...)...)
	vula(t, env, append([]string{"clients", "create", "rp-rs256", "--auth-method", "none", "--id-token-alg", "RS256"}, common...)...)
	vula(t, env, append([]string{"clients", "create", "rp-pairwise", "--auth-method", "none", "--sector", "health.example"}, common...)...)
	// client_secret_basic clients: a relying party, a resource server that may introspect other
	// clients' tokens, and a service calling Vula's APIs with its own tokens.
	secrets := map[string]string{}
	for id, args := range map[string][]string{"rp-basic": common, "rp-resource": append([]string{"--introspection"}, common...),
		"rp-service": {"--grant-type", "client_credentials", "--scope", "seal,admin"}} {
		var created struct {
			Secret string `json:"client_secret"`
		}
		json.Unmarshal([]byte(vula(t, env, append([]string{"clients", "create", id, "--auth-method", "client_secret_basic", "-o", "json"}, args...)...)), &created)
		if created.Secret == "" {
			t.Fatalf("clients create %s printed no client_secret", id)
		}
		secrets[id] = created.Secret
	}
	// private_key_jwt clients: the public key set is registered, the private JWK goes to node.
	for _, c := range []struct {
		id    string
		extra []string
	}{{"rp-par", []string{"--require-par"}}, {"rp-jar", nil}, {"rp-fapi", []string{"--profile", "fapi2"}}} {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		pub, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: c.id + "-1", Algorithm: "ES256", Use: "sig"}}})
		priv, _ := json.Marshal(jose.JSONWebKey{Key: key, KeyID: c.id + "-1", Algorithm: "ES256", Use: "sig"})
		os.WriteFile(filepath.Join(work, c.id+".jwks.json"), pub, 0o600)
		os.WriteFile(filepath.Join(work, c.id+".jwk.json"), priv, 0o600)
		vula(t, env, append(append([]string{"clients", "create", c.id, "--auth-method", "private_key_jwt", "--jwks", filepath.Join(work, c.id+".jwks.json")}, c.extra...), common...)...)
	}

	// The proxy's listener first: its https URL is Vula's base URL (the issuer). RFC 6749
	// §5.1: a response with tokens MUST say Cache-Control: no-store.
	addr := freePort(t)
	proxy := startTLSProxy(t, addr, "/oauth2/token")
	issuer, caFile := proxy.URL, proxy.CAFile

	srv := startReplicaAt(t, addr, data, append(env, "VULA_BASE_URL="+issuer))
	srv.ready(t, http.StatusOK)

	stderr := runNodeSuite(t, dir, "rp.mjs", 8*time.Minute, []string{
		"NODE_EXTRA_CA_CERTS=" + caFile,
		"RP_ISSUER=" + issuer,
		"RP_CALLBACK=" + callback,
		"RP_CHROMIUM=" + chromium,
		"RP_USER=" + number,
		"RP_PASSWORD=" + password,
		"RP_BASIC_SECRET=" + secrets["rp-basic"],
		"RP_RESOURCE_SECRET=" + secrets["rp-resource"],
		"RP_SERVICE_SECRET=" + secrets["rp-service"],
		"RP_KEYS=" + work,
		"RP_ONLY=" + os.Getenv("RP_ONLY"), // a comma-separated list of cases, when debugging one
	})
	proxy.check(t)
	checkServerLog(t, srv.logs.String())
	if t.Failed() || testing.Verbose() {
		t.Logf("rp.mjs stderr:\n%s", stderr)
	}
}

// rpSuiteDir installs the suite's npm packages once (npm ci, from the committed lock file) when
// test/deps.sh, which make test runs first, has not.
var (
	rpOnce sync.Once
	rpErr  error
)

func rpSuiteDir(t testing.TB) string {
	t.Helper()
	dir, _ := filepath.Abs("rp")
	rpOnce.Do(func() {
		if _, err := os.Stat(filepath.Join(dir, "node_modules", "openid-client")); err == nil {
			return
		}
		cmd := exec.Command("npm", "ci", "--no-audit", "--no-fund")
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			rpErr = fmt.Errorf("npm ci: %v\n%s", err, out)
		}
	})
	if rpErr != nil {
		t.Fatal(rpErr)
	}
	return dir
}
