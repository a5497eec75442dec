// Package sdjwt reads SD-JWTs (RFC 9901) as a verifier receives them: the issuer-signed JWT,
// its disclosures and an optional key-binding JWT, separated by tildes.
//
// The contract:
//   - Parse bounds the input (size, number of disclosures) and checks only the form; it never
//     trusts a claim;
//   - Claims rebuilds the disclosed object: every disclosure must be referenced by exactly one
//     digest of the payload or of another disclosure, no digest may repeat, and a disclosed
//     name may neither clash with a plain claim nor be _sd or "...". A disclosure that no
//     digest references is an error: it was not issued with this JWT;
//   - signatures (the issuer's, the key binding's) are checked by the caller with the key it
//     trusts; SDHash is the digest the key binding JWT must carry.
//
// Only sha-256 (the _sd_alg default and the only one HAIP names) is accepted.
package sdjwt

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Bounds of what Parse accepts: a PID with every claim disclosed is a few kilobytes.
const (
	MaxSize        = 64 << 10
	MaxDisclosures = 256
	maxDepth       = 16
)

var b64 = base64.RawURLEncoding

// ErrFormat is any SD-JWT that is not well formed or whose disclosures do not match its digests.
var ErrFormat = errors.New("sdjwt: malformed SD-JWT")

// SDJWT is a parsed SD-JWT presentation.
type SDJWT struct {
	// JWT is the issuer-signed JWT in compact form, its signature not yet checked.
	JWT string
	// Disclosures are the encoded disclosures, in the order they came.
	Disclosures []string
	// KB is the key-binding JWT in compact form; "" when none came.
	KB string
	// Payload is the JWT's claims object, undecoded digests and all.
	Payload map[string]any
}

// Parse splits s into its parts and decodes the JWT's payload. s is <JWT>~<D>~...~<KB> with
// an empty KB when there is no key binding.
func Parse(s string) (*SDJWT, error) {
	if len(s) > MaxSize {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrFormat, MaxSize)
	}
	parts := strings.Split(s, "~")
	if len(parts) < 2 {
		return nil, fmt.Errorf("%w: no tilde after the JWT", ErrFormat)
	}
	if len(parts)-2 > MaxDisclosures {
		return nil, fmt.Errorf("%w: more than %d disclosures", ErrFormat, MaxDisclosures)
	}
	out := &SDJWT{JWT: parts[0], Disclosures: parts[1 : len(parts)-1], KB: parts[len(parts)-1]}
	payload, err := jwtPart(out.JWT, 1)
	if err != nil {
		return nil, err
	}
	if err := decodeObject(payload, &out.Payload); err != nil {
		return nil, fmt.Errorf("%w: the JWT's payload is not a JSON object", ErrFormat)
	}
	if alg, ok := out.Payload["_sd_alg"]; ok && alg != "sha-256" {
		return nil, fmt.Errorf("%w: _sd_alg %v (only sha-256)", ErrFormat, alg)
	}
	for i, d := range out.Disclosures {
		if d == "" {
			return nil, fmt.Errorf("%w: disclosure %d is empty", ErrFormat, i)
		}
	}
	if out.KB != "" {
		if _, err := jwtPart(out.KB, 1); err != nil {
			return nil, fmt.Errorf("%w (the key binding JWT)", err)
		}
	}
	return out, nil
}

// jwtPart decodes part i of a compact JWS of three parts.
func jwtPart(jws string, i int) ([]byte, error) {
	parts := strings.Split(jws, ".")
	if len(parts) != 3 {
		return nil, fmt.Errorf("%w: a JWT of %d parts", ErrFormat, len(parts))
	}
	b, err := b64.DecodeString(parts[i])
	if err != nil {
		return nil, fmt.Errorf("%w: a JWT part is not base64url", ErrFormat)
	}
	return b, nil
}

// decodeObject decodes a JSON object, keeping numbers as json.Number so that none is rounded.
func decodeObject(b []byte, v *map[string]any) error {
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if *v == nil {
		return errors.New("null")
	}
	if dec.More() {
		return errors.New("trailing data")
	}
	return nil
}

// Digest is the base64url SHA-256 of s's ASCII form: a disclosure's _sd entry, or sd_hash.
func Digest(s string) string {
	h := sha256.Sum256([]byte(s))
	return b64.EncodeToString(h[:])
}

// SDHash is the sd_hash the key-binding JWT must carry: the digest of everything before it.
func (p *SDJWT) SDHash() string {
	var b strings.Builder
	b.WriteString(p.JWT)
	b.WriteByte('~')
	for _, d := range p.Disclosures {
		b.WriteString(d)
		b.WriteByte('~')
	}
	return Digest(b.String())
}

