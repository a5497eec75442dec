package cli

import (
	"encoding/json"
	"strings"
	"testing"
)

// The desk's commands at the command line, without a server: a registrar registers a person,
// suspends and resumes the eID means; an unknown registrar or person is refused by name.
func TestDeskCommands(t *testing.T) {
	data := t.TempDir()
	env := []string{"REG_PW=a registrar's long passphrase"}
	if code, _, errs := run(t, env, "persons", "create", "9000000001", "--data-dir", data, "--given-name", "Besa", "--family-name", "Gashi",
		"--password-env", "REG_PW", "--proofing", "high", "--role", "registrar"); code != 0 {
		t.Fatalf("create the registrar: %s", errs)
	}
	if code, out, errs := run(t, nil, "persons", "register", "5000000001", "--data-dir", data, "--registrar", "9000000001",
		"--given-name", "Arta", "--family-name", "Krasniqi", "--birthdate", "1990-04-12", "--document", "P0012345",
		"--document-expiry", "2031-01-01"); code != 0 || !strings.Contains(out, "activation code") {
		t.Fatalf("register: %d %s %s", code, out, errs)
	}
	status := func() string {
		t.Helper()
		code, out, errs := run(t, nil, "persons", "show", "5000000001", "--data-dir", data, "--output", "json")
		var v struct {
			Status string `json:"status"`
		}
		if code != 0 || json.Unmarshal([]byte(out), &v) != nil {
			t.Fatalf("show: %d %s %s", code, out, errs)
		}
		return v.Status
	}
	for _, set := range []string{"suspended", "active"} {
		if code, _, errs := run(t, nil, "persons", "eid-status", "5000000001", "--data-dir", data, "--registrar", "9000000001", "--set", set); code != 0 {
			t.Fatalf("eid-status --set %s: %s", set, errs)
		}
		if got := status(); got != set {
			t.Errorf("after --set %s the status is %q", set, got)
		}
	}
	for _, tc := range []struct{ person, registrar, says string }{
		{"5000000009", "9000000001", "person 5000000009"},
		{"5000000001", "9000000009", "registrar 9000000009"},
	} {
		if code, _, errs := run(t, nil, "persons", "eid-status", tc.person, "--data-dir", data, "--registrar", tc.registrar, "--set", "suspended"); code == 0 || !strings.Contains(errs, tc.says) {
			t.Errorf("eid-status %s by %s: %d %q", tc.person, tc.registrar, code, errs)
		}
	}
	if got := status(); got != "active" {
		t.Errorf("a refused command changed the status to %q", got)
	}
}
