package holder

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v3"
)

// SD-JWT (RFC 9901) and SD-JWT VC, as the holder reads and presents them: the issuer-signed JWT,
// the disclosures it commits to by digest, and the key-binding JWT the holder adds.

const (
	maxDisclosures   = 512
	maxDisclosure    = 16 << 10
	maxDepth         = 16
	typSDJWT         = "dc+sd-jwt"
	typKB            = "kb+jwt"
	formatSDJWT      = "dc+sd-jwt"
	formatMdoc       = "mso_mdoc"
	clockSkew        = 5 * time.Minute
	sdAlgSHA256      = "sha-256"
	disclosureArrKey = "..."
)

// sdDisclosure is one disclosure: where it sits in the claims once processed (its path) and the
// disclosure that holds it (parent, -1 at the top).
type sdDisclosure struct {
	encoded string
	digest  string
	name    string // "" for an array element
	value   any
	path    []any // string keys and int indexes
	parent  int
	used    bool
}

// sdJWT is a parsed and verified SD-JWT VC.
type sdJWT struct {
	jwt         string
	disclosures []*sdDisclosure
	claims      map[string]any // the processed claims: every disclosure in place
	iss, vct    string
	exp         time.Time
	cnf         *jose.JSONWebKey
	status      *statusRef
}

// statusRef is a credential's slot in a Token Status List.
type statusRef struct {
	URI string `json:"uri"`
	Idx int    `json:"idx"`
}

func sdDigest(s string) string {
	h := sha256.Sum256([]byte(s))
	return b64.EncodeToString(h[:])
}

// parseSDJWT splits and checks an SD-JWT in issuance form (JWT~d1~...~dn~): the issuer's
// signature by the x5c leaf, that leaf's chain to anchors, and every disclosure's digest in
// the signed claims exactly once.
func parseSDJWT(s string, anchors []*x509.Certificate, now time.Time) (*sdJWT, error) {
	if len(s) > maxCredential {
		return nil, fmt.Errorf("%w: an SD-JWT larger than %d bytes", ErrInvalid, maxCredential)
	}
	parts := strings.Split(s, "~")
	if len(parts) < 2 || parts[len(parts)-1] != "" {
		return nil, fmt.Errorf("%w: not an SD-JWT in issuance form (JWT~disclosures~)", ErrInvalid)
	}
	if len(parts)-2 > maxDisclosures {
		return nil, fmt.Errorf("%w: more than %d disclosures", ErrInvalid, maxDisclosures)
	}
	t, err := parseJWT(parts[0], maxCredential)
	if err != nil {
		return nil, err
	}
	if t.typ != typSDJWT {
		return nil, fmt.Errorf("%w: typ %q is not %q", ErrInvalid, t.typ, typSDJWT)
	}
	if err := verifyChain(t.x5c, anchors, now); err != nil {
		return nil, err
	}
	var claims map[string]any
	if err := t.verify(t.x5c[0].PublicKey, &claims); err != nil {
		return nil, err
	}
	out := &sdJWT{jwt: parts[0]}
	if alg, ok := claims["_sd_alg"]; ok && alg != sdAlgSHA256 {
		return nil, fmt.Errorf("%w: _sd_alg %v (only sha-256)", ErrInvalid, alg)
	}
	byDigest := map[string]*sdDisclosure{}
	for _, enc := range parts[1 : len(parts)-1] {
		d, err := parseDisclosure(enc)
		if err != nil {
			return nil, err
		}
		if byDigest[d.digest] != nil {
			return nil, fmt.Errorf("%w: a disclosure is repeated", ErrInvalid)
		}
		byDigest[d.digest] = d
		out.disclosures = append(out.disclosures, d)
	}
	index := map[*sdDisclosure]int{}
	for i, d := range out.disclosures {
		index[d] = i
	}
	w := walker{byDigest: byDigest, index: index}
	processed, err := w.object(claims, nil, -1, 0)
	if err != nil {
		return nil, err
	}
	for _, d := range out.disclosures {
		if !d.used {
			return nil, fmt.Errorf("%w: a disclosure's digest is in no signed _sd", ErrInvalid)
		}
	}
	out.claims = processed
	delete(out.claims, "_sd_alg")
	if err := out.readClaims(now); err != nil {
		return nil, err
	}
	return out, nil
}

