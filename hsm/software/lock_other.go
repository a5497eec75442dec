//go:build !unix

package software

import (
	"fmt"
	"os"

	"github.com/vula-eid/vula/hsm"
)

// lockDir only opens the lock file where flock(2) is missing: one Manager per keystore is then up
// to the operator.
func lockDir(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", hsm.ErrUnavailable, path, err)
	}
	return f, nil
}
