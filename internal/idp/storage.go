package idp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/oauth2"
	"github.com/ory/fosite/handler/openid"
	"github.com/ory/fosite/handler/pkce"

	"github.com/vula-eid/vula/internal/store"
)

// storage is fosite's storage: clients from the durable store, everything short-lived (codes,
// PKCE challenges, PAR requests, token sessions, assertion jtis) in the ephemeral store, as JSON,
// so that any replica can finish what another began.
//
// Keys (each under the "idp:" prefix): code:<sig>, code-used:<sig>, pkce:<sig>, oidc:<code sig>,
// par:<request_uri>, at:<sig>, at-req:<request id>, rt:<sig>, rt-req:<request id>, jti:<jti>;
// and for client_credentials tokens, which are not stored, at-revoked:<jti> and
// client-void:<client id> (see clientTokens).
type storage struct {
	clients store.Clients
	eph     store.Ephemeral
	cfg     *fosite.Config
	now     func() time.Time
	// audience is every resource a token may be for (fosite checks a refreshed token's
	// audience against the client's).
	audience []string
	cache    clientCache
}

// clientCacheTTL is how long a client read from the durable store is used without reading it
// again. Every token, PAR and login page needs its client, and on PostgreSQL that read was a
// round trip of its own. A change made through this replica's admin API applies at once; one
// made on another replica or with the CLI applies here within the TTL — a short lag beside the
// access tokens the client already holds, which live far longer.
const clientCacheTTL = 5 * time.Second

// clientCache holds the clients that were found (an unknown ID is never kept, so guessed IDs
// take no memory); at most one entry per registered client.
type clientCache struct {
	mu sync.Mutex
	m  map[string]cachedClient
}

type cachedClient struct {
	c       *client
	expires time.Time
}

func (cc *clientCache) get(id string, now time.Time) *client {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if e, ok := cc.m[id]; ok && now.Before(e.expires) {
		return e.c
	}
	return nil
}

func (cc *clientCache) put(c *client, expires time.Time) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.m == nil {
		cc.m = map[string]cachedClient{}
	}
	cc.m[c.GetID()] = cachedClient{c: c, expires: expires}
}

// forget drops id, after this replica changed or deleted it.
func (cc *clientCache) forget(id string) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	delete(cc.m, id)
}

var (
	_ fosite.Storage                     = (*storage)(nil)
	_ oauth2.CoreStorage                 = (*storage)(nil)
	_ oauth2.TokenRevocationStorage      = (*storage)(nil)
	_ pkce.PKCERequestStorage            = (*storage)(nil)
	_ openid.OpenIDConnectRequestStorage = (*storage)(nil)
	_ fosite.PARStorage                  = (*storage)(nil)
)

// stored is a fosite request as kept in the ephemeral store.
type stored struct {
	ID                string          `json:"id"`
	RequestedAt       time.Time       `json:"requested_at"`
	ClientID          string          `json:"client_id"`
	RequestedScope    []string        `json:"requested_scope"`
	GrantedScope      []string        `json:"granted_scope"`
	RequestedAudience []string        `json:"requested_audience"`
	GrantedAudience   []string        `json:"granted_audience"`
	Form              url.Values      `json:"form"`
	Session           json.RawMessage `json:"session"`
	// An authorization request's own parts (PAR).
	ResponseTypes        []string `json:"response_types,omitempty"`
	RedirectURI          string   `json:"redirect_uri,omitempty"`
	State                string   `json:"state,omitempty"`
	HandledResponseTypes []string `json:"handled_response_types,omitempty"`
	ResponseMode         string   `json:"response_mode,omitempty"`
	DefaultResponseMode  string   `json:"default_response_mode,omitempty"`
	// A refresh token's state: reuse of an inactive one revokes its family.
	Active    bool      `json:"active,omitempty"`
	ExpiresAt time.Time `json:"expires_at,omitempty"`
}

func (s *storage) put(ctx context.Context, key string, r fosite.Requester, ttl time.Duration, edit func(*stored)) error {
	b, err := encode(r, edit)
	if err != nil {
		return err
	}
	return s.eph.Put(ctx, "idp:"+key, b, ttl)
}

