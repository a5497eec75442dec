package idp

import (
	"context"
	"net/http"
	"net/url"
	"slices"

	"github.com/ory/fosite"

	"github.com/vula-eid/vula/internal/auth"
)

// Access tokens name the resources they are for in aud (RFC 9068 §2.2), and a client may ask
// for fewer with resource (RFC 8707). Each scope belongs to one of Vula's resources; a token's
// audience is the resources of its granted scopes, or the subset the client named. A resource
// server (Bearer) accepts a token only when its own resource is in the audience, so a token for
// the sealing API is not one for remote signing.

// errInvalidTarget is RFC 8707 §2's invalid_target.
func errInvalidTarget(hint string) error {
	return &fosite.RFC6749Error{ErrorField: "invalid_target", CodeField: 400,
		DescriptionField: "The requested resource is invalid, unknown, or not allowed for this client.", HintField: hint}
}

// resourceOf is the resource identifier of scope's API.
func (p *Provider) resourceOf(scope string) string {
	iss := p.cfg.Issuer
	switch scope {
	case "seal":
		return iss + "/api/v1/seal"
	case "admin":
		return iss + "/api/v1/admin"
	case "service", "sign", CredentialScope:
		return iss + "/csc/v2"
	case auth.ScopePID:
		return iss // the credential issuer identifier (OpenID4VCI §5.1.2)
	case auth.ScopeVerify:
		return iss + "/api/v1/presentations"
	}
	return iss + "/userinfo" // openid, profile, personal_number, offline_access
}

// Resources are the resource identifiers a client may name in resource (RFC 8707).
func (p *Provider) Resources() []string {
	var out []string
	for _, s := range knownScopes {
		if r := p.resourceOf(s); !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	return out
}

// grantAudience grants ar the audience of its granted scopes, narrowed to requested (the
// resource parameters) when the client named some.
func (p *Provider) grantAudience(ar fosite.Requester, requested []string) error {
	var allowed []string
	for _, s := range ar.GetGrantedScopes() {
		if r := p.resourceOf(s); !slices.Contains(allowed, r) {
			allowed = append(allowed, r)
		}
	}
	aud := allowed
	if len(requested) > 0 {
		aud = nil
		for _, r := range requested {
			u, err := url.Parse(r)
			if err != nil || !u.IsAbs() || u.Fragment != "" {
				return errInvalidTarget("resource must be an absolute URI without a fragment (RFC 8707 §2).")
			}
			if !slices.Contains(allowed, r) {
				return errInvalidTarget("resource " + r + " is not one the granted scopes reach; known: the resources of " +
					"seal, admin, service/credential and openid.")
			}
			if !slices.Contains(aud, r) {
				aud = append(aud, r)
			}
		}
	}
	for _, a := range aud {
		ar.GrantAudience(a)
	}
	return nil
}

// narrowAudience applies a token request's resource parameters to a code or refresh grant: the
// token may be for fewer of the resources granted, never for more.
func narrowAudience(ar fosite.AccessRequester, requested []string) error {
	if len(requested) == 0 {
		return nil
	}
	granted := ar.GetGrantedAudience()
	for _, r := range requested {
		if !slices.Contains(granted, r) {
			return errInvalidTarget("resource " + r + " was not granted.")
		}
	}
	if a, ok := ar.(*fosite.AccessRequest); ok {
		a.GrantedAudience = fosite.Arguments(slices.Clone(requested))
	}
	return nil
}

// codeResources checks a code redemption's resource parameters (RFC 8707 §2.2) against the
// audience its authorization granted: a resource granted is accepted (the token is for the
// granted audience), any other is invalid_target. It runs before fosite spends the code and its
// PKCE state, and because fosite copies the granted audience to the token only while it writes
// the response.
func (p *Provider) codeResources(ctx context.Context, r *http.Request) error {
	requested := r.PostForm["resource"]
	if r.PostForm.Get("grant_type") != "authorization_code" || r.PostForm.Get("code") == "" || len(requested) == 0 {
		return nil
	}
	req, err := p.st.GetAuthorizeCodeSession(ctx, p.codes.AuthorizeCodeSignature(ctx, r.PostForm.Get("code")), newSession())
	if err != nil {
		return nil // fosite answers an unknown or used code
	}
	for _, r := range requested {
		if !slices.Contains(req.GetGrantedAudience(), r) {
			return errInvalidTarget("resource " + r + " was not granted.")
		}
	}
	return nil
}
