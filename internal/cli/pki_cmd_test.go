package cli

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"strings"
	"testing"
)

// TestPKIIssue: `pki issue` prints the serial (stderr beside PEM, or JSON), and a certificate
// issued from the command line points its OCSP and CRL URLs at the base_url serve last ran with,
// not at the command's own default listen address (issue #17 item 5).
func TestPKIIssue(t *testing.T) {
	env := []string{"VULA_DATA_DIR=" + t.TempDir(), "VULA_IDP_DEMO=false"}
	srv := serveInProcess(t, env)
	addr := srv.addr
	srv.stop(t) // the software keystore is one process's: stop serve before the commands

	if code, _, errs := run(t, env, "keys", "create", "--label", "arta", "--purpose", "sign:arta"); code != 0 {
		t.Fatal(errs)
	}
	code, out, errs := run(t, env, "pki", "issue", "--key", "software:object=arta", "--given-name", "Arta", "--family-name", "Krasniqi", "--number", "1234567890")
	block, rest := pem.Decode([]byte(out))
	if code != 0 || block == nil || strings.TrimSpace(string(rest)) != "" {
		t.Fatalf("pki issue: %d %q %q", code, out, errs)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	serial := c.SerialNumber.Text(16)
	if !strings.Contains(errs, "serial "+serial+" under person-ca") {
		t.Fatalf("the serial is not on stderr: %q", errs)
	}
	base := "http://" + addr + "/pki/"
	if len(c.OCSPServer) != 1 || c.OCSPServer[0] != base+"ocsp" || len(c.CRLDistributionPoints) != 1 || !strings.HasPrefix(c.CRLDistributionPoints[0], base) {
		t.Fatalf("URLs in the certificate: OCSP %v, CRL %v; want them under %s", c.OCSPServer, c.CRLDistributionPoints, base)
	}

	code, out, errs = run(t, env, "pki", "issue", "--key", "software:object=arta", "--given-name", "Arta", "--family-name", "Krasniqi",
		"--number", "1234567890", "--output", "json")
	var issued struct {
		Serial, Issuer, Subject string
		OCSP                    []string
		Certificate             string `json:"certificate_pem"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &issued) != nil || issued.Serial == "" || issued.Serial == serial ||
		issued.Issuer != "person-ca" || issued.OCSP[0] != base+"ocsp" || !strings.HasPrefix(issued.Certificate, "-----BEGIN CERTIFICATE-----") {
		t.Fatalf("pki issue --output json: %d %q %q", code, out, errs)
	}
	// The serial is what pki revoke takes.
	if code, out, errs := run(t, env, "pki", "revoke", "--serial", issued.Serial, "--reason", "1"); code != 0 || !strings.Contains(out, issued.Serial) {
		t.Fatalf("revoke by the printed serial: %d %q %q", code, out, errs)
	}
	if code, _, errs := run(t, env, "pki", "issue", "--key", "software:object=arta", "--number", "1", "--output", "yaml"); code == 0 || !strings.Contains(errs, "--output") {
		t.Fatalf("--output yaml: %d %q", code, errs)
	}
	// A configured base_url wins over the one serve recorded.
	code, out, _ = run(t, append(env, "VULA_BASE_URL=https://pki.example"), "pki", "issue", "--key", "software:object=arta", "--given-name", "A",
		"--family-name", "B", "--number", "1", "--output", "json")
	if code != 0 || json.Unmarshal([]byte(out), &issued) != nil || issued.OCSP[0] != "https://pki.example/pki/ocsp" {
		t.Fatalf("configured base_url: %d %q", code, out)
	}
}
