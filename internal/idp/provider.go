// Package idp is Vula's OpenID Connect provider, on github.com/ory/fosite.
//
// ID tokens and access tokens (JWT, RFC 9068) are signed through the key layer with oidc-token
// keys (ES256 by default, PS256 as an option); refresh tokens and codes are opaque (HMAC) and
// their state lives in the ephemeral store, so that any replica can finish a flow another began.
// A client_credentials access token has no stored state: it is verified from its JWT wherever it
// is presented, and only its revocation is read from the ephemeral store (cctoken.go).
// Clients are in the durable store. Every client must use PKCE with S256; client
// authentication is private_key_jwt (assertion jtis kept in a replay cache), client_secret_basic,
// or none for public clients. Refresh tokens are rotated on every use, and reuse of a rotated one
// revokes its whole grant.
//
// Credential authorization (CSC API v2 §8.4.2): scope credential or authorization_details of
// type credential (RFC 9396), for officials only, with a fresh two-factor login that is the
// authorization of exactly the digests asked; see credential.go.
//
// The provider answers the standard endpoints only; errors go out in the OAuth 2 / OIDC form
// fosite writes, never as Vula problem documents.
package idp

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/compose"
	"github.com/ory/fosite/handler/oauth2"
	"github.com/ory/fosite/handler/openid"
	fjwt "github.com/ory/fosite/token/jwt"

	"github.com/vula-eid/vula/hsm"
	"github.com/vula-eid/vula/internal/auth"
	"github.com/vula-eid/vula/internal/store"
)

// Config is the provider's setup.
type Config struct {
	Issuer          string        // the base URL, e.g. https://eid.example
	Algorithm       string        // ES256 (default) or PS256
	AccessTokenTTL  time.Duration // default 10 minutes
	IDTokenTTL      time.Duration // default 10 minutes
	RefreshTokenTTL time.Duration // default 8 hours
	CodeTTL         time.Duration // default 1 minute
	PARTTL          time.Duration // default 90 seconds
	// FlowsPerMinute bounds the logins one client address may start in a minute (each is
	// stored for flowTTL); default 120.
	FlowsPerMinute int
	// Secrets seals the HMAC secret of codes and refresh tokens before it reaches the durable
	// store, as TOTP seeds are (its key is kept outside the database). Required.
	Secrets *store.SeedSealer
	// Credentials is the signing service, for credential authorization through OAuth (CSC
	// API v2 §8.4.2); nil: such requests are refused.
	Credentials auth.CredentialAuthorizer
	// WalletConfigurations are the wallet issuer's credential configuration ids, which
	// authorization_details of type openid_credential may name; none: such requests are refused.
	WalletConfigurations []string
	// WalletLoA is the level a login asking for the PID (its scope or openid_credential details)
	// must reach: the login steps up to it, or ends in unmet_authentication_requirements.
	WalletLoA string
	// Audit records every completed login (action idp.login, the person as actor, the levels
	// in the detail); nil: logins are not audited.
	Audit Auditor
}

// Provider serves OpenID Connect.
type Provider struct {
	cfg   Config
	oauth fosite.OAuth2Provider
	// ccOAuth is oauth with the client_credentials grant only (see New).
	ccOAuth fosite.OAuth2Provider
	keys    *tokenKeys
	st      *storage
	db      store.Durable
	eph     store.Ephemeral
	log     *slog.Logger
	now     func() time.Time
	creds   auth.CredentialAuthorizer // Config.Credentials
	audit   Auditor                   // Config.Audit
	// jwksFetcher reads the keys of clients registered with a jwks_uri.
	jwksFetcher fosite.JWKSFetcherStrategy
	// codes names where an authorization code's state is kept.
	codes interface {
		AuthorizeCodeSignature(ctx context.Context, token string) string
	}
}

// parPrefix begins every request_uri the PAR endpoint returns (RFC 9126 §2.2).
const parPrefix = "urn:ietf:params:oauth:request_uri:"

// secretSetting names the sealed HMAC secret of codes and refresh tokens, shared by the
// replicas; legacySecretSetting the same secret stored raw by older versions.
const (
	secretSetting       = "idp.global_secret.sealed"
	legacySecretSetting = "idp.global_secret"
)

