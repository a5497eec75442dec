package verifier

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"

	"github.com/vula-eid/vula/internal/problem"
)

// A DCQL query (OpenID4VP 1.0 §6) says which credentials, and which of their claims, the relying
// party asks for. It comes from the relying party and goes to the wallet inside the signed
// request: ParseQuery reads it strictly, bounded, and what goes to the wallet is the query as
// parsed here (members this verifier does not know are not passed on).

// Formats a query may ask for.
const (
	FormatSDJWT = "dc+sd-jwt"
	FormatMdoc  = "mso_mdoc"
)

// Bounds of a query.
const (
	MaxCredentials = 8
	MaxClaims      = 64
	maxPath        = 8
	maxQuerySize   = 32 << 10
)

// Query is a DCQL query.
type Query struct {
	Credentials    []CredentialQuery `json:"credentials"`
	CredentialSets []CredentialSet   `json:"credential_sets,omitempty"`
}

// CredentialQuery asks for one credential.
type CredentialQuery struct {
	ID       string       `json:"id"`
	Format   string       `json:"format"`
	Multiple bool         `json:"multiple,omitempty"`
	Meta     Meta         `json:"meta"`
	Claims   []ClaimQuery `json:"claims,omitempty"`
	// ClaimSets are alternatives of claim ids, the first the relying party prefers.
	ClaimSets [][]string `json:"claim_sets,omitempty"`
	// RequireBinding is require_cryptographic_holder_binding; true when absent.
	RequireBinding *bool `json:"require_cryptographic_holder_binding,omitempty"`
}

// Meta holds the format's constraints on the credential's type.
type Meta struct {
	VCTValues    []string `json:"vct_values,omitempty"`
	DoctypeValue string   `json:"doctype_value,omitempty"`
}

// ClaimQuery asks for one claim, by its path in the credential.
type ClaimQuery struct {
	ID     string `json:"id,omitempty"`
	Path   []any  `json:"path"`
	Values []any  `json:"values,omitempty"`
}

// CredentialSet says which combinations of credentials satisfy the relying party.
type CredentialSet struct {
	Options  [][]string `json:"options"`
	Required *bool      `json:"required,omitempty"`
}

var idRe = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// ErrQuery is a DCQL query this verifier refuses.
var ErrQuery = problem.New(problem.InvalidRequest, "invalid DCQL query")

func queryErr(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrQuery, fmt.Sprintf(format, a...))
}

// ParseQuery reads and checks a DCQL query from JSON.
func ParseQuery(b []byte) (Query, error) {
	var q Query
	if len(b) > maxQuerySize {
		return q, queryErr("larger than %d bytes", maxQuerySize)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&q); err != nil {
		return q, queryErr("not a JSON object of the DCQL form: %v", err)
	}
	if dec.More() {
		return q, queryErr("data after the query")
	}
	return q, q.Check()
}

