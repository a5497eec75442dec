// Package hsm is Vula's key-management layer: the only place private keys live.
//
// Every service signs through a Manager, which hands out crypto.Signers for keys named by URI
// (RFC 7512 "pkcs11:" URIs on the PKCS#11 backend, "software:" URIs on the embedded software
// backend). The contract every backend keeps, checked by the suite in hsm/hsmtest:
//
//   - a private key never leaves the backend (on PKCS#11 it is sensitive, never extractable,
//     sign only);
//   - each key has one Purpose, and a signer is handed out only for that purpose and only while
//     the key is active;
//   - retired keys keep their public key (so old signatures can be checked) but sign nothing;
//     destroyed keys have no key material left, only their metadata;
//   - errors name the cause (ErrNotFound, ErrWrongPurpose, ...) and never carry a PIN or a
//     passphrase.
//
// Metering and auditing are not the backends' business: Instrument wraps any Manager so that
// every signature is counted and written to the audit hook before its result is returned.
package hsm

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// Manager creates keys and hands out signers for them. Every method honours ctx and MUST be safe
// for concurrent use.
type Manager interface {
	// CreateKey generates a new key pair inside the backend. The label MUST be unique within
	// the backend; a taken label gives ErrConflict.
	CreateKey(ctx context.Context, spec KeySpec) (KeyInfo, error)
	// Signer returns a signer for the key at uri. It MUST refuse a key whose purpose differs
	// from purpose (ErrWrongPurpose) or that is not active (ErrKeyNotActive).
	Signer(ctx context.Context, uri string, purpose Purpose) (crypto.Signer, error)
	// PublicKey returns the public key of an active or retired key.
	PublicKey(ctx context.Context, uri string) (crypto.PublicKey, error)
	// Key returns the metadata of one key, ErrNotFound if there is none at uri.
	Key(ctx context.Context, uri string) (KeyInfo, error)
	// Keys lists every key the backend knows, destroyed ones included, ordered by label.
	Keys(ctx context.Context) ([]KeyInfo, error)
	// Retire stops a key from signing; its public key stays available.
	Retire(ctx context.Context, uri string) error
	// Destroy deletes the key material for good; the metadata stays, in state destroyed.
	Destroy(ctx context.Context, uri string) error
	// Ping reports whether the backend can serve requests now (for readiness).
	Ping(ctx context.Context) error
	// Close releases the backend. Signers handed out before fail afterwards.
	Close() error
}

// Algorithm is a key type and size.
type Algorithm string

const (
	ECP256  Algorithm = "EC-P256"
	ECP384  Algorithm = "EC-P384"
	RSA3072 Algorithm = "RSA-3072"
	RSA4096 Algorithm = "RSA-4096"
)

// Algorithms lists the supported algorithms, in the order a user would pick them.
var Algorithms = []Algorithm{ECP256, ECP384, RSA3072, RSA4096}

// Valid reports whether a is one of Algorithms.
func (a Algorithm) Valid() bool {
	for _, x := range Algorithms {
		if a == x {
			return true
		}
	}
	return false
}

// IsRSA reports whether a is an RSA algorithm.
func (a Algorithm) IsRSA() bool { return strings.HasPrefix(string(a), "RSA-") }

// Purpose says what a key may sign: one of the fixed purposes, or "seal:<org>" / "sign:<person>".
type Purpose string

const (
	PurposeOIDCToken Purpose = "oidc-token"
	PurposeTSA       Purpose = "tsa"
	PurposeCA        Purpose = "ca"
	PurposeOCSP      Purpose = "ocsp"
	PurposeAudit     Purpose = "audit"
	// PurposePID signs person identification data (SD-JWT VC, mdoc) and their status lists.
	PurposePID Purpose = "pid"
	// PurposeVerifier signs the OpenID4VP requests of Vula's verifier for relying parties.
	PurposeVerifier Purpose = "verifier"
)

