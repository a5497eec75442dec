package idp

import (
	"encoding/json"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/oauth2"
	"github.com/ory/fosite/handler/openid"
	"github.com/ory/fosite/token/jwt"

	"github.com/vula-eid/vula/internal/auth"
)

// Session is what fosite keeps with every code and token: the ID token's claims (subject, acr,
// amr, auth_time, nonce) and the JWT access token's. It travels through the ephemeral store as
// JSON, so a flow started at one replica can end at another.
type Session struct {
	*openid.DefaultSession `json:"oidc"`
	JWTClaims              *jwt.JWTClaims `json:"jwt_claims"`
	JWTHeader              *jwt.Headers   `json:"jwt_header"`
	// Person is the person's own id; the ID token's sub may be a pairwise one.
	Person string `json:"person,omitempty"`
	// Credential is the credential authorization the token carries (scope credential), and
	// AuthorizationSeq the audit sequence number of its authorization event.
	Credential       *CredentialAuthorization `json:"credential,omitempty"`
	AuthorizationSeq int64                    `json:"authorization_seq,omitempty"`
	// DPoPJKT is the thumbprint of the key the tokens are bound to (RFC 9449), CodeJKT the one
	// the authorization request named (dpop_jkt), which must redeem the code.
	DPoPJKT string `json:"dpop_jkt,omitempty"`
	CodeJKT string `json:"code_jkt,omitempty"`
	// Wallet are the credential configurations authorization_details of type openid_credential
	// granted (OpenID4VCI §5.1.1).
	Wallet []string `json:"wallet,omitempty"`
	// Asked are the person claims the claims parameter asked for (OpenID Connect Core §5.5).
	Asked requestedClaims `json:"asked,omitempty"`
	// ClientOnly marks a client_credentials token: it belongs to no grant that another token
	// could revoke, so its state is found by its own key only (see CreateAccessTokenSession).
	ClientOnly bool `json:"client_only,omitempty"`
}

var (
	_ openid.Session             = (*Session)(nil)
	_ oauth2.JWTSessionContainer = (*Session)(nil)
)

// newSession is an empty session for fosite to fill or a stored one to be read into.
func newSession() *Session {
	return &Session{DefaultSession: openid.NewDefaultSession(), JWTClaims: &jwt.JWTClaims{}, JWTHeader: &jwt.Headers{}}
}

// GetJWTClaims are the access token's claims.
func (s *Session) GetJWTClaims() jwt.JWTClaimsContainer {
	if s.JWTClaims == nil {
		s.JWTClaims = &jwt.JWTClaims{}
	}
	return s.JWTClaims
}

// GetJWTHeader is the access token's header (typ at+jwt, RFC 9068).
func (s *Session) GetJWTHeader() *jwt.Headers {
	if s.JWTHeader == nil {
		s.JWTHeader = &jwt.Headers{}
	}
	return s.JWTHeader
}

// SetExpiresAt sets a token's expiry; an access token that authorizes signatures lives at most
// CredentialTokenTTL. fosite stamps expiries from its own time.Now, so the bound does too.
func (s *Session) SetExpiresAt(key fosite.TokenType, exp time.Time) {
	if s.Credential != nil && key == fosite.AccessToken {
		exp = minTime(exp, time.Now().UTC().Add(CredentialTokenTTL).Round(time.Second))
	}
	s.DefaultSession.SetExpiresAt(key, exp)
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// GetExtraClaims are what token introspection adds to its answer: a credential token's
// authorization_details (RFC 9396 §9.2).
func (s *Session) GetExtraClaims() map[string]any {
	out := map[string]any{}
	if s.Credential != nil {
		out["authorization_details"] = []*CredentialAuthorization{s.Credential}
	}
	if s.Wallet != nil {
		out["authorization_details"] = auth.OpenIDCredentialGrant(s.Wallet)
	}
	if s.DPoPJKT != "" {
		out["cnf"] = map[string]string{"jkt": s.DPoPJKT} // RFC 9449 §6.2
		out["token_type"] = dpopScheme
	}
	return out
}

// bind binds the access token to the proof's key, or unbinds it without one.
func (s *Session) bind(pr *dpopProof) {
	if s.JWTClaims.Extra == nil {
		s.JWTClaims.Extra = map[string]any{}
	}
	if pr == nil {
		s.DPoPJKT = ""
		delete(s.JWTClaims.Extra, "cnf")
		return
	}
	s.DPoPJKT = pr.JKT
	s.JWTClaims.Extra["cnf"] = map[string]string{"jkt": pr.JKT}
}

var _ fosite.ExtraClaimsSession = (*Session)(nil)

// Clone copies the session through its JSON form, the form it is stored in.
func (s *Session) Clone() fosite.Session {
	if s == nil {
		return nil
	}
	b, err := json.Marshal(s)
	if err != nil {
		return nil
	}
	c := newSession()
	if json.Unmarshal(b, c) != nil {
		return nil
	}
	return c
}
