package pid

import (
	"context"
	"crypto/sha256"
	"fmt"
	"time"

	"github.com/vula-eid/vula/internal/rawsig"
)

// Media types of status list tokens.
const (
	MediaStatusJWT = "application/statuslist+jwt"
	MediaStatusCWT = "application/statuslist+cwt"
)

type tokenKey struct {
	list int
	cwt  bool
}

type cachedToken struct {
	revoked [32]byte // digest of the revoked indexes it was made from
	token   []byte
	issued  time.Time
}

// StatusToken is a signed status list token and how long it may be cached.
type StatusToken struct {
	Token   []byte
	Issued  time.Time
	Expires time.Time
}

// StatusList returns the signed token of list (a JWT, or a CWT when cwt). The revoked slots
// are read from the store at every call; the token is signed again only when they changed or
// half its time to live has passed, so a revocation shows at once and a fetch costs one query.
func (s *Service) StatusList(ctx context.Context, list int, cwt bool) (StatusToken, error) {
	if list < 1 || list > 1<<20 {
		return StatusToken{}, fmt.Errorf("%w: no status list %d", ErrNoList, list)
	}
	revoked, err := s.recs.RevokedPIDs(ctx, list)
	if err != nil {
		return StatusToken{}, err
	}
	s.mu.Lock()
	current := s.list
	s.mu.Unlock()
	// Lists fill one after the other: one up to the current list exists; past it, ask the store
	// (another replica may have moved on).
	if len(revoked) == 0 && list > current {
		n, err := s.recs.CountPIDs(ctx, list)
		if err != nil {
			return StatusToken{}, err
		}
		if n == 0 {
			return StatusToken{}, fmt.Errorf("%w: no status list %d", ErrNoList, list)
		}
	}
	sum := sha256.Sum256(fmt.Append(nil, revoked))
	now := s.now()
	key := tokenKey{list, cwt}
	s.mu.Lock()
	c, ok := s.tokens[key]
	s.mu.Unlock()
	if ok && c.revoked == sum && now.Before(c.issued.Add(s.cfg.StatusTTL/2)) {
		return StatusToken{Token: c.token, Issued: c.issued, Expires: c.issued.Add(s.cfg.StatusTTL)}, nil
	}
	lst, err := statusBits(s.cfg.ListSize, revoked)
	if err != nil {
		return StatusToken{}, err
	}
	k, err := s.issuer(ctx)
	if err != nil {
		return StatusToken{}, err
	}
	issued := now.UTC().Truncate(time.Second)
	// The token outlives its ttl by a day, so that a verifier offline for a while can still use
	// the last one it fetched; ttl says when to fetch again.
	exp := issued.Add(s.cfg.StatusTTL + 24*time.Hour)
	ttl := int64(s.cfg.StatusTTL / time.Second)
	var tok []byte
	if cwt {
		// CWT claims: 2 sub, 6 iat, 4 exp, 65534 ttl, 65533 status_list.
		payload, err := coseEnc.Marshal(map[int]any{2: s.statusURI(list), 6: issued.Unix(), 4: exp.Unix(), 65534: ttl,
			65533: map[string]any{"bits": 1, "lst": lst}})
		if err != nil {
			return StatusToken{}, err
		}
		tok, err = signCOSE(ctx, k.signer, map[int]any{coseType: MediaStatusCWT, coseX5Chain: x5chain(k.chain)}, nil, payload)
		if err != nil {
			return StatusToken{}, err
		}
	} else {
		jwt, err := rawsig.JWS(ctx, k.signer, map[string]any{"typ": "statuslist+jwt", "x5c": k.x5c}, map[string]any{
			"sub": s.statusURI(list), "iat": issued.Unix(), "exp": exp.Unix(), "ttl": ttl,
			"status_list": map[string]any{"bits": 1, "lst": b64.EncodeToString(lst)},
		})
		if err != nil {
			return StatusToken{}, err
		}
		tok = []byte(jwt)
	}
	s.mu.Lock()
	s.tokens[key] = cachedToken{revoked: sum, token: tok, issued: issued}
	s.mu.Unlock()
	return StatusToken{Token: tok, Issued: issued, Expires: issued.Add(s.cfg.StatusTTL)}, nil
}

// x5chain is COSE's x5chain value: one bstr for a single certificate, an array otherwise.
func x5chain(chain [][]byte) any {
	if len(chain) == 1 {
		return chain[0]
	}
	return chain
}