// encode is a request as put keeps it, edited by edit when not nil.
func encode(r fosite.Requester, edit func(*stored)) ([]byte, error) {
	sess, err := json.Marshal(r.GetSession())
	if err != nil {
		return nil, fmt.Errorf("idp: session: %w", err)
	}
	st := stored{ID: r.GetID(), RequestedAt: r.GetRequestedAt(), ClientID: r.GetClient().GetID(),
		RequestedScope: r.GetRequestedScopes(), GrantedScope: r.GetGrantedScopes(), RequestedAudience: r.GetRequestedAudience(),
		GrantedAudience: r.GetGrantedAudience(), Form: r.GetRequestForm(), Session: sess}
	if ar, ok := r.(fosite.AuthorizeRequester); ok {
		st.ResponseTypes, st.State, st.HandledResponseTypes = ar.GetResponseTypes(), ar.GetState(), nil
		if u := ar.GetRedirectURI(); u != nil {
			st.RedirectURI = u.String()
		}
		st.ResponseMode, st.DefaultResponseMode = string(ar.GetResponseMode()), string(ar.GetDefaultResponseMode())
	}
	if edit != nil {
		edit(&st)
	}
	return json.Marshal(st)
}

// load reads a stored request; into receives the session (a fresh one when nil).
func (s *storage) load(ctx context.Context, key string, into fosite.Session) (*fosite.AuthorizeRequest, stored, error) {
	b, err := s.eph.Get(ctx, "idp:"+key)
	if err != nil {
		return nil, stored{}, mapErr(err)
	}
	return s.decode(ctx, b, into)
}

// decode is load's reading of a stored request b.
func (s *storage) decode(ctx context.Context, b []byte, into fosite.Session) (*fosite.AuthorizeRequest, stored, error) {
	var st stored
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, st, fmt.Errorf("idp: stored request: %w", err)
	}
	if into == nil {
		into = newSession()
	}
	if err := json.Unmarshal(st.Session, into); err != nil {
		return nil, st, fmt.Errorf("idp: stored session: %w", err)
	}
	c, err := s.GetClient(ctx, st.ClientID)
	if err != nil {
		return nil, st, err
	}
	if sess, ok := into.(*Session); ok && sess.Credential != nil {
		// fosite issues a refresh token when the stored request's client may refresh; a
		// refreshed token would authorize the same digests afresh, so it gets none.
		c = noRefresh{c.(*client)}
	}
	ar := fosite.NewAuthorizeRequest()
	ar.ID, ar.RequestedAt, ar.Client, ar.Session = st.ID, st.RequestedAt, c, into
	ar.RequestedScope, ar.GrantedScope = st.RequestedScope, st.GrantedScope
	ar.RequestedAudience, ar.GrantedAudience = st.RequestedAudience, st.GrantedAudience
	if st.Form != nil {
		ar.Form = st.Form
	}
	ar.ResponseTypes, ar.State = st.ResponseTypes, st.State
	ar.ResponseMode, ar.DefaultResponseMode = fosite.ResponseModeType(st.ResponseMode), fosite.ResponseModeType(st.DefaultResponseMode)
	if st.RedirectURI != "" {
		if ar.RedirectURI, err = url.Parse(st.RedirectURI); err != nil {
			return nil, st, err
		}
	}
	return ar, st, nil
}

// noRefresh is a client as seen for a credential authorization: it cannot refresh.
type noRefresh struct{ *client }

func (c noRefresh) GetGrantTypes() fosite.Arguments {
	var out fosite.Arguments
	for _, g := range c.client.GetGrantTypes() {
		if g != "refresh_token" {
			out = append(out, g)
		}
	}
	return out
}

func mapErr(err error) error {
	if errors.Is(err, store.ErrNotFound) {
		return fosite.ErrNotFound
	}
	return err
}

// --- clients

// GetClient reads a registered client, through the cache (the client is shared: never change
// it).
func (s *storage) GetClient(ctx context.Context, id string) (fosite.Client, error) {
	now := s.now()
	if c := s.cache.get(id, now); c != nil {
		return c, nil
	}
	c, err := s.clients.Client(ctx, id)
	if err != nil {
		return nil, mapErr(err)
	}
	fc, err := newClient(c)
	if err != nil {
		return nil, err
	}
	fc.Audience = s.audience
	s.cache.put(fc, now.Add(clientCacheTTL))
	return fc, nil
}

// ClientAssertionJWTValid says whether an assertion's jti is new.
func (s *storage) ClientAssertionJWTValid(ctx context.Context, jti string) error {
	_, err := s.eph.Get(ctx, "idp:jti:"+jti)
	switch {
	case err == nil:
		return fosite.ErrJTIKnown
	case errors.Is(err, store.ErrNotFound):
		return nil
	}
	return err
}

