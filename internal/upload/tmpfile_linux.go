package upload

import (
	"os"

	"golang.org/x/sys/unix"
)

// anonymousFile makes a file in dir that has no name (O_TMPFILE): it is gone when closed, and a
// process that dies leaves nothing behind. File systems without O_TMPFILE refuse it.
func anonymousFile(dir string) (*os.File, error) {
	fd, err := unix.Open(dir, unix.O_RDWR|unix.O_TMPFILE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), dir), nil
}
