// Package auth is the contract between the identity provider and the services it protects:
// whom an access token speaks for (Caller), the eIDAS levels of assurance, how a token is read
// from a request, the errors of a bearer check and how they are answered (RFC 6750, RFC 9449).
//
// internal/idp implements Authenticator and Factors; the signing service (internal/csc)
// implements CredentialAuthorizer for the provider's credential authorization. Each side
// depends on this package, never on the other, so no service imports another.
package auth

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/vula-eid/vula/internal/problem"
	"github.com/vula-eid/vula/internal/server"
	"github.com/vula-eid/vula/internal/store"
)

// Authenticator checks the access token of an API request: issued by Vula's provider, active,
// granted scope, for this API's resource, presented as it was bound (Bearer or DPoP).
type Authenticator interface {
	Bearer(r *http.Request, scope string) (Caller, error)
}

// The eIDAS levels of assurance (Regulation 2015/1502), lowest first.
const (
	LoALow         = "http://eidas.europa.eu/LoA/low"
	LoASubstantial = "http://eidas.europa.eu/LoA/substantial"
	LoAHigh        = "http://eidas.europa.eu/LoA/high"
)

// ScopePID asks for the person identification data for a digital wallet (OpenID4VCI scope of
// the EU PID credential configuration): the provider grants it, the wallet issuer checks it.
const ScopePID = "eu.europa.ec.eudi.pid.1"

// ScopeVerify lets a relying party ask Vula's verifier for presentations from wallets
// (OpenID4VP): the provider grants it, the verifier checks it.
const ScopeVerify = "verify"

// Levels orders the levels; what a login reached is the highest it satisfies.
var Levels = []string{LoALow, LoASubstantial, LoAHigh}

// LevelOf is acr's place in Levels, -1 for an unknown acr.
func LevelOf(acr string) int { return slices.Index(Levels, acr) }

// AtLeast reports whether level of assurance acr reaches min; an unknown acr reaches nothing.
func AtLeast(acr, min string) bool { return LevelOf(acr) >= 0 && LevelOf(acr) >= LevelOf(min) }

// Caller is whom an access token speaks for.
type Caller struct {
	ClientID string
	Subject  string // the person, for tokens from a login; "" for client_credentials
	Scopes   []string
	// ACR, AMR and AuthTime are the login's level of assurance, methods and time; empty for
	// client_credentials.
	ACR      string
	AMR      []string
	AuthTime time.Time
	// ExpiresAt is when the token expires.
	ExpiresAt time.Time
	// Credential is what a token with scope credential authorizes (nil for other tokens), and
	// AuthorizationSeq the audit sequence number of the official's authorization.
	Credential       *CredentialAuthorization
	AuthorizationSeq int64
	// WalletCredentials are the credential configurations the token's authorization_details of
	// type openid_credential grant (their credential identifiers); nil when it has none.
	WalletCredentials []string
}

// Errors of Bearer.
var (
	ErrNoToken           = problem.New(problem.Unauthorized, "a bearer access token is required")
	ErrTokenInvalid      = problem.New(problem.Unauthorized, "the access token is not valid")
	ErrInsufficientScope = problem.New(problem.InsufficientScope, "the access token lacks the scope")
	ErrDPoPProof         = problem.New(problem.Unauthorized, "a DPoP proof by the token's key is required")
)

// DPoPAlgs are the DPoP proof algorithms accepted (RFC 9449).
var DPoPAlgs = []string{"ES256", "ES384", "PS256", "RS256", "EdDSA"}

// DPoPScheme is the Authorization scheme of a DPoP-bound token.
const DPoPScheme = "DPoP"

// Token reads the access token of a request to an API: "Bearer <token>" or "DPoP <token>"
// (RFC 6750 §2.1, RFC 9449 §7.1), with its scheme. Tokens in a query string or a form are not
// accepted (they end up in logs and histories).
func Token(r *http.Request) (scheme, token string) {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || strings.TrimSpace(token) == "" {
		return "", ""
	}
	switch {
	case strings.EqualFold(scheme, "Bearer"):
		return "Bearer", strings.TrimSpace(token)
	case strings.EqualFold(scheme, DPoPScheme):
		return DPoPScheme, strings.TrimSpace(token)
	}
	return "", ""
}

// TokenOf is the access token of an API request, sent as Bearer or DPoP.
func TokenOf(r *http.Request) string {
	_, tok := Token(r)
	return tok
}

// DPoPChallenge is the WWW-Authenticate challenge for a DPoP error at an API (RFC 9449 §7.1).
func DPoPChallenge(errCode string) string {
	return `DPoP error="` + errCode + `", algs="` + strings.Join(DPoPAlgs, " ") + `"`
}

// WriteBearerError answers a request Bearer refused: 401 with a challenge for a missing or bad
// token or proof, 403 for a missing scope (RFC 6750 §3), 503 when the provider's store is down.
func WriteBearerError(w http.ResponseWriter, r *http.Request, realm, scope string, err error) {
	switch {
	case errors.Is(err, ErrNoToken):
		w.Header().Set("WWW-Authenticate", fmt.Sprintf("Bearer realm=%q", realm))
		server.WriteError(w, r, problem.Mark(problem.Unauthorized, err))
	case errors.Is(err, store.ErrUnavailable):
		server.WriteError(w, r, problem.Mark(problem.Unavailable, err))
	case errors.Is(err, ErrDPoPProof):
		w.Header().Set("WWW-Authenticate", DPoPChallenge("invalid_dpop_proof"))
		server.WriteError(w, r, problem.Mark(problem.Unauthorized, err))
	case errors.Is(err, ErrInsufficientScope):
		w.Header().Set("WWW-Authenticate", fmt.Sprintf("Bearer realm=%q, error=\"insufficient_scope\", scope=%q", realm, scope))
		server.WriteError(w, r, problem.Mark(problem.InsufficientScope, err))
	default:
		w.Header().Set("WWW-Authenticate", fmt.Sprintf("Bearer realm=%q, error=\"invalid_token\"", realm))
		server.WriteError(w, r, ErrTokenInvalid)
	}
}

// Sessions reads who is logged in at the provider in the browser of a request (its single
// sign-on), for the pages of other services: the person, the login's level, and the session's
// CSRF token for the page's forms. Activation sessions are not logins and are not returned.
type Sessions interface {
	Session(r *http.Request) (Session, bool)
}

// Session is a browser's login at the provider.
type Session struct {
	Subject string // the person's own id
	ACR     string
	CSRF    string
}
