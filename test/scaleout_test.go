package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
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

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/digitorus/timestamp"

	"github.com/vula-eid/vula/internal/testenv"
)

type replica struct {
	addr string
	cmd  *exec.Cmd
	logs *bytes.Buffer
}

func startReplica(t *testing.T, env []string) *replica {
	t.Helper()
	return startReplicaAt(t, freePort(t), t.TempDir(), env)
}

func startReplicaAt(t testing.TB, addr, data string, env []string) *replica {
	t.Helper()
	r := &replica{addr: addr, logs: &bytes.Buffer{}}
	r.cmd = exec.Command(binPath, "serve", "--data-dir", data, "--listen", r.addr)
	r.cmd.Env = append(r.cmd.Environ(), env...)
	r.cmd.Stderr = r.logs
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.cmd.Process.Kill(); r.cmd.Wait() })
	return r
}

// ready polls /readyz until it answers want or the bounded wait ends, and returns the last report.
// The bound is generous: a new PKI on SoftHSM2 with tests running beside it takes tens of seconds.
func (r *replica) ready(t testing.TB, want int) map[string]any {
	t.Helper()
	var body map[string]any
	for deadline := time.Now().Add(90 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		resp, err := http.Get("http://" + r.addr + "/readyz")
		if err != nil {
			continue
		}
		body = nil
		json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode == want {
			return body
		}
	}
	t.Fatalf("replica %s: /readyz never answered %d; last %v\n%s", r.addr, want, body, r.logs)
	return nil
}

// TestScaleOut runs two replicas on one PostgreSQL, one Redis and one SoftHSM2 token. Both
// become ready; when Redis goes down both say so, and both recover when it returns.
func TestScaleOut(t *testing.T) {
	t.Parallel()
	vulaBinary(t)
	pg := testenv.Postgres(t)
	rd := testenv.Redis(t)
	tok := testenv.SoftHSM(t)
	env := []string{"SOFTHSM2_CONF=" + tok.Conf, "VULA_HSM_BACKEND=pkcs11", "VULA_HSM_PKCS11_MODULE=" + tok.Module,
		"VULA_HSM_PKCS11_TOKEN_LABEL=" + tok.Label, "VULA_HSM_PKCS11_PIN_ENV=TEST_HSM_PIN", "TEST_HSM_PIN=" + tok.PIN,
		"VULA_STORE_DURABLE=" + pg.DSN, "VULA_STORE_EPHEMERAL=" + rd.URL,
		// One public name behind the (here absent) load balancer, one TOTP sealing key.
		"VULA_BASE_URL=" + sharedIssuer, "VULA_IDP_DEMO=false", "VULA_IDP_SEED_KEY_FILE=" + filepath.Join(t.TempDir(), "totp-seal.key")}
	// One after the other: SoftHSM2 keeps its tokens in files, and a process that initialises
	// the library while another writes the token can miss the token (a real HSM has no such
	// race). Once both run, they share the token and the databases for real.
	var replicas []*replica
	for i := 0; i < 2; i++ {
		r := startReplica(t, env)
		replicas = append(replicas, r)
		rep := r.ready(t, http.StatusOK)
		comps, _ := rep["components"].(map[string]any)
		for _, c := range []string{"keys", "durable", "ephemeral"} {
			if st, _ := comps[c].(map[string]any); st["ok"] != true {
				t.Fatalf("replica %s: %s not ok: %v", r.addr, c, rep)
			}
		}
	}
	serials := timestampBoth(t, replicas)
	loginAcross(t, env, replicas)
	signAcross(t, env, replicas)
	held := clientTokensAcross(t, env, replicas)
	rd.Stop(t)
	for _, r := range replicas {
		// A token's revocation cannot be read: 503 with Retry-After, never 401 or 500.
		if code, h, body := adminCall(t, "http://"+r.addr, http.MethodGet, "/api/v1/admin/clients", held); code != http.StatusServiceUnavailable || h.Get("Retry-After") == "" {
			t.Errorf("replica %s, bearer check with Redis down: %d (Retry-After %q) %s", r.addr, code, h.Get("Retry-After"), body)
		}
		rep := r.ready(t, http.StatusServiceUnavailable)
		comps, _ := rep["components"].(map[string]any)
		if st, _ := comps["ephemeral"].(map[string]any); st["ok"] != false {
			t.Fatalf("replica %s: Redis down but %v", r.addr, rep)
		}
	}
	rd.Start(t)
	for _, r := range replicas {
		r.ready(t, http.StatusOK)
	}
	for _, r := range replicas {
		r.cmd.Process.Signal(syscall.SIGTERM)
		if err := r.cmd.Wait(); err != nil {
			t.Fatalf("replica %s exit: %v\n%s", r.addr, err, r.logs)
		}
	}
	// Every token of both replicas is in the one audit chain, which verifies.
	export := vula(t, env, "audit", "export")
	for serial := range serials {
		tokenRecord(t, export, serial)
	}
	vula(t, env, "audit", "verify")
	// The two replicas share one audit key on the token.
	var keys []map[string]any
	json.Unmarshal([]byte(vula(t, env, "keys", "list", "--output", "json")), &keys)
	audits := 0
	for _, k := range keys {
		if k["purpose"] == "audit" {
			audits++
		}
	}
	if audits < 1 {
		t.Fatalf("no audit key on the token: %v", keys)
	}
}

