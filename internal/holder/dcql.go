package holder

import (
	"crypto/x509"
	"encoding/json"
	"fmt"
	"slices"
	"time"
)

// DCQL (OpenID4VP 1.0 §6): the credentials a verifier asks for, the claims of each, and which
// combinations of credentials will do.

const (
	maxQueries = 32
	maxClaims  = 64
	maxPath    = 16
)

type dcqlQuery struct {
	Credentials []credentialQuery `json:"credentials"`
	Sets        []credentialSet   `json:"credential_sets"`
}

type credentialQuery struct {
	ID     string `json:"id"`
	Format string `json:"format"`
	Meta   struct {
		VCTValues    []string `json:"vct_values"`
		DocTypeValue string   `json:"doctype_value"`
	} `json:"meta"`
	Claims    []claimQuery `json:"claims"`
	ClaimSets [][]string   `json:"claim_sets"`
}

type claimQuery struct {
	ID     string `json:"id"`
	Path   []any  `json:"path"`
	Values []any  `json:"values"`
}

type credentialSet struct {
	Options  [][]string `json:"options"`
	Required *bool      `json:"required"`
}

// parseDCQL reads and bounds a DCQL query.
func parseDCQL(raw json.RawMessage) (dcqlQuery, error) {
	var q dcqlQuery
	if err := json.Unmarshal(raw, &q); err != nil {
		return q, fmt.Errorf("%w: dcql_query is not a DCQL query: %v", ErrRequest, err)
	}
	if len(q.Credentials) == 0 || len(q.Credentials) > maxQueries {
		return q, fmt.Errorf("%w: dcql_query has %d credential queries (1 to %d)", ErrRequest, len(q.Credentials), maxQueries)
	}
	ids := map[string]bool{}
	for _, cq := range q.Credentials {
		if cq.ID == "" || ids[cq.ID] {
			return q, fmt.Errorf("%w: a credential query without an id, or with one used twice", ErrRequest)
		}
		ids[cq.ID] = true
		if len(cq.Claims) > maxClaims {
			return q, fmt.Errorf("%w: credential query %q asks for more than %d claims", ErrRequest, cq.ID, maxClaims)
		}
		claimIDs := map[string]bool{}
		for _, c := range cq.Claims {
			if len(c.Path) == 0 || len(c.Path) > maxPath {
				return q, fmt.Errorf("%w: a claim path of %d elements in query %q", ErrRequest, len(c.Path), cq.ID)
			}
			for _, e := range c.Path {
				switch v := e.(type) {
				case string, nil:
				case float64:
					if v < 0 || v != float64(int(v)) {
						return q, fmt.Errorf("%w: claim path index %v in query %q", ErrRequest, v, cq.ID)
					}
				default:
					return q, fmt.Errorf("%w: a claim path element of type %T in query %q", ErrRequest, e, cq.ID)
				}
			}
			if c.ID != "" {
				claimIDs[c.ID] = true
			}
		}
		for _, set := range cq.ClaimSets {
			for _, id := range set {
				if !claimIDs[id] {
					return q, fmt.Errorf("%w: claim set of query %q names unknown claim %q", ErrRequest, cq.ID, id)
				}
			}
		}
	}
	for _, s := range q.Sets {
		for _, opt := range s.Options {
			for _, id := range opt {
				if !ids[id] {
					return q, fmt.Errorf("%w: a credential set names unknown query %q", ErrRequest, id)
				}
			}
		}
	}
	return q, nil
}

// match returns cr as an answer to the query, with the claims to disclose, or nil.
func (cq credentialQuery) match(cr Credential, anchors []*x509.Certificate, now time.Time) *Match {
	if cr.Format != cq.Format {
		return nil
	}
	m := &Match{QueryID: cq.ID, Credential: cr}
	var has func(c claimQuery) bool
	switch cr.Format {
	case formatSDJWT:
		t, err := parseSDJWT(cr.Credential, anchors, now)
		if err != nil || len(cq.Meta.VCTValues) > 0 && !slices.Contains(cq.Meta.VCTValues, t.vct) {
			return nil
		}
		m.sd = t
		has = func(c claimQuery) bool {
			vs := lookup(t.claims, c.Path)
			if len(vs) == 0 {
				return false
			}
			return len(c.Values) == 0 || slices.ContainsFunc(vs, func(v any) bool { return valueIn(v, c.Values) })
		}
	case formatMdoc:
		md, err := parseMdoc(cr.Credential, anchors, now)
		if err != nil || cq.Meta.DocTypeValue != "" && md.DocType != cq.Meta.DocTypeValue {
			return nil
		}
		m.md = md
		has = func(c claimQuery) bool {
			if len(c.Path) != 2 {
				return false
			}
			ns, _ := c.Path[0].(string)
			id, _ := c.Path[1].(string)
			for _, e := range md.Elements {
				if e.Namespace == ns && e.Identifier == id {
					return len(c.Values) == 0 || valueIn(normalizeCBOR(e.Value), c.Values)
				}
			}
			return false
		}
	default:
		return nil
	}
	if len(cq.ClaimSets) == 0 {
		for _, c := range cq.Claims {
			if !has(c) {
				return nil
			}
			m.Claims = append(m.Claims, c.Path)
		}
		return m
	}
	byID := map[string]claimQuery{}
	for _, c := range cq.Claims {
		byID[c.ID] = c
	}
	for _, set := range cq.ClaimSets {
		if slices.ContainsFunc(set, func(id string) bool { return !has(byID[id]) }) {
			continue
		}
		for _, id := range set {
			m.Claims = append(m.Claims, byID[id].Path)
		}
		return m
	}
	return nil
}

// normalizeCBOR makes a decoded CBOR value comparable with a JSON one (integers as float64).
func normalizeCBOR(v any) any {
	switch x := v.(type) {
	case uint64:
		return float64(x)
	case int64:
		return float64(x)
	}
	return v
}
