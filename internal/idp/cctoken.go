package idp

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/oauth2"
	fjwt "github.com/ory/fosite/token/jwt"

	"github.com/vula-eid/vula/internal/store"
)

// A client_credentials access token is not stored. Its JWT (RFC 9068) carries everything
// introspection and the bearer check need — iss, sub and client_id, aud, scope, exp, iat, jti,
// cnf for a DPoP-bound one — so it is verified where it is presented, and only its revocation is
// read from the shared ephemeral store:
//
//   - idp:at-revoked:<jti>, written by /oauth2/revoke, kept until the token's exp;
//   - idp:client-void:<client id>, the Unix time before which every token of the client is void,
//     written when the client is deleted through the admin API (VoidClientTokens) or by
//     `vula clients delete` (VoidClient), kept for an access token's lifetime.
//
// A token is also refused once its client is gone from the durable store (at once on this
// replica, within clientCacheTTL on the others, as for stored sessions before), or when the
// client was registered after the token was issued (a client deleted and made again).
//
// Tokens of the other grants (code, refresh: a person's) keep their stored sessions: a refresh
// or a reused code revokes them by their grant. The stateless token is told by its gty claim.
//
// Rolling upgrade: client_credentials tokens issued by an older version have no gty claim and a
// stored session (idp:at:<sig>); they still introspect, check and revoke through that session
// (fosite's own validator and revocation handler, to which clientTokens hands every token that
// is not its own). Tokens issued by this version have no stored session: an older replica
// refuses them (invalid_token) until it is upgraded, and the client asks for a new token.
//
// Why not fosite's oauth2.StatelessJWTValidator: it checks the signature and the times only
// (no typ, no iss, no revocation), puts its own session type in place of the provider's (the
// bearer check reads the DPoP binding from it), and it must stand alone: fosite stops at the
// first introspection handler that fails, so the stored-session validator could not follow it
// for the other tokens. clientTokens wraps fosite's two handlers instead and uses them for
// everything but its own tokens.
type clientTokens struct {
	p    *Provider
	core fosite.TokenIntrospector // fosite's validator of stored sessions
	rev  fosite.RevocationHandler // fosite's revocation of stored sessions
}

var (
	_ fosite.TokenIntrospector = (*clientTokens)(nil)
	_ fosite.RevocationHandler = (*clientTokens)(nil)
)

// grantClaim names the grant of a stateless token; its value is clientCredentials.
const (
	grantClaim        = "gty"
	clientCredentials = "client_credentials"
)

// revokedMargin keeps a revocation marker past the token's exp, for replicas whose clocks run
// a little behind.
const revokedMargin = time.Minute

// clientTokensFactory is a compose.Factory: fosite's introspection and revocation handlers for
// stored sessions, behind clientTokens.
func (p *Provider) clientTokensFactory(config fosite.Configurator, st, strategy any) any {
	return &clientTokens{p: p,
		core: &oauth2.CoreValidator{CoreStrategy: strategy.(oauth2.CoreStrategy), CoreStorage: st.(oauth2.CoreStorage), Config: config},
		rev: &oauth2.TokenRevocationHandler{TokenRevocationStorage: st.(oauth2.TokenRevocationStorage),
			AccessTokenStrategy: strategy.(oauth2.AccessTokenStrategy), RefreshTokenStrategy: strategy.(oauth2.RefreshTokenStrategy)},
	}
}

// stateless returns the verified claims of a client_credentials token issued by this version,
// or nil for any other token (opaque, another grant's, an older version's, or not ours): those
// go to fosite's handlers. The signature is checked with every published token key (current and
// retired within their grace), through the cache of verified tokens.
func (c *clientTokens) stateless(ctx context.Context, raw string) (*fjwt.Token, error) {
	if strings.Count(raw, ".") != 2 {
		return nil, nil
	}
	tok, err := c.p.keys.Decode(ctx, raw)
	if err != nil {
		if isUnavailable(err) {
			return nil, err
		}
		return nil, nil
	}
	if g, _ := tok.Claims[grantClaim].(string); g != clientCredentials {
		return nil, nil
	}
	return tok, nil
}

