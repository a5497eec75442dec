//go:build !linux

package upload

import (
	"errors"
	"os"
)

// anonymousFile is Linux's O_TMPFILE; elsewhere File names and unlinks a file.
func anonymousFile(string) (*os.File, error) { return nil, errors.ErrUnsupported }