// SealPurpose is the purpose of an institution's seal key.
func SealPurpose(org string) Purpose { return Purpose("seal:" + org) }

// SignPurpose is the purpose of an official's signing key.
func SignPurpose(person string) Purpose { return Purpose("sign:" + person) }

var ownerRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// Validate checks p against the known purposes.
func (p Purpose) Validate() error {
	switch p {
	case PurposeOIDCToken, PurposeTSA, PurposeCA, PurposeOCSP, PurposeAudit, PurposePID, PurposeVerifier:
		return nil
	}
	kind, owner, ok := strings.Cut(string(p), ":")
	if ok && (kind == "seal" || kind == "sign") && ownerRe.MatchString(owner) {
		return nil
	}
	return fmt.Errorf("%w: purpose %q (want oidc-token, tsa, ca, ocsp, audit, pid, verifier, seal:<org> or sign:<person>)", ErrInvalid, string(p))
}

// Class is the purpose without its owner ("seal" for "seal:tax"): a bounded metrics label.
func (p Purpose) Class() string {
	kind, _, _ := strings.Cut(string(p), ":")
	return kind
}

// State is where a key is in its life.
type State string

const (
	StateActive    State = "active"
	StateRetired   State = "retired"
	StateDestroyed State = "destroyed"
)

// KeySpec says what key to create.
type KeySpec struct {
	// Label names the key within the backend, [A-Za-z0-9._-], 1–64 characters.
	Label     string
	Algorithm Algorithm
	Purpose   Purpose
	// Owner is who the key belongs to (an organization or a person id); free text, may be empty.
	Owner string
}

var labelRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// Validate checks every field of s.
func (s KeySpec) Validate() error {
	if !labelRe.MatchString(s.Label) {
		return fmt.Errorf("%w: label %q (want 1-64 of A-Z a-z 0-9 . _ -)", ErrInvalid, s.Label)
	}
	if !s.Algorithm.Valid() {
		return fmt.Errorf("%w: algorithm %q (want EC-P256, EC-P384, RSA-3072 or RSA-4096)", ErrInvalid, string(s.Algorithm))
	}
	if len(s.Owner) > 256 {
		return fmt.Errorf("%w: owner longer than 256 bytes", ErrInvalid)
	}
	return s.Purpose.Validate()
}

// KeyInfo is what the layer knows about a key, without its private part.
type KeyInfo struct {
	URI       string    `json:"uri"`
	Label     string    `json:"label"`
	Algorithm Algorithm `json:"algorithm"`
	Purpose   Purpose   `json:"purpose"`
	Owner     string    `json:"owner,omitempty"`
	Created   time.Time `json:"created"`
	State     State     `json:"state"`
}

// Usable reports why a key cannot sign for purpose, or nil if it can.
func (k KeyInfo) Usable(purpose Purpose) error {
	if k.Purpose != purpose {
		return fmt.Errorf("%w: key %s is for %q, not %q", ErrWrongPurpose, k.URI, k.Purpose, purpose)
	}
	if k.State != StateActive {
		return fmt.Errorf("%w: key %s is %s", ErrKeyNotActive, k.URI, k.State)
	}
	return nil
}

// Sentinel errors. Backends wrap them with the detail (never a secret); callers test with errors.Is.
var (
	ErrNotFound      = errors.New("hsm: key not found")
	ErrConflict      = errors.New("hsm: key already exists")
	ErrInvalid       = errors.New("hsm: invalid argument")
	ErrWrongPurpose  = errors.New("hsm: key has another purpose")
	ErrKeyNotActive  = errors.New("hsm: key is not active")
	ErrUnavailable   = errors.New("hsm: backend unavailable")
	ErrLogin         = errors.New("hsm: login failed")
	ErrKeystore      = errors.New("hsm: keystore damaged")
	ErrClosed        = errors.New("hsm: manager closed")
	ErrUnsupportedOp = errors.New("hsm: unsupported signing options")
)
