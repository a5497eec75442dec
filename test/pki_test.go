package e2e

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vula-eid/vula/internal/testenv"
)

// TestPKIWithOpenSSL runs `vula serve` on a SoftHSM2 token, issues a person's certificate with
// `vula pki issue` beside it, and asks openssl: verify OK, OCSP good, then revoked after
// `vula pki revoke`, and the CRL lists the serial.
func TestPKIWithOpenSSL(t *testing.T) {
	t.Parallel()
	vulaBinary(t)
	tok := testenv.SoftHSM(t)
	data := t.TempDir()
	env := []string{"SOFTHSM2_CONF=" + tok.Conf, "VULA_HSM_BACKEND=pkcs11", "VULA_HSM_PKCS11_MODULE=" + tok.Module,
		"VULA_HSM_PKCS11_TOKEN_LABEL=" + tok.Label, "VULA_HSM_PKCS11_PIN_ENV=TEST_HSM_PIN", "TEST_HSM_PIN=" + tok.PIN,
		"VULA_DATA_DIR=" + data}
	r := &replica{addr: freePort(t)}
	env = append(env, "VULA_BASE_URL=http://"+r.addr)
	r = startReplicaAt(t, r.addr, data, env)
	r.ready(t, http.StatusOK)

	var k map[string]any
	json.Unmarshal([]byte(vula(t, env, "keys", "create", "--label", "arta", "--purpose", "sign:arta", "--output", "json")), &k)
	leafPEM := vula(t, env, "pki", "issue", "--key", k["uri"].(string), "--given-name", "Arta", "--family-name", "Krasniqi", "--number", "1234567890")
	block, _ := pem.Decode([]byte(leafPEM))
	if block == nil {
		t.Fatalf("pki issue printed no PEM: %q", leafPEM)
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	files := map[string]string{}
	for _, name := range []string{"root", "person-ca"} {
		resp, err := http.Get("http://" + r.addr + "/pki/" + name + ".crt")
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET %s.crt: %v", name, err)
		}
		der, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		files[name] = filepath.Join(dir, name+".pem")
		os.WriteFile(files[name], pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	}
	files["leaf"] = filepath.Join(dir, "leaf.pem")
	os.WriteFile(files["leaf"], []byte(leafPEM), 0o600)
	if out, err := exec.Command("openssl", "verify", "-CAfile", files["root"], "-untrusted", files["person-ca"], files["leaf"]).CombinedOutput(); err != nil {
		t.Fatalf("openssl verify: %v\n%s", err, out)
	}
	ocsp := func() string {
		out, err := exec.Command("openssl", "ocsp", "-issuer", files["person-ca"], "-cert", files["leaf"],
			"-url", "http://"+r.addr+"/pki/ocsp", "-CAfile", files["root"]).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "Response verify OK") {
			t.Fatalf("openssl ocsp: %v\n%s", err, out)
		}
		return string(out)
	}
	if out := ocsp(); !strings.Contains(out, files["leaf"]+": good") {
		t.Fatalf("before revocation:\n%s", out)
	}
	vula(t, env, "pki", "revoke", "--ca", "person-ca", "--serial", fmt.Sprintf("%x", leaf.SerialNumber), "--reason", "1")
	if out := ocsp(); !strings.Contains(out, files["leaf"]+": revoked") {
		t.Fatalf("after vula pki revoke:\n%s", out)
	}
	resp, err := http.Get("http://" + r.addr + "/pki/person-ca.crl")
	if err != nil {
		t.Fatal(err)
	}
	crl, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	crlFile := filepath.Join(dir, "person-ca.crl")
	os.WriteFile(crlFile, crl, 0o600)
	out, err := exec.Command("openssl", "crl", "-inform", "DER", "-in", crlFile, "-noout", "-text").CombinedOutput()
	if err != nil || !strings.Contains(strings.ToUpper(string(out)), strings.ToUpper(fmt.Sprintf("%X", leaf.SerialNumber))) {
		t.Fatalf("the CRL does not list %X: %v\n%s", leaf.SerialNumber, err, out)
	}
}
