package testenv

import (
	"os/exec"
	"testing"
)

// Need makes sure the commands (openssl, pdfsig, xmlsec1, ...) are on PATH: test/deps.sh
// installs them. A missing one skips the test, or fails it under CI=true (see Missing).
func Need(t testing.TB, commands ...string) {
	t.Helper()
	for _, c := range commands {
		if _, err := exec.LookPath(c); err != nil {
			Missing(t, c+" is not installed")
		}
	}
}
