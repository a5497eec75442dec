package e2e

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vula-eid/vula/internal/signing/signingtest"
	"github.com/vula-eid/vula/internal/testenv"
	"github.com/vula-eid/vula/internal/trustlist"
	"github.com/vula-eid/vula/internal/validation"
)

// TestTrustedListEndToEnd: platform A publishes its trusted list at /pki/tsl.xml; xmlsec1
// verifies it up to A's root; platform B, another deployment with its own PKI, configured with
// that list and A's list-signer certificate, validates a seal made by A as TOTAL-PASSED and
// QESeal from the trusted list — and without the list, finds no chain.
func TestTrustedListEndToEnd(t *testing.T) {
	t.Parallel()
	vulaBinary(t)
	testenv.Need(t, "xmlsec1")
	dataA, dataB := t.TempDir(), t.TempDir()
	envA := []string{"VULA_DATA_DIR=" + dataA, "VULA_IDP_DEMO=false"}
	vula(t, envA, "orgs", "create", "tax", "--name", "Tax Administration", "--registry-number", "810000001")
	secret := sealClient(t, envA, "tax-batch", "--scope", "seal", "--organization", "tax")
	a := startReplicaAt(t, freePort(t), dataA, envA)
	a.ready(t, http.StatusOK)
	baseA := "http://" + a.addr
	resp, sealed := postDoc(t, sealHTTP(baseA, "tax-batch", secret), baseA+"/api/v1/seal?level=B-LT", "application/pdf", signingtest.PDF("Vendim 7"))
	if resp.StatusCode != 200 {
		t.Fatalf("seal: %d %s", resp.StatusCode, sealed)
	}

	dir := t.TempDir()
	get := func(path string) []byte {
		t.Helper()
		resp, err := http.Get(baseA + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
		}
		if path == "/pki/tsl.xml" && resp.Header.Get("Content-Type") != trustlist.MediaType {
			t.Fatalf("GET %s: Content-Type %q", path, resp.Header.Get("Content-Type"))
		}
		return b
	}
	writePEM := func(name string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tl := filepath.Join(dir, "tsl.xml")
	if err := os.WriteFile(tl, get("/pki/tsl.xml"), 0o600); err != nil {
		t.Fatal(err)
	}
	root, sealCA := writePEM("root.pem", get("/pki/root.crt")), writePEM("seal-ca.pem", get("/pki/seal-ca.crt"))
	signer := writePEM("tsl-signer.pem", get("/pki/tsl-signer.crt"))
	out, err := exec.Command("xmlsec1", "--verify", "--trusted-pem", root, "--untrusted-pem", sealCA,
		"--id-attr:Id", "http://uri.etsi.org/01903/v1.3.2#:SignedProperties", tl).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "OK") {
		t.Fatalf("xmlsec1 --verify of the published list: %v\n%s", err, out)
	}

	validateAt := func(env []string) validation.SignatureReport {
		t.Helper()
		b := startReplicaAt(t, freePort(t), dataB, env)
		b.ready(t, http.StatusOK)
		defer func() {
			// The embedded store is one process's: B stops before it starts again.
			_ = b.cmd.Process.Signal(syscall.SIGTERM)
			_ = b.cmd.Wait()
		}()
		resp, body := postDoc(t, http.DefaultClient, "http://"+b.addr+"/api/v1/validate", "application/pdf", sealed)
		var rep validation.Report
		if resp.StatusCode != 200 || json.Unmarshal(body, &rep) != nil || len(rep.Signatures) != 1 {
			t.Fatalf("validate at B: %d %s", resp.StatusCode, body)
		}
		return rep.Signatures[0]
	}
	envB := []string{"VULA_DATA_DIR=" + dataB, "VULA_IDP_DEMO=false"}
	if s := validateAt(envB); s.Indication != validation.Indeterminate || s.SubIndication != validation.NoCertificateChainFound {
		t.Fatalf("B without A's list: %s / %s", s.Indication, s.SubIndication)
	}
	s := validateAt(append(envB, "VULA_VALIDATION_TRUSTED_LISTS="+tl, "VULA_VALIDATION_TRUSTED_LIST_SIGNERS="+signer))
	if s.Indication != validation.TotalPassed || s.Qualification != "QESeal" || s.QualificationSource != "trusted list" || s.TrustedService == nil || s.TrustedService.Territory != "XK" {
		t.Fatalf("B with A's list: %s / %s, %s from %s, %+v", s.Indication, s.SubIndication, s.Qualification, s.QualificationSource, s.TrustedService)
	}
	// A list that does not verify stops B's start with the reason.
	bad := filepath.Join(dir, "bad.xml")
	tampered := strings.Replace(string(get("/pki/tsl.xml")), trustlist.StatusGranted, trustlist.StatusWithdrawn, 1)
	if err := os.WriteFile(bad, []byte(tampered), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binPath, "serve", "--data-dir", dataB, "--listen", freePort(t))
	cmd.Env = append(os.Environ(), append(envB, "VULA_VALIDATION_TRUSTED_LISTS="+bad, "VULA_VALIDATION_TRUSTED_LIST_SIGNERS="+signer)...)
	if out, err := cmd.CombinedOutput(); err == nil || ctx.Err() != nil || !strings.Contains(string(out), "signature does not verify") {
		t.Fatalf("B with a tampered list: %v %s", err, out)
	}
}
