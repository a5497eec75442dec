//go:build unix

package software

import "syscall"

func setUmask(mask int) int { return syscall.Umask(mask) }
