package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/vula-eid/vula/internal/testenv"
)

// BenchmarkIdP measures the identity provider of the real binary (`vula serve` on the embedded
// default: software keys, SQLite, the in-memory ephemeral store, every token signature with its
// durable audit record) over loopback, at 8 and 32 concurrent clients, with p50/p99 latency:
//
//   - clientcredentials: client_credentials tokens (client_secret_basic; a JWT access token
//     signed ES256 through the key layer);
//   - codeflow: complete authorization-code flows, each in a fresh cookie jar: PAR (client
//     authenticated), the authorization endpoint, the login page, password login (Argon2id),
//     consent (asked once, then remembered), the redirect with the code, and the code
//     exchanged (with its PKCE verifier) for an ID token, an access token and a refresh token.
//     The benchmark person has no authenticator: an RFC 6238 code is accepted once per
//     30-second step, so one person cannot log in at the substantial level thousands of times
//     a second.
//
// Another provider's token endpoint can be measured in the same run, with the same load
// generator, by naming it in the environment: BENCH_IDP_OTHER_TOKEN_URL, BENCH_IDP_OTHER_CLIENT,
// BENCH_IDP_OTHER_SECRET, BENCH_IDP_OTHER_SCOPE and BENCH_IDP_OTHER_NAME (e.g. hydra).
//
// The load generator runs on the same cores as the server, so the figures include its work.
func BenchmarkIdP(b *testing.B) {
	vulaBinary(b)
	data := b.TempDir()
	env := []string{"VULA_DATA_DIR=" + data}
	const callback = "http://127.0.0.1:9/bench/callback"
	var cc struct {
		Secret string `json:"client_secret"`
	}
	if err := json.Unmarshal([]byte(vula(b, env, "clients", "create", "bench-cc", "--grant-type", "client_credentials",
		"--scope", "seal", "-o", "json")), &cc); err != nil || cc.Secret == "" {
		b.Fatalf("clients create bench-cc: %v %+v", err, cc)
	}
	var rp struct {
		Secret string `json:"client_secret"`
	}
	if err := json.Unmarshal([]byte(vula(b, env, "clients", "create", "bench-rp", "--redirect-uri", callback,
		"--scope", "openid,profile", "--name", "Benchmark portal", "-o", "json")), &rp); err != nil || rp.Secret == "" {
		b.Fatalf("clients create bench-rp: %v %+v", err, rp)
	}
	const pw = "a long and secret passphrase"
	vula(b, append(env, "BENCH_PW="+pw), "persons", "create", "1122334455", "--given-name", "Arta", "--family-name", "Krasniqi",
		"--birthdate", "1990-04-12", "--password-env", "BENCH_PW")
	// Every code flow comes from the one loopback address: past the default bound of logins a minute.
	srv := startReplicaAt(b, freePort(b), data, []string{"VULA_LOG_LEVEL=warn", "VULA_IDP_LOGIN_FLOWS_PER_MINUTE=1000000"})
	srv.ready(b, http.StatusOK)
	issuer := "http://" + srv.addr
	transport := &http.Transport{MaxIdleConnsPerHost: 64, MaxIdleConns: 256}
	client := &http.Client{Transport: transport}

	type target struct{ name, tokenURL, id, secret, scope string }
	targets := []target{{"vula", issuer + "/oauth2/token", "bench-cc", cc.Secret, "seal"}}
	if u := os.Getenv("BENCH_IDP_OTHER_TOKEN_URL"); u != "" {
		name := os.Getenv("BENCH_IDP_OTHER_NAME")
		if name == "" {
			name = "other"
		}
		targets = append(targets, target{name, u, os.Getenv("BENCH_IDP_OTHER_CLIENT"), os.Getenv("BENCH_IDP_OTHER_SECRET"), os.Getenv("BENCH_IDP_OTHER_SCOPE")})
	}
	flow := &codeFlowClient{issuer: issuer, client: "bench-rp", secret: rp.Secret, callback: callback,
		identifier: "1122334455", password: pw, transport: transport}
	if err := flow.run(); err != nil { // once outside the clock: the consent is remembered from here on
		b.Fatalf("code flow: %v", err)
	}
	for _, c := range []int{8, 32} {
		for _, tg := range targets {
			b.Run(fmt.Sprintf("%s/clientcredentials/c%d", tg.name, c), func(b *testing.B) {
				form := url.Values{"grant_type": {"client_credentials"}}
				if tg.scope != "" {
					form.Set("scope", tg.scope)
				}
				body := form.Encode()
				withLatency(b, c, "tokens/s", func() error {
					req, _ := http.NewRequest("POST", tg.tokenURL, strings.NewReader(body))
					req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
					req.SetBasicAuth(url.QueryEscape(tg.id), url.QueryEscape(tg.secret))
					return tokenResponse(client.Do(req))
				})
			})
		}
		b.Run(fmt.Sprintf("vula/codeflow/c%d", c), func(b *testing.B) {
			withLatency(b, c, "flows/s", flow.run)
		})
	}
}

