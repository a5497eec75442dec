package e2e

import (
	"context"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/webauthn"
	"github.com/chromedp/chromedp"
	"github.com/fxamacker/cbor/v2"
	"github.com/pquerna/otp/totp"
)

// virtualAuthenticator is a CTAP2 authenticator with resident keys and user verification, as
// Chromium emulates it over CDP; backup eligible makes it a synced passkey provider.
func virtualAuthenticator(backupEligible bool) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		if _, err := cdp.Call(ctx, t, webauthn.Enable, webauthn.EnableParams{}); err != nil {
			return err
		}
		_, err := cdp.Call(ctx, t, webauthn.AddVirtualAuthenticator, webauthn.AddVirtualAuthenticatorParams{
			Options: &webauthn.VirtualAuthenticatorOptions{Protocol: webauthn.AuthenticatorProtocolCtap2, Transport: webauthn.AuthenticatorTransportUsb,
				HasResidentKey: true, HasUserVerification: true, IsUserVerified: true, AutomaticPresenceSimulation: true,
				DefaultBackupEligibility: backupEligible, DefaultBackupState: backupEligible}})
		return err
	})
}

// passkeyPlatform is where a test of passkeys at high runs the binary: a data directory, a free
// address, its base URL on localhost (WebAuthn needs a domain name: localhost is one, and a
// secure context) and the environment that trusts Chromium's virtual authenticators
// (attestationRoot) as devices of high.
func passkeyPlatform(t *testing.T, alloc context.Context) (data, addr, base string, env []string) {
	t.Helper()
	data = t.TempDir()
	roots := filepath.Join(t.TempDir(), "passkey-roots.pem")
	if err := os.WriteFile(roots, attestationRoot(t, alloc), 0o644); err != nil {
		t.Fatal(err)
	}
	addr = freePort(t)
	_, port, _ := net.SplitHostPort(addr)
	base = "http://localhost:" + port
	return data, addr, base, []string{"VULA_DATA_DIR=" + data, "VULA_BASE_URL=" + base, "VULA_IDP_PASSKEY_TRUST_ROOTS=" + roots}
}

// attestationRoot is the top certificate of the virtual authenticator's attestation chain, as
// an operator would take it from the vendor: the trust list the platform is then given.
func attestationRoot(t *testing.T, alloc context.Context) []byte {
	top, _ := virtualAttestation(t, alloc)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: top})
}

