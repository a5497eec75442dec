package pid

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"sort"
	"strings"
)

// SD-JWT (RFC 9901) is written here rather than taken from a library: the Go SD-JWT libraries
// are pre-v1 and change their APIs, and what an issuer needs is small — a salted disclosure per
// claim, its SHA-256 digest in the object's _sd array. What is written is checked by
// @sd-jwt/sd-jwt-vc in test/wallet.

// disclosure is one encoded disclosure and its digest.
type disclosure struct {
	encoded string
	digest  string
}

// newDisclosure discloses an object member name with value: base64url of [salt, name, value].
func newDisclosure(name string, value any) (disclosure, error) {
	salt := make([]byte, 16) // 128 bits, as RFC 9901 §9.3 recommends
	if _, err := rand.Read(salt); err != nil {
		return disclosure{}, err
	}
	j, err := json.Marshal([]any{b64.EncodeToString(salt), name, value})
	if err != nil {
		return disclosure{}, err
	}
	enc := b64.EncodeToString(j)
	return disclosure{encoded: enc, digest: sdDigest(enc)}, nil
}

// sdDigest is the _sd entry of an encoded disclosure (or of an SD-JWT for sd_hash): sha-256 over
// its ASCII form.
func sdDigest(encoded string) string {
	h := sha256.Sum256([]byte(encoded))
	return b64.EncodeToString(h[:])
}

// conceal makes every member of claims selectively disclosable; the members of nested objects
// too, so that, say, age_equal_or_over.18 can be shown without the other ages. It returns the
// object that goes in the JWT (only _sd) and the disclosures.
func conceal(claims map[string]any) (map[string]any, []disclosure, error) {
	var all []disclosure
	digests := make([]string, 0, len(claims))
	for name, v := range claims {
		if inner, ok := v.(map[string]any); ok {
			obj, ds, err := conceal(inner)
			if err != nil {
				return nil, nil, err
			}
			all = append(all, ds...)
			v = obj
		}
		d, err := newDisclosure(name, v)
		if err != nil {
			return nil, nil, err
		}
		all = append(all, d)
		digests = append(digests, d.digest)
	}
	// Sorted digests tell nothing about the claims' original order (RFC 9901 §4.2.4.2).
	sort.Strings(digests)
	return map[string]any{"_sd": digests}, all, nil
}

// issuance is the SD-JWT as the issuer hands it over: the JWT, then every disclosure, each
// followed by a tilde (RFC 9901 §4).
func issuance(jwt string, ds []disclosure) string {
	var b strings.Builder
	b.WriteString(jwt)
	b.WriteByte('~')
	for _, d := range ds {
		b.WriteString(d.encoded)
		b.WriteByte('~')
	}
	return b.String()
}
