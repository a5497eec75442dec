package software

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/vula-eid/vula/hsm"
	"github.com/vula-eid/vula/hsm/hsmtest"
)

// cheapKDF keeps Argon2id to a fraction of a millisecond in tests; production uses defaultKDF.
var cheapKDF = kdfParams{Time: 1, MemoryKiB: 64, Threads: 1}

const testPassphrase = "correct horse battery staple 7f3a"

func passphraseConfig(dir string) Config {
	return Config{Dir: dir, Passphrase: testPassphrase, kdf: cheapKDF}
}

// keyFileConfig creates a key file next to (not inside) the keystore directory.
func keyFileConfig(t testing.TB, dir string) Config {
	t.Helper()
	kf := filepath.Join(filepath.Dir(dir), filepath.Base(dir)+".masterkey")
	if err := CreateKeyFile(kf); err != nil {
		t.Fatal(err)
	}
	return Config{Dir: dir, KeyFile: kf}
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(p))
	return len(p), nil
}

func mustOpen(t testing.TB, cfg Config) *Manager {
	t.Helper()
	m, err := Open(context.Background(), cfg, testLogger(t))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return m
}

func TestConformance(t *testing.T) {
	for name, cfg := range map[string]func(t *testing.T) Config{
		"Passphrase": func(t *testing.T) Config { return passphraseConfig(filepath.Join(t.TempDir(), "keys")) },
		"KeyFile":    func(t *testing.T) Config { return keyFileConfig(t, filepath.Join(t.TempDir(), "keys")) },
	} {
		t.Run(name, func(t *testing.T) {
			c := cfg(t)
			hsmtest.Run(t, hsmtest.Harness{
				Open: func(t *testing.T) hsm.Manager { return mustOpen(t, c) },
				// RSA-4096 generation costs seconds; one of the two runs covers it.
				SkipRSA4096: name == "KeyFile",
			})
		})
	}
}
