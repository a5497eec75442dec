package e2e

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
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
	"testing"
	"time"

	"github.com/go-jose/go-jose/v3"
	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
	"golang.org/x/crypto/ocsp"
	"golang.org/x/oauth2"

	"github.com/vula-eid/vula/internal/idp/idptest"
	"github.com/vula-eid/vula/internal/signing/signingtest"
	"github.com/vula-eid/vula/internal/testenv"
)

// officialUser is an official registered with the CLI, with a signing credential.
type officialUser struct {
	number, pw, seed string
	credential, key  string
	used             map[int64]bool // TOTP time steps spent (each code is accepted once)
}

func newOfficial(t *testing.T, env []string, number, given, family string) *officialUser {
	t.Helper()
	o := &officialUser{number: number, pw: "the official's long passphrase " + number, used: map[int64]bool{}}
	vula(t, append(env, "OFFICIAL_PW="+o.pw), "persons", "create", number, "--official", "--given-name", given, "--family-name", family,
		"--password-env", "OFFICIAL_PW")
	var enrolled struct {
		URI string `json:"otpauth_uri"`
	}
	json.Unmarshal([]byte(vula(t, env, "persons", "enroll-totp", number, "-o", "json")), &enrolled)
	u, err := url.Parse(enrolled.URI)
	if err != nil || u.Query().Get("secret") == "" {
		t.Fatalf("enroll-totp printed %q", enrolled.URI)
	}
	o.seed = u.Query().Get("secret")
	var cred struct {
		ID   string `json:"credential_id"`
		Key  string `json:"key"`
		Subj string `json:"certificate_subject"`
	}
	out := vula(t, env, "persons", "issue-signing-key", number, "-o", "json")
	if err := json.Unmarshal([]byte(out), &cred); err != nil || cred.ID == "" || !strings.Contains(cred.Subj, "PNOXK-"+number) {
		t.Fatalf("issue-signing-key printed %q", out)
	}
	o.credential, o.key = cred.ID, cred.Key
	return o
}

