package auth

import (
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v3"
	"github.com/go-jose/go-jose/v3/jwt"
)

// DPoP proofs (RFC 9449), checked the same way by the identity provider and by the wallet
// issuer's own authorization server and credential endpoint.

const (
	// DPoPMaxAge is how old a proof's iat may be, DPoPLeeway how far in the future.
	DPoPMaxAge = 5 * time.Minute
	DPoPLeeway = 30 * time.Second
)

// DPoPWant is what a proof must match.
type DPoPWant struct {
	Method, URL string
	// Token is the access token, for ath (requests to a resource); "" at a token endpoint.
	Token string
	// Nonce checks the proof's server nonce (§8, §9); nil when none is required.
	Nonce func(ctx context.Context, nonce string) (bool, error)
	// ReplayPrefix names the checker's replay cache entries (proof jtis, per key).
	ReplayPrefix string
}

// DPoPError is a proof refused (invalid_dpop_proof); Hint says why, for the client.
type DPoPError struct{ Hint string }

func (e *DPoPError) Error() string { return "invalid DPoP proof: " + e.Hint }

// ErrUseDPoPNonce: the proof lacks the server's current nonce (use_dpop_nonce, §8).
var ErrUseDPoPNonce = errors.New("the DPoP proof needs the server's nonce")

// Replays remembers proof jtis until a proof is too old to be accepted anyway.
type Replays interface {
	SeenOnce(ctx context.Context, key string, ttl time.Duration) (first bool, err error)
}

// CheckDPoP reads and checks r's DPoP header against want and returns the base64url SHA-256
// thumbprint (RFC 7638) of the proof's key; "" without a header. A proof is accepted once.
// Errors: *DPoPError, ErrUseDPoPNonce, or the replay cache's or nonce check's own.
func CheckDPoP(ctx context.Context, r *http.Request, want DPoPWant, seen Replays, now time.Time) (string, error) {
	vals := r.Header.Values("DPoP")
	if len(vals) == 0 {
		return "", nil
	}
	bad := func(hint string) (string, error) { return "", &DPoPError{Hint: hint} }
	if len(vals) > 1 {
		return bad("More than one DPoP header.")
	}
	tok, err := jwt.ParseSigned(vals[0])
	if err != nil || len(tok.Headers) != 1 {
		return bad("The DPoP proof is not a signed JWT.")
	}
	h := tok.Headers[0]
	if typ, _ := h.ExtraHeaders[jose.HeaderType].(string); typ != "dpop+jwt" {
		return bad("typ must be dpop+jwt.")
	}
	if !slices.Contains(DPoPAlgs, h.Algorithm) {
		return bad("alg must be one of " + strings.Join(DPoPAlgs, ", ") + ".")
	}
	if h.JSONWebKey == nil || !h.JSONWebKey.Valid() || !h.JSONWebKey.IsPublic() {
		return bad("jwk must be a public key.")
	}
	var claims struct {
		jwt.Claims
		HTM   string `json:"htm"`
		HTU   string `json:"htu"`
		ATH   string `json:"ath"`
		Nonce string `json:"nonce"`
	}
	if err := tok.Claims(h.JSONWebKey.Key, &claims); err != nil {
		return bad("The proof's signature does not verify with its jwk.")
	}
	switch {
	case claims.ID == "":
		return bad("jti is missing.")
	case claims.HTM != want.Method:
		return bad("htm is not this request's method.")
	case !sameHTU(claims.HTU, want.URL):
		return bad("htu is not this request's URL.")
	case claims.IssuedAt == nil || claims.IssuedAt.Time().Before(now.Add(-DPoPMaxAge)) || claims.IssuedAt.Time().After(now.Add(DPoPLeeway)):
		return bad("iat is missing or not recent.")
	}
	if want.Token != "" {
		sum := sha256.Sum256([]byte(want.Token))
		if subtle.ConstantTimeCompare([]byte(claims.ATH), []byte(base64.RawURLEncoding.EncodeToString(sum[:]))) != 1 {
			return bad("ath is not the hash of the access token.")
		}
	}
	if want.Nonce != nil {
		ok, err := want.Nonce(ctx, claims.Nonce)
		if err != nil {
			return "", err
		}
		if !ok {
			return "", ErrUseDPoPNonce
		}
	}
	tp, err := h.JSONWebKey.Thumbprint(crypto.SHA256)
	if err != nil {
		return bad("The jwk has no thumbprint.")
	}
	jkt := base64.RawURLEncoding.EncodeToString(tp)
	first, err := seen.SeenOnce(ctx, want.ReplayPrefix+jkt+":"+claims.ID, DPoPMaxAge+DPoPLeeway)
	if err != nil {
		return "", err
	}
	if !first {
		return bad("This proof was used before.")
	}
	return jkt, nil
}

// sameHTU compares htu with the request's URL, ignoring query and fragment (§4.3) and the
// case of scheme and host.
func sameHTU(htu, want string) bool {
	a, err1 := url.Parse(htu)
	b, err2 := url.Parse(want)
	return err1 == nil && err2 == nil && strings.EqualFold(a.Scheme, b.Scheme) && strings.EqualFold(a.Host, b.Host) &&
		a.EscapedPath() == b.EscapedPath()
}
