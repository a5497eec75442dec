package cli

import (
	"strings"
	"testing"
)

// TestBackupLayout: on the embedded default everything is in files the archive holds; with
// PostgreSQL and an HSM only the seed key is, and the notes say what to back up instead.
func TestBackupLayout(t *testing.T) {
	g := &globals{env: Env{Environ: []string{"VULA_DATA_DIR=/srv/vula"}}}
	cfg, err := g.load()
	if err != nil {
		t.Fatal(err)
	}
	l, notes := backupLayout(cfg)
	if l.SQLite != "/srv/vula/vula.db" || l.KeystoreDir != "/srv/vula/keys" || l.KeyFile != "/srv/vula/keystore.key" ||
		l.SeedKeyFile != "/srv/vula/totp-seal.key" || len(notes) != 1 || !strings.Contains(notes[0], "ephemeral") {
		t.Fatalf("embedded default: %+v %q", l, notes)
	}
	g.env.Environ = []string{"VULA_DATA_DIR=/srv/vula", "VULA_STORE_DURABLE=postgres://vula@db/vula", "VULA_HSM_BACKEND=pkcs11",
		"VULA_HSM_PKCS11_MODULE=/usr/lib/softhsm/libsofthsm2.so", "VULA_HSM_PKCS11_TOKEN_LABEL=vula", "VULA_HSM_PKCS11_PIN_ENV=PIN"}
	if cfg, err = g.load(); err != nil {
		t.Fatal(err)
	}
	l, notes = backupLayout(cfg)
	all := strings.Join(notes, "\n")
	if l.SQLite != "" || l.KeystoreDir != "" || l.KeyFile != "" || l.SeedKeyFile == "" ||
		!strings.Contains(all, "pg_dump") || !strings.Contains(all, `PKCS#11 token "vula"`) {
		t.Fatalf("PostgreSQL and PKCS#11: %+v\n%s", l, all)
	}
}