// IntrospectToken is fosite's TokenIntrospector: a stateless token is checked here, any other
// by fosite's validator of stored sessions.
func (c *clientTokens) IntrospectToken(ctx context.Context, raw string, use fosite.TokenUse, ar fosite.AccessRequester, scopes []string) (fosite.TokenUse, error) {
	tok, err := c.stateless(ctx, raw)
	if err != nil {
		return "", err
	}
	if tok == nil {
		return c.core.IntrospectToken(ctx, raw, use, ar, scopes)
	}
	r, err := c.request(ctx, tok, ar.GetSession())
	if err != nil {
		return "", err
	}
	for _, s := range scopes {
		if s != "" && !c.p.st.cfg.GetScopeStrategy(ctx)(r.GetGrantedScopes(), s) {
			return "", fosite.ErrInvalidScope.WithHintf("The scope %q was not granted.", s)
		}
	}
	ar.Merge(r)
	return fosite.AccessToken, nil
}

// inactive is the answer for a stateless token that is not (or no longer) good.
func inactive(why string) error {
	return fosite.ErrRequestUnauthorized.WithHint("The access token is not active.").WithDebug(why)
}

// request checks a stateless token's claims and revocation and rebuilds its request, its
// session filled into into (the caller's, so that the bearer check sees the DPoP binding).
func (c *clientTokens) request(ctx context.Context, tok *fjwt.Token, into fosite.Session) (*fosite.Request, error) {
	if typ, _ := tok.Header["typ"].(string); !strings.EqualFold(typ, "at+jwt") {
		return nil, inactive("typ is not at+jwt")
	}
	var cl fjwt.JWTClaims
	cl.FromMapClaims(tok.Claims)
	now := c.p.now()
	clientID, _ := tok.Claims["client_id"].(string)
	switch {
	case cl.Issuer != c.p.cfg.Issuer:
		return nil, inactive("another issuer")
	case cl.ExpiresAt.IsZero() || !now.Before(cl.ExpiresAt):
		return nil, inactive("expired or no exp")
	case cl.IssuedAt.IsZero() || cl.IssuedAt.After(now.Add(time.Minute)):
		return nil, inactive("no iat, or issued in the future")
	case cl.JTI == "" || clientID == "" || cl.Subject != clientID:
		return nil, inactive("no jti or client_id")
	}
	if err := c.revoked(ctx, cl.JTI, clientID, cl.IssuedAt); err != nil {
		return nil, err
	}
	fc, err := c.p.st.GetClient(ctx, clientID)
	if errors.Is(err, fosite.ErrNotFound) {
		return nil, inactive("the client is gone")
	}
	if err != nil {
		return nil, err
	}
	if created := recordOf(fc).Created; !created.IsZero() && created.Truncate(time.Second).After(cl.IssuedAt) {
		return nil, inactive("the client was registered after the token was issued")
	}
	sess, ok := into.(*Session)
	if !ok {
		return nil, errors.New("idp: unexpected session type")
	}
	cl.Audience = audienceOf(tok.Claims["aud"])
	cl.Scope = strings.Fields(strings.Join(cl.Scope, " "))
	sess.Subject, sess.ClientOnly = clientID, true
	sess.JWTClaims, sess.JWTHeader = &cl, &fjwt.Headers{Extra: map[string]any{"typ": "at+jwt"}}
	sess.SetExpiresAt(fosite.AccessToken, cl.ExpiresAt)
	if cnf, ok := tok.Claims["cnf"].(map[string]any); ok {
		sess.DPoPJKT, _ = cnf["jkt"].(string)
	}
	r := fosite.NewRequest()
	r.ID, r.RequestedAt, r.Client, r.Session = cl.JTI, cl.IssuedAt, fc, sess
	r.RequestedScope, r.GrantedScope = cl.Scope, cl.Scope
	r.RequestedAudience, r.GrantedAudience = cl.Audience, cl.Audience
	return r, nil
}