// Check reports the first thing wrong with q.
func (q Query) Check() error {
	if len(q.Credentials) == 0 {
		return queryErr("credentials is empty")
	}
	if len(q.Credentials) > MaxCredentials {
		return queryErr("%d credentials asked for, at most %d", len(q.Credentials), MaxCredentials)
	}
	ids := map[string]bool{}
	claims := 0
	for i, c := range q.Credentials {
		if !idRe.MatchString(c.ID) {
			return queryErr("credentials[%d].id %q: want 1 to 64 of A-Z a-z 0-9 _ -", i, c.ID)
		}
		if ids[c.ID] {
			return queryErr("credentials[%d].id %q is not unique", i, c.ID)
		}
		ids[c.ID] = true
		switch c.Format {
		case FormatSDJWT:
			if c.Meta.DoctypeValue != "" {
				return queryErr("credentials[%d]: meta.doctype_value is for mso_mdoc, not dc+sd-jwt", i)
			}
			if len(c.Meta.VCTValues) == 0 {
				return queryErr("credentials[%d]: meta.vct_values is required for dc+sd-jwt", i)
			}
		case FormatMdoc:
			if len(c.Meta.VCTValues) > 0 {
				return queryErr("credentials[%d]: meta.vct_values is for dc+sd-jwt, not mso_mdoc", i)
			}
			if c.Meta.DoctypeValue == "" {
				return queryErr("credentials[%d]: meta.doctype_value is required for mso_mdoc", i)
			}
			for j, cl := range c.Claims {
				if len(cl.Path) != 2 || !isString(cl.Path[0]) || !isString(cl.Path[1]) {
					return queryErr("credentials[%d].claims[%d].path: an mso_mdoc claim is [namespace, element]", i, j)
				}
			}
		case "":
			return queryErr("credentials[%d].format is required", i)
		default:
			return queryErr("credentials[%d].format %q is unknown (want %s or %s)", i, c.Format, FormatSDJWT, FormatMdoc)
		}
		if c.RequireBinding != nil && !*c.RequireBinding {
			return queryErr("credentials[%d]: require_cryptographic_holder_binding false is not accepted: presentations are key bound", i)
		}
		claimIDs := map[string]bool{}
		for j, cl := range c.Claims {
			claims++
			if len(cl.Path) == 0 || len(cl.Path) > maxPath {
				return queryErr("credentials[%d].claims[%d].path: want 1 to %d elements", i, j, maxPath)
			}
			for k, e := range cl.Path {
				if err := checkPathElement(e); err != nil {
					return queryErr("credentials[%d].claims[%d].path[%d]: %v", i, j, k, err)
				}
			}
			if cl.ID != "" {
				if !idRe.MatchString(cl.ID) || claimIDs[cl.ID] {
					return queryErr("credentials[%d].claims[%d].id %q is malformed or not unique", i, j, cl.ID)
				}
				claimIDs[cl.ID] = true
			} else if len(c.ClaimSets) > 0 {
				return queryErr("credentials[%d].claims[%d] needs an id: the query has claim_sets", i, j)
			}
			for _, v := range cl.Values {
				switch v.(type) {
				case string, json.Number, bool:
				default:
					return queryErr("credentials[%d].claims[%d].values: only strings, numbers and booleans", i, j)
				}
			}
		}
		if len(c.ClaimSets) > 0 && len(c.Claims) == 0 {
			return queryErr("credentials[%d]: claim_sets without claims", i)
		}
		for j, set := range c.ClaimSets {
			if len(set) == 0 {
				return queryErr("credentials[%d].claim_sets[%d] is empty", i, j)
			}
			for _, id := range set {
				if !claimIDs[id] {
					return queryErr("credentials[%d].claim_sets[%d] names claim %q, which the query does not have", i, j, id)
				}
			}
		}
	}
	if claims > MaxClaims {
		return queryErr("%d claims asked for, at most %d", claims, MaxClaims)
	}
	for i, s := range q.CredentialSets {
		if len(s.Options) == 0 {
			return queryErr("credential_sets[%d].options is empty", i)
		}
		for j, o := range s.Options {
			if len(o) == 0 {
				return queryErr("credential_sets[%d].options[%d] is empty", i, j)
			}
			for _, id := range o {
				if !ids[id] {
					return queryErr("credential_sets[%d].options[%d] names credential %q, which the query does not have", i, j, id)
				}
			}
		}
	}
	return nil
}

// checkPathElement: a claims path element is a name, a non-negative array index or null (all
// elements of an array).
func checkPathElement(e any) error {
	switch v := e.(type) {
	case nil:
		return nil
	case string:
		if v == "" {
			return errors.New("an empty name")
		}
		return nil
	case json.Number:
		n, err := v.Int64()
		if err != nil || n < 0 || n > 1<<16 {
			return fmt.Errorf("index %s is not a small non-negative integer", v)
		}
		return nil
	}
	return fmt.Errorf("%v is neither a name, an index nor null", e)
}