// parseDisclosure decodes one disclosure: [salt, name, value] or, for an array element,
// [salt, value].
func parseDisclosure(enc string) (*sdDisclosure, error) {
	if len(enc) > maxDisclosure {
		return nil, fmt.Errorf("%w: a disclosure larger than %d bytes", ErrInvalid, maxDisclosure)
	}
	raw, err := b64.DecodeString(enc)
	if err != nil {
		return nil, fmt.Errorf("%w: a disclosure is not base64url", ErrInvalid)
	}
	var arr []any
	if err := json.Unmarshal(raw, &arr); err != nil {
		return nil, fmt.Errorf("%w: a disclosure is not a JSON array", ErrInvalid)
	}
	d := &sdDisclosure{encoded: enc, digest: sdDigest(enc)}
	switch len(arr) {
	case 3:
		name, ok := arr[1].(string)
		if !ok || name == "_sd" || name == disclosureArrKey {
			return nil, fmt.Errorf("%w: a disclosure's claim name is not allowed", ErrInvalid)
		}
		d.name, d.value = name, arr[2]
	case 2:
		d.value = arr[1]
	default:
		return nil, fmt.Errorf("%w: a disclosure has %d elements", ErrInvalid, len(arr))
	}
	if _, ok := arr[0].(string); !ok {
		return nil, fmt.Errorf("%w: a disclosure's salt is not a string", ErrInvalid)
	}
	return d, nil
}

// walker puts disclosures in place (RFC 9901 §7.1 step 3).
type walker struct {
	byDigest map[string]*sdDisclosure
	index    map[*sdDisclosure]int
}

func (w walker) take(digest any) (*sdDisclosure, error) {
	s, ok := digest.(string)
	if !ok {
		return nil, fmt.Errorf("%w: a digest is not a string", ErrInvalid)
	}
	d := w.byDigest[s]
	if d == nil {
		return nil, nil // a decoy, or a claim not disclosed
	}
	if d.used {
		return nil, fmt.Errorf("%w: a digest appears twice", ErrInvalid)
	}
	d.used = true
	return d, nil
}

func (w walker) object(o map[string]any, path []any, parent, depth int) (map[string]any, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("%w: claims nested deeper than %d", ErrInvalid, maxDepth)
	}
	out := make(map[string]any, len(o))
	for k, v := range o {
		if k == "_sd" {
			continue
		}
		pv, err := w.value(v, append(slicesClone(path), k), parent, depth)
		if err != nil {
			return nil, err
		}
		out[k] = pv
	}
	if sd, ok := o["_sd"]; ok {
		list, ok := sd.([]any)
		if !ok {
			return nil, fmt.Errorf("%w: _sd is not an array", ErrInvalid)
		}
		for _, digest := range list {
			d, err := w.take(digest)
			if err != nil {
				return nil, err
			}
			if d == nil {
				continue
			}
			if d.name == "" {
				return nil, fmt.Errorf("%w: an array element's disclosure in an object's _sd", ErrInvalid)
			}
			if _, clash := out[d.name]; clash {
				return nil, fmt.Errorf("%w: claim %q is both plain and disclosed", ErrInvalid, d.name)
			}
			d.path, d.parent = append(slicesClone(path), d.name), parent
			pv, err := w.value(d.value, d.path, w.index[d], depth)
			if err != nil {
				return nil, err
			}
			out[d.name] = pv
		}
	}
	return out, nil
}

func (w walker) value(v any, path []any, parent, depth int) (any, error) {
	switch x := v.(type) {
	case map[string]any:
		return w.object(x, path, parent, depth+1)
	case []any:
		out := make([]any, 0, len(x))
		for _, e := range x {
			if m, ok := e.(map[string]any); ok && len(m) == 1 && m[disclosureArrKey] != nil {
				d, err := w.take(m[disclosureArrKey])
				if err != nil {
					return nil, err
				}
				if d == nil {
					continue
				}
				if d.name != "" {
					return nil, fmt.Errorf("%w: an object member's disclosure in an array", ErrInvalid)
				}
				d.path, d.parent = append(slicesClone(path), len(out)), parent
				pv, err := w.value(d.value, d.path, w.index[d], depth+1)
				if err != nil {
					return nil, err
				}
				out = append(out, pv)
				continue
			}
			pv, err := w.value(e, append(slicesClone(path), len(out)), parent, depth+1)
			if err != nil {
				return nil, err
			}
			out = append(out, pv)
		}
		return out, nil
	}
	return v, nil
}

func slicesClone(p []any) []any { return append([]any(nil), p...) }

