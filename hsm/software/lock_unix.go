//go:build unix

package software

import (
	"errors"
	"fmt"
	"os"
	"syscall"

	"github.com/vula-eid/vula/hsm"
)

// lockDir takes an exclusive flock(2) on dir/keystore.lock, so that a second Manager on the same
// keystore, in this process or another, fails at Open instead of racing on the files. The lock
// goes with the returned file.
func lockDir(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", hsm.ErrUnavailable, path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close() // the lock error is the one to report
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: keystore %s is open in another Manager or process (one at a time)",
				hsm.ErrUnavailable, path)
		}
		return nil, fmt.Errorf("%w: locking %s: %v", hsm.ErrUnavailable, path, err)
	}
	return f, nil
}