// SetClientAssertionJWT records a jti until the assertion expires; a second use is refused even
// when two arrive at once (the store's SeenOnce is atomic).
func (s *storage) SetClientAssertionJWT(ctx context.Context, jti string, exp time.Time) error {
	ttl := max(exp.Sub(s.now()), time.Second)
	first, err := s.eph.SeenOnce(ctx, "idp:jti:"+jti, ttl)
	if err != nil {
		return err
	}
	if !first {
		return fosite.ErrJTIKnown
	}
	return nil
}

// --- authorization codes

func (s *storage) CreateAuthorizeCodeSession(ctx context.Context, sig string, r fosite.Requester) error {
	return s.put(ctx, "code:"+sig, r, s.cfg.AuthorizeCodeLifespan, nil)
}

// GetAuthorizeCodeSession returns the request; for a code already used, the request together
// with ErrInvalidatedAuthorizeCode, so that fosite revokes the tokens of the first use.
func (s *storage) GetAuthorizeCodeSession(ctx context.Context, sig string, sess fosite.Session) (fosite.Requester, error) {
	r, _, err := s.load(ctx, "code:"+sig, sess)
	if err != nil {
		return nil, err
	}
	if _, err := s.eph.Get(ctx, "idp:code-used:"+sig); err == nil {
		return r, fosite.ErrInvalidatedAuthorizeCode
	} else if !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	return r, nil
}

// InvalidateAuthorizeCodeSession marks the code used, once: of two redemptions racing, one
// fails here.
func (s *storage) InvalidateAuthorizeCodeSession(ctx context.Context, sig string) error {
	err := s.eph.PutIfAbsent(ctx, "idp:code-used:"+sig, []byte("1"), s.cfg.AuthorizeCodeLifespan)
	if errors.Is(err, store.ErrConflict) {
		return fosite.ErrInvalidatedAuthorizeCode
	}
	return err
}

// --- PKCE, OpenID Connect, PAR

func (s *storage) CreatePKCERequestSession(ctx context.Context, sig string, r fosite.Requester) error {
	return s.put(ctx, "pkce:"+sig, r, s.cfg.AuthorizeCodeLifespan, nil)
}

func (s *storage) GetPKCERequestSession(ctx context.Context, sig string, sess fosite.Session) (fosite.Requester, error) {
	r, _, err := s.load(ctx, "pkce:"+sig, sess)
	if err != nil {
		return nil, err
	}
	return r, nil
}

func (s *storage) DeletePKCERequestSession(ctx context.Context, sig string) error {
	return s.eph.Delete(ctx, "idp:pkce:"+sig)
}

func (s *storage) CreateOpenIDConnectSession(ctx context.Context, code string, r fosite.Requester) error {
	return s.put(ctx, "oidc:"+code, r, s.cfg.AuthorizeCodeLifespan, nil)
}

func (s *storage) GetOpenIDConnectSession(ctx context.Context, code string, r fosite.Requester) (fosite.Requester, error) {
	got, _, err := s.load(ctx, "oidc:"+code, r.GetSession())
	if err != nil {
		return nil, err
	}
	return got, nil
}

func (s *storage) DeleteOpenIDConnectSession(ctx context.Context, code string) error {
	return s.eph.Delete(ctx, "idp:oidc:"+code)
}

func (s *storage) CreatePARSession(ctx context.Context, uri string, r fosite.AuthorizeRequester) error {
	return s.put(ctx, "par:"+uri, r, s.cfg.PushedAuthorizeContextLifespan, nil)
}

func (s *storage) GetPARSession(ctx context.Context, uri string) (fosite.AuthorizeRequester, error) {
	r, _, err := s.load(ctx, "par:"+uri, nil)
	if err != nil {
		return nil, err
	}
	return r, nil
}

func (s *storage) DeletePARSession(ctx context.Context, uri string) error {
	return s.eph.Delete(ctx, "idp:par:"+uri)
}

// --- access and refresh tokens

// CreateAccessTokenSession stores the token's request and its grant's index in one write (every
// token paid two: two commits on SQLite, two round trips to Redis). A client_credentials token
// is not stored at all: its JWT carries what introspection and the bearer check need, and only
// its revocation is kept, when it happens (see clientTokens); its session's write was a quarter
// of such a token's CPU on SQLite.
func (s *storage) CreateAccessTokenSession(ctx context.Context, sig string, r fosite.Requester) error {
	if sess, ok := r.GetSession().(*Session); ok && sess.ClientOnly {
		return nil
	}
	b, err := encode(r, nil)
	if err != nil {
		return err
	}
	ttl := s.cfg.AccessTokenLifespan
	return store.PutAll(ctx, s.eph, store.Entry{Key: "idp:at:" + sig, Value: b, TTL: ttl},
		store.Entry{Key: "idp:at-req:" + r.GetID(), Value: []byte(sig), TTL: ttl})
}

