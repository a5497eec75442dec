package idp

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v3"
	"github.com/go-jose/go-jose/v3/jwt"
	"github.com/ory/fosite"

	"github.com/vula-eid/vula/internal/store"
)

// Client authentication at the token, PAR, introspection and revocation endpoints, written here
// instead of fosite's default strategy because that one, with certified relying parties, accepts
// only the token URL as an assertion's audience (OpenID Connect Core §9 and FAPI 2.0 send the
// issuer), answers 500 to an expired assertion, the non-standard jti_known to a replayed one, and
// invalid_client when the store cannot answer. Here every refusal is 401 invalid_client, and a
// store that is down is 503.

const (
	jwtBearer = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
	// assertionLeeway is the clock skew allowed on an assertion's exp, nbf and iat.
	assertionLeeway = 30 * time.Second
	// assertionMaxLife bounds how far ahead an assertion may expire: its jti is remembered that
	// long, so an unbounded exp would fill the replay cache.
	assertionMaxLife = time.Hour
)

// assertionAlgs are the JWS algorithms of client assertions and request objects (never none,
// never a MAC: Vula registers no shared keys for them).
var assertionAlgs = []string{"ES256", "ES384", "PS256", "RS256"}

// requestObjectAlgs are the algorithms a request object may be signed with.
var requestObjectAlgs = assertionAlgs

// errClient is invalid_client (401) with the reason; the reason names what was wrong, never a
// credential.
func errClient(hint string) error {
	return fosite.ErrInvalidClient.WithHint(hint)
}

// errUnavailable is the answer when a store cannot be reached: 503, so that a client retries
// instead of taking an outage for bad credentials.
func errUnavailable(err error) error {
	return fosite.ErrTemporarilyUnavailable.WithWrap(err).WithDebug(err.Error())
}

// isUnavailable reports whether err comes from a store (or key layer) that cannot answer.
func isUnavailable(err error) bool {
	return errors.Is(err, store.ErrUnavailable)
}

// audiences are the values a client assertion's aud may take: the issuer and every endpoint
// that authenticates clients.
func (p *Provider) audiences() []string {
	iss := p.cfg.Issuer
	return []string{iss, iss + "/", iss + "/oauth2/token", iss + "/oauth2/par", iss + "/oauth2/pushed_authorize",
		iss + "/oauth2/introspect", iss + "/oauth2/revoke"}
}

// authenticateClient is fosite's ClientAuthenticationStrategy: private_key_jwt,
// client_secret_basic, or none (client_id alone, for public clients).
func (p *Provider) authenticateClient(ctx context.Context, r *http.Request, form url.Values) (fosite.Client, error) {
	if form.Get("client_assertion_type") != "" || form.Get("client_assertion") != "" {
		return p.authenticateAssertion(ctx, form)
	}
	if id, secret, ok := r.BasicAuth(); ok {
		if form.Get("client_secret") != "" {
			return nil, errClient("Send the client secret once: in the Basic header or in the form, not both (RFC 6749 §2.3).")
		}
		return p.authenticateSecret(ctx, id, secret, true)
	}
	if secret := form.Get("client_secret"); secret != "" {
		// client_secret_post (RFC 6749 §2.3.1): the same secret in the body, which some
		// certified libraries send by default; a client with a secret may use either.
		return p.authenticateSecret(ctx, form.Get("client_id"), secret, false)
	}
	id := form.Get("client_id")
	if id == "" {
		return nil, errClient("The client is not authenticated: no client_id, Basic credentials or client_assertion.")
	}
	c, err := p.lookupClient(ctx, id)
	if err != nil {
		return nil, err
	}
	if c.rec.TokenEndpointAuthMethod != AuthNone {
		return nil, errClient("This client must authenticate with " + c.rec.TokenEndpointAuthMethod + ".")
	}
	return c, nil
}

// lookupClient reads a client: invalid_client when there is none, 503 when the store is down.
func (p *Provider) lookupClient(ctx context.Context, id string) (*client, error) {
	c, err := p.st.GetClient(ctx, id)
	switch {
	case errors.Is(err, fosite.ErrNotFound):
		return nil, errClient("No such client.")
	case err != nil && isUnavailable(err):
		return nil, errUnavailable(err)
	case err != nil:
		return nil, err
	}
	return c.(*client), nil
}

