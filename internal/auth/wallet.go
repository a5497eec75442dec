package auth

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
)

// OpenIDCredentialType is the authorization_details type of OpenID4VCI 1.0 §5.1.1 (RFC 9396):
// a wallet asks for a credential by its configuration id instead of (or beside) a scope.
const OpenIDCredentialType = "openid_credential"

// IsOpenIDCredentialDetails reports whether raw authorization_details name the type
// openid_credential at all (then they are the wallet issuer's, not the signing service's).
func IsOpenIDCredentialDetails(raw string) bool {
	var ds []struct {
		Type string `json:"type"`
	}
	if json.Unmarshal([]byte(raw), &ds) != nil {
		return false
	}
	return slices.ContainsFunc(ds, func(d struct {
		Type string `json:"type"`
	}) bool {
		return d.Type == OpenIDCredentialType
	})
}

// ErrDetails is an authorization_details value that is not acceptable
// (invalid_authorization_details, RFC 9396 §5).
var ErrDetails = errors.New("invalid authorization_details")

// ParseOpenIDCredentialDetails reads authorization_details that must all be of type
// openid_credential, each naming one of offered by credential_configuration_id, and, when it
// has locations, listing issuer among them (§5.1.1). It returns the configuration ids asked,
// each once, in order.
func ParseOpenIDCredentialDetails(raw string, offered []string, issuer string) ([]string, error) {
	var ds []map[string]json.RawMessage
	if err := json.Unmarshal([]byte(raw), &ds); err != nil || len(ds) == 0 {
		return nil, fmt.Errorf("%w: not a non-empty JSON array of objects", ErrDetails)
	}
	var ids []string
	for i, d := range ds {
		var typ, id string
		var locations []string
		if json.Unmarshal(d["type"], &typ) != nil || typ != OpenIDCredentialType {
			return nil, fmt.Errorf("%w: entry %d: type must be %s", ErrDetails, i, OpenIDCredentialType)
		}
		if json.Unmarshal(d["credential_configuration_id"], &id) != nil || id == "" {
			return nil, fmt.Errorf("%w: entry %d: credential_configuration_id is required", ErrDetails, i)
		}
		if !slices.Contains(offered, id) {
			return nil, fmt.Errorf("%w: entry %d: credential_configuration_id %q is not offered", ErrDetails, i, id)
		}
		if raw, ok := d["locations"]; ok && (json.Unmarshal(raw, &locations) != nil || !slices.Contains(locations, issuer)) {
			return nil, fmt.Errorf("%w: entry %d: locations must name the credential issuer %s", ErrDetails, i, issuer)
		}
		if !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// OpenIDCredentialGrant is the authorization_details a token response returns for ids
// (OpenID4VCI §6.2): one entry per configuration, with the credential identifiers the
// credential request then names. Vula's identifier of a configuration's dataset is the
// configuration id itself: a person has one PID.
func OpenIDCredentialGrant(ids []string) []map[string]any {
	out := make([]map[string]any, 0, len(ids))
	for _, id := range ids {
		out = append(out, map[string]any{"type": OpenIDCredentialType, "credential_configuration_id": id,
			"credential_identifiers": []string{id}})
	}
	return out
}