// disclosure is a decoded disclosure: an object member (name set) or an array element.
type disclosure struct {
	name    string
	isArray bool
	value   any
	used    bool
}

// Claims returns the payload with every disclosure put in place of its digest and the _sd,
// _sd_alg and undisclosed array digests removed (RFC 9901 §7.1).
func (p *SDJWT) Claims() (map[string]any, error) {
	ds := make(map[string]*disclosure, len(p.Disclosures))
	for i, enc := range p.Disclosures {
		raw, err := b64.DecodeString(enc)
		if err != nil {
			return nil, fmt.Errorf("%w: disclosure %d is not base64url", ErrFormat, i)
		}
		var arr []any
		dec := json.NewDecoder(strings.NewReader(string(raw)))
		dec.UseNumber()
		if err := dec.Decode(&arr); err != nil || dec.More() {
			return nil, fmt.Errorf("%w: disclosure %d is not a JSON array", ErrFormat, i)
		}
		d := &disclosure{}
		switch len(arr) {
		case 3:
			name, ok := arr[1].(string)
			if !ok || name == "_sd" || name == "..." {
				return nil, fmt.Errorf("%w: disclosure %d has a bad claim name", ErrFormat, i)
			}
			d.name, d.value = name, arr[2]
		case 2:
			d.isArray, d.value = true, arr[1]
		default:
			return nil, fmt.Errorf("%w: disclosure %d has %d elements", ErrFormat, i, len(arr))
		}
		if _, ok := arr[0].(string); !ok {
			return nil, fmt.Errorf("%w: disclosure %d has no salt", ErrFormat, i)
		}
		dg := Digest(enc)
		if ds[dg] != nil {
			return nil, fmt.Errorf("%w: disclosure %d is given twice", ErrFormat, i)
		}
		ds[dg] = d
	}
	seen := map[string]bool{}
	out, err := resolve(p.Payload, ds, seen, 0)
	if err != nil {
		return nil, err
	}
	for _, d := range ds {
		if !d.used {
			return nil, fmt.Errorf("%w: a disclosure matches no digest of the SD-JWT", ErrFormat)
		}
	}
	obj := out.(map[string]any)
	delete(obj, "_sd_alg")
	return obj, nil
}

// resolve replaces digests in v by their disclosures, recursively.
func resolve(v any, ds map[string]*disclosure, seen map[string]bool, depth int) (any, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("%w: nested deeper than %d", ErrFormat, maxDepth)
	}
	switch t := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, x := range t {
			if k == "_sd" {
				continue
			}
			r, err := resolve(x, ds, seen, depth+1)
			if err != nil {
				return nil, err
			}
			out[k] = r
		}
		if sd, ok := t["_sd"]; ok {
			list, ok := sd.([]any)
			if !ok {
				return nil, fmt.Errorf("%w: _sd is not an array", ErrFormat)
			}
			for _, e := range list {
				dg, ok := e.(string)
				if !ok {
					return nil, fmt.Errorf("%w: an _sd entry is not a string", ErrFormat)
				}
				if seen[dg] {
					return nil, fmt.Errorf("%w: a digest repeats", ErrFormat)
				}
				seen[dg] = true
				d := ds[dg]
				if d == nil {
					continue // a decoy, or a claim not disclosed
				}
				if d.isArray {
					return nil, fmt.Errorf("%w: an array element's disclosure is in an object's _sd", ErrFormat)
				}
				if _, clash := out[d.name]; clash {
					return nil, fmt.Errorf("%w: disclosed claim %q is also in the clear", ErrFormat, d.name)
				}
				d.used = true
				r, err := resolve(d.value, ds, seen, depth+1)
				if err != nil {
					return nil, err
				}
				out[d.name] = r
			}
		}
		return out, nil
	case []any:
		out := make([]any, 0, len(t))
		for _, x := range t {
			if m, ok := x.(map[string]any); ok && len(m) == 1 {
				if dg, ok := m["..."].(string); ok {
					if seen[dg] {
						return nil, fmt.Errorf("%w: a digest repeats", ErrFormat)
					}
					seen[dg] = true
					d := ds[dg]
					if d == nil {
						continue
					}
					if !d.isArray {
						return nil, fmt.Errorf("%w: an object member's disclosure is in an array", ErrFormat)
					}
					d.used = true
					r, err := resolve(d.value, ds, seen, depth+1)
					if err != nil {
						return nil, err
					}
					out = append(out, r)
					continue
				}
			}
			r, err := resolve(x, ds, seen, depth+1)
			if err != nil {
				return nil, err
			}
			out = append(out, r)
		}
		return out, nil
	}
	return v, nil
}