// authenticateSecret checks a client secret sent with HTTP Basic (basic: both form-encoded
// first, RFC 6749 §2.3.1) or in the form.
func (p *Provider) authenticateSecret(ctx context.Context, id, secret string, basic bool) (fosite.Client, error) {
	if basic {
		var err1, err2 error
		id, err1 = url.QueryUnescape(id)
		secret, err2 = url.QueryUnescape(secret)
		if err1 != nil || err2 != nil {
			return nil, errClient("The Basic credentials are not form-encoded (RFC 6749 §2.3.1).")
		}
	}
	c, err := p.lookupClient(ctx, id)
	if err != nil {
		return nil, err
	}
	if c.rec.TokenEndpointAuthMethod != AuthSecretBasic {
		return nil, errClient("This client must authenticate with " + c.rec.TokenEndpointAuthMethod + ".")
	}
	if (secretHasher{}).Compare(ctx, c.rec.SecretHash, []byte(secret)) != nil {
		return nil, errClient("The client credentials are not valid.")
	}
	return c, nil
}

// authenticateAssertion checks a private_key_jwt assertion (RFC 7523 §3): signed by a key the
// client registered, iss and sub the client, aud this server, not expired, jti used once.
func (p *Provider) authenticateAssertion(ctx context.Context, form url.Values) (fosite.Client, error) {
	if form.Get("client_assertion_type") != jwtBearer {
		return nil, errClient("client_assertion_type must be " + jwtBearer + ".")
	}
	tok, err := jwt.ParseSigned(form.Get("client_assertion"))
	if err != nil || len(tok.Headers) != 1 {
		return nil, errClient("The client assertion is not a signed JWT.")
	}
	if !slices.Contains(assertionAlgs, tok.Headers[0].Algorithm) {
		return nil, errClient("The client assertion's alg is not one of " + strings.Join(assertionAlgs, ", ") + ".")
	}
	var unverified jwt.Claims
	if err := tok.UnsafeClaimsWithoutVerification(&unverified); err != nil {
		return nil, errClient("The client assertion's claims are not readable.")
	}
	id := form.Get("client_id")
	if id == "" {
		id = unverified.Subject
	}
	if id == "" {
		return nil, errClient("The client assertion has no sub.")
	}
	c, err := p.lookupClient(ctx, id)
	if err != nil {
		return nil, err
	}
	if c.rec.TokenEndpointAuthMethod != AuthPrivateKeyJWT {
		return nil, errClient("This client must authenticate with " + c.rec.TokenEndpointAuthMethod + ".")
	}
	var claims jwt.Claims
	if err := p.verifyClientJWT(ctx, c, tok, &claims); err != nil {
		return nil, err
	}
	if claims.Issuer != id || claims.Subject != id {
		return nil, errClient("The client assertion's iss and sub must be the client_id.")
	}
	if claims.Expiry == nil {
		return nil, errClient("The client assertion has no exp.")
	}
	now := p.now()
	if err := claims.ValidateWithLeeway(jwt.Expected{Time: now}, assertionLeeway); err != nil {
		return nil, errClient("The client assertion is expired or not yet valid.")
	}
	if claims.Expiry.Time().After(now.Add(assertionMaxLife)) {
		return nil, errClient("The client assertion's exp is more than an hour away.")
	}
	if !slices.ContainsFunc(claims.Audience, func(a string) bool { return slices.Contains(p.audiences(), a) }) {
		return nil, errClient("The client assertion's aud must be the issuer or the endpoint's URL.")
	}
	if claims.ID == "" {
		return nil, errClient("The client assertion has no jti.")
	}
	switch err := p.st.SetClientAssertionJWT(ctx, c.GetID()+" "+claims.ID, claims.Expiry.Time().Add(assertionLeeway)); {
	case errors.Is(err, fosite.ErrJTIKnown):
		return nil, errClient("The client assertion's jti was used before.")
	case err != nil && isUnavailable(err):
		return nil, errUnavailable(err)
	case err != nil:
		return nil, err
	}
	return c, nil
}

// verifyClientJWT checks tok's signature with one of the client's registered keys (its JWKS, or
// the keys at its jwks_uri) and reads its claims into out.
func (p *Provider) verifyClientJWT(ctx context.Context, c *client, tok *jwt.JSONWebToken, out any) error {
	keys, err := p.clientKeys(ctx, c)
	if err != nil {
		return err
	}
	h := tok.Headers[0]
	for _, k := range keys {
		if (h.KeyID != "" && k.KeyID != h.KeyID) || (k.Use != "" && k.Use != "sig") || (k.Algorithm != "" && k.Algorithm != h.Algorithm) {
			continue
		}
		if tok.Claims(k.Key, out) == nil {
			return nil
		}
	}
	return errClient("The JWT is not signed by a key the client registered.")
}

func (p *Provider) clientKeys(ctx context.Context, c *client) ([]jose.JSONWebKey, error) {
	if c.JSONWebKeys != nil {
		return c.JSONWebKeys.Keys, nil
	}
	if c.JSONWebKeysURI == "" {
		return nil, errClient("The client has registered no keys.")
	}
	set, err := p.jwksFetcher.Resolve(ctx, c.JSONWebKeysURI, false)
	if err != nil {
		return nil, errClient("The client's jwks_uri cannot be read.")
	}
	return set.Keys, nil
}
