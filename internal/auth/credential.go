package auth

import (
	"context"
	"errors"
	"net/url"
	"time"
)

// Credential authorization through OAuth (CSC API v2 §8.4.2, RFC 9396): the provider runs the
// official's fresh two-factor login and consent, the signing service reads the request's
// details and says whether the credential may be authorized. This is the contract between them.

// CredentialScope is the scope of a credential authorization token (CSC API v2 §8.4.2).
const CredentialScope = "credential"

// CredentialDetailsType is the authorization_details type of a credential authorization.
const CredentialDetailsType = "credential"

// CredentialTokenTTL bounds the lifetime of an access token that authorizes signatures.
const CredentialTokenTTL = 5 * time.Minute

// ErrCredentialRefused: the credential named is not one the official may authorize now
// (another's, unknown, revoked, expired).
var ErrCredentialRefused = errors.New("the credential cannot be authorized by this person")

// DocumentDigest is one document an official authorized the signing of (CSC API v2).
type DocumentDigest struct {
	Hash  []byte `json:"hash"` // standard base64 in JSON, as CSC writes it
	Label string `json:"label,omitempty"`
}

// CredentialAuthorization is a checked authorization_details entry of type credential (or the
// same built from the scope form's parameters).
type CredentialAuthorization struct {
	Type             string           `json:"type"`
	CredentialID     string           `json:"credentialID"`
	HashAlgorithmOID string           `json:"hashAlgorithmOID"`
	DocumentDigests  []DocumentDigest `json:"documentDigests"`
}

// Hashes are the authorized digests, in order.
func (a CredentialAuthorization) Hashes() [][]byte {
	out := make([][]byte, len(a.DocumentDigests))
	for i, d := range a.DocumentDigests {
		out[i] = d.Hash
	}
	return out
}

// CredentialRequests reads what an authorization request asks to authorize. Every error is a
// fault of the request, and its text, without a prefix, is the hint the client gets.
type CredentialRequests interface {
	// ParseDetails reads an authorization_details parameter (RFC 9396 §2) holding one entry
	// of type credential.
	ParseDetails(raw []byte) (*CredentialAuthorization, error)
	// ParseParams reads the scope form's CSC parameters (credentialID, numSignatures, hashes,
	// hashAlgorithmOID).
	ParseParams(form url.Values) (*CredentialAuthorization, error)
	// HashName names the hash algorithm of oid for a person ("SHA-256"); "" when unknown.
	HashName(oid string) string
}

// CredentialAuthorizer is the signing service as the identity provider needs it for credential
// authorization.
type CredentialAuthorizer interface {
	CredentialRequests
	// CheckCredential MUST return nil only when credentialID names one of subject's own
	// credentials, valid now; an error wrapping ErrCredentialRefused when it does not; any
	// other error when it cannot tell.
	CheckCredential(ctx context.Context, subject, credentialID string) error
	// RecordAuthorization appends the authorization's audit event, with its digests: granted
	// when refusal is "", refused for that reason otherwise. It returns the event's sequence
	// number; a granted authorization whose event could not be written MUST NOT be issued.
	RecordAuthorization(ctx context.Context, subject, clientID string, a CredentialAuthorization, refusal string) (int64, error)
}

// CredentialLevels is an optional part of a CredentialAuthorizer: the level of assurance an
// authorization of a credential requires, read when the request comes (before the person is
// known), so that the login page offers only what reaches it.
type CredentialLevels interface {
	// CredentialLevel MUST return at least LoASubstantial.
	CredentialLevel(ctx context.Context, credentialID string) (string, error)
}