// otp returns a code for a time step not used yet that the server accepts now (it takes one
// step of drift either way), waiting for the next step when all are spent.
func (o *officialUser) otp(t *testing.T) string {
	t.Helper()
	for {
		now := time.Now()
		cur := now.Unix() / 30
		cands := []int64{cur + 1, cur}
		if now.Unix()%30 < 25 {
			cands = append(cands, cur-1)
		}
		for _, s := range cands {
			if !o.used[s] {
				o.used[s] = true
				code, err := totp.GenerateCodeCustom(o.seed, time.Unix(s*30, 0), totp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
				if err != nil {
					t.Fatal(err)
				}
				return code
			}
		}
		time.Sleep(time.Until(time.Unix((cur+1)*30, 0)))
	}
}

// serviceToken logs the official in through the authorization-code flow (PKCE, private_key_jwt)
// of a signing application and returns an access token with scope service.
func serviceToken(t *testing.T, r *rp, issuer string, o *officialUser) string {
	t.Helper()
	return serviceTokenAcross(t, r, issuer, issuer, issuer, o)
}

// serviceTokenAcross is serviceToken with the login at authServer and the code redeemed at
// tokenServer (which may be another replica behind issuer).
func serviceTokenAcross(t *testing.T, r *rp, issuer, authServer, tokenServer string, o *officialUser) string {
	t.Helper()
	verifier := oauth2.GenerateVerifier()
	q := url.Values{"client_id": {r.id}, "response_type": {"code"}, "redirect_uri": {r.callback}, "scope": {"openid service"},
		"state": {"s-" + verifier[:8]}, "code_challenge": {oauth2.S256ChallengeFromVerifier(verifier)}, "code_challenge_method": {"S256"},
		"acr_values": {"http://eidas.europa.eu/LoA/substantial"}}
	b := idptest.New(t, authServer)
	o.used[time.Now().Unix()/30] = true // the login's own code
	cb := b.Login(authServer+"/oauth2/auth?"+q.Encode(), r.callback, o.number, o.pw, o.seed)
	tf := r.assertion(t, issuer+"/oauth2/token")
	tf.Set("grant_type", "authorization_code")
	tf.Set("code", cb.Query().Get("code"))
	tf.Set("redirect_uri", r.callback)
	tf.Set("code_verifier", verifier)
	code, tok := post(t, tokenServer+"/oauth2/token", tf)
	if code != 200 || !strings.Contains(fmt.Sprint(tok["scope"]), "service") {
		t.Fatalf("code exchange: %d %v", code, tok)
	}
	return tok["access_token"].(string)
}

// cscCall POSTs a CSC method and decodes the answer.
func cscCall(t *testing.T, base, token, method string, req any) (int, map[string]any) {
	t.Helper()
	body, _ := json.Marshal(req)
	hr, _ := http.NewRequest(http.MethodPost, base+"/csc/v2/"+method, bytes.NewReader(body))
	hr.Header.Set("Content-Type", "application/json")
	if token != "" {
		hr.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(hr)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("%s: %d, not JSON: %v", method, resp.StatusCode, err)
	}
	return resp.StatusCode, out
}

// wantCSCError checks a refusal's status and CSC error code.
func wantCSCError(t *testing.T, what string, status int, body map[string]any, code, descPart string) {
	t.Helper()
	if status != 400 || body["error"] != code || !strings.Contains(fmt.Sprint(body["error_description"]), descPart) {
		t.Errorf("%s: %d %v, want 400 %s (%q)", what, status, body, code, descPart)
	}
}

func b64(bs ...[]byte) []string {
	out := make([]string, len(bs))
	for i, b := range bs {
		out[i] = base64.StdEncoding.EncodeToString(b)
	}
	return out
}

const (
	oidSHA256      = "2.16.840.1.101.3.4.2.1"
	oidECDSASHA256 = "1.2.840.10045.4.3.2"
)

// TestCSCEndToEnd enrols two officials with the CLI and signs through the real binary's CSC API
// v2 as a signing application would: service authorization by the official's own login (scope
// service), credentials/list and info, credentials/authorize over exact hashes with password and
// TOTP, signatures/signHash; the signatures are checked with crypto/ecdsa and openssl against
// the certificate the API returned, whose chain openssl verifies. Each SCAL2 refusal is a
// subtest; the audit log holds every authorization and signature with its hashes.
func TestCSCEndToEnd(t *testing.T) {
	t.Parallel()
	vulaBinary(t)
	testenv.Need(t, "openssl")
	data := t.TempDir()
	env := []string{"VULA_DATA_DIR=" + data, "VULA_IDP_DEMO=false"}
	arta := newOfficial(t, env, "1100000001", "Arta", "Krasniqi")
	besnik := newOfficial(t, env, "1100000002", "Besnik", "Gashi")
	pw, _ := citizen(t, env, "1200000003")
	if _, errb, err := vulaRun(append(env, "CITIZEN_PW="+pw), "persons", "issue-signing-key", "1200000003"); err == nil || !strings.Contains(errb, "not an official") {
		t.Fatalf("issue-signing-key for a citizen: %v %s", err, errb)
	}

	// A signing application: a confidential client with private_key_jwt.
	app := signingApp(t, env, "openid,service")

	srv := startReplicaAt(t, freePort(t), data, env)
	srv.ready(t, http.StatusOK)
	base := "http://" + srv.addr

	status, info := cscCall(t, base, "", "info", map[string]any{})
	if status != 200 || info["oauth2"] != base || fmt.Sprint(info["authType"]) != "[oauth2code]" ||
		!strings.Contains(fmt.Sprint(info["methods"]), "signatures/signHash") || strings.Contains(fmt.Sprint(info["methods"]), "sendOTP") {
		t.Fatalf("info: %d %v", status, info)
	}
	// With signatures/signDoc, CSC v2.0.0.2 requires signature_formats and conformance_levels.
	if fmt.Sprint(info["signature_formats"]) != "map[envelope_properties:[[Detached] [Enveloped Enveloping Detached] [Certification Revision]] formats:[C X P]]" ||
		len(fmt.Sprint(info["conformance_levels"])) < len("[Ades-B-B]") || info["validationInfo"] != true {
		t.Fatalf("info: signature_formats %v, conformance_levels %v, validationInfo %v", info["signature_formats"], info["conformance_levels"], info["validationInfo"])
	}
	// The logo info names is there.
	if logo, err := http.Get(fmt.Sprint(info["logo"])); err != nil || logo.StatusCode != 200 || logo.Header.Get("Content-Type") != "image/svg+xml" {
		t.Fatalf("info's logo %v: %v %v", info["logo"], err, logo)
	} else {
		logo.Body.Close()
	}
	if status, body := cscCall(t, base, "", "credentials/list", map[string]any{}); status != 401 || body["error"] != "invalid_token" {
		t.Fatalf("credentials/list without a token: %d %v", status, body)
	}

	artaTok := serviceToken(t, app, base, arta)
	besnikTok := serviceToken(t, app, base, besnik)

	// Each official sees their own credential only.
	status, list := cscCall(t, base, artaTok, "credentials/list", map[string]any{})
	if status != 200 || fmt.Sprint(list["credentialIDs"]) != "["+arta.credential+"]" {
		t.Fatalf("credentials/list: %d %v (want only %s)", status, list, arta.credential)
	}
	status, ci := cscCall(t, base, artaTok, "credentials/info", map[string]any{"credentialID": arta.credential, "certificates": "chain", "certInfo": true})
	if status != 200 || ci["SCAL"] != "2" || fmt.Sprint(ci["auth"].(map[string]any)["mode"]) != "explicit" {
		t.Fatalf("credentials/info: %d %v", status, ci)
	}
	cert := ci["cert"].(map[string]any)
	chain := cert["certificates"].([]any)
	if len(chain) != 3 || cert["status"] != "valid" || ci["key"].(map[string]any)["len"] != float64(256) {
		t.Fatalf("credentials/info cert: %v key %v", cert, ci["key"])
	}
	dir := t.TempDir()
	pemOf := func(i int) string {
		der, _ := base64.StdEncoding.DecodeString(chain[i].(string))
		return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	}
	leafDER, _ := base64.StdEncoding.DecodeString(chain[0].(string))
	if _, err := x509.ParseCertificate(leafDER); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "leaf.pem"), []byte(pemOf(0)), 0o600)
	os.WriteFile(filepath.Join(dir, "ca.pem"), []byte(pemOf(1)), 0o600)
	os.WriteFile(filepath.Join(dir, "root.pem"), []byte(pemOf(2)), 0o600)
	if out, err := exec.Command("openssl", "verify", "-CAfile", filepath.Join(dir, "root.pem"), "-untrusted", filepath.Join(dir, "ca.pem"),
		filepath.Join(dir, "leaf.pem")).CombinedOutput(); err != nil {
		t.Fatalf("openssl verify of the credential's chain: %v\n%s", err, out)
	}

	docs := [][]byte{[]byte("Vendim nr. 1\n"), []byte("Vendim nr. 2\n"), []byte("Vendim nr. 3\n"), []byte("not authorized\n")}
	hashes := make([][]byte, len(docs))
	for i, d := range docs {
		h := sha256.Sum256(d)
		hashes[i] = h[:]
	}
	authorize := func(tok string, o *officialUser, cred string, pin, code string, n int, hs ...[]byte) (int, map[string]any) {
		return cscCall(t, base, tok, "credentials/authorize", map[string]any{"credentialID": cred, "numSignatures": n,
			"hashes": b64(hs...), "hashAlgorithmOID": oidSHA256, "authData": []map[string]string{{"id": "PIN", "value": pin}, {"id": "OTP", "value": code}}})
	}
	signHash := func(tok, cred, sad string, hs ...[]byte) (int, map[string]any) {
		return cscCall(t, base, tok, "signatures/signHash", map[string]any{"credentialID": cred, "SAD": sad, "hashes": b64(hs...),
			"hashAlgorithmOID": oidSHA256, "signAlgo": oidECDSASHA256})
	}

	t.Run("wrong OTP", func(t *testing.T) {
		status, body := authorize(artaTok, arta, arta.credential, arta.pw, "000000", 1, hashes[0])
		wantCSCError(t, "a wrong one-time code", status, body, "invalid_otp", "OTP")
		status, body = authorize(artaTok, arta, arta.credential, "not the password", "123456", 1, hashes[0])
		wantCSCError(t, "a wrong password", status, body, "invalid_pin", "PIN")
	})
	t.Run("more signatures than authorized", func(t *testing.T) {
		status, body := authorize(artaTok, arta, arta.credential, arta.pw, "123456", 1, hashes[0], hashes[1])
		wantCSCError(t, "numSignatures 1 for two hashes", status, body, "invalid_request", "numSignatures")
	})
	t.Run("another official's credential", func(t *testing.T) {
		status, body := authorize(besnikTok, besnik, arta.credential, besnik.pw, "123456", 1, hashes[0])
		wantCSCError(t, "authorize on another's credential", status, body, "invalid_request", "credentialID")
		status, body = cscCall(t, base, besnikTok, "credentials/info", map[string]any{"credentialID": arta.credential})
		wantCSCError(t, "info on another's credential", status, body, "invalid_request", "credentialID")
	})

	// One authorization over three hashes, with both factors.
	status, auth := authorize(artaTok, arta, arta.credential, arta.pw, arta.otp(t), 3, hashes[0], hashes[1], hashes[2])
	if status != 200 || auth["SAD"] == nil || !freshSAD(auth["expiresIn"]) {
		t.Fatalf("authorize: %d %v", status, auth)
	}
	sad := auth["SAD"].(string)
	status, signed := signHash(artaTok, arta.credential, sad, hashes[0])
	if status != 200 {
		t.Fatalf("signHash: %d %v", status, signed)
	}
	sig, _ := base64.StdEncoding.DecodeString(signed["signatures"].([]any)[0].(string))
	verifySignature(t, leafDER, docs[0], sig)

	t.Run("timestamp", func(t *testing.T) {
		if !strings.Contains(fmt.Sprint(info["methods"]), "signatures/timestamp") {
			t.Fatalf("info does not announce signatures/timestamp: %v", info["methods"])
		}
		status, body := cscCall(t, base, artaTok, "signatures/timestamp", map[string]any{"hash": b64(hashes[0])[0], "hashAlgorithmOID": oidSHA256})
		if status != 200 {
			t.Fatalf("signatures/timestamp: %d %v", status, body)
		}
		tok, _ := base64.StdEncoding.DecodeString(body["timestamp"].(string))
		os.WriteFile(filepath.Join(dir, "ts.der"), tok, 0o600)
		resp, err := http.Get(base + "/pki/seal-ca.crt")
		if err != nil {
			t.Fatal(err)
		}
		der, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		os.WriteFile(filepath.Join(dir, "seal-ca.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
		if out, err := exec.Command("openssl", "ts", "-verify", "-token_in", "-in", filepath.Join(dir, "ts.der"), "-digest", hex.EncodeToString(hashes[0]),
			"-CAfile", filepath.Join(dir, "root.pem"), "-untrusted", filepath.Join(dir, "seal-ca.pem")).CombinedOutput(); err != nil || !strings.Contains(string(out), "Verification: OK") {
			t.Fatalf("openssl ts -verify of the CSC timestamp: %v\n%s", err, out)
		}
		status, body = cscCall(t, base, artaTok, "signatures/timestamp", map[string]any{"hash": b64(hashes[0][:20])[0], "hashAlgorithmOID": oidSHA256})
		wantCSCError(t, "a short hash", status, body, "invalid_request", "length")
	})
	t.Run("SAD with another hash", func(t *testing.T) {
		status, body := signHash(artaTok, arta.credential, sad, hashes[3])
		wantCSCError(t, "a hash outside the authorization", status, body, "invalid_request", "not authorized")
	})
	t.Run("SAD with another official's token", func(t *testing.T) {
		status, body := signHash(besnikTok, arta.credential, sad, hashes[1])
		wantCSCError(t, "another official redeeming the SAD", status, body, "invalid_request", "SAD")
	})
	t.Run("SAD reused", func(t *testing.T) {
		status, body := signHash(artaTok, arta.credential, sad, hashes[0])
		wantCSCError(t, "a hash signed a second time", status, body, "invalid_request", "already been signed")
		// Eight requests at once for one hash: exactly one is signed.
		var mu sync.Mutex
		var wg sync.WaitGroup
		ok := 0
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if status, _ := signHash(artaTok, arta.credential, sad, hashes[1]); status == 200 {
					mu.Lock()
					ok++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if ok != 1 {
			t.Fatalf("%d of 8 concurrent redemptions of one hash were signed, want 1", ok)
		}
		if status, body := signHash(artaTok, arta.credential, sad, hashes[2]); status != 200 {
			t.Fatalf("the last authorized hash: %d %v", status, body)
		}
		status, body = signHash(artaTok, arta.credential, sad, hashes[2])
		wantCSCError(t, "a consumed SAD", status, body, "invalid_request", "SAD")
	})

	t.Run("revoked certificate", func(t *testing.T) {
		status, auth := authorize(besnikTok, besnik, besnik.credential, besnik.pw, besnik.otp(t), 1, hashes[3])
		if status != 200 {
			t.Fatalf("authorize: %d %v", status, auth)
		}
		vula(t, env, "pki", "revoke", "--ca", "person-ca", "--serial", besnik.credential, "--reason", "1")
		status, body := signHash(besnikTok, besnik.credential, auth["SAD"].(string), hashes[3])
		wantCSCError(t, "signHash after revocation", status, body, "invalid_request", "revoked")
		status, body = authorize(besnikTok, besnik, besnik.credential, besnik.pw, "123456", 1, hashes[3])
		wantCSCError(t, "authorize after revocation", status, body, "invalid_request", "revoked")
		status, ci := cscCall(t, base, besnikTok, "credentials/info", map[string]any{"credentialID": besnik.credential})
		if status != 200 || ci["key"].(map[string]any)["status"] != "disabled" || ci["cert"].(map[string]any)["status"] != "revoked" {
			t.Errorf("credentials/info of a revoked credential: %d %v", status, ci)
		}
	})

	// The audit log: Arta's key signed exactly the three authorized hashes, each once, each
	// naming the authorization; the authorizations (granted and refused) carry their hashes.
	srv.cmd.Process.Signal(os.Interrupt)
	srv.cmd.Wait()
	signedDigests := map[string]int{}
	var granted, refused int
	for _, line := range strings.Split(strings.TrimSpace(vula(t, env, "audit", "export")), "\n") {
		var r struct{ Action, Key, Actor, Digest, Result, Detail string }
		json.Unmarshal([]byte(line), &r)
		detail, _ := hex.DecodeString(r.Detail)
		switch {
		case r.Action == "sign" && r.Key == arta.key:
			signedDigests[r.Digest]++
			if !strings.Contains(string(detail), "csc_authorization_seq") {
				t.Errorf("a signature without its authorization: %s", detail)
			}
		case r.Action == "csc.authorize" && r.Key == arta.key && r.Result == "ok":
			granted++
			for _, h := range hashes[:3] {
				if !strings.Contains(string(detail), hex.EncodeToString(h)) {
					t.Errorf("the authorization's record lacks hash %x: %s", h, detail)
				}
			}
		case r.Action == "csc.authorize" && r.Key == arta.key:
			refused++
		}
	}
	if len(signedDigests) != 3 || granted != 1 || refused != 2 {
		t.Fatalf("audit: signatures %v, authorizations %d granted, %d refused; want 3 hashes, 1, 2", signedDigests, granted, refused)
	}
	for _, h := range hashes[:3] {
		if signedDigests[hex.EncodeToString(h)] != 1 {
			t.Errorf("hash %x signed %d times", h, signedDigests[hex.EncodeToString(h)])
		}
	}
	vula(t, env, "audit", "verify")
}

// serviceTokenAt is serviceToken with the login at level acr: at low the official gives the
// password only.
func serviceTokenAt(t *testing.T, r *rp, issuer string, o *officialUser, acr string) string {
	t.Helper()
	verifier := oauth2.GenerateVerifier()
	q := url.Values{"client_id": {r.id}, "response_type": {"code"}, "redirect_uri": {r.callback}, "scope": {"openid service"},
		"state": {"s-" + verifier[:8]}, "code_challenge": {oauth2.S256ChallengeFromVerifier(verifier)}, "code_challenge_method": {"S256"},
		"acr_values": {acr}}
	cb := idptest.New(t, issuer).LoginWithCode(issuer+"/oauth2/auth?"+q.Encode(), r.callback, o.number, o.pw, "")
	tf := r.assertion(t, issuer+"/oauth2/token")
	tf.Set("grant_type", "authorization_code")
	tf.Set("code", cb.Query().Get("code"))
	tf.Set("redirect_uri", r.callback)
	tf.Set("code_verifier", verifier)
	code, tok := post(t, issuer+"/oauth2/token", tf)
	if code != 200 {
		t.Fatalf("code exchange: %d %v", code, tok)
	}
	return tok["access_token"].(string)
}

// TestCSCSignDoc signs documents through the real binary's signatures/signDoc: a PAdES B-T that
// pdfsig finds valid and signed by the official, an enveloped XAdES B-T that xmlsec1 verifies
// against the platform's chain, a detached CAdES B-B and detached CAdES over document digests
// that openssl cms -verify accepts; the validation info parses (OCSP with x/crypto/ocsp, CRLs
// with crypto/x509). credentials/extendTransaction gives a new SAD and spends the old one. Each
// refusal is a subtest: a document the SAD does not list, a SAD reused, another official's
// credential, a revoked certificate (after a renewal, which keeps the key signing), and a
// service token from a login below substantial.
func TestCSCSignDoc(t *testing.T) {
	t.Parallel()
	vulaBinary(t)
	testenv.Need(t, "openssl", "pdfsig", "xmlsec1")
	data := t.TempDir()
	env := []string{"VULA_DATA_DIR=" + data, "VULA_IDP_DEMO=false"}
	arta := newOfficial(t, env, "1100000001", "Arta", "Krasniqi")
	besnik := newOfficial(t, env, "1100000002", "Besnik", "Gashi")
	// Renewal (the CLI holds the key store, so before serve): a new certificate for the same key.
	var renewed struct {
		ID  string `json:"credential_id"`
		Key string `json:"key"`
	}
	out := vula(t, env, "persons", "renew-signing-key", besnik.number, "--credential", besnik.credential, "-o", "json")
	if err := json.Unmarshal([]byte(out), &renewed); err != nil || renewed.ID == besnik.credential || renewed.Key != besnik.key {
		t.Fatalf("renew-signing-key printed %q", out)
	}
	app := signingApp(t, env, "openid,service")
	srv := startReplicaAt(t, freePort(t), data, env)
	srv.ready(t, http.StatusOK)
	base := "http://" + srv.addr

	status, info := cscCall(t, base, "", "info", map[string]any{})
	methods := fmt.Sprint(info["methods"])
	if status != 200 || !strings.Contains(methods, "signatures/signDoc") || !strings.Contains(methods, "credentials/extendTransaction") ||
		strings.Contains(methods, "sendOTP") {
		t.Fatalf("info: %d %v", status, info)
	}
	artaTok := serviceToken(t, app, base, arta)
	besnikTok := serviceToken(t, app, base, besnik)
	status, ci := cscCall(t, base, artaTok, "credentials/info", map[string]any{"credentialID": arta.credential, "certificates": "chain"})
	if status != 200 || fmt.Sprint(ci["OTP"].(map[string]any)["type"]) != "offline" {
		t.Fatalf("credentials/info: %d %v", status, ci)
	}
	dir := t.TempDir()
	chain := ci["cert"].(map[string]any)["certificates"].([]any)
	writePEM := func(name string, items ...any) string {
		var b []byte
		for _, it := range items {
			der, _ := base64.StdEncoding.DecodeString(it.(string))
			b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
		}
		p := filepath.Join(dir, name)
		os.WriteFile(p, b, 0o600)
		return p
	}
	rootPEM, caPEM := writePEM("root.pem", chain[2]), writePEM("ca.pem", chain[1])

	authorize := func(tok string, o *officialUser, cred string, docs ...[]byte) string {
		t.Helper()
		hs := make([][]byte, len(docs))
		for i, d := range docs {
			h := sha256.Sum256(d)
			hs[i] = h[:]
		}
		status, auth := cscCall(t, base, tok, "credentials/authorize", map[string]any{"credentialID": cred, "numSignatures": len(hs),
			"hashes": b64(hs...), "hashAlgorithmOID": oidSHA256, "authData": []map[string]string{{"id": "PIN", "value": o.pw}, {"id": "OTP", "value": o.otp(t)}}})
		if status != 200 {
			t.Fatalf("authorize: %d %v", status, auth)
		}
		return auth["SAD"].(string)
	}
	doc := func(d []byte, format, level, pack string) map[string]any {
		m := map[string]any{"document": base64.StdEncoding.EncodeToString(d), "signature_format": format, "conformance_level": level,
			"signAlgo": oidECDSASHA256}
		if pack != "" {
			m["signed_envelope_property"] = pack
		}
		return m
	}
	signDoc := func(tok, cred, sad string, docs ...map[string]any) (int, map[string]any) {
		return cscCall(t, base, tok, "signatures/signDoc", map[string]any{"credentialID": cred, "SAD": sad, "documents": docs, "returnValidationInfo": true})
	}
	decode := func(v any) []byte {
		b, err := base64.StdEncoding.DecodeString(v.(string))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}

	pdf := signingtest.PDF("Vendim nr. 7 i komunës")
	xml := []byte(`<?xml version="1.0" encoding="UTF-8"?>` + "\n" + `<vendim nr="7"><tekst>Miratohet.</tekst></vendim>`)
	txt := []byte("Ekstrakt nga regjistri\n")
	sad := authorize(artaTok, arta, arta.credential, pdf, xml, txt)

	// extendTransaction: a new SAD for the same hashes; the old one is spent.
	status, ext := cscCall(t, base, artaTok, "credentials/extendTransaction", map[string]any{"credentialID": arta.credential, "SAD": sad})
	if status != 200 || ext["SAD"] == sad || !freshSAD(ext["expiresIn"]) {
		t.Fatalf("extendTransaction: %d %v", status, ext)
	}
	status, body := signDoc(artaTok, arta.credential, sad, doc(pdf, "P", "Ades-B-T", ""))
	wantCSCError(t, "signDoc with the SAD extended away", status, body, "invalid_request", "SAD")
	sad = ext["SAD"].(string)

	status, signed := signDoc(artaTok, arta.credential, sad, doc(pdf, "P", "Ades-B-T", "Revision"), doc(xml, "X", "Ades-B-T", "Enveloped"),
		doc(txt, "C", "Ades-B-B", "Detached"))
	if status != 200 {
		t.Fatalf("signDoc: %d %v", status, signed)
	}
	withSig, objects := signed["DocumentWithSignature"].([]any), signed["SignatureObject"].([]any)
	if len(withSig) != 2 || len(objects) != 1 {
		t.Fatalf("signDoc: %d documents with signature, %d signature objects", len(withSig), len(objects))
	}
	pdfPath := filepath.Join(dir, "signed.pdf")
	os.WriteFile(pdfPath, decode(withSig[0]), 0o600)
	if out := pdfsig(t, pdfPath); !strings.Contains(out, "Signature is Valid.") || !strings.Contains(out, "Arta Krasniqi") {
		t.Fatalf("pdfsig of the signDoc PAdES:\n%s", out)
	}
	xmlPath := filepath.Join(dir, "signed.xml")
	os.WriteFile(xmlPath, decode(withSig[1]), 0o600)
	cmd := exec.Command("xmlsec1", "--verify", "--trusted-pem", rootPEM, "--untrusted-pem", caPEM,
		"--id-attr:Id", "http://uri.etsi.org/01903/v1.3.2#:SignedProperties", "--id-attr:Id", "http://www.w3.org/2000/09/xmldsig#:Object", xmlPath)
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "OK") {
		t.Fatalf("xmlsec1 --verify of the signDoc XAdES: %v\n%s", err, out)
	}
	cmsVerify := func(what string, sig, content []byte) {
		t.Helper()
		sp, cp := filepath.Join(dir, "sig.p7s"), filepath.Join(dir, "content")
		os.WriteFile(sp, sig, 0o600)
		os.WriteFile(cp, content, 0o600)
		if out, err := exec.Command("openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", sp, "-content", cp, "-CAfile", rootPEM,
			"-purpose", "any", "-out", os.DevNull).CombinedOutput(); err != nil {
			t.Fatalf("openssl cms -verify of %s: %v\n%s", what, err, out)
		}
	}
	cmsVerify("the signDoc CAdES", decode(objects[0]), txt)
	vi, _ := signed["validationInfo"].(map[string]any)
	if vi == nil || len(vi["ocsp"].([]any)) == 0 || len(vi["crl"].([]any)) == 0 || len(vi["certificates"].([]any)) < 3 {
		t.Fatalf("validationInfo: %v", vi)
	}
	for _, o := range vi["ocsp"].([]any) {
		if r, err := ocsp.ParseResponse(decode(o), nil); err != nil || r.Status != ocsp.Good {
			t.Fatalf("validationInfo OCSP: %v %+v", err, r)
		}
	}
	for _, c := range vi["crl"].([]any) {
		if _, err := x509.ParseRevocationList(decode(c)); err != nil {
			t.Fatalf("validationInfo CRL: %v", err)
		}
	}
	for _, c := range vi["certificates"].([]any) {
		if _, err := x509.ParseCertificate(decode(c)); err != nil {
			t.Fatalf("validationInfo certificate: %v", err)
		}
	}

	t.Run("documentDigests", func(t *testing.T) {
		h := sha256.Sum256([]byte("a document the application holds\n"))
		status, auth := cscCall(t, base, artaTok, "credentials/authorize", map[string]any{"credentialID": arta.credential, "numSignatures": 1,
			"hashes": b64(h[:]), "hashAlgorithmOID": oidSHA256, "authData": []map[string]string{{"id": "PIN", "value": arta.pw}, {"id": "OTP", "value": arta.otp(t)}}})
		if status != 200 {
			t.Fatalf("authorize: %d %v", status, auth)
		}
		status, body := cscCall(t, base, artaTok, "signatures/signDoc", map[string]any{"credentialID": arta.credential, "SAD": auth["SAD"],
			"documentDigests": []map[string]any{{"hashes": b64(h[:]), "hashAlgorithmOID": oidSHA256, "signature_format": "C",
				"conformance_level": "Ades-B-T", "signAlgo": oidECDSASHA256}}})
		if status != 200 || len(body["SignatureObject"].([]any)) != 1 {
			t.Fatalf("signDoc over a digest: %d %v", status, body)
		}
		cmsVerify("the CAdES over a digest", decode(body["SignatureObject"].([]any)[0]), []byte("a document the application holds\n"))
	})
	t.Run("document not authorized", func(t *testing.T) {
		sad := authorize(artaTok, arta, arta.credential, pdf)
		status, body := signDoc(artaTok, arta.credential, sad, doc(signingtest.PDF("another decision"), "P", "Ades-B-B", ""))
		wantCSCError(t, "a document outside the SAD", status, body, "invalid_request", "not authorized")
		t.Run("SAD reused", func(t *testing.T) {
			status, body := signDoc(artaTok, arta.credential, sad, doc(pdf, "P", "Ades-B-B", "Revision"))
			if status != 200 {
				t.Fatalf("signDoc: %d %v", status, body)
			}
			status, body = signDoc(artaTok, arta.credential, sad, doc(pdf, "P", "Ades-B-B", "Revision"))
			wantCSCError(t, "a SAD used a second time", status, body, "invalid_request", "SAD")
		})
	})
	t.Run("another official's credential", func(t *testing.T) {
		sad := authorize(artaTok, arta, arta.credential, txt)
		status, body := signDoc(besnikTok, arta.credential, sad, doc(txt, "C", "Ades-B-B", "Detached"))
		wantCSCError(t, "signDoc on another's credential", status, body, "invalid_request", "credentialID")
		status, body = signDoc(besnikTok, besnik.credential, sad, doc(txt, "C", "Ades-B-B", "Detached"))
		wantCSCError(t, "signDoc with another's SAD", status, body, "invalid_request", "SAD")
	})
	t.Run("bad input", func(t *testing.T) {
		sad := authorize(artaTok, arta, arta.credential, xml)
		for _, c := range []struct {
			name string
			d    map[string]any
			want string
		}{
			{"a format", doc(xml, "J", "Ades-B-B", ""), "signature_format"},
			{"a level", doc(xml, "X", "Ades-LTX", ""), "conformance_level"},
			{"CAdES attached", doc(xml, "C", "Ades-B-B", ""), "only Detached"},
			{"an RSA algorithm for an EC key", map[string]any{"document": base64.StdEncoding.EncodeToString(xml), "signature_format": "X",
				"signAlgo": "1.2.840.113549.1.1.11"}, "signAlgo"},
		} {
			status, body := signDoc(artaTok, arta.credential, sad, c.d)
			wantCSCError(t, c.name, status, body, "invalid_request", c.want)
		}
		status, body := cscCall(t, base, artaTok, "signatures/signDoc", map[string]any{"credentialID": arta.credential, "SAD": sad,
			"documents": []map[string]any{{"document": "%%%", "signature_format": "X", "signAlgo": oidECDSASHA256}}})
		wantCSCError(t, "bad base64", status, body, "invalid_request", "Base64")
		// Still good for the document after all those refusals.
		if status, body := signDoc(artaTok, arta.credential, sad, doc(xml, "X", "Ades-B-B", "")); status != 200 {
			t.Fatalf("signDoc after refusals: %d %v", status, body)
		}
	})
	t.Run("renewed, then revoked", func(t *testing.T) {
		status, list := cscCall(t, base, besnikTok, "credentials/list", map[string]any{})
		if status != 200 || len(list["credentialIDs"].([]any)) != 2 {
			t.Fatalf("credentials/list after renewal: %d %v", status, list)
		}
		sad := authorize(besnikTok, besnik, besnik.credential, txt)
		vula(t, env, "pki", "revoke", "--ca", "person-ca", "--serial", besnik.credential, "--reason", "1")
		status, body := signDoc(besnikTok, besnik.credential, sad, doc(txt, "C", "Ades-B-B", "Detached"))
		wantCSCError(t, "signDoc after revocation", status, body, "invalid_request", "revoked")
		sad = authorize(besnikTok, besnik, renewed.ID, pdf)
		status, body = signDoc(besnikTok, renewed.ID, sad, doc(pdf, "P", "Ades-B-B", ""))
		if status != 200 {
			t.Fatalf("signDoc with the renewed credential: %d %v", status, body)
		}
		p := filepath.Join(dir, "besnik.pdf")
		os.WriteFile(p, decode(body["DocumentWithSignature"].([]any)[0]), 0o600)
		if out := pdfsig(t, p); !strings.Contains(out, "Signature is Valid.") || !strings.Contains(out, "Besnik Gashi") {
			t.Fatalf("pdfsig of the renewed credential's signature:\n%s", out)
		}
		besnik.credential = renewed.ID
	})
	t.Run("service token from a low login", func(t *testing.T) {
		low := serviceTokenAt(t, app, base, arta, "http://eidas.europa.eu/LoA/low")
		hr, _ := http.NewRequest(http.MethodPost, base+"/csc/v2/credentials/list", strings.NewReader("{}"))
		hr.Header.Set("Authorization", "Bearer "+low)
		resp, err := http.DefaultClient.Do(hr)
		if err != nil {
			t.Fatal(err)
		}
		var body map[string]any
		json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != 401 || body["error"] != "insufficient_user_authentication" ||
			!strings.Contains(resp.Header.Get("WWW-Authenticate"), `acr_values="http://eidas.europa.eu/LoA/substantial"`) {
			t.Fatalf("a low login's token: %d %v %q", resp.StatusCode, body, resp.Header.Get("WWW-Authenticate"))
		}
	})

	// The audit log: the official's key signed once per document signed, never for a refusal.
	srv.cmd.Process.Signal(os.Interrupt)
	srv.cmd.Wait()
	docSigs := 0
	for _, line := range strings.Split(strings.TrimSpace(vula(t, env, "audit", "export")), "\n") {
		var r struct{ Action, Key, Detail string }
		json.Unmarshal([]byte(line), &r)
		detail, _ := hex.DecodeString(r.Detail)
		if r.Action == "sign" && r.Key == arta.key && strings.Contains(string(detail), "signDoc") {
			docSigs++
		}
	}
	// 3 documents, 1 digest, 1 PDF (SAD reused), 1 XML (bad input).
	if docSigs != 6 {
		t.Fatalf("audit: %d signDoc signatures with Arta's key, want 6", docSigs)
	}
	vula(t, env, "audit", "verify")
}

// signingApp registers the signing application the CSC tests use: a confidential client
// "signer" with private_key_jwt and the given scopes.
func signingApp(t *testing.T, env []string, scopes string) *rp {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "signer-1", Algorithm: "ES256", Use: "sig"}}})
	jwksPath := filepath.Join(t.TempDir(), "jwks.json")
	os.WriteFile(jwksPath, jwks, 0o600)
	app := &rp{id: "signer", key: key, callback: "http://127.0.0.1:9/signer/callback"}
	vula(t, env, "clients", "create", app.id, "--auth-method", "private_key_jwt", "--jwks", jwksPath, "--redirect-uri", app.callback,
		"--scope", scopes, "--name", "Document signing")
	return app
}

