package cli

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/vula-eid/vula/hsm"
)

// vula idp rotate-key makes a new active token key with idp.algorithm and retires the old one;
// the JWKS side of it is tested in internal/idp.
func TestIdPRotateKey(t *testing.T) {
	data := t.TempDir()
	tokenKeys := func() (active, retired []hsm.KeyInfo) {
		code, out, errs := run(t, nil, "keys", "list", "--data-dir", data, "--output", "json")
		var list []hsm.KeyInfo
		if code != 0 || json.Unmarshal([]byte(out), &list) != nil {
			t.Fatalf("keys list: %d %s", code, errs)
		}
		for _, k := range list {
			switch {
			case k.Purpose == hsm.PurposeOIDCToken && k.State == hsm.StateActive:
				active = append(active, k)
			case k.Purpose == hsm.PurposeOIDCToken && k.State == hsm.StateRetired:
				retired = append(retired, k)
			}
		}
		return active, retired
	}
	code, out, errs := run(t, nil, "idp", "rotate-key", "--data-dir", data, "--output", "json")
	var k hsm.KeyInfo
	if code != 0 || json.Unmarshal([]byte(out), &k) != nil || k.Algorithm != hsm.ECP256 || k.State != hsm.StateActive {
		t.Fatalf("rotate-key: %d %q %s", code, out, errs)
	}
	active, retired := tokenKeys()
	if len(active) != 1 || active[0].URI != k.URI || len(retired) != 1 {
		t.Fatalf("after the first rotation: active %v retired %v", active, retired)
	}
	code, out, errs = run(t, []string{"VULA_IDP_ALGORITHM=PS256"}, "idp", "rotate-key", "--data-dir", data, "--output", "json")
	if code != 0 || json.Unmarshal([]byte(out), &k) != nil || k.Algorithm != hsm.RSA3072 {
		t.Fatalf("rotate-key to PS256: %d %q %s", code, out, errs)
	}
	if active, retired := tokenKeys(); len(active) != 1 || active[0].URI != k.URI || len(retired) != 2 {
		t.Fatalf("after the second rotation: active %v retired %v", active, retired)
	}
}

// TestClientOfUnknownOrganization: `clients create --organization` refuses an institution that
// does not exist, naming it, and stores nothing (issue #17 item 4: it was accepted, and every seal
// then failed with 409).
func TestClientOfUnknownOrganization(t *testing.T) {
	env := []string{"VULA_DATA_DIR=" + t.TempDir()}
	code, out, errs := run(t, env, "clients", "create", "tax-batch", "--grant-type", "client_credentials", "--scope", "seal", "--organization", "nosuch")
	if code == 0 || !strings.Contains(errs, `organization "nosuch" does not exist`) || strings.Contains(out, "client_secret") {
		t.Fatalf("clients create --organization nosuch: %d %q %q", code, out, errs)
	}
	if code, out, _ := run(t, env, "clients", "list", "--output", "json"); code != 0 || strings.Contains(out, "tax-batch") {
		t.Fatalf("the refused client was stored: %d %s", code, out)
	}
}