// New makes the provider: keys are the instrumented key layer (every token signature is
// audited); a token-signing key is created when there is none.
func New(ctx context.Context, cfg Config, keys hsm.Manager, db store.Durable, eph store.Ephemeral, log *slog.Logger, now func() time.Time) (*Provider, error) {
	if cfg.Issuer == "" {
		return nil, errors.New("idp: no issuer")
	}
	cfg.Issuer = strings.TrimSuffix(cfg.Issuer, "/")
	alg := hsm.ECP256
	switch cfg.Algorithm {
	case "", "ES256":
		cfg.Algorithm = "ES256"
	case "PS256":
		alg = hsm.RSA3072
	default:
		return nil, fmt.Errorf("idp: token algorithm %q: want ES256 or PS256", cfg.Algorithm)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.AccessTokenTTL, 10*time.Minute)
	def(&cfg.IDTokenTTL, 10*time.Minute)
	def(&cfg.RefreshTokenTTL, 8*time.Hour)
	def(&cfg.CodeTTL, time.Minute)
	def(&cfg.PARTTL, 90*time.Second)
	if cfg.FlowsPerMinute <= 0 {
		cfg.FlowsPerMinute = 120
	}

	if cfg.Secrets == nil {
		return nil, errors.New("idp: no sealer for the token secret")
	}
	secret, err := tokenSecret(ctx, db, cfg.Secrets)
	if err != nil {
		return nil, err
	}
	// A retired key stays published while a token it signed may be alive, and while a replica
	// may still sign with it from its cached set.
	grace := max(cfg.AccessTokenTTL, cfg.IDTokenTTL) + 2*keySetTTL
	tk := &tokenKeys{keys: keys, db: db, alg: alg, grace: grace, now: now}
	if err := tk.ensure(ctx); err != nil {
		return nil, err
	}
	fc := &fosite.Config{
		AccessTokenLifespan:             cfg.AccessTokenTTL,
		RefreshTokenLifespan:            cfg.RefreshTokenTTL,
		AuthorizeCodeLifespan:           cfg.CodeTTL,
		IDTokenLifespan:                 cfg.IDTokenTTL,
		PushedAuthorizeContextLifespan:  cfg.PARTTL,
		IDTokenIssuer:                   cfg.Issuer,
		AccessTokenIssuer:               cfg.Issuer,
		TokenURL:                        cfg.Issuer + "/oauth2/token",
		GlobalSecret:                    secret,
		EnforcePKCE:                     true,
		EnforcePKCEForPublicClients:     true,
		EnablePKCEPlainChallengeMethod:  false,
		ClientSecretsHasher:             secretHasher{},
		ScopeStrategy:                   fosite.ExactScopeStrategy,
		JWTScopeClaimKey:                fjwt.JWTScopeFieldString,
		RefreshTokenScopes:              []string{}, // a refresh token whenever the client may refresh
		PushedAuthorizeRequestURIPrefix: parPrefix,
		MinParameterEntropy:             8,
		SendDebugMessagesToClients:      false,
	}
	p := &Provider{cfg: cfg, keys: tk, db: db, eph: eph, log: log, now: now, creds: cfg.Credentials, audit: cfg.Audit, jwksFetcher: fosite.NewDefaultJWKSFetcherStrategy()}
	fc.ClientAuthenticationStrategy = p.authenticateClient
	p.st = &storage{clients: db, eph: eph, cfg: fc, now: now}
	p.st.audience = p.Resources()
	hmacs := compose.NewOAuth2HMACStrategy(fc)
	p.codes = hmacs
	strategy := &compose.CommonStrategy{
		CoreStrategy:               &oauth2.DefaultJWTStrategy{Signer: tk, HMACSHAStrategy: hmacs, Config: fc},
		OpenIDConnectTokenStrategy: &openid.DefaultStrategy{Signer: tk, Config: fc},
		Signer:                     tk,
	}
	// client_credentials tokens, the bulk of the token endpoint's work, go to a provider with
	// that grant's handler only: fosite asks every handler of a provider in turn, and each one
	// that does not handle the grant answers with an error carrying a stack trace (4 % of a
	// token's CPU with the code, refresh and OIDC handlers before it). Its Config is a copy made
	// before Compose, which appends handlers to the Config it is given.
	ccfc := *fc
	p.ccOAuth = compose.Compose(&ccfc, p.st, strategy, compose.OAuth2ClientCredentialsGrantFactory)
	p.oauth = compose.Compose(fc, p.st, strategy,
		compose.OAuth2AuthorizeExplicitFactory,
		compose.OAuth2ClientCredentialsGrantFactory,
		compose.OAuth2RefreshTokenGrantFactory,
		compose.OpenIDConnectExplicitFactory,
		compose.OpenIDConnectRefreshFactory,
		p.clientTokensFactory, // introspection and revocation: stateless client_credentials tokens, fosite's for the rest
		compose.OAuth2PKCEFactory,
		compose.PushedAuthorizeHandlerFactory,
	)
	return p, nil
}