// virtualAttestation has Chromium's virtual authenticator make a credential with direct
// attestation on a scratch page and returns the top certificate of its attestation chain (DER)
// and the authenticator's AAGUID (8-4-4-4-12 hex): what a FIDO MDS3 entry for it would list.
func virtualAttestation(t *testing.T, alloc context.Context) ([]byte, string) {
	scratch := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprint(w, "<!doctype html><title>scratch</title>")
	}))
	defer scratch.Close()
	_, port, _ := net.SplitHostPort(scratch.Listener.Addr().String())
	ctx, cancel := chromedp.NewContext(alloc)
	defer cancel()
	if err := chromedp.Do(ctx, virtualAuthenticator(false), chromedp.Navigate("http://localhost:"+port+"/")); err != nil {
		t.Fatal(err)
	}
	b64, err := chromedp.Run(ctx, chromedp.Evaluate[string](`(async () => {
  const c = await navigator.credentials.create({publicKey: {challenge: new Uint8Array(32), rp: {name: "scratch"},
    user: {id: new Uint8Array([1]), name: "scratch", displayName: "scratch"}, pubKeyCredParams: [{type: "public-key", alg: -7}],
    attestation: "direct", authenticatorSelection: {residentKey: "required", userVerification: "required"}}});
  return btoa(String.fromCharCode(...new Uint8Array(c.response.attestationObject)));
})()`, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := base64.StdEncoding.DecodeString(b64)
	var att struct {
		Fmt      string         `cbor:"fmt"`
		AttStmt  map[string]any `cbor:"attStmt"`
		AuthData []byte         `cbor:"authData"`
	}
	if err := cbor.Unmarshal(raw, &att); err != nil {
		t.Fatal(err)
	}
	x5c, _ := att.AttStmt["x5c"].([]any)
	if len(x5c) == 0 {
		t.Fatalf("the virtual authenticator's %s attestation has no certificate chain", att.Fmt)
	}
	top, _ := x5c[len(x5c)-1].([]byte)
	// authData: the RP ID hash (32), flags (1), the sign count (4), then the AAGUID (16).
	if len(att.AuthData) < 53 {
		t.Fatalf("authData of %d bytes has no attested credential data", len(att.AuthData))
	}
	g := att.AuthData[37:53]
	return top, fmt.Sprintf("%x-%x-%x-%x-%x", g[0:4], g[4:6], g[6:8], g[8:10], g[10:16])
}

// TestBrowserPasskeys has Chromium, with a virtual authenticator, enrol passkeys and log in
// with them at the demo relying party. A device-bound authenticator whose attestation chains to
// the configured trust list gives acr high (amr hwk); a synced one gives substantial even to a
// person proofed at high, and a request for high is then refused. A person proofed only at
// substantial gets substantial from a high passkey: the lower of the two.
func TestBrowserPasskeys(t *testing.T) {
	t.Parallel()
	vulaBinary(t)
	alloc := headlessChromium(t)
	data, addr, base, env := passkeyPlatform(t, alloc)

	type person struct{ number, pw, seed string }
	mk := func(number, proofing string) person {
		pw, seed := citizenProofed(t, env, number, proofing)
		return person{number, pw, seed}
	}
	device, synced, lower := mk("4000000001", "high"), mk("4000000002", "high"), mk("4000000003", "substantial")
	srv := startReplicaAt(t, addr, data, env)
	srv.ready(t, http.StatusOK)

	for _, tc := range []struct {
		name    string
		p       person
		synced  bool
		level   string // the passkey's level as its page shows it
		highACR string // what a request for high ends with
		subACR  string // the acr of a passkey login asked at substantial
	}{
		{"device-bound", device, false, "level high", "acr http://eidas.europa.eu/LoA/high", "http://eidas.europa.eu/LoA/high"},
		{"synced", synced, true, "level substantial", "unmet_authentication_requirements", "http://eidas.europa.eu/LoA/substantial"},
		{"proofed-substantial", lower, false, "level high", "unmet_authentication_requirements", "http://eidas.europa.eu/LoA/substantial"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newTab(t, alloc, srv, virtualAuthenticator(tc.synced))
			// A login at substantial (password and one-time code), then a passkey.
			b.do("open the relying party", chromedp.Navigate(base+"/demo/?acr=substantial"), chromedp.WaitVisible(chromedp.CSS("#identifier")))
			code, err := totp.GenerateCode(tc.p.seed, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			b.do("log in", chromedp.SendKeys(chromedp.CSS("#identifier"), tc.p.number), chromedp.SendKeys(chromedp.CSS("#password"), tc.p.pw),
				chromedp.Click(chromedp.CSS(`form[action="/login"] button`)), chromedp.WaitVisible(chromedp.CSS("#code")),
				chromedp.SendKeys(chromedp.CSS("#code"), code), chromedp.Click(chromedp.CSS(`form[action="/login/totp"] button`)),
				chromedp.WaitVisible(chromedp.CSS(`button[value="allow"]`)), chromedp.Click(chromedp.CSS(`button[value="allow"]`)),
				chromedp.WaitVisible(chromedp.CSS("body > p")))
			b.do("enrol a passkey", chromedp.Navigate(base+"/account/passkeys"), chromedp.WaitVisible(chromedp.CSS("#passkey-name")),
				chromedp.SendKeys(chromedp.CSS("#passkey-name"), "my key"), chromedp.Click(chromedp.CSS("#passkey-add button")),
				chromedp.WaitVisible(chromedp.CSS("#passkey-done")))
			if got := b.text("ul.passkeys"); !strings.Contains(got, "my key") || !strings.Contains(got, tc.level) {
				t.Fatalf("the passkeys page lists %q, want my key at %s\n%s", got, tc.level, srv.logs)
			}
			b.do("log out", chromedp.Navigate(base+"/logout"), chromedp.WaitVisible(chromedp.CSS(`button[type="submit"]`)),
				chromedp.Click(chromedp.CSS(`button[type="submit"]`)), chromedp.WaitVisible(chromedp.CSS(".alert.ok")))

			// Step-up: a request for high offers the passkey only.
			b.do("ask for high", chromedp.Navigate(base+"/demo/?acr=high"), chromedp.WaitVisible(chromedp.CSS("#passkey-button")))
			if b.count("#identifier, #password") != 0 {
				t.Fatal("the login page for high offers the password")
			}
			b.do("log in with the passkey", chromedp.Click(chromedp.CSS("#passkey-button")),
				chromedp.WaitVisible(chromedp.CSS(`button[value="allow"], body > p`)))
			if b.count(`button[value="allow"]`) > 0 {
				b.do("consent", chromedp.Click(chromedp.CSS(`button[value="allow"]`)), chromedp.WaitVisible(chromedp.CSS("body > p")))
			}
			got := b.text("body")
			if want := strings.TrimPrefix(tc.highACR, "acr "); !strings.Contains(got, want) {
				t.Fatalf("asked for high, the relying party got %q, want %q", got, want)
			}
			if tc.highACR == "acr http://eidas.europa.eu/LoA/high" && !strings.Contains(got, "hwk") {
				t.Fatalf("a device-bound passkey's amr: %q", got)
			}
			// The passkey as the first factor at substantial (a new login: prompt=login is what
			// max_age would force; here the single sign-on of the failed attempt may exist).
			b.do("log out again", chromedp.Navigate(base+"/logout"), chromedp.WaitVisible(chromedp.CSS(`button[type="submit"]`)),
				chromedp.Click(chromedp.CSS(`button[type="submit"]`)), chromedp.WaitVisible(chromedp.CSS(".alert.ok")))
			b.do("passkey at substantial", chromedp.Navigate(base+"/demo/?acr=substantial"), chromedp.WaitVisible(chromedp.CSS("#passkey-button")),
				chromedp.Click(chromedp.CSS("#passkey-button")), chromedp.WaitVisible(chromedp.CSS(`button[value="allow"], body > p`)))
			if b.count(`button[value="allow"]`) > 0 {
				b.do("consent", chromedp.Click(chromedp.CSS(`button[value="allow"]`)), chromedp.WaitVisible(chromedp.CSS("body > p")))
			}
			if got := b.text("body"); !strings.Contains(got, tc.subACR) || !strings.Contains(got, "mfa") {
				t.Fatalf("a passkey login at substantial: the relying party got %q, want %s", got, tc.subACR)
			}
		})
	}
}

// citizenProofed is citizen with the identity proofing level given.
func citizenProofed(t *testing.T, env []string, number, proofing string) (string, string) {
	t.Helper()
	const pw = "a long and secret passphrase"
	vula(t, append(env, "CITIZEN_PW="+pw), "persons", "create", number, "--given-name", "Arta", "--family-name", "Krasniqi",
		"--birthdate", "1990-04-12", "--password-env", "CITIZEN_PW", "--proofing", proofing)
	return pw, enrolTOTP(t, env, number)
}
