// Package problem is the catalog of the problem types of Vula's own API (RFC 9457): each kind
// of failure a request can meet, with its stable type URI, its title and its HTTP status.
//
// Domain packages mark their sentinel errors with a type (New); a handler that decides the kind
// itself marks an error (Mark, Errorf). The HTTP edge, internal/server, is the one place an
// error becomes a status and a problem body: it takes the type of the first marked error in
// the error's chain (Of), outermost first. api/openapi.yaml documents every type under its URI;
// a type's URI never changes once published.
package problem

import (
	"errors"
	"fmt"
)

// Base is the namespace of the type URIs: identifiers, the same in every deployment and
// version, not addresses to fetch.
const Base = "https://vula.example/problems/"

// Type is one kind of problem.
type Type struct {
	Name   string // the URI's last segment
	Title  string // a short summary that does not change from occurrence to occurrence
	Status int    // the HTTP status it is answered with
}

// URI is the type's identifier, the problem body's "type".
func (t Type) URI() string { return Base + t.Name }

// The catalog.
var (
	InvalidRequest    = Type{"invalid-request", "The request is not valid", 400}
	Unauthorized      = Type{"unauthorized", "An active access token is required", 401}
	InsufficientScope = Type{"insufficient-scope", "The access token lacks the scope", 403}
	Forbidden         = Type{"forbidden", "The caller may not do this", 403}
	NotFound          = Type{"not-found", "No such resource", 404}
	TooSlow           = Type{"too-slow", "The request body came too slowly", 408}
	Conflict          = Type{"conflict", "The request conflicts with the resource's state", 409}
	NoSeal            = Type{"no-seal", "The organization has no usable seal", 409}
	Revoked           = Type{"revoked", "A certificate needed is revoked", 409}
	TooLarge          = Type{"too-large", "The request is too large", 413}
	Unsupported       = Type{"unsupported", "The input is well-formed but not supported", 422}
	TooManyRequests   = Type{"too-many-requests", "Too many requests in flight from this client", 429}
	Internal          = Type{"internal", "Internal error", 500}
	Unavailable       = Type{"unavailable", "A dependency is unavailable; try again", 503}
)

// Types is the catalog, for its documentation and tests.
func Types() []Type {
	return []Type{InvalidRequest, Unauthorized, InsufficientScope, Forbidden, NotFound, TooSlow, Conflict, NoSeal,
		Revoked, TooLarge, Unsupported, TooManyRequests, Internal, Unavailable}
}

// marked is an error of a type.
type marked struct {
	t   Type
	msg string
	err error // what it wraps, if anything
}

func (e *marked) Error() string {
	if e.msg == "" {
		return e.err.Error()
	}
	return e.msg
}

func (e *marked) Unwrap() error { return e.err }

// New makes a sentinel error of type t: compare with errors.Is, wrap with fmt.Errorf's %w.
func New(t Type, msg string) error { return &marked{t: t, msg: msg} }

// Mark gives err the type t, which takes precedence over any type err already has.
func Mark(t Type, err error) error { return &marked{t: t, err: err} }

// Errorf is Mark(t, fmt.Errorf(format, a...)).
func Errorf(t Type, format string, a ...any) error { return Mark(t, fmt.Errorf(format, a...)) }

// Of is the type of the first marked error in err's chain (errors.As order: outermost first,
// then the wrapped errors left to right).
func Of(err error) (Type, bool) {
	var m *marked
	if errors.As(err, &m) {
		return m.t, true
	}
	return Type{}, false
}