// select returns the values at path in v (null selects every element of an array). found is
// false when the path leads nowhere.
func selectPath(v any, path []any) (any, bool) {
	if len(path) == 0 {
		return v, true
	}
	switch e := path[0].(type) {
	case string:
		m, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		x, ok := m[e]
		if !ok {
			return nil, false
		}
		return selectPath(x, path[1:])
	case json.Number:
		arr, ok := v.([]any)
		n, err := e.Int64()
		if !ok || err != nil || n < 0 || int(n) >= len(arr) {
			return nil, false
		}
		return selectPath(arr[n], path[1:])
	case nil:
		arr, ok := v.([]any)
		if !ok {
			return nil, false
		}
		var out []any
		for _, x := range arr {
			if r, ok := selectPath(x, path[1:]); ok {
				out = append(out, r)
			}
		}
		return out, len(out) > 0
	}
	return nil, false
}

// matches reports whether value is one of values (any value when values is empty).
func matches(value any, values []any) bool {
	if len(values) == 0 {
		return true
	}
	return slices.ContainsFunc(values, func(w any) bool { return fmt.Sprint(w) == fmt.Sprint(value) })
}

// Disclosed is one claim given to the relying party: its path and value.
type Disclosed struct {
	Path  []any `json:"path"`
	Value any   `json:"value"`
}

// pick takes from claims exactly what query c asks for: the claims of the first claim set that
// the credential satisfies, or all claims when the query has no sets. Nothing else is returned,
// whatever else the wallet disclosed. With no claims asked for, no claim is returned.
func (c CredentialQuery) pick(claims map[string]any) ([]Disclosed, error) {
	take := func(cl ClaimQuery) (Disclosed, bool) {
		v, ok := selectPath(claims, cl.Path)
		if !ok || !matches(v, cl.Values) {
			return Disclosed{}, false
		}
		return Disclosed{Path: cl.Path, Value: v}, true
	}
	if len(c.ClaimSets) == 0 {
		out := make([]Disclosed, 0, len(c.Claims))
		for _, cl := range c.Claims {
			d, ok := take(cl)
			if !ok {
				return nil, fmt.Errorf("claim %s is not disclosed or does not have an accepted value", pathString(cl.Path))
			}
			out = append(out, d)
		}
		return out, nil
	}
	byID := map[string]ClaimQuery{}
	for _, cl := range c.Claims {
		byID[cl.ID] = cl
	}
next:
	for _, set := range c.ClaimSets {
		out := make([]Disclosed, 0, len(set))
		for _, id := range set {
			d, ok := take(byID[id])
			if !ok {
				continue next
			}
			out = append(out, d)
		}
		return out, nil
	}
	return nil, errors.New("the disclosed claims satisfy none of the claim sets")
}

// pathString is a path for messages: family_name, age_equal_or_over.18, nationalities[*].
func pathString(p []any) string {
	var b bytes.Buffer
	for i, e := range p {
		switch v := e.(type) {
		case nil:
			b.WriteString("[*]")
		case json.Number:
			fmt.Fprintf(&b, "[%s]", v)
		default:
			if i > 0 {
				b.WriteByte('.')
			}
			fmt.Fprint(&b, v)
		}
	}
	return b.String()
}

// satisfied reports whether the credentials answered (by query id) satisfy q: each required
// credential set by one of its options, or, with no sets, every credential asked for.
func (q Query) satisfied(answered map[string]bool) error {
	if len(q.CredentialSets) == 0 {
		for _, c := range q.Credentials {
			if !answered[c.ID] {
				return fmt.Errorf("no presentation for credential %q", c.ID)
			}
		}
		return nil
	}
	for i, s := range q.CredentialSets {
		if s.Required != nil && !*s.Required {
			continue
		}
		ok := slices.ContainsFunc(s.Options, func(o []string) bool {
			return !slices.ContainsFunc(o, func(id string) bool { return !answered[id] })
		})
		if !ok {
			return fmt.Errorf("credential set %d is not satisfied by the presentations", i)
		}
	}
	return nil
}

func isString(v any) bool {
	_, ok := v.(string)
	return ok
}