// ownKeyPrefix begins the request ID a stored client_credentials token is read back with: the
// key of the token's own state, which fosite hands to RevokeAccessToken when the token is
// revoked. Generated request IDs are UUIDs, so they never begin with it. Only tokens issued by
// an older version (stored under their own key, without a grant index) are read back so,
// during a rolling upgrade; this version stores none.
const ownKeyPrefix = "at:"

func (s *storage) GetAccessTokenSession(ctx context.Context, sig string, sess fosite.Session) (fosite.Requester, error) {
	r, _, err := s.load(ctx, "at:"+sig, sess)
	if err != nil {
		return nil, err
	}
	if own, ok := r.GetSession().(*Session); ok && own.ClientOnly {
		r.ID = ownKeyPrefix + sig
	}
	return r, nil
}

func (s *storage) DeleteAccessTokenSession(ctx context.Context, sig string) error {
	return s.eph.Delete(ctx, "idp:at:"+sig)
}

// RevokeAccessToken removes the newest access token of a grant.
func (s *storage) RevokeAccessToken(ctx context.Context, requestID string) error {
	if sig, ok := strings.CutPrefix(requestID, ownKeyPrefix); ok {
		return s.DeleteAccessTokenSession(ctx, sig)
	}
	sig, err := s.eph.Take(ctx, "idp:at-req:"+requestID)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	return s.DeleteAccessTokenSession(ctx, string(sig))
}

func (s *storage) CreateRefreshTokenSession(ctx context.Context, sig, accessSig string, r fosite.Requester) error {
	ttl := s.cfg.RefreshTokenLifespan
	b, err := encode(r, func(st *stored) { st.Active, st.ExpiresAt = true, s.now().Add(ttl) })
	if err != nil {
		return err
	}
	return store.PutAll(ctx, s.eph, store.Entry{Key: "idp:rt:" + sig, Value: b, TTL: ttl},
		store.Entry{Key: "idp:rt-req:" + r.GetID(), Value: []byte(sig), TTL: ttl})
}

// GetRefreshTokenSession returns the request; for a token already rotated or revoked, the
// request together with ErrInactiveToken, on which fosite revokes the whole family.
func (s *storage) GetRefreshTokenSession(ctx context.Context, sig string, sess fosite.Session) (fosite.Requester, error) {
	r, st, err := s.load(ctx, "rt:"+sig, sess)
	if err != nil {
		return nil, err
	}
	if !st.Active {
		return r, fosite.ErrInactiveToken
	}
	return r, nil
}

func (s *storage) DeleteRefreshTokenSession(ctx context.Context, sig string) error {
	return s.eph.Delete(ctx, "idp:rt:"+sig)
}

// deactivate marks the refresh token sig inactive, atomically: of two uses racing, one fails.
func (s *storage) deactivate(ctx context.Context, sig string) error {
	key := "idp:rt:" + sig
	old, err := s.eph.Get(ctx, key)
	if err != nil {
		return mapErr(err)
	}
	var st stored
	if err := json.Unmarshal(old, &st); err != nil {
		return err
	}
	if !st.Active {
		return fosite.ErrInactiveToken
	}
	st.Active = false
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	err = s.eph.CompareAndSwap(ctx, key, old, b, max(st.ExpiresAt.Sub(s.now()), time.Second))
	if errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrNotFound) {
		return fosite.ErrInactiveToken
	}
	return err
}

// RevokeRefreshToken deactivates the newest refresh token of a grant.
func (s *storage) RevokeRefreshToken(ctx context.Context, requestID string) error {
	sig, err := s.eph.Get(ctx, "idp:rt-req:"+requestID)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := s.deactivate(ctx, string(sig)); err != nil && !errors.Is(err, fosite.ErrInactiveToken) && !errors.Is(err, fosite.ErrNotFound) {
		return err
	}
	return nil
}

// RotateRefreshToken retires the refresh token just used, and the grant's access token.
func (s *storage) RotateRefreshToken(ctx context.Context, requestID, sig string) error {
	if err := s.deactivate(ctx, sig); err != nil {
		return err
	}
	return s.RevokeAccessToken(ctx, requestID)
}
