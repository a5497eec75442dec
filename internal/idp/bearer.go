package idp

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/ory/fosite"

	"github.com/vula-eid/vula/internal/server"
	"github.com/vula-eid/vula/internal/store"
)

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
}

// Errors of Bearer.
var (
	ErrNoToken           = errors.New("a bearer access token is required")
	ErrTokenInvalid      = errors.New("the access token is not valid")
	ErrInsufficientScope = errors.New("the access token lacks the scope")
)

// Bearer checks the request's bearer access token, issued by this provider, active and granted
// scope, and says whom it speaks for. Vula's own APIs (sealing, signing) call it in process.
func (p *Provider) Bearer(r *http.Request, scope string) (Caller, error) {
	scheme, tok := accessToken(r)
	if tok == "" {
		return Caller{}, ErrNoToken
	}
	sess := newSession()
	_, ar, err := p.oauth.IntrospectToken(r.Context(), tok, fosite.AccessToken, sess)
	if err == nil {
		err = p.checkBinding(r, scheme, tok, sess)
	}
	if err != nil && isUnavailable(err) {
		// The store cannot say: an outage, not a bad token (503, not 401).
		return Caller{}, fmt.Errorf("%w: checking the access token", store.ErrUnavailable)
	}
	if errors.Is(err, ErrDPoPProof) {
		return Caller{}, err
	}
	if err != nil {
		return Caller{}, ErrTokenInvalid
	}
	if !ar.GetGrantedScopes().Has(scope) {
		return Caller{}, fmt.Errorf("%w %s", ErrInsufficientScope, scope)
	}
	if !slices.Contains(ar.GetGrantedAudience(), p.resourceOf(scope)) {
		return Caller{}, ErrTokenInvalid // a token for another resource (RFC 8707)
	}
	c := Caller{ClientID: ar.GetClient().GetID(), Scopes: ar.GetGrantedScopes()}
	if s, ok := ar.GetSession().(*Session); ok {
		c.Subject = s.Person
		c.ExpiresAt = s.GetExpiresAt(fosite.AccessToken)
		c.Credential, c.AuthorizationSeq = s.Credential, s.AuthorizationSeq
		if s.Claims != nil {
			c.ACR, c.AMR, c.AuthTime = s.Claims.AuthenticationContextClassReference, s.Claims.AuthenticationMethodsReferences, s.Claims.AuthTime
		}
	}
	return c, nil
}

// WriteBearerError answers a request Bearer refused: 401 with a challenge for a missing or bad
// token, 403 for a missing scope (RFC 6750 §3).
func WriteBearerError(w http.ResponseWriter, r *http.Request, realm, scope string, err error) {
	switch {
	case errors.Is(err, ErrNoToken):
		w.Header().Set("WWW-Authenticate", fmt.Sprintf("Bearer realm=%q", realm))
		server.WriteProblem(w, r, http.StatusUnauthorized, err)
	case errors.Is(err, store.ErrUnavailable):
		server.WriteProblem(w, r, http.StatusServiceUnavailable, err)
	case errors.Is(err, ErrDPoPProof):
		w.Header().Set("WWW-Authenticate", dpopChallenge("invalid_dpop_proof"))
		server.WriteProblem(w, r, http.StatusUnauthorized, err)
	case errors.Is(err, ErrInsufficientScope):
		w.Header().Set("WWW-Authenticate", fmt.Sprintf("Bearer realm=%q, error=\"insufficient_scope\", scope=%q", realm, scope))
		server.WriteProblem(w, r, http.StatusForbidden, err)
	default:
		w.Header().Set("WWW-Authenticate", fmt.Sprintf("Bearer realm=%q, error=\"invalid_token\"", realm))
		server.WriteProblem(w, r, http.StatusUnauthorized, ErrTokenInvalid)
	}
}
