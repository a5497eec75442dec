package idp

import (
	"encoding/json"
	"slices"

	"github.com/ory/fosite"
	"github.com/ory/fosite/token/jwt"

	"github.com/vula-eid/vula/internal/store"
)

// The claims request parameter (OpenID Connect Core §5.5): a client may ask for individual
// claims in the ID token or from userinfo, beside or instead of scopes. Vula answers the
// person's claims it has (personClaims); acr with essential and values asks for a level of
// assurance as acr_values does (§5.5.1.1), and one that cannot be met is refused. Other claims
// it does not have are left out, as §5.5 allows.

// personClaims are the claims about the person Vula can return.
var personClaims = []string{"given_name", "family_name", "birthdate", "personal_number"}

// claimRequest is one claim's request: null (nil) or an object.
type claimRequest struct {
	Essential bool     `json:"essential,omitempty"`
	Value     string   `json:"value,omitempty"`
	Values    []string `json:"values,omitempty"`
}

// claimsRequest is the parsed claims parameter.
type claimsRequest struct {
	UserInfo map[string]*claimRequest `json:"userinfo"`
	IDToken  map[string]*claimRequest `json:"id_token"`
}

// requestedClaims are the person claims asked for, kept with the session.
type requestedClaims struct {
	IDToken  []string `json:"id_token,omitempty"`
	UserInfo []string `json:"userinfo,omitempty"`
}

// parseClaims reads ar's claims parameter.
func parseClaims(ar fosite.AuthorizeRequester) (*claimsRequest, error) {
	raw := ar.GetRequestForm().Get("claims")
	if raw == "" {
		return nil, nil
	}
	var c claimsRequest
	if err := json.Unmarshal([]byte(raw), &c); err != nil {
		return nil, fosite.ErrInvalidRequest.WithHint("claims must be a JSON object with userinfo and id_token members (OpenID Connect Core §5.5).")
	}
	return &c, nil
}

// acrValues are the levels the claims parameter asks for in the ID token's acr, if any.
func (c *claimsRequest) acrValues() []string {
	if c == nil || c.IDToken["acr"] == nil {
		return nil
	}
	a := c.IDToken["acr"]
	if a.Value != "" {
		return []string{a.Value}
	}
	return a.Values
}

// persons are the person claims asked for, for the session.
func (c *claimsRequest) persons() requestedClaims {
	var out requestedClaims
	if c == nil {
		return out
	}
	for _, name := range personClaims {
		if _, ok := c.IDToken[name]; ok {
			out.IDToken = append(out.IDToken, name)
		}
		if _, ok := c.UserInfo[name]; ok {
			out.UserInfo = append(out.UserInfo, name)
		}
	}
	return out
}

// consentScopes are the scopes whose consent lines cover the claims asked.
func (r requestedClaims) consentScopes() []string {
	var out []string
	for _, n := range append(slices.Clone(r.IDToken), r.UserInfo...) {
		s := "profile"
		if n == "personal_number" {
			s = "personal_number"
		}
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// personClaim is one of personClaims of p.
func personClaim(p store.Person, name string) string {
	switch name {
	case "given_name":
		return p.GivenName
	case "family_name":
		return p.FamilyName
	case "birthdate":
		return p.BirthDate
	case "personal_number":
		return p.PersonalNumber
	}
	return ""
}

// addIDTokenClaims puts the person claims asked for in the ID token.
func addIDTokenClaims(c *jwt.IDTokenClaims, p store.Person, names []string) {
	for _, n := range names {
		if v := personClaim(p, n); v != "" {
			c.Extra[n] = v
		}
	}
}
