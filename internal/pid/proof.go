package pid

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/go-jose/go-jose/v3"
	"github.com/go-jose/go-jose/v3/jwt"

	"github.com/vula-eid/vula/internal/store"
)

// ProofAlgs are the proof signing algorithms accepted.
var ProofAlgs = []string{"ES256", "ES384", "ES512", "PS256", "EdDSA"}

// Errors of proof checking (OpenID4VCI 1.0 §8.3.1.2).
var (
	ErrInvalidProof = errors.New("invalid proof")
	ErrInvalidNonce = errors.New("the proof's c_nonce is not one this issuer handed out, or it is used or expired")
)

const maxProofSize = 8 << 10

// proofClaims are the claims of an openid4vci-proof+jwt.
type proofClaims struct {
	Aud   jwt.Audience `json:"aud"` // a string or an array of strings
	Iat   int64        `json:"iat"`
	Nonce string       `json:"nonce"`
	Iss   string       `json:"iss"`
}

// checkProofs checks every proof of a credential request and returns the holder keys in order.
// All proofs must carry one c_nonce, which is then used up: a replayed proof finds it gone.
func (s *Service) checkProofs(ctx context.Context, proofs []string) ([]jose.JSONWebKey, error) {
	if len(proofs) == 0 || len(proofs) > s.cfg.BatchSize {
		return nil, fmt.Errorf("%w: %d proofs (want 1 to %d)", ErrInvalidProof, len(proofs), s.cfg.BatchSize)
	}
	keys := make([]jose.JSONWebKey, 0, len(proofs))
	seen := map[string]bool{}
	nonce := ""
	now := s.now()
	for i, p := range proofs {
		k, c, err := parseProof(p)
		if err != nil {
			return nil, fmt.Errorf("%w: proof %d: %v", ErrInvalidProof, i, err)
		}
		if !slices.Contains(c.Aud, s.cfg.Issuer) {
			return nil, fmt.Errorf("%w: proof %d: aud is not this credential issuer", ErrInvalidProof, i)
		}
		iat := time.Unix(c.Iat, 0)
		if c.Iat == 0 || iat.Before(now.Add(-nonceTTL)) || iat.After(now.Add(time.Minute)) {
			return nil, fmt.Errorf("%w: proof %d: iat is missing, stale or in the future", ErrInvalidProof, i)
		}
		if c.Nonce == "" || (nonce != "" && c.Nonce != nonce) {
			return nil, fmt.Errorf("%w: proof %d", ErrInvalidNonce, i)
		}
		nonce = c.Nonce
		tp, err := k.Thumbprint(crypto.SHA256)
		if err != nil {
			return nil, fmt.Errorf("%w: proof %d: %v", ErrInvalidProof, i, err)
		}
		// One key a credential: the batch exists for unlinkability.
		if seen[string(tp)] {
			return nil, fmt.Errorf("%w: proof %d repeats the key of an earlier proof", ErrInvalidProof, i)
		}
		seen[string(tp)] = true
		keys = append(keys, k)
	}
	if _, err := s.eph.Take(ctx, "pid:nonce:"+nonce); errors.Is(err, store.ErrNotFound) {
		return nil, ErrInvalidNonce
	} else if err != nil {
		return nil, err
	}
	return keys, nil
}

// parseProof checks one proof JWT's form and signature by the key in its header.
func parseProof(p string) (jose.JSONWebKey, proofClaims, error) {
	var c proofClaims
	if len(p) > maxProofSize {
		return jose.JSONWebKey{}, c, errors.New("too large")
	}
	jws, err := jose.ParseSigned(p)
	if err != nil {
		return jose.JSONWebKey{}, c, errors.New("not a compact JWS")
	}
	if len(jws.Signatures) != 1 {
		return jose.JSONWebKey{}, c, errors.New("not one signature")
	}
	h := jws.Signatures[0].Protected
	if typ, _ := h.ExtraHeaders[jose.HeaderType].(string); typ != "openid4vci-proof+jwt" {
		return jose.JSONWebKey{}, c, errors.New(`typ is not "openid4vci-proof+jwt"`)
	}
	if !slices.Contains(ProofAlgs, h.Algorithm) {
		return jose.JSONWebKey{}, c, fmt.Errorf("alg %q is not accepted", h.Algorithm)
	}
	if h.JSONWebKey == nil || !h.JSONWebKey.Valid() || !h.JSONWebKey.IsPublic() {
		return jose.JSONWebKey{}, c, errors.New("no public jwk in the header (the key is given as jwk)")
	}
	payload, err := jws.Verify(h.JSONWebKey)
	if err != nil {
		return jose.JSONWebKey{}, c, errors.New("the signature does not verify with the header's jwk")
	}
	if err := json.Unmarshal(payload, &c); err != nil {
		return jose.JSONWebKey{}, c, errors.New("the claims are not a JSON object")
	}
	return *h.JSONWebKey, c, nil
}