// tokenSecret returns the HMAC secret, sealed in the settings: made on first start, or taken
// over from an older version's raw setting (so that codes and refresh tokens in flight stay
// valid), which is then removed.
func tokenSecret(ctx context.Context, db store.Settings, sealer *store.SeedSealer) ([]byte, error) {
	sealed, err := db.Setting(ctx, secretSetting)
	if errors.Is(err, store.ErrNotFound) {
		secret, lerr := db.Setting(ctx, legacySecretSetting)
		if errors.Is(lerr, store.ErrNotFound) {
			secret, lerr = make([]byte, 32), nil
			rand.Read(secret)
		}
		if lerr != nil {
			return nil, fmt.Errorf("idp: token secret: %w", lerr)
		}
		fresh, serr := sealer.Seal(secretSetting, secret)
		if serr != nil {
			return nil, fmt.Errorf("idp: token secret: %w", serr)
		}
		sealed, err = db.PutSettingIfAbsent(ctx, secretSetting, fresh)
	}
	if err != nil {
		return nil, fmt.Errorf("idp: token secret: %w", err)
	}
	secret, err := sealer.Open(secretSetting, sealed)
	if err != nil {
		return nil, errors.New("idp: the token secret does not open with this seal key (idp.seed_key_file must be the same on every replica)")
	}
	if err := db.DeleteSetting(ctx, legacySecretSetting); err != nil {
		return nil, fmt.Errorf("idp: removing the raw token secret: %w", err)
	}
	return secret, nil
}

// RotateKey makes a new token-signing key with the configured algorithm, which signs from now
// on, and retires the others; they stay in the JWKS until the tokens they signed have expired.
// Other replicas take the new key within keySetTTL.
func (p *Provider) RotateKey(ctx context.Context) (hsm.KeyInfo, error) {
	return p.keys.rotate(ctx)
}

// Register adds the provider's endpoints to mux.
func (p *Provider) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /.well-known/openid-configuration", p.discovery)
	mux.HandleFunc("GET /jwks.json", p.jwks)
	mux.HandleFunc("POST /oauth2/token", p.token)
	mux.HandleFunc("POST /oauth2/revoke", p.revoke)
	mux.HandleFunc("POST /oauth2/introspect", p.introspect)
	mux.HandleFunc("GET /userinfo", p.userinfo)
	mux.HandleFunc("POST /userinfo", p.userinfo)
}