// readClaims reads the SD-JWT VC's registered claims.
func (t *sdJWT) readClaims(now time.Time) error {
	t.iss, _ = t.claims["iss"].(string)
	t.vct, _ = t.claims["vct"].(string)
	if t.iss == "" || t.vct == "" {
		return fmt.Errorf("%w: an SD-JWT VC without iss or vct", ErrInvalid)
	}
	if exp, ok := t.claims["exp"].(float64); ok {
		t.exp = time.Unix(int64(exp), 0)
		if !now.Before(t.exp.Add(clockSkew)) {
			return fmt.Errorf("%w: the credential expired at %s", ErrInvalid, t.exp.UTC().Format(time.RFC3339))
		}
	}
	if nbf, ok := t.claims["nbf"].(float64); ok && now.Add(clockSkew).Before(time.Unix(int64(nbf), 0)) {
		return fmt.Errorf("%w: the credential is not valid yet", ErrInvalid)
	}
	if cnf, ok := t.claims["cnf"].(map[string]any); ok {
		raw, _ := json.Marshal(cnf["jwk"])
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(raw); err != nil || !k.IsPublic() {
			return fmt.Errorf("%w: cnf.jwk is not a public key", ErrInvalid)
		}
		t.cnf = &k
	}
	if st, ok := t.claims["status"].(map[string]any); ok {
		raw, _ := json.Marshal(st["status_list"])
		var r statusRef
		if json.Unmarshal(raw, &r) == nil && r.URI != "" {
			t.status = &r
		}
	}
	return nil
}

// disclosedNames are the paths of the credential's disclosures, dotted, in issuance order.
func (t *sdJWT) disclosedNames() []string {
	var out []string
	for _, d := range t.disclosures {
		if d.name == "" {
			continue
		}
		parts := make([]string, len(d.path))
		for i, p := range d.path {
			parts[i] = fmt.Sprint(p)
		}
		out = append(out, strings.Join(parts, "."))
	}
	return out
}

// pathMatch reports whether claim path q (DCQL: strings, null for every array element, indexes)
// and disclosure path p agree on their common prefix.
func pathMatch(q, p []any) bool {
	for i := 0; i < len(q) && i < len(p); i++ {
		switch qe := q[i].(type) {
		case nil:
			if _, ok := p[i].(int); !ok {
				return false
			}
		case float64:
			if pi, ok := p[i].(int); !ok || pi != int(qe) {
				return false
			}
		case string:
			if ps, ok := p[i].(string); !ok || ps != qe {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// present is the SD-JWT with the disclosures that reveal the claims at paths (each with what
// holds it and what it holds), ready for a key-binding JWT: JWT~d...~.
func (t *sdJWT) present(paths [][]any) string {
	keep := map[int]bool{}
	for i, d := range t.disclosures {
		for _, q := range paths {
			if pathMatch(q, d.path) {
				keep[i] = true
			}
		}
	}
	// The disclosures that hold a kept one are needed to reach it.
	for i := range t.disclosures {
		if keep[i] {
			for p := t.disclosures[i].parent; p >= 0; p = t.disclosures[p].parent {
				keep[p] = true
			}
		}
	}
	var b strings.Builder
	b.WriteString(t.jwt)
	b.WriteByte('~')
	for i, d := range t.disclosures {
		if keep[i] {
			b.WriteString(d.encoded)
			b.WriteByte('~')
		}
	}
	return b.String()
}

// lookup resolves a DCQL claim path in the processed claims: every value it names.
func lookup(v any, path []any) []any {
	if len(path) == 0 {
		return []any{v}
	}
	switch x := v.(type) {
	case map[string]any:
		k, ok := path[0].(string)
		if !ok {
			return nil
		}
		if e, ok := x[k]; ok {
			return lookup(e, path[1:])
		}
	case []any:
		switch p := path[0].(type) {
		case nil:
			var out []any
			for _, e := range x {
				out = append(out, lookup(e, path[1:])...)
			}
			return out
		case float64:
			if i := int(p); i >= 0 && i < len(x) {
				return lookup(x[i], path[1:])
			}
		}
	}
	return nil
}

// valueIn reports whether v equals one of the allowed values (DCQL values: strings, numbers,
// booleans).
func valueIn(v any, allowed []any) bool {
	for _, a := range allowed {
		if reflect.DeepEqual(v, a) {
			return true
		}
	}
	return false
}