const sharedIssuer = "http://vula.test"

// clientTokensAcross: client_credentials tokens are not stored, so a token issued by one replica
// is checked by the other from its JWT and the revocation markers in Redis. Revoked at A, it is
// refused at once by B (bearer check and introspection); a client deleted through A's admin API
// has its tokens refused at once by B. It returns a good token of the admin client.
func clientTokensAcross(t *testing.T, env []string, replicas []*replica) string {
	t.Helper()
	a, b := "http://"+replicas[0].addr, "http://"+replicas[1].addr
	secrets := map[string]string{}
	for _, id := range []string{"ops-a", "ops-b"} {
		var made map[string]any
		if err := json.Unmarshal([]byte(vula(t, env, "clients", "create", id, "--grant-type", "client_credentials",
			"--scope", "admin", "--output", "json")), &made); err != nil || made["client_secret"] == nil {
			t.Fatalf("clients create %s: %v %v", id, err, made)
		}
		secrets[id] = made["client_secret"].(string)
	}
	form := func(base, path, id string, v url.Values) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, base+path, strings.NewReader(v.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(id, secrets[id])
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	token := func(base, id string) string {
		t.Helper()
		code, body := form(base, "/oauth2/token", id, url.Values{"grant_type": {"client_credentials"}, "scope": {"admin"}})
		if code != 200 {
			t.Fatalf("token of %s at %s: %d %v", id, base, code, body)
		}
		return body["access_token"].(string)
	}
	works := func(base, tok, stage string) {
		t.Helper()
		if code, _, body := adminCall(t, base, http.MethodGet, "/api/v1/admin/clients", tok); code != 200 {
			t.Fatalf("%s: admin API at %s: %d %s", stage, base, code, body)
		}
	}
	refused := func(base, tok, stage string) {
		t.Helper()
		if code, h, body := adminCall(t, base, http.MethodGet, "/api/v1/admin/clients", tok); code != 401 || !strings.Contains(h.Get("WWW-Authenticate"), "invalid_token") {
			t.Fatalf("%s: admin API at %s: %d %q %s", stage, base, code, h.Get("WWW-Authenticate"), body)
		}
	}
	tok, keep, other := token(a, "ops-a"), token(a, "ops-a"), token(b, "ops-b")
	works(b, tok, "A's token at B")
	works(a, other, "B's token at A")
	if code, body := form(b, "/oauth2/introspect", "ops-a", url.Values{"token": {tok}}); code != 200 || body["active"] != true || body["client_id"] != "ops-a" {
		t.Fatalf("A's token introspected at B: %d %v", code, body)
	}
	if code, body := form(a, "/oauth2/revoke", "ops-a", url.Values{"token": {tok}}); code != 200 {
		t.Fatalf("revocation at A: %d %v", code, body)
	}
	refused(b, tok, "revoked at A, used at B")
	if code, body := form(b, "/oauth2/introspect", "ops-a", url.Values{"token": {tok}}); code != 200 || body["active"] != false {
		t.Fatalf("revoked at A, introspected at B: %d %v", code, body)
	}
	works(b, keep, "the client's other token")
	// ops-b deleted through A's admin API: its token is refused at B at once (B's client cache
	// still holds ops-b, from the call above).
	works(b, other, "ops-b's token at B before its deletion")
	if code, _, body := adminCall(t, a, http.MethodDelete, "/api/v1/admin/clients/ops-b", keep); code != http.StatusNoContent {
		t.Fatalf("deleting ops-b at A: %d %s", code, body)
	}
	refused(b, other, "a deleted client's token at B")
	return keep
}

// adminCall calls Vula's admin API with a bearer token.
func adminCall(t *testing.T, base, method, path, tok string) (int, http.Header, string) {
	t.Helper()
	req, _ := http.NewRequest(method, base+path, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// loginAcross starts a login at one replica and redeems the code at the other: the flow's state
// is in Redis, the clients and people in PostgreSQL, the token keys on the token.
func loginAcross(t *testing.T, env []string, replicas []*replica) {
	t.Helper()
	ctx := context.Background()
	r := newRP(t, env, "health")
	pw, seed := citizen(t, env, "2345678901")
	a, b := "http://"+replicas[0].addr, "http://"+replicas[1].addr
	tok := codeFlow(t, r, sharedIssuer, a, b, "2345678901", pw, seed)
	v := oidc.NewVerifier(sharedIssuer, oidc.NewRemoteKeySet(ctx, b+"/jwks.json"), &oidc.Config{ClientID: "health", SupportedSigningAlgs: []string{oidc.ES256}})
	if _, err := v.Verify(ctx, tok["id_token"].(string)); err != nil {
		t.Fatalf("ID token from the other replica: %v", err)
	}
	// The refresh token works at the first replica too.
	rf := r.assertion(t, sharedIssuer+"/oauth2/token")
	rf.Set("grant_type", "refresh_token")
	rf.Set("refresh_token", tok["refresh_token"].(string))
	if code, body := post(t, a+"/oauth2/token", rf); code != 200 {
		t.Fatalf("refresh at the first replica: %d %v", code, body)
	}
}

// signAcross is CSC remote signing across the replicas: the official's service login starts at
// one and is redeemed at the other, the SAD granted at one is redeemed at the other (it is in
// Redis, issue #8), and a hash signed at B is refused at A while the SAD's other hash is still
// signed there. The official is made with the CLI while both serve: the key is on the token.
func signAcross(t *testing.T, env []string, replicas []*replica) {
	t.Helper()
	testenv.Need(t, "openssl")
	a, b := "http://"+replicas[0].addr, "http://"+replicas[1].addr
	o := newOfficial(t, env, "1100000009", "Drita", "Berisha")
	app := signingApp(t, env, "openid,service")
	tok := serviceTokenAcross(t, app, sharedIssuer, a, b, o)

	// The key is on the token, for this official's subject.
	var person struct {
		Sub string `json:"sub"`
	}
	json.Unmarshal([]byte(vula(t, env, "persons", "show", o.number, "-o", "json")), &person)
	var keys []map[string]any
	json.Unmarshal([]byte(vula(t, env, "keys", "list", "--output", "json")), &keys)
	onToken := false
	for _, k := range keys {
		if k["uri"] == o.key {
			onToken = person.Sub != "" && k["purpose"] == "sign:"+person.Sub && strings.HasPrefix(o.key, "pkcs11:")
		}
	}
	if !onToken {
		t.Fatalf("signing key %s (sub %q) not on the token with purpose sign:<sub>: %v", o.key, person.Sub, keys)
	}

	status, ci := cscCall(t, a, tok, "credentials/info", map[string]any{"credentialID": o.credential, "certificates": "single"})
	if status != 200 {
		t.Fatalf("credentials/info at A: %d %v", status, ci)
	}
	leafDER, _ := base64.StdEncoding.DecodeString(ci["cert"].(map[string]any)["certificates"].([]any)[0].(string))

	docs := [][]byte{[]byte("Vendim nr. 11\n"), []byte("Vendim nr. 12\n")}
	hashes := make([][]byte, len(docs))
	for i, d := range docs {
		h := sha256.Sum256(d)
		hashes[i] = h[:]
	}
	status, auth := cscCall(t, a, tok, "credentials/authorize", map[string]any{"credentialID": o.credential, "numSignatures": 2,
		"hashes": b64(hashes...), "hashAlgorithmOID": oidSHA256, "authData": []map[string]string{{"id": "PIN", "value": o.pw}, {"id": "OTP", "value": o.otp(t)}}})
	if status != 200 || auth["SAD"] == nil {
		t.Fatalf("authorize at A: %d %v", status, auth)
	}
	signHash := func(base string, h []byte) (int, map[string]any) {
		return cscCall(t, base, tok, "signatures/signHash", map[string]any{"credentialID": o.credential, "SAD": auth["SAD"], "hashes": b64(h),
			"hashAlgorithmOID": oidSHA256, "signAlgo": oidECDSASHA256})
	}
	status, signed := signHash(b, hashes[0])
	if status != 200 {
		t.Fatalf("signHash at B with A's SAD: %d %v", status, signed)
	}
	sig, _ := base64.StdEncoding.DecodeString(signed["signatures"].([]any)[0].(string))
	verifySignature(t, leafDER, docs[0], sig) // B's signature
	status, body := signHash(a, hashes[0])
	wantCSCError(t, "the hash B signed, again at A", status, body, "invalid_request", "already been signed")
	status, signed = signHash(a, hashes[1])
	if status != 200 {
		t.Fatalf("the SAD's second hash at A: %d %v", status, signed)
	}
	sig, _ = base64.StdEncoding.DecodeString(signed["signatures"].([]any)[0].(string))
	verifySignature(t, leafDER, docs[1], sig) // A's
}

// timestampBoth asks both replicas for tokens at once and checks that every serial is new; the
// first token of each replica is verified by openssl against the hierarchy both serve. It
// returns the serials (hex).
func timestampBoth(t *testing.T, replicas []*replica) map[string]bool {
	t.Helper()
	dir := t.TempDir()
	for _, name := range []string{"root", "seal-ca"} {
		resp, err := http.Get("http://" + replicas[0].addr + "/pki/" + name + ".crt")
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET %s.crt: %v %v", name, err, resp)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		// Served as DER (application/pkix-cert); openssl ts reads PEM.
		os.WriteFile(filepath.Join(dir, name+".crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: b}), 0o600)
	}
	data := filepath.Join(dir, "doc.txt")
	os.WriteFile(data, []byte("minutes of the municipal council"), 0o600)
	query := filepath.Join(dir, "q.tsq")
	if out, err := exec.Command("openssl", "ts", "-query", "-data", data, "-sha256", "-cert", "-out", query).CombinedOutput(); err != nil {
		t.Fatalf("openssl ts -query: %v\n%s", err, out)
	}
	q, _ := os.ReadFile(query)
	const perReplica, workers = 40, 4
	var mu sync.Mutex
	serials := map[string]bool{}
	var wg sync.WaitGroup
	for i, r := range replicas {
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for n := 0; n < perReplica/workers; n++ {
					resp, err := http.Post("http://"+r.addr+"/tsa", "application/timestamp-query", bytes.NewReader(q))
					if err != nil || resp.StatusCode != 200 {
						t.Errorf("replica %s POST /tsa: %v %v", r.addr, err, resp)
						return
					}
					reply, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					tok, err := timestamp.ParseResponse(reply)
					if err != nil {
						t.Errorf("replica %s: %v", r.addr, err)
						return
					}
					mu.Lock()
					s := tok.SerialNumber.Text(16)
					if serials[s] {
						t.Errorf("serial %s given twice", s)
					}
					serials[s] = true
					mu.Unlock()
					if w == 0 && n == 0 {
						tsr := filepath.Join(dir, fmt.Sprintf("r%d.tsr", i))
						os.WriteFile(tsr, reply, 0o600)
						out, err := exec.Command("openssl", "ts", "-verify", "-data", data, "-in", tsr, "-CAfile",
							filepath.Join(dir, "root.crt"), "-untrusted", filepath.Join(dir, "seal-ca.crt")).CombinedOutput()
						if err != nil || !strings.Contains(string(out), "Verification: OK") {
							t.Errorf("replica %s: openssl ts -verify: %v\n%s", r.addr, err, out)
						}
					}
				}
			}()
		}
	}
	wg.Wait()
	if len(serials) != perReplica*len(replicas) {
		t.Fatalf("%d distinct serials from %d tokens", len(serials), perReplica*len(replicas))
	}
	return serials
}
