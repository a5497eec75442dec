//go:build !linux

package cli

import (
	"errors"
	"net"
)

// peerUID cannot tell the peer's user without SO_PEERCRED: every peer is refused, and the CLI
// opens the stores itself (which fails while a server holds the software keystore).
func peerUID(*net.UnixConn) (int, error) {
	return -1, errors.New("peer credentials are read only on Linux")
}
