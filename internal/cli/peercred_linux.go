package cli

import (
	"errors"
	"net"
	"syscall"
)

// peerUID is the user id of the process at the other end of conn (SO_PEERCRED).
func peerUID(conn *net.UnixConn) (int, error) {
	rc, err := conn.SyscallConn()
	if err != nil {
		return -1, err
	}
	uid := -1
	var serr error
	err = rc.Control(func(fd uintptr) {
		var cred *syscall.Ucred
		cred, serr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
		if serr == nil {
			uid = int(cred.Uid)
		}
	})
	return uid, errors.Join(err, serr)
}
