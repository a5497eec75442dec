package idp

import (
	"errors"
	"fmt"
	"net/http"
	"slices"

	"github.com/ory/fosite"

	"github.com/vula-eid/vula/internal/auth"
	"github.com/vula-eid/vula/internal/store"
)

// The contract with the services lives in auth; these names keep idp's own code short.
type Caller = auth.Caller

var (
	ErrNoToken           = auth.ErrNoToken
	ErrTokenInvalid      = auth.ErrTokenInvalid
	ErrInsufficientScope = auth.ErrInsufficientScope
	ErrDPoPProof         = auth.ErrDPoPProof
)

var _ auth.Authenticator = (*Provider)(nil)

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
		c.WalletCredentials = s.Wallet
		if s.Claims != nil {
			c.ACR, c.AMR, c.AuthTime = s.Claims.AuthenticationContextClassReference, s.Claims.AuthenticationMethodsReferences, s.Claims.AuthTime
		}
	}
	return c, nil
}
