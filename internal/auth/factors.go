package auth

import (
	"context"
	"errors"

	"github.com/vula-eid/vula/internal/store"
)

// Factors checks a person's two factors with the identity provider's brute-force limits; the
// signing service asks it for an official's password and one-time code (CSC explicit
// authorization, the portal's confirmation).
type Factors interface {
	// Password checks identifier (personal number or e-mail) and password from address ip:
	// ErrBadCredentials for an unknown person or a wrong password, ErrLockedOut past the limit.
	Password(ctx context.Context, identifier, password, ip string) (store.Person, error)
	// TOTP checks a one-time code of subject; a code is accepted once. ErrBadCode for a wrong
	// or used code, ErrNoTOTP when none is enrolled, ErrLockedOut past the limit.
	TOTP(ctx context.Context, subject, code string) error
	HasTOTP(ctx context.Context, subject string) bool
}

// Errors of Factors.
var (
	ErrBadCredentials = errors.New("idp: unknown person or wrong password")
	ErrLockedOut      = errors.New("idp: too many failed attempts, try again later")
	ErrBadCode        = errors.New("idp: wrong or already used one-time code")
	ErrNoTOTP         = errors.New("idp: no authenticator enrolled")
)