// verifySignature checks sig, an ECDSA signature (DER) over SHA-256 of doc, with the public key of
// the certificate leafDER: by crypto/ecdsa and by `openssl dgst -verify`.
func verifySignature(t *testing.T, leafDER, doc, sig []byte) {
	t.Helper()
	leaf, err := x509.ParseCertificate(leafDER)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(doc)
	if !ecdsa.VerifyASN1(leaf.PublicKey.(*ecdsa.PublicKey), h[:], sig) {
		t.Fatal("the signature does not verify with the credential's certificate")
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "leaf.der"), leafDER, 0o600)
	os.WriteFile(filepath.Join(dir, "doc.txt"), doc, 0o600)
	os.WriteFile(filepath.Join(dir, "doc.sig"), sig, 0o600)
	if out, err := exec.Command("openssl", "x509", "-inform", "DER", "-in", filepath.Join(dir, "leaf.der"), "-pubkey", "-noout",
		"-out", filepath.Join(dir, "pub.pem")).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	if out, err := exec.Command("openssl", "dgst", "-sha256", "-verify", filepath.Join(dir, "pub.pem"), "-signature", filepath.Join(dir, "doc.sig"),
		filepath.Join(dir, "doc.txt")).CombinedOutput(); err != nil || !strings.Contains(string(out), "Verified OK") {
		t.Fatalf("openssl dgst -verify: %v\n%s", err, out)
	}
}

// freshSAD says whether expiresIn is the lifetime of a SAD just given: the configured 300 s less
// the time the grant took to record (a loaded machine may take seconds).
func freshSAD(expiresIn any) bool {
	s, ok := expiresIn.(float64)
	return ok && s > 240 && s <= 300
}