func (p *Provider) discovery(w http.ResponseWriter, r *http.Request) {
	iss := p.cfg.Issuer
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                                   iss,
		"authorization_endpoint":                                   iss + "/oauth2/auth",
		"pushed_authorization_request_endpoint":                    iss + "/oauth2/par",
		"token_endpoint":                                           iss + "/oauth2/token",
		"userinfo_endpoint":                                        iss + "/userinfo",
		"jwks_uri":                                                 iss + "/jwks.json",
		"revocation_endpoint":                                      iss + "/oauth2/revoke",
		"introspection_endpoint":                                   iss + "/oauth2/introspect",
		"end_session_endpoint":                                     iss + "/logout",
		"response_types_supported":                                 []string{"code"},
		"response_modes_supported":                                 []string{"query"},
		"grant_types_supported":                                    []string{"authorization_code", "refresh_token", "client_credentials"},
		"subject_types_supported":                                  []string{"public", "pairwise"},
		"id_token_signing_alg_values_supported":                    idTokenAlgs(p.keys.SigningAlg(r.Context())),
		"token_endpoint_auth_methods_supported":                    []string{AuthPrivateKeyJWT, AuthSecretBasic, AuthSecretPost, AuthNone},
		"token_endpoint_auth_signing_alg_values_supported":         assertionAlgs,
		"revocation_endpoint_auth_methods_supported":               []string{AuthPrivateKeyJWT, AuthSecretBasic, AuthSecretPost, AuthNone},
		"introspection_endpoint_auth_methods_supported":            []string{AuthPrivateKeyJWT, AuthSecretBasic, AuthSecretPost},
		"introspection_endpoint_auth_signing_alg_values_supported": assertionAlgs,
		"revocation_endpoint_auth_signing_alg_values_supported":    assertionAlgs,
		"code_challenge_methods_supported":                         []string{"S256"},
		"dpop_signing_alg_values_supported":                        dpopAlgs,
		"scopes_supported":                                         knownScopes,
		"authorization_details_types_supported":                    p.detailsTypes(),
		"claims_supported": []string{"sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr",
			"given_name", "family_name", "birthdate", "personal_number"},
		"acr_values_supported":                           []string{LoALow, LoASubstantial, LoAHigh},
		"ui_locales_supported":                           []string{"sq", "sr", "en"},
		"request_parameter_supported":                    true,
		"request_object_signing_alg_values_supported":    requestObjectAlgs,
		"request_uri_parameter_supported":                false,
		"claims_parameter_supported":                     true,
		"require_pushed_authorization_requests":          false,
		"authorization_response_iss_parameter_supported": true,
	})
}

// idTokenAlgs are the ID token algorithms: the configured one (the default) and RS256, which
// OpenID Connect Core §15.1 makes mandatory to support.
func idTokenAlgs(configured string) []string {
	if configured == "RS256" {
		return []string{configured}
	}
	return []string{configured, "RS256"}
}

// detailsTypes are the authorization_details types offered (RFC 9396 §10).
func (p *Provider) detailsTypes() []string {
	out := []string{}
	if p.creds != nil {
		out = append(out, CredentialDetailsType)
	}
	if len(p.cfg.WalletConfigurations) > 0 {
		out = append(out, auth.OpenIDCredentialType)
	}
	return out
}

