package e2e

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/pquerna/otp/totp"
	"golang.org/x/oauth2"

	"github.com/vula-eid/vula/internal/idp/idptest"
	"github.com/vula-eid/vula/internal/testenv"
)

// TestCSCOAuthCredential: credential authorization through OAuth against the real binary (CSC
// API v2 §8.4.2). A signing application pushes authorization_details of type credential
// (RFC 9396) through PAR, the official logs in afresh with password and TOTP and sees the
// documents on the page, the application redeems the code with golang.org/x/oauth2 and calls
// signatures/signHash with the credential token instead of a SAD; the signature is checked
// with crypto/ecdsa and `openssl dgst -verify`. The scope credential form too, and signDoc
// with a credential token (CAdES checked by `openssl cms -verify`). Each refusal is a subtest;
// the audit log holds the authorizations and each signature once.
func TestCSCOAuthCredential(t *testing.T) {
	t.Parallel()
	vulaBinary(t)
	testenv.Need(t, "openssl")
	ctx := context.Background()
	data := t.TempDir()
	env := []string{"VULA_DATA_DIR=" + data, "VULA_IDP_DEMO=false"}
	arta := newOfficial(t, env, "1100000011", "Arta", "Krasniqi")
	besnik := newOfficial(t, env, "1100000012", "Besnik", "Gashi")
	citizenPW, citizenSeed := citizen(t, env, "1200000013")

	// The default grant types include refresh_token: a credential token must get none anyway.
	app := signingApp(t, env, "openid,service,credential")

	srv := startReplicaAt(t, freePort(t), data, env)
	srv.ready(t, http.StatusOK)
	base := "http://" + srv.addr

	// Discovery, read by go-oidc.
	prov, err := oidc.NewProvider(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	var meta struct {
		PAR     string   `json:"pushed_authorization_request_endpoint"`
		Types   []string `json:"authorization_details_types_supported"`
		Scopes  []string `json:"scopes_supported"`
		AuthURL string   `json:"authorization_endpoint"`
	}
	if err := prov.Claims(&meta); err != nil || meta.PAR != base+"/oauth2/par" || !slices.Contains(meta.Types, "credential") ||
		!strings.Contains(fmt.Sprint(meta.Scopes), "credential") {
		t.Fatalf("discovery: %v %+v", err, meta)
	}
	conf := oauth2.Config{ClientID: app.id, Endpoint: oauth2.Endpoint{AuthURL: meta.AuthURL, TokenURL: prov.Endpoint().TokenURL,
		AuthStyle: oauth2.AuthStyleInParams}, RedirectURL: app.callback}

	// The official's certificate, through the service authorization.
	svc := serviceToken(t, app, base, arta)
	status, ci := cscCall(t, base, svc, "credentials/info", map[string]any{"credentialID": arta.credential, "certificates": "chain"})
	if status != 200 || !strings.Contains(fmt.Sprint(ci["auth"].(map[string]any)["modes"]), "oauth2code") {
		t.Fatalf("credentials/info does not offer oauth2code: %d %v", status, ci)
	}
	chain := ci["cert"].(map[string]any)["certificates"].([]any)
	der, _ := base64.StdEncoding.DecodeString(chain[0].(string))
	if _, err := x509.ParseCertificate(der); err != nil || len(chain) != 3 {
		t.Fatalf("credential chain of %d: %v", len(chain), err)
	}
	dir := t.TempDir()
	for i, name := range []string{"leaf.pem", "ca.pem", "root.pem"} {
		b, _ := base64.StdEncoding.DecodeString(chain[i].(string))
		os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: b}), 0o600)
	}

	docs := [][]byte{[]byte("Vendim nr. 11\n"), []byte("Vendim nr. 12\n"), []byte("not authorized\n"), []byte("Vendim nr. 13\n")}
	hashes := make([][]byte, len(docs))
	for i, d := range docs {
		h := sha256.Sum256(d)
		hashes[i] = h[:]
	}
	details := func(cred, oid string, labels []string, hs ...[]byte) string {
		var dd []map[string]string
		for i, h := range hs {
			dd = append(dd, map[string]string{"hash": base64.StdEncoding.EncodeToString(h), "label": labels[i]})
		}
		b, _ := json.Marshal([]map[string]any{{"type": "credential", "credentialID": cred, "hashAlgorithmOID": oid, "documentDigests": dd}})
		return string(b)
	}
	parURL := meta.PAR
	// push sends a pushed authorization request (private_key_jwt, PKCE) with the given
	// parameters; it returns the status, the answer and the PKCE verifier.
	push := func(params map[string]string) (int, map[string]any, string) {
		verifier := oauth2.GenerateVerifier()
		form := app.assertion(t, base+"/oauth2/token")
		for k, v := range map[string]string{"client_id": app.id, "response_type": "code", "redirect_uri": app.callback,
			"state": "state-" + verifier[:8], "code_challenge": oauth2.S256ChallengeFromVerifier(verifier), "code_challenge_method": "S256"} {
			form.Set(k, v)
		}
		for k, v := range params {
			form.Set(k, v)
		}
		status, body := post(t, parURL, form)
		return status, body, verifier
	}
	authURL := func(par map[string]any) string {
		return base + "/oauth2/auth?client_id=" + app.id + "&request_uri=" + url.QueryEscape(par["request_uri"].(string))
	}
	exchange := func(cb *url.URL, verifier string) *oauth2.Token {
		t.Helper()
		a := app.assertion(t, base+"/oauth2/token")
		tok, err := conf.Exchange(ctx, cb.Query().Get("code"), oauth2.VerifierOption(verifier),
			oauth2.SetAuthURLParam("client_assertion_type", a.Get("client_assertion_type")),
			oauth2.SetAuthURLParam("client_assertion", a.Get("client_assertion")))
		if err != nil {
			t.Fatalf("code exchange: %v", err)
		}
		return tok
	}
	signHash := func(tok, cred string, extra map[string]any, hs ...[]byte) (int, map[string]any) {
		req := map[string]any{"credentialID": cred, "hashes": b64(hs...), "hashAlgorithmOID": oidSHA256, "signAlgo": oidECDSASHA256}
		for k, v := range extra {
			req[k] = v
		}
		return cscCall(t, base, tok, "signatures/signHash", req)
	}

	// 1. authorization_details through PAR; the page shows what is signed; no SSO, no
	// remembered consent.
	status, par, verifier := push(map[string]string{"scope": "openid",
		"authorization_details": details(arta.credential, oidSHA256, []string{"Vendim nr. 11 — ndërtimi", "Vendim nr. 12"}, hashes[0], hashes[1])})
	if status != http.StatusCreated {
		t.Fatalf("PAR: %d %v", status, par)
	}
	b := idptest.New(t, base)
	r := b.Get(authURL(par))
	if !strings.Contains(r.Body, `name="password"`) {
		t.Fatalf("no login page: %d %s", r.Status, r.Body)
	}
	r.Form.Set("identifier", arta.number)
	r.Form.Set("password", arta.pw)
	r = b.Post("/login", r.Form)
	r.Form.Set("code", arta.otp(t))
	r = b.Post("/login/totp", r.Form)
	full := hex.EncodeToString(hashes[0])
	for _, want := range []string{"Vendim nr. 11 — ndërtimi", "Vendim nr. 12", arta.credential, full[:8] + "…" + full[len(full)-8:], "SHA-256", `name="decision"`} {
		if !strings.Contains(r.Body, want) {
			t.Fatalf("the authorization page lacks %q: %d\n%s", want, r.Status, r.Body)
		}
	}
	if strings.Contains(r.Body, `name="remember"`) {
		t.Fatal("a credential authorization offers to be remembered")
	}
	r.Form.Set("decision", "allow")
	// The form sent eight times at once gets one code: two would sign each digest twice.
	answers := make(chan idptest.Response, 8)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() { defer wg.Done(); answers <- b.Post("/consent", r.Form) }()
	}
	wg.Wait()
	close(answers)
	codes := 0
	for a := range answers {
		if a.Status == http.StatusSeeOther && strings.HasPrefix(a.URL.String(), app.callback) && a.URL.Query().Get("code") != "" {
			codes++
			r = a
		}
	}
	if codes != 1 {
		t.Fatalf("%d codes for one authorization, want 1", codes)
	}
	issued := time.Now()
	tok := exchange(r.URL, verifier)
	if tok.RefreshToken != "" || tok.Expiry.After(issued.Add(5*time.Minute+5*time.Second)) || !strings.Contains(fmt.Sprint(tok.Extra("scope")), "credential") {
		t.Fatalf("credential token: refresh %q, expires in %v, scope %v", tok.RefreshToken, time.Until(tok.Expiry), tok.Extra("scope"))
	}
	ad, _ := json.Marshal(tok.Extra("authorization_details"))
	var echoed []struct {
		Type, CredentialID, HashAlgorithmOID string
		DocumentDigests                      []struct{ Hash, Label string }
	}
	if err := json.Unmarshal(ad, &echoed); err != nil || len(echoed) != 1 || echoed[0].Type != "credential" || echoed[0].CredentialID != arta.credential ||
		len(echoed[0].DocumentDigests) != 2 || echoed[0].DocumentDigests[1].Hash != base64.StdEncoding.EncodeToString(hashes[1]) {
		t.Fatalf("the token response's authorization_details: %v %s", err, ad)
	}
	cred := tok.AccessToken
	// Introspection says what the token authorizes (RFC 9396 §9.2).
	// The client authenticates (RFC 7662 §2.1); a bearer token is no client authentication.
	iform := app.assertion(t, base+"/oauth2/introspect")
	iform.Set("token", cred)
	ireq, _ := http.NewRequest(http.MethodPost, base+"/oauth2/introspect", strings.NewReader(iform.Encode()))
	ireq.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	iresp, err := http.DefaultClient.Do(ireq)
	if err != nil {
		t.Fatal(err)
	}
	var ir map[string]any
	json.NewDecoder(iresp.Body).Decode(&ir)
	iresp.Body.Close()
	if iresp.StatusCode != 200 || ir["active"] != true || !strings.Contains(fmt.Sprint(ir["authorization_details"]), arta.credential) {
		t.Fatalf("introspection of the credential token: %d %v", iresp.StatusCode, ir)
	}
	// A browser that logged in is not let through the next credential authorization by its
	// single sign-on: the login page comes again.
	_, par2, _ := push(map[string]string{"scope": "credential", "credentialID": arta.credential, "numSignatures": "1",
		"hashes": base64.RawURLEncoding.EncodeToString(hashes[3]), "hashAlgorithmOID": oidSHA256})
	if r := b.Get(authURL(par2)); !strings.Contains(r.Body, `name="password"`) {
		t.Fatalf("a credential authorization rode on single sign-on: %d %s", r.Status, r.URL)
	}

	status, signed := signHash(cred, arta.credential, nil, hashes[0])
	if status != 200 {
		t.Fatalf("signHash with the credential token: %d %v", status, signed)
	}
	sig, _ := base64.StdEncoding.DecodeString(signed["signatures"].([]any)[0].(string))
	verifySignature(t, der, docs[0], sig)

	t.Run("a digest not authorized", func(t *testing.T) {
		status, body := signHash(cred, arta.credential, nil, hashes[2])
		wantCSCError(t, "a digest outside the token", status, body, "invalid_request", "not authorized")
	})
	t.Run("second use", func(t *testing.T) {
		status, body := signHash(cred, arta.credential, nil, hashes[0])
		wantCSCError(t, "a digest signed a second time", status, body, "invalid_request", "already been signed")
	})
	t.Run("another credential or a SAD beside the token", func(t *testing.T) {
		status, body := signHash(cred, besnik.credential, nil, hashes[1])
		wantCSCError(t, "the token on another credential", status, body, "invalid_request", "SAD")
		status, body = signHash(cred, arta.credential, map[string]any{"SAD": "some-other-sad-value"}, hashes[1])
		wantCSCError(t, "a SAD beside the token", status, body, "invalid_request", "omit SAD")
		if status, body := cscCall(t, base, cred, "credentials/list", map[string]any{}); status != 403 || body["error"] != "insufficient_scope" {
			t.Errorf("a credential token as service authorization: %d %v", status, body)
		}
	})
	// CSC lets the token be passed as SAD too.
	if status, body := signHash(cred, arta.credential, map[string]any{"SAD": cred}, hashes[1]); status != 200 {
		t.Fatalf("the last authorized digest: %d %v", status, body)
	} else {
		sig, _ := base64.StdEncoding.DecodeString(body["signatures"].([]any)[0].(string))
		verifySignature(t, der, docs[1], sig)
	}
	status, body := signHash(cred, arta.credential, nil, hashes[1])
	wantCSCError(t, "a spent token", status, body, "invalid_request", "SAD")

	// 2. The scope form (CSC's own parameters), pushed too, at the paths CSC names under its
	// oauth2 base URI (info's oauth2).
	parURL = fmt.Sprint(cscInfo(t, base)["oauth2"]) + "/oauth2/pushed_authorize"
	status, par, verifier = push(map[string]string{"scope": "credential", "credentialID": arta.credential, "numSignatures": "1",
		"hashes": base64.RawURLEncoding.EncodeToString(hashes[3]), "hashAlgorithmOID": oidSHA256})
	if status != http.StatusCreated {
		t.Fatalf("PAR, scope form: %d %v", status, par)
	}
	cb := idptest.New(t, base).LoginWithCode(strings.Replace(authURL(par), "/oauth2/auth?", "/oauth2/authorize?", 1), app.callback,
		arta.number, arta.pw, arta.otp(t))
	parURL = meta.PAR
	tok = exchange(cb, verifier)
	status, signed = signHash(tok.AccessToken, arta.credential, nil, hashes[3])
	if status != 200 {
		t.Fatalf("signHash, scope form: %d %v", status, signed)
	}
	sig, _ = base64.StdEncoding.DecodeString(signed["signatures"].([]any)[0].(string))
	verifySignature(t, der, docs[3], sig)

	// 3. signatures/signDoc with a credential token: a detached CAdES signature over the one
	// authorized document, checked by openssl cms -verify.
	t.Run("signDoc", func(t *testing.T) {
		doc := []byte("Vendim nr. 14: CAdES\n")
		d := sha256.Sum256(doc)
		status, par, verifier := push(map[string]string{"authorization_details": details(arta.credential, oidSHA256, []string{"Vendim nr. 14"}, d[:])})
		if status != http.StatusCreated {
			t.Fatalf("PAR: %d %v", status, par)
		}
		cb := idptest.New(t, base).LoginWithCode(authURL(par), app.callback, arta.number, arta.pw, arta.otp(t))
		tok := exchange(cb, verifier)
		req := func(doc []byte) map[string]any {
			return map[string]any{"credentialID": arta.credential, "documents": []map[string]any{{"document": base64.StdEncoding.EncodeToString(doc),
				"signature_format": "C", "conformance_level": "Ades-B-B", "signed_envelope_property": "Detached", "signAlgo": oidECDSASHA256}}}
		}
		status, body := cscCall(t, base, tok.AccessToken, "signatures/signDoc", req([]byte("another document\n")))
		wantCSCError(t, "signDoc of a document outside the token", status, body, "invalid_request", "not authorized")
		status, body = cscCall(t, base, tok.AccessToken, "signatures/signDoc", req(doc))
		if status != 200 {
			t.Fatalf("signDoc with the credential token: %d %v", status, body)
		}
		p7s, _ := base64.StdEncoding.DecodeString(body["SignatureObject"].([]any)[0].(string))
		os.WriteFile(filepath.Join(dir, "doc14.txt"), doc, 0o600)
		os.WriteFile(filepath.Join(dir, "doc14.p7s"), p7s, 0o600)
		if out, err := exec.Command("openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", filepath.Join(dir, "doc14.p7s"),
			"-content", filepath.Join(dir, "doc14.txt"), "-CAfile", filepath.Join(dir, "root.pem"), "-certfile", filepath.Join(dir, "ca.pem"),
			"-purpose", "any", "-out", os.DevNull).CombinedOutput(); err != nil || !strings.Contains(string(out), "Verification successful") {
			t.Fatalf("openssl cms -verify: %v\n%s", err, out)
		}
		status, body = cscCall(t, base, tok.AccessToken, "signatures/signDoc", req(doc))
		wantCSCError(t, "signDoc a second time", status, body, "invalid_request", "SAD")
	})

	// wantRedirectError checks that a flow ends at the client with an OAuth error.
	wantRedirectError := func(t *testing.T, what string, cb *url.URL, code string) {
		t.Helper()
		if !strings.HasPrefix(cb.String(), app.callback) || cb.Query().Get("error") != code || cb.Query().Get("code") != "" {
			t.Errorf("%s: redirect %s, want error %s", what, cb, code)
		}
	}
	t.Run("another official's credential", func(t *testing.T) {
		status, par, _ := push(map[string]string{"authorization_details": details(arta.credential, oidSHA256, []string{"x"}, hashes[2])})
		if status != http.StatusCreated {
			t.Fatalf("PAR: %d %v", status, par)
		}
		cb := idptest.New(t, base).LoginWithCode(authURL(par), app.callback, besnik.number, besnik.pw, besnik.otp(t))
		wantRedirectError(t, "Besnik authorizing Arta's credential", cb, "invalid_authorization_details")
	})
	t.Run("a citizen", func(t *testing.T) {
		status, par, _ := push(map[string]string{"authorization_details": details(arta.credential, oidSHA256, []string{"x"}, hashes[2])})
		if status != http.StatusCreated {
			t.Fatalf("PAR: %d %v", status, par)
		}
		code, _ := totp.GenerateCode(citizenSeed, time.Now())
		cb := idptest.New(t, base).LoginWithCode(authURL(par), app.callback, "1200000013", citizenPW, code)
		wantRedirectError(t, "a citizen", cb, "access_denied")
	})
	t.Run("a login without TOTP", func(t *testing.T) {
		status, par, _ := push(map[string]string{"authorization_details": details(arta.credential, oidSHA256, []string{"x"}, hashes[2])})
		if status != http.StatusCreated {
			t.Fatalf("PAR: %d %v", status, par)
		}
		b := idptest.New(t, base)
		r := b.Get(authURL(par))
		r.Form.Set("identifier", arta.number)
		r.Form.Set("password", arta.pw)
		r = b.Post("/login", r.Form)
		if !strings.Contains(r.Body, `autocomplete="one-time-code"`) {
			t.Fatalf("no one-time code asked: %d %s", r.Status, r.Body)
		}
		// Skipping the one-time code page.
		r = b.Get("/consent?flow=" + r.Form.Get("flow"))
		wantRedirectError(t, "a password-only login", r.URL, "unmet_authentication_requirements")
		if strings.Contains(r.Body, `name="decision"`) {
			t.Fatal("the authorization page was shown after a password alone")
		}
	})
	t.Run("bad requests at PAR", func(t *testing.T) {
		for _, tc := range []struct {
			name   string
			params map[string]string
			code   string
		}{
			{"SHA-1", map[string]string{"authorization_details": details(arta.credential, "1.3.14.3.2.26", []string{"x"}, hashes[2][:20])}, "invalid_authorization_details"},
			{"a short digest", map[string]string{"authorization_details": details(arta.credential, oidSHA256, []string{"x"}, hashes[2][:20])}, "invalid_authorization_details"},
			{"a digest twice", map[string]string{"authorization_details": details(arta.credential, oidSHA256, []string{"x", "y"}, hashes[2], hashes[2])}, "invalid_authorization_details"},
			{"no digest", map[string]string{"authorization_details": details(arta.credential, oidSHA256, nil)}, "invalid_authorization_details"},
			{"scope form, bad OID", map[string]string{"scope": "credential", "credentialID": arta.credential, "numSignatures": "1",
				"hashes": base64.RawURLEncoding.EncodeToString(hashes[2]), "hashAlgorithmOID": "1.2.3"}, "invalid_request"},
			{"scope form, numSignatures", map[string]string{"scope": "credential", "credentialID": arta.credential, "numSignatures": "2",
				"hashes": base64.RawURLEncoding.EncodeToString(hashes[2]), "hashAlgorithmOID": oidSHA256}, "invalid_request"},
			{"with service", map[string]string{"scope": "credential service", "credentialID": arta.credential, "numSignatures": "1",
				"hashes": base64.RawURLEncoding.EncodeToString(hashes[2]), "hashAlgorithmOID": oidSHA256}, "invalid_request"},
		} {
			status, body, _ := push(tc.params)
			if status != http.StatusBadRequest || body["error"] != tc.code {
				t.Errorf("%s: %d %v, want 400 %s", tc.name, status, body, tc.code)
			}
		}
	})

	// The audit log: the two authorizations granted and one refused, with their digests; Arta's
	// key signed the three authorized digests, each once, each naming its authorization.
	srv.cmd.Process.Signal(os.Interrupt)
	srv.cmd.Wait()
	grantedSeqs := map[string]bool{}
	signedDigests := map[string]int{}
	var refused int
	for _, line := range strings.Split(strings.TrimSpace(vula(t, env, "audit", "export")), "\n") {
		var rec struct {
			Seq                                int64
			Action, Key, Actor, Digest, Result string
			Detail                             string
		}
		json.Unmarshal([]byte(line), &rec)
		detail, _ := hex.DecodeString(rec.Detail)
		switch {
		case rec.Action == "csc.authorize" && strings.Contains(string(detail), `"mode":"oauth2code"`) && rec.Result == "ok":
			grantedSeqs[strconv.FormatInt(rec.Seq, 10)] = true
			if rec.Key != arta.key {
				t.Errorf("a granted authorization on key %s", rec.Key)
			}
		case rec.Action == "csc.authorize" && strings.Contains(string(detail), `"mode":"oauth2code"`):
			refused++
			if !strings.Contains(string(detail), hex.EncodeToString(hashes[2])) {
				t.Errorf("a refused authorization without its digest: %s", detail)
			}
		case rec.Action == "sign" && rec.Key == arta.key:
			signedDigests[rec.Digest]++
			var d map[string]string
			json.Unmarshal(detail, &d)
			if !grantedSeqs[d["csc_authorization_seq"]] {
				t.Errorf("a signature naming no granted authorization: %s", detail)
			}
		}
	}
	if len(grantedSeqs) != 3 || refused != 1 || len(signedDigests) != 4 {
		t.Fatalf("audit: %d granted, %d refused, signatures %v; want 3, 1, 4 digests", len(grantedSeqs), refused, signedDigests)
	}
	for _, i := range []int{0, 1, 3} {
		if n := signedDigests[hex.EncodeToString(hashes[i])]; n != 1 {
			t.Errorf("digest %d signed %d times", i, n)
		}
	}
	vula(t, env, "audit", "verify")
}

// cscInfo is the CSC info answer.
func cscInfo(t *testing.T, base string) map[string]any {
	t.Helper()
	status, body := cscCall(t, base, "", "info", map[string]any{})
	if status != 200 {
		t.Fatalf("info: %d %v", status, body)
	}
	return body
}
