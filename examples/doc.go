// Package examples shows Vula's public Go API used from another module: the key layer (hsm,
// with its software backend) and the RFC 3161 client (pkg/tsclient). It is a module of its
// own, so that only what an outsider can import compiles here; `make test` runs it.
package examples