// withLatency runs f b.N times over c workers (testenv.Parallel) and adds p50/p99 latency.
func withLatency(b *testing.B, c int, unit string, f func() error) {
	var mu sync.Mutex
	lat := make([]time.Duration, 0, b.N)
	testenv.Parallel(b, c, unit, func(int) error {
		start := time.Now()
		if err := f(); err != nil {
			return err
		}
		d := time.Since(start)
		mu.Lock()
		lat = append(lat, d)
		mu.Unlock()
		return nil
	})
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	if len(lat) > 0 {
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	}
}

// tokenResponse checks a token endpoint's answer: 200 with an access token.
func tokenResponse(resp *http.Response, err error) error {
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
		IDToken     string `json:"id_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || resp.StatusCode != 200 || tok.AccessToken == "" {
		return fmt.Errorf("token endpoint: %d %v", resp.StatusCode, err)
	}
	return nil
}

// codeFlowClient is a relying party and a browser at once, returning errors instead of failing
// a test so that it can run on many goroutines (idptest.Browser is for tests).
type codeFlowClient struct {
	issuer, client, secret, callback string
	identifier, password             string
	transport                        http.RoundTripper
	busy                             atomic.Int64 // logins answered 503 (and retried)
}

var hiddenField = regexp.MustCompile(`name="(flow|csrf)" value="([^"]*)"`)

// run does one complete flow in a fresh cookie jar.
func (c *codeFlowClient) run() error {
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Transport: c.transport, Jar: jar, CheckRedirect: func(req *http.Request, _ []*http.Request) error {
		if !strings.HasPrefix(req.URL.String(), c.issuer) {
			return http.ErrUseLastResponse // the relying party's callback: stop there
		}
		return nil
	}}
	verifier := oauth2.GenerateVerifier()
	state := verifier[:12]
	push := url.Values{"response_type": {"code"}, "client_id": {c.client}, "redirect_uri": {c.callback}, "scope": {"openid profile"},
		"state": {state}, "nonce": {verifier[12:24]}, "code_challenge": {oauth2.S256ChallengeFromVerifier(verifier)},
		"code_challenge_method": {"S256"}}
	var par struct {
		RequestURI string `json:"request_uri"`
	}
	if err := c.post(hc, "/oauth2/par", push, true, &par); err != nil || par.RequestURI == "" {
		return fmt.Errorf("PAR: %v", err)
	}
	resp, err := hc.Get(c.issuer + "/oauth2/auth?client_id=" + c.client + "&request_uri=" + url.QueryEscape(par.RequestURI))
	page, err := c.page(resp, err)
	if err != nil {
		return fmt.Errorf("login page: %w", err)
	}
	page.Set("identifier", c.identifier)
	page.Set("password", c.password)
	resp, err = hc.PostForm(c.issuer+"/login", page)
	// Too many logins at once: the server says when to come back, and a person would.
	for try := 0; err == nil && resp.StatusCode == http.StatusServiceUnavailable && try < 30; try++ {
		c.busy.Add(1)
		wait, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
		resp.Body.Close()
		time.Sleep(time.Duration(max(wait, 1)) * time.Second)
		resp, err = hc.PostForm(c.issuer+"/login", page)
	}
	for i := 0; i < 3; i++ { // login, then consent (when not remembered), then the callback
		if err != nil {
			return err
		}
		if resp.StatusCode == http.StatusSeeOther || resp.StatusCode == http.StatusFound {
			loc, _ := resp.Location()
			resp.Body.Close()
			if loc == nil || !strings.HasPrefix(loc.String(), c.callback) || loc.Query().Get("state") != state || loc.Query().Get("code") == "" {
				return fmt.Errorf("redirect to %v", loc)
			}
			exchange := url.Values{"grant_type": {"authorization_code"}, "code": {loc.Query().Get("code")},
				"redirect_uri": {c.callback}, "code_verifier": {verifier}}
			return c.post(hc, "/oauth2/token", exchange, true, nil)
		}
		// Not page, err := ...: a new err here would hide the consent POST's error from the
		// loop's check above.
		page, perr := c.page(resp, nil)
		if perr != nil {
			return fmt.Errorf("after login: %w", perr)
		}
		page.Set("decision", "allow")
		page.Set("remember", "1")
		resp, err = hc.PostForm(c.issuer+"/consent", page)
	}
	return errors.New("no redirect to the client")
}

// page reads an HTML page and returns its hidden fields.
func (c *codeFlowClient) page(resp *http.Response, err error) (url.Values, error) {
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("%s: %d", resp.Request.URL.Path, resp.StatusCode)
	}
	v := url.Values{}
	for _, m := range hiddenField.FindAllSubmatch(body, -1) {
		v.Set(string(m[1]), string(m[2]))
	}
	if v.Get("csrf") == "" {
		return nil, fmt.Errorf("%s: no form", resp.Request.URL.Path)
	}
	return v, nil
}

// post sends a client-authenticated form; out, when given, receives the JSON answer, else a
// token response is expected.
func (c *codeFlowClient) post(hc *http.Client, path string, form url.Values, auth bool, out any) error {
	req, _ := http.NewRequest("POST", c.issuer+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if auth {
		req.SetBasicAuth(url.QueryEscape(c.client), url.QueryEscape(c.secret))
	}
	if out == nil {
		return tokenResponse(hc.Do(req))
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("%s: %d %s", path, resp.StatusCode, b)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}
