package cli

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestStatus: `vula status` beside a running server shows it ready, both stores answering, the
// hierarchy, the audit head and the counts; with the server stopped it says so; with no database
// it says why and exits 1.
func TestStatus(t *testing.T) {
	env := []string{"VULA_DATA_DIR=" + t.TempDir(), "VULA_IDP_DEMO=false"}
	code, out, errs := run(t, env, "status")
	if code != 1 || !strings.Contains(out, "no database yet") || !strings.Contains(errs, "durable store does not answer") {
		t.Fatalf("status before any start: %d %q %q", code, out, errs)
	}
	s := serveInProcess(t, env)
	code, out, errs = run(t, env, "status", "--output", "json")
	var r statusReport
	if code != 0 || json.Unmarshal([]byte(out), &r) != nil {
		t.Fatalf("status: %d %q %q", code, out, errs)
	}
	if r.Version != "test" || r.Server.State != "ready" || r.Server.URL != "http://"+s.addr || r.Durable.State != "ok" ||
		r.Durable.SchemaVersion < 2 || r.Ephemeral.State != "ok" || r.Ephemeral.Entries == nil || r.Keys.Backend != "software" ||
		r.TSA.RequireSync || r.TSA.Clock == "" || !r.Config.Dev {
		t.Fatalf("status beside a running server: %s", out)
	}
	var names []string
	for _, c := range r.PKI {
		names = append(names, c.Name)
		if c.Serial == "" || c.Key == "" || c.NotAfter.IsZero() {
			t.Errorf("hierarchy entry %+v", c)
		}
	}
	if strings.Join(names, " ") != "root person-ca seal-ca ocsp-person-ca ocsp-seal-ca tsa tsl-signer" {
		t.Fatalf("hierarchy %v", names)
	}
	if r.Audit == nil || r.Audit.Records < 6 || r.Audit.HeadSeq != r.Audit.Records || len(r.Audit.HeadHash) != 64 {
		t.Fatalf("audit: %+v", r.Audit)
	}
	if r.Counts["certificates"] < 6 || r.Counts["clients"] < 1 {
		t.Fatalf("counts: %v", r.Counts)
	}
	code, text, _ := run(t, env, "status")
	for _, want := range []string{"server", "ready at http://" + s.addr, "durable store", "ephemeral store", "live entries", "software, keystore",
		"person-ca", "tsa clock", "audit", "counts", "dev (the embedded default"} {
		if code != 0 || !strings.Contains(text, want) {
			t.Errorf("status text lacks %q:\n%s", want, text)
		}
	}
	s.stop(t)
	if code, out, _ := run(t, env, "status"); code != 0 || !strings.Contains(out, "not running (") {
		t.Fatalf("status with the server stopped: %d\n%s", code, out)
	}
}