// audienceOf reads aud, a string or an array of strings (RFC 7519 §4.1.3).
func audienceOf(v any) fosite.Arguments {
	switch a := v.(type) {
	case string:
		return fosite.Arguments{a}
	case []any:
		out := make(fosite.Arguments, 0, len(a))
		for _, e := range a {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	case []string:
		return a
	}
	return nil
}

// revoked reads the token's revocation marker and its client's: nil when neither voids it, an
// inactive error when one does, the store's error when it cannot say (503, never 401).
func (c *clientTokens) revoked(ctx context.Context, jti, clientID string, iat time.Time) error {
	// Both markers in one round trip: this is read at every request to an API.
	m, err := store.GetMany(ctx, c.p.eph, revokedKey(jti), voidKey(clientID))
	if err != nil {
		return fmt.Errorf("idp: reading the token's revocation: %w", err)
	}
	if _, ok := m[revokedKey(jti)]; ok {
		return inactive("revoked")
	}
	v, ok := m[voidKey(clientID)]
	if !ok {
		return nil
	}
	before, err := strconv.ParseInt(string(v), 10, 64)
	if err != nil || iat.Unix() <= before {
		// A marker that does not read voids every token: the safe side.
		return inactive("the client's tokens were revoked")
	}
	return nil
}

func revokedKey(jti string) string            { return "idp:at-revoked:" + jti }
func voidKey(clientID string) string          { return "idp:client-void:" + clientID }
func unixText(t time.Time) []byte             { return strconv.AppendInt(nil, t.Unix(), 10) }
func markerTTL(d time.Duration) time.Duration { return max(d, time.Second) + revokedMargin }

// RevokeToken is fosite's RevocationHandler (RFC 7009): a stateless token of the calling client
// gets its revocation marker; any other token goes to fosite's revocation of stored sessions.
// An expired or invalid stateless token needs nothing (§2.2: answered 200 all the same).
func (c *clientTokens) RevokeToken(ctx context.Context, raw string, use fosite.TokenType, client fosite.Client) error {
	tok, err := c.stateless(ctx, raw)
	if err != nil {
		return errUnavailable(err)
	}
	if tok == nil {
		return c.rev.RevokeToken(ctx, raw, use, client)
	}
	var cl fjwt.JWTClaims
	cl.FromMapClaims(tok.Claims)
	if id, _ := tok.Claims["client_id"].(string); id != client.GetID() {
		return fosite.ErrUnauthorizedClient.WithHint("The token was issued to another client.")
	}
	left := cl.ExpiresAt.Sub(c.p.now())
	if cl.JTI == "" || left <= 0 {
		return nil
	}
	if err := c.p.eph.Put(ctx, revokedKey(cl.JTI), []byte("1"), markerTTL(left)); err != nil {
		return errUnavailable(err)
	}
	return nil
}

// VoidClientTokens makes every access token the client holds void at once on every replica
// (the client is deleted, disabled, or its credentials replaced). Tokens with stored sessions
// (code and refresh grants) are refused once the client is gone, as before.
func (p *Provider) VoidClientTokens(ctx context.Context, clientID string) error {
	if err := VoidClient(ctx, p.eph, clientID, p.now(), p.cfg.AccessTokenTTL); err != nil {
		return err
	}
	p.st.cache.forget(clientID)
	return nil
}

// VoidClient writes the marker that voids the client's access tokens issued up to now, in the
// ephemeral store every replica reads, for as long as a token lives (accessTTL): for the
// command line, which deletes a client without a provider of its own.
func VoidClient(ctx context.Context, eph store.Ephemeral, clientID string, now time.Time, accessTTL time.Duration) error {
	if err := eph.Put(ctx, voidKey(clientID), unixText(now), markerTTL(accessTTL)); err != nil {
		return fmt.Errorf("idp: voiding the client's tokens: %w", err)
	}
	return nil
}
