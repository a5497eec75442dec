package idp

import (
	"net/http"
	"slices"

	"github.com/ory/fosite"

	"github.com/vula-eid/vula/internal/auth"
)

// The wallet's authorization_details (OpenID4VCI 1.0 §5.1.1, RFC 9396): a wallet may ask for the
// PID by type openid_credential and a credential_configuration_id instead of the scope. The
// login and consent are the scope's; the code's session carries the configurations, and the
// token response and the access token return them with their credential_identifiers, which
// the wallet issuer's credential endpoint then requires.

// walletRequest reads the openid_credential details of an authorization request: nil when it
// has none, invalid_authorization_details when they are not valid or not offered, or the
// client may not ask for the PID.
func (p *Provider) walletRequest(ar fosite.AuthorizeRequester) ([]string, error) {
	raw := ar.GetRequestForm().Get("authorization_details")
	if raw == "" || !auth.IsOpenIDCredentialDetails(raw) {
		return nil, nil
	}
	if len(p.cfg.WalletConfigurations) == 0 {
		return nil, errDetails("No credential issuer is served here.")
	}
	if !slices.Contains(ar.GetClient().GetScopes(), auth.ScopePID) {
		return nil, errDetails("This client may not ask for the PID.")
	}
	ids, err := auth.ParseOpenIDCredentialDetails(raw, p.cfg.WalletConfigurations, p.cfg.Issuer)
	if err != nil {
		return nil, errDetails(err.Error())
	}
	return ids, nil
}

// grantWallet completes the session of a login that asked for the PID by authorization_details.
func grantWallet(ids []string) func(*Session, fosite.AuthorizeRequester) {
	if len(ids) == 0 {
		return nil
	}
	return func(s *Session, ar fosite.AuthorizeRequester) {
		ar.GrantScope(auth.ScopePID) // the credential endpoint's scope, so Bearer accepts the token
		s.Wallet = ids
		s.JWTClaims.Extra["authorization_details"] = auth.OpenIDCredentialGrant(ids)
	}
}

var _ auth.Sessions = (*Pages)(nil)

// Session is the browser's single sign-on, for the pages of other services (the person's
// own PIDs); an activation session is not a login.
func (g *Pages) Session(r *http.Request) (auth.Session, bool) {
	s, ok := g.sso(r)
	if !ok || s.Activation {
		return auth.Session{}, false
	}
	return auth.Session{Subject: s.Subject, ACR: s.ACR, CSRF: s.CSRF}, true
}
