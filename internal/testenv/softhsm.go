package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
)

// SoftHSMModule is where Debian's softhsm2 package puts the PKCS#11 library.
const SoftHSMModule = "/usr/lib/softhsm/libsofthsm2.so"

// SoftHSMToken is a fresh SoftHSM2 token.
type SoftHSMToken struct {
	Module, Label, PIN, SOPIN string
	Conf                      string // the softhsm2.conf in force (SOFTHSM2_CONF)
	Dir                       string // the token directory
}

var (
	hsmOnce   sync.Once
	hsmDir    string
	hsmErr    error
	hsmTokens atomic.Int64
)

// SoftHSM initialises a new token with a label of its own. SoftHSM2 reads SOFTHSM2_CONF once,
// at C_Initialize, and the library is initialised once per process, so the whole test process
// shares one configuration and one token directory (removed by Cleanup); each call adds a token.
// With CI=true a missing SoftHSM2 fails the test.
func SoftHSM(t testing.TB) SoftHSMToken {
	t.Helper()
	hsmOnce.Do(func() {
		if _, err := os.Stat(SoftHSMModule); err != nil {
			hsmErr = err
			return
		}
		if _, err := exec.LookPath("softhsm2-util"); err != nil {
			hsmErr = err
			return
		}
		hsmDir, hsmErr = os.MkdirTemp("", "vula-softhsm-")
		if hsmErr != nil {
			return
		}
		tokens := filepath.Join(hsmDir, "tokens")
		conf := filepath.Join(hsmDir, "softhsm2.conf")
		if hsmErr = os.Mkdir(tokens, 0o700); hsmErr != nil {
			return
		}
		hsmErr = os.WriteFile(conf, fmt.Appendf(nil, "directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n", tokens), 0o600)
		if hsmErr == nil {
			hsmErr = os.Setenv("SOFTHSM2_CONF", conf)
		}
	})
	if hsmErr != nil {
		Missing(t, "SoftHSM2: "+hsmErr.Error())
	}
	tok := SoftHSMToken{Module: SoftHSMModule, Label: fmt.Sprintf("vula-test-%d", hsmTokens.Add(1)),
		PIN: "4321-user", SOPIN: "8765-so", Conf: filepath.Join(hsmDir, "softhsm2.conf"), Dir: filepath.Join(hsmDir, "tokens")}
	out, err := exec.Command("softhsm2-util", "--init-token", "--free", "--label", tok.Label, "--so-pin", tok.SOPIN, "--pin", tok.PIN).CombinedOutput()
	if err != nil {
		t.Fatalf("softhsm2-util --init-token: %v\n%s", err, out)
	}
	return tok
}

// Cleanup stops and removes what the test process started: call it from TestMain after m.Run.
func Cleanup() {
	StopPostgres()
	if hsmDir != "" {
		if err := os.RemoveAll(hsmDir); err != nil {
			fmt.Fprintln(os.Stderr, "testenv:", err)
		}
	}
}
