package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestHolderWallet runs `vula wallet`, the reference holder, against the real binary's issuer:
// `vula pid offer` → `vula wallet accept` with the transaction code → `vula wallet list` shows
// the PID as SD-JWT VC and mdoc, valid → `vula pid revoke` → list shows them revoked. And the
// refusals: a wrong transaction code, an issuer whose chain ends at no trust anchor of the
// wallet, a wallet file others may read.
func TestHolderWallet(t *testing.T) {
	vulaBinary(t)
	work := t.TempDir()
	data := filepath.Join(work, "var")
	addr := freePort(t)
	issuer := "http://" + addr
	env := []string{"VULA_DATA_DIR=" + data, "VULA_IDP_DEMO=false", "VULA_BASE_URL=" + issuer}
	const number = "5566778899"
	vula(t, append(env, "CITIZEN_PW=a long and secret passphrase"), "persons", "create", number, "--given-name", "Arben",
		"--family-name", "Gashi", "--birthdate", "1990-04-17", "--password-env", "CITIZEN_PW")
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
			URI    string `json:"credential_offer_uri"`
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
	// 14: the 4 kept and the 10 the untrusting wallet refused.
	if out := vula(t, env, "pid", "revoke", number, "--reason", "lost phone"); !strings.Contains(out, "revoked 14 credential") {
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