func (p *Provider) jwks(w http.ResponseWriter, r *http.Request) {
	set, err := p.keys.JWKS(r.Context())
	if err != nil {
		p.log.ErrorContext(r.Context(), "jwks", "err", err)
		http.Error(w, "the key set is not available", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Cache-Control", "public, max-age=60")
	writeJSON(w, http.StatusOK, set)
}

// token is the token endpoint: code, refresh_token and client_credentials grants. A DPoP
// proof binds the access token (and a public client's refresh token) to its key.
func (p *Provider) token(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	p.offerNonce(w, r)
	pr, err := p.proof(ctx, r, dpopCheck{method: http.MethodPost, url: p.cfg.Issuer + "/oauth2/token", nonce: true})
	if err != nil {
		p.writeTokenError(w, r, nil, "token request refused", err)
		return
	}
	if err := p.codeBinding(ctx, r, pr); err != nil {
		p.writeTokenError(w, r, nil, "token request refused", err)
		return
	}
	if err := p.codeResources(ctx, r); err != nil {
		p.writeTokenError(w, r, nil, "token request refused", err)
		return
	}
	oauth := p.oauth
	if r.ParseForm() == nil && r.PostForm.Get("grant_type") == "client_credentials" {
		oauth = p.ccOAuth
	}
	sess := newSession()
	ar, err := oauth.NewAccessRequest(ctx, r, sess)
	if err != nil {
		p.writeTokenError(w, r, ar, "token request refused", err)
		return
	}
	ctx = hsm.WithActor(ctx, "client:"+ar.GetClient().GetID())
	if ar.GetGrantTypes().ExactOne("client_credentials") {
		for _, s := range ar.GetRequestedScopes() {
			ar.GrantScope(s) // fosite has checked them against the client's
		}
		id := ar.GetClient().GetID()
		sess.Subject = id
		sess.JWTClaims.Subject = id
		// gty marks the token as one that is not stored (see clientTokens).
		sess.JWTClaims.Extra = map[string]any{"client_id": id, grantClaim: clientCredentials}
		sess.JWTHeader.Add("typ", "at+jwt")
		sess.ClientOnly = true
		err = p.grantAudience(ar, r.PostForm["resource"])
	} else if !ar.GetGrantTypes().ExactOne("authorization_code") { // a code's resources are checked before
		err = narrowAudience(ar, r.PostForm["resource"])
	}
	if err == nil {
		err = p.bindToken(ar, pr)
	}
	if err != nil {
		p.writeTokenError(w, r, ar, "token request refused", err)
		return
	}
	resp, err := oauth.NewAccessResponse(ctx, ar)
	if err != nil {
		p.writeTokenError(w, r, ar, "token not issued", err)
		return
	}
	if pr != nil {
		resp.SetTokenType(dpopScheme)
	}
	if s, ok := ar.GetSession().(*Session); ok && s.Credential != nil {
		// RFC 9396 §7: the token response says what the token authorizes.
		resp.SetExtra("authorization_details", []*CredentialAuthorization{s.Credential})
	}
	if s, ok := ar.GetSession().(*Session); ok && s.Wallet != nil {
		resp.SetExtra("authorization_details", auth.OpenIDCredentialGrant(s.Wallet))
	}
	oauth.WriteAccessResponse(ctx, w, ar, resp)
}

// bindToken applies RFC 9449 to a token request: a code bound by dpop_jkt is redeemed only with
// that key, a client whose policy requires DPoP must send a proof, a public client's refresh
// token is redeemed only with the key it is bound to; the new access token is bound to the
// proof's key, or to none without a proof.
func (p *Provider) bindToken(ar fosite.AccessRequester, pr *dpopProof) error {
	sess, ok := ar.GetSession().(*Session)
	if !ok {
		return errors.New("idp: unexpected session type")
	}
	c := recordOf(ar.GetClient())
	has := func(jkt string) bool { return pr != nil && pr.JKT == jkt }
	switch {
	case ar.GetGrantTypes().ExactOne("authorization_code") && sess.CodeJKT != "" && !has(sess.CodeJKT):
		return errDPoP(codeBoundHint)
	case ar.GetGrantTypes().ExactOne("refresh_token") && c.TokenEndpointAuthMethod == AuthNone && sess.DPoPJKT != "" && !has(sess.DPoPJKT):
		return errDPoP("This refresh token is bound to a DPoP key: a proof by that key must redeem it.")
	case c.Policy.DPoP == DPoPRequired && pr == nil:
		return errDPoP("This client's tokens must be DPoP-bound: send a DPoP proof.")
	}
	sess.bind(pr)
	return nil
}

const codeBoundHint = "The authorization request named a DPoP key (dpop_jkt): a proof by that key must redeem the code."

// codeBinding refuses, before fosite spends the code and its PKCE state, a code redemption
// without a proof by the key the authorization request named; bindToken checks it again.
func (p *Provider) codeBinding(ctx context.Context, r *http.Request, pr *dpopProof) error {
	if r.ParseForm() != nil || r.PostForm.Get("grant_type") != "authorization_code" || r.PostForm.Get("code") == "" {
		return nil
	}
	sess := newSession()
	if _, err := p.st.GetAuthorizeCodeSession(ctx, p.codes.AuthorizeCodeSignature(ctx, r.PostForm.Get("code")), sess); err != nil {
		return nil // fosite answers an unknown or used code
	}
	if sess.CodeJKT != "" && (pr == nil || pr.JKT != sess.CodeJKT) {
		return errDPoP(codeBoundHint)
	}
	return nil
}

// recordOf is the stored registration of a fosite client of this provider.
func recordOf(c fosite.Client) store.Client {
	switch c := c.(type) {
	case *client:
		return c.rec
	case noRefresh:
		return c.rec
	}
	return store.Client{}
}

// writeTokenError answers a refused token request. Two failures fosite reports as server_error
// are not the server's: a store that cannot answer is 503 temporarily_unavailable (the client
// retries; its credentials are fine), and a code that another replica redeemed a moment before
// is invalid_grant, as a code used twice is.
func (p *Provider) writeTokenError(w http.ResponseWriter, r *http.Request, ar fosite.AccessRequester, msg string, err error) {
	ctx := r.Context()
	if ctx.Err() != nil {
		// The client hung up (or its deadline passed) while a store was being asked: nothing
		// was wrong with its request, and nothing with the server. It was logged as
		// invalid_client or answered 500.
		p.log.DebugContext(ctx, msg+": the client went away", "err", err)
		writeOAuthError(w, errUnavailable(err))
		return
	}
	var rfc *fosite.RFC6749Error
	if ar == nil || (errors.As(err, &rfc) && strings.Contains(rfc.ErrorField, "dpop")) {
		p.oauthError(ctx, msg, err)
		writeOAuthError(w, err)
		return
	}
	switch {
	case errors.Is(err, fosite.ErrInvalidatedAuthorizeCode):
		err = fosite.ErrInvalidGrant.WithHint("The authorization code was already used.")
	case isUnavailable(err):
		p.oauthError(ctx, msg, err)
		writeOAuthError(w, err)
		return
	}
	p.oauthError(ctx, msg, err)
	p.oauth.WriteAccessError(ctx, w, ar, err)
}

// revoke is the revocation endpoint (RFC 7009): the client authenticates as at the token
// endpoint; an unknown token is answered 200, as §2.2 asks.
func (p *Provider) revoke(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	err := p.oauth.NewRevocationRequest(ctx, r)
	if err == nil {
		p.oauth.WriteRevocationResponse(ctx, w, nil)
		return
	}
	// fosite answers an unknown or already revoked token with no error; what is left is a
	// client that did not authenticate, a token of another client, or a store that is down.
	p.oauthError(ctx, "revocation refused", err)
	writeOAuthError(w, err)
}

// introspect is the introspection endpoint (RFC 7662). Only an authenticated confidential
// client may ask (§2.1: a bearer token is not client authentication), and it learns about a
// token only when the token is its own or it is registered as a resource server (policy
// introspection); otherwise the answer is active:false, as for an unknown token (§4).
func (p *Provider) introspect(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if err := r.ParseForm(); err != nil {
		writeOAuthError(w, fosite.ErrInvalidRequest.WithHint("The body is not a form."))
		return
	}
	if scheme, _ := accessToken(r); scheme != "" {
		writeOAuthError(w, errClient("Introspection needs client authentication; a bearer token is not one."))
		return
	}
	fc, err := p.authenticateClient(ctx, r, r.PostForm)
	if err != nil {
		p.oauthError(ctx, "introspection refused", err)
		writeOAuthError(w, err)
		return
	}
	caller := fc.(*client)
	if caller.rec.TokenEndpointAuthMethod == AuthNone {
		writeOAuthError(w, errClient("A public client cannot introspect tokens."))
		return
	}
	token := r.PostForm.Get("token")
	if token == "" {
		writeOAuthError(w, fosite.ErrInvalidRequest.WithHint("The token parameter is missing."))
		return
	}
	tu, ar, err := p.oauth.IntrospectToken(ctx, token, fosite.TokenUse(r.PostForm.Get("token_type_hint")), newSession())
	if err != nil && isUnavailable(err) {
		p.oauthError(ctx, "introspection", err)
		writeOAuthError(w, errUnavailable(err))
		return
	}
	if err != nil || (ar.GetClient().GetID() != caller.GetID() && !caller.rec.Policy.Introspection) {
		writeJSON(w, http.StatusOK, map[string]bool{"active": false})
		return
	}
	resp := &fosite.IntrospectionResponse{Active: true, AccessRequester: ar, TokenUse: tu}
	if tu == fosite.AccessToken {
		resp.AccessTokenType = fosite.BearerAccessToken // fosite writes no token_type; a bound token's comes from the session
	}
	p.oauth.WriteIntrospectionResponse(ctx, w, resp)
}

// writeOAuthError writes err in the OAuth 2 error form (RFC 6749 §5.2): 401 with a Basic
// challenge for invalid_client, 503 with Retry-After when a store is down, the error's own
// status otherwise; never 500 for what a client did.
func writeOAuthError(w http.ResponseWriter, err error) {
	if isUnavailable(err) {
		err = errUnavailable(err)
	}
	var rfc *fosite.RFC6749Error
	if !errors.As(err, &rfc) {
		rfc = fosite.ErrServerError.WithWrap(err)
	}
	switch rfc.CodeField {
	case http.StatusUnauthorized:
		w.Header().Set("WWW-Authenticate", `Basic realm="vula"`)
	case http.StatusServiceUnavailable:
		w.Header().Set("Retry-After", "5")
	}
	body := map[string]string{"error": rfc.ErrorField}
	if d := rfc.GetDescription(); d != "" {
		body["error_description"] = d
	}
	writeJSON(w, rfc.CodeField, body)
}

// userinfo returns the claims the access token's scopes allow, for its subject.
func (p *Provider) userinfo(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	scheme, tok := accessToken(r)
	sess := newSession()
	_, ar, err := p.oauth.IntrospectToken(ctx, tok, fosite.AccessToken, sess)
	if err == nil {
		err = p.checkBinding(r, scheme, tok, sess)
	}
	if err != nil && isUnavailable(err) {
		p.log.ErrorContext(ctx, "userinfo", "err", err)
		w.Header().Set("Retry-After", "5")
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "temporarily_unavailable"})
		return
	}
	if errors.Is(err, ErrDPoPProof) {
		w.Header().Set("WWW-Authenticate", dpopChallenge("invalid_dpop_proof"))
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_dpop_proof"})
		return
	}
	if err != nil {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_token"})
		return
	}
	if !ar.GetGrantedScopes().Has("openid") {
		w.Header().Set("WWW-Authenticate", `Bearer error="insufficient_scope", scope="openid"`)
		writeJSON(w, http.StatusForbidden, map[string]string{"error": "insufficient_scope"})
		return
	}
	claims, err := p.claims(ctx, sess, ar.GetGrantedScopes())
	if err != nil {
		p.log.ErrorContext(ctx, "userinfo", "err", err)
		w.Header().Set("Retry-After", "5")
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "temporarily_unavailable"})
		return
	}
	writeJSON(w, http.StatusOK, claims)
}

