package pkcs11

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vula-eid/vula/hsm"
	"github.com/vula-eid/vula/hsm/hsmtest"
	"github.com/vula-eid/vula/internal/testenv"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.Cleanup()
	os.Exit(code)
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func open(t testing.TB, tok testenv.SoftHSMToken) *Manager {
	t.Helper()
	m, err := Open(context.Background(), Config{Module: tok.Module, TokenLabel: tok.Label, PIN: tok.PIN, PoolSize: 4}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestConformance(t *testing.T) {
	tok := testenv.SoftHSM(t)
	hsmtest.Run(t, hsmtest.Harness{Open: func(t *testing.T) hsm.Manager { return open(t, tok) }, SkipRSA4096: true})
}

func TestRSA4096(t *testing.T) {
	m := open(t, testenv.SoftHSM(t))
	defer m.Close()
	ctx := context.Background()
	k, err := m.CreateKey(ctx, hsm.KeySpec{Label: "big", Algorithm: hsm.RSA4096, Purpose: hsm.PurposeCA})
	if err != nil {
		t.Fatal(err)
	}
	s, err := m.Signer(ctx, k.URI, hsm.PurposeCA)
	if err != nil {
		t.Fatal(err)
	}
	d := sha256.Sum256([]byte("root"))
	if _, err := s.Sign(rand.Reader, d[:], crypto.SHA256); err != nil {
		t.Fatal(err)
	}
}

// TestTokenAttributes asks OpenSC's pkcs11-tool, not our code, what the token holds.
func TestTokenAttributes(t *testing.T) {
	tok := testenv.SoftHSM(t)
	m := open(t, tok)
	k, err := m.CreateKey(context.Background(), hsm.KeySpec{Label: "seal-tax", Algorithm: hsm.ECP256, Purpose: hsm.SealPurpose("tax")})
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	if k.URI != "pkcs11:token="+tok.Label+";object=seal-tax;type=private" {
		t.Fatalf("URI %s", k.URI)
	}
	if _, err := exec.LookPath("pkcs11-tool"); err != nil {
		testenv.Missing(t, "pkcs11-tool (opensc)")
	}
	out, err := exec.Command("pkcs11-tool", "--module", tok.Module, "--token-label", tok.Label, "--login", "--pin", tok.PIN,
		"--list-objects", "--type", "privkey").CombinedOutput()
	if err != nil {
		t.Fatalf("pkcs11-tool: %v\n%s", err, out)
	}
	text := string(out)
	t.Logf("pkcs11-tool says:\n%s", text)
	for _, want := range []string{"label:      seal-tax", "Usage:      sign", "sensitive", "always sensitive", "never extractable", "local"} {
		if !strings.Contains(text, want) {
			t.Errorf("pkcs11-tool output lacks %q", want)
		}
	}
	for _, bad := range []string{"decrypt", "unwrap", "derive", " extractable,"} {
		if strings.Contains(strings.ReplaceAll(text, "never extractable", ""), bad) {
			t.Errorf("private key allows %q", bad)
		}
	}
}

func TestBadInput(t *testing.T) {
	tok := testenv.SoftHSM(t)
	ctx := context.Background()
	_, err := Open(ctx, Config{Module: tok.Module, TokenLabel: tok.Label, PIN: "wrong-pin-999"}, quiet)
	if !errors.Is(err, hsm.ErrLogin) || strings.Contains(err.Error(), "wrong-pin-999") {
		t.Errorf("wrong PIN: %v", err)
	}
	_, err = Open(ctx, Config{Module: "/nonexistent/libpkcs11.so", TokenLabel: tok.Label, PIN: tok.PIN}, quiet)
	if !errors.Is(err, hsm.ErrUnavailable) || !strings.Contains(err.Error(), "/nonexistent/libpkcs11.so") {
		t.Errorf("missing module: %v", err)
	}
	notLib := filepath.Join(t.TempDir(), "not-a-lib.so")
	os.WriteFile(notLib, []byte("nope"), 0o600)
	if _, err := Open(ctx, Config{Module: notLib, TokenLabel: tok.Label, PIN: tok.PIN}, quiet); err == nil {
		t.Error("a file that is no library was accepted")
	}
	_, err = Open(ctx, Config{Module: tok.Module, TokenLabel: "no-such-token", PIN: tok.PIN}, quiet)
	if !errors.Is(err, hsm.ErrUnavailable) || !strings.Contains(err.Error(), "no-such-token") {
		t.Errorf("absent token: %v", err)
	}
	m := open(t, tok)
	defer m.Close()
	for _, uri := range []string{"pkcs11:token=other;object=x;type=private", "pkcs11:object=x;type=public", "pkcs11:object=x;slot=3", "pkcs11:token=" + tok.Label} {
		if _, err := m.Key(ctx, uri); !errors.Is(err, hsm.ErrNotFound) && !errors.Is(err, hsm.ErrInvalid) {
			t.Errorf("Key(%q): %v", uri, err)
		}
	}
}

// TestReconnect closes every session of the token behind the manager's back, as a token reset
// or a removed and reinserted device does; the next signature must still be made.
func TestReconnect(t *testing.T) {
	m := open(t, testenv.SoftHSM(t))
	defer m.Close()
	ctx := context.Background()
	k, err := m.CreateKey(ctx, hsm.KeySpec{Label: "tsa", Algorithm: hsm.ECP256, Purpose: hsm.PurposeTSA})
	if err != nil {
		t.Fatal(err)
	}
	s, err := m.Signer(ctx, k.URI, hsm.PurposeTSA)
	if err != nil {
		t.Fatal(err)
	}
	d := sha256.Sum256([]byte("before"))
	if _, err := s.Sign(rand.Reader, d[:], crypto.SHA256); err != nil {
		t.Fatal(err)
	}
	for round := 0; round < 2; round++ {
		gen := m.gen
		if err := m.mod.ctx.CloseAllSessions(m.slot); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Sign(rand.Reader, d[:], crypto.SHA256); err != nil {
			t.Fatalf("round %d: sign after the sessions were closed: %v", round, err)
		}
		if m.gen != gen+1 {
			t.Fatalf("round %d: no reconnection (generation %d -> %d)", round, gen, m.gen)
		}
	}
	m.mod.ctx.CloseAllSessions(m.slot)
	if err := m.Ping(ctx); err != nil {
		t.Fatalf("Ping after the sessions were closed: %v", err)
	}
	if _, err := m.Keys(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestTwoManagersOneToken: a login belongs to the whole process, so a second Manager on a token
// that is already logged in must still give the right PIN; and closing one Manager (or its
// reconnecting) must not end the other's sessions.
func TestTwoManagersOneToken(t *testing.T) {
	tok := testenv.SoftHSM(t)
	ctx := context.Background()
	a := open(t, tok)
	defer a.Close()
	k, err := a.CreateKey(ctx, hsm.KeySpec{Label: "seal-two", Algorithm: hsm.ECP256, Purpose: hsm.SealPurpose("tax")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, Config{Module: tok.Module, TokenLabel: tok.Label, PIN: "wrong-pin-999"}, quiet); !errors.Is(err, hsm.ErrLogin) ||
		strings.Contains(err.Error(), "wrong-pin-999") {
		t.Fatalf("second Manager with a wrong PIN while the token is logged in: %v", err)
	}
	b := open(t, tok)
	sb, err := b.Signer(ctx, k.URI, hsm.SealPurpose("tax"))
	if err != nil {
		t.Fatal(err)
	}
	d := sha256.Sum256([]byte("x"))
	if _, err := sb.Sign(rand.Reader, d[:], crypto.SHA256); err != nil {
		t.Fatal(err)
	}
	// b reconnects (as after a lost session) and closes: a keeps signing without reconnecting.
	genA := a.gen
	if err := b.reconnect(b.gen); err != nil {
		t.Fatal(err)
	}
	b.Close()
	sa, err := a.Signer(ctx, k.URI, hsm.SealPurpose("tax"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sa.Sign(rand.Reader, d[:], crypto.SHA256); err != nil {
		t.Fatalf("a after b closed: %v", err)
	}
	if a.gen != genA {
		t.Fatalf("a had to reconnect (generation %d -> %d): b closed its sessions", genA, a.gen)
	}
}
