package idp

import (
	"bytes"
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vula-eid/vula/hsm/software"
	"github.com/vula-eid/vula/internal/store"
	"github.com/vula-eid/vula/internal/store/memstore"
	"github.com/vula-eid/vula/internal/store/sqlstore"
)

// testSealer is the tests' sealer of secrets in the database (one key for every replica).
func testSealer() *store.SeedSealer {
	s, _ := store.NewSeedSealer(bytes.Repeat([]byte{0x5e}, 32))
	return s
}

// settingsTable reads the settings table as it is on disk, not through the store.
func settingsTable(t *testing.T, path string) map[string][]byte {
	t.Helper()
	raw, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	rows, err := raw.Query(`SELECT name, value FROM settings`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string][]byte{}
	for rows.Next() {
		var n string
		var v []byte
		if err := rows.Scan(&n, &v); err != nil {
			t.Fatal(err)
		}
		out[n] = v
	}
	return out
}

// TestTokenSecretSealed: the HMAC secret of codes and refresh tokens is in the settings table
// only sealed; an older version's raw secret is taken over (codes in flight stay valid) and
// removed; another replica with the same key gets the same secret; a wrong key stops the start
// with a message that names the key file and not the secret. (Before, New stored the secret
// raw under idp.global_secret.)
func TestTokenSecretSealed(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "db")
	db, err := sqlstore.Open(ctx, "sqlite:"+path, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	kf := filepath.Join(dir, "k")
	software.CreateKeyFile(kf)
	keys, err := software.Open(ctx, software.Config{Dir: filepath.Join(dir, "keys"), KeyFile: kf}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer keys.Close()
	legacy := bytes.Repeat([]byte{0x42}, 32)
	if _, err := db.PutSettingIfAbsent(ctx, legacySecretSetting, legacy); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Issuer: "https://eid.example", Secrets: testSealer()}
	if _, err := New(ctx, cfg, keys, db, memstore.New(time.Now), quiet, time.Now); err != nil {
		t.Fatal(err)
	}
	table := settingsTable(t, path)
	if _, ok := table[legacySecretSetting]; ok {
		t.Fatal("the raw secret is still in the settings table")
	}
	for n, v := range table {
		if bytes.Contains(v, legacy) {
			t.Fatalf("setting %s holds the secret in clear", n)
		}
	}
	got, err := testSealer().Open(secretSetting, table[secretSetting])
	if err != nil || !bytes.Equal(got, legacy) {
		t.Fatalf("the sealed secret opens to %x (%v), want the older version's", got, err)
	}
	// Another replica, same key: same secret. A fresh database: a fresh secret, sealed too.
	if s, err := tokenSecret(ctx, db, testSealer()); err != nil || !bytes.Equal(s, legacy) {
		t.Fatalf("a second start: %x %v", s, err)
	}
	fresh, err := sqlstore.Open(ctx, "sqlite:"+filepath.Join(dir, "fresh"), quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	s, err := tokenSecret(ctx, fresh, testSealer())
	if err != nil || len(s) != 32 {
		t.Fatalf("fresh secret: %d bytes %v", len(s), err)
	}
	for n, v := range settingsTable(t, filepath.Join(dir, "fresh")) {
		if bytes.Contains(v, s) {
			t.Fatalf("setting %s holds a fresh secret in clear", n)
		}
	}
	other, _ := store.NewSeedSealer(bytes.Repeat([]byte{1}, 32))
	_, err = New(ctx, Config{Issuer: "https://eid.example", Secrets: other}, keys, db, memstore.New(time.Now), quiet, time.Now)
	if err == nil || !strings.Contains(err.Error(), "seed_key_file") {
		t.Fatalf("a wrong key: %v", err)
	}
	if _, err := New(ctx, Config{Issuer: "https://eid.example"}, keys, db, memstore.New(time.Now), quiet, time.Now); err == nil {
		t.Fatal("no sealer: no error")
	}
}