// claims are the person's claims the scopes allow; sub is the one the ID token carries.
func (p *Provider) claims(ctx context.Context, sess *Session, scopes fosite.Arguments) (map[string]any, error) {
	sub := sess.Subject
	if sess.Claims != nil && sess.Claims.Subject != "" {
		sub = sess.Claims.Subject
	}
	out := map[string]any{"sub": sub}
	if sess.Person == "" {
		return out, nil
	}
	pr, err := p.db.Person(ctx, sess.Person)
	if err != nil {
		return nil, err
	}
	if scopes.Has("profile") {
		out["given_name"], out["family_name"], out["birthdate"] = pr.GivenName, pr.FamilyName, pr.BirthDate
	}
	if scopes.Has("personal_number") {
		out["personal_number"] = pr.PersonalNumber
	}
	for _, n := range sess.Asked.UserInfo {
		if v := personClaim(pr, n); v != "" {
			out[n] = v
		}
	}
	return out, nil
}

// oauthError logs a refused request: the OAuth error and its reason, never a secret (fosite's
// debug text names what was wrong, not the credential).
func (p *Provider) oauthError(ctx context.Context, msg string, err error) {
	var rfc *fosite.RFC6749Error
	if errors.As(err, &rfc) {
		p.log.InfoContext(ctx, msg, "error", rfc.ErrorField, "reason", rfc.GetDescription(), "debug", rfc.DebugField)
		return
	}
	p.log.WarnContext(ctx, msg, "err", err)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	if w.Header().Get("Cache-Control") == "" {
		w.Header().Set("Cache-Control", "no-store")
	}
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v) // the status is sent: a failed write means the client left
}
