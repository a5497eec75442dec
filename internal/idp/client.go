package idp

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/go-jose/go-jose/v3"
	"github.com/ory/fosite"

	"github.com/vula-eid/vula/internal/auth"
	"github.com/vula-eid/vula/internal/problem"
	"github.com/vula-eid/vula/internal/store"
)

// Client authentication methods a client may be registered with.
const (
	AuthPrivateKeyJWT = "private_key_jwt"
	AuthSecretBasic   = "client_secret_basic"
	AuthSecretPost    = "client_secret_post" // accepted from every client_secret_basic client
	AuthNone          = "none"               // a public client (PKCE is required of every client anyway)
)

// DPoPRequired is the client policy under which every access token is DPoP-bound.
const DPoPRequired = "required"

// The eIDAS levels of assurance (auth's).
const (
	LoALow         = auth.LoALow
	LoASubstantial = auth.LoASubstantial
	LoAHigh        = auth.LoAHigh
)

// client is a registered client as fosite sees it.
type client struct {
	*fosite.DefaultOpenIDConnectClient
	rec store.Client
}

var (
	_ fosite.OpenIDConnectClient = (*client)(nil)
	_ fosite.ResponseModeClient  = (*client)(nil)
)

// GetResponseModes are the response modes a client may ask for: the query string, which is the
// code flow's default and the one discovery lists (fosite refuses an explicit response_mode from
// a client that names none).
func (c *client) GetResponseModes() []fosite.ResponseModeType {
	return []fosite.ResponseModeType{fosite.ResponseModeDefault, fosite.ResponseModeQuery}
}

func newClient(c store.Client) (*client, error) {
	fc := &fosite.DefaultOpenIDConnectClient{
		DefaultClient: &fosite.DefaultClient{ID: c.ID, Secret: c.SecretHash, RedirectURIs: c.RedirectURIs,
			GrantTypes: c.GrantTypes, ResponseTypes: c.ResponseTypes, Scopes: c.Scopes, Audience: []string{},
			Public: c.TokenEndpointAuthMethod == AuthNone},
		JSONWebKeysURI: c.JWKSURI, TokenEndpointAuthMethod: c.TokenEndpointAuthMethod,
	}
	if c.TokenEndpointAuthMethod == AuthPrivateKeyJWT {
		// The assertion's alg must fit the client's key; fosite wants one to compare with.
		fc.TokenEndpointAuthSigningAlgorithm = "ES256"
	}
	if len(c.JWKS) > 0 {
		var set jose.JSONWebKeySet
		if err := json.Unmarshal(c.JWKS, &set); err != nil {
			return nil, fmt.Errorf("client %s: jwks: %w", c.ID, err)
		}
		fc.JSONWebKeys = &set
		if len(set.Keys) > 0 && set.Keys[0].Algorithm != "" {
			fc.TokenEndpointAuthSigningAlgorithm = set.Keys[0].Algorithm
		}
	}
	return &client{DefaultOpenIDConnectClient: fc, rec: c}, nil
}

// ClientSpec is what an operator registers.
type ClientSpec struct {
	ID                     string
	Name                   string
	RedirectURIs           []string
	PostLogoutRedirectURIs []string
	GrantTypes             []string // default authorization_code, refresh_token
	Scopes                 []string // default openid profile
	AuthMethod             string   // default client_secret_basic
	JWKS                   []byte   // for private_key_jwt
	JWKSURI                string
	RequirePAR             bool
	AllowedACR             []string
	SectorIdentifier       string // when set, subjects are pairwise for this sector
	OrganizationID         string
	// Introspection lets the client introspect other clients' tokens (a resource server).
	Introspection bool
	// IDTokenAlg is id_token_signed_response_alg: ES256 (the default) or RS256.
	IDTokenAlg string
	// RequestObjectAlg pins the JWS algorithm of the client's request objects (RFC 9101).
	RequestObjectAlg string
	// DPoP is "required" for a client whose access tokens must all be DPoP-bound (RFC 9449).
	DPoP string
	// Profile "fapi2" holds the client to the FAPI 2.0 Security Profile: private_key_jwt, PAR,
	// DPoP-bound tokens (PKCE S256, iss in responses and header-only tokens hold for every
	// client).
	Profile string
}

// ProfileFAPI2 is the FAPI 2.0 Security Profile.
const ProfileFAPI2 = "fapi2"

// Scopes the provider knows.
var knownScopes = []string{"openid", "profile", "personal_number", "offline_access", "admin", "seal", "sign", "service", CredentialScope, auth.ScopePID, auth.ScopeVerify}

// NewClient checks spec and makes the record to store, with a fresh secret for
// client_secret_basic. The secret is returned once, in clear; only its hash is kept.
func NewClient(spec ClientSpec) (store.Client, string, error) {
	bad := func(format string, args ...any) (store.Client, string, error) {
		return store.Client{}, "", fmt.Errorf("%w: "+format, append([]any{ErrInvalidClient}, args...)...)
	}
	if spec.ID == "" || strings.ContainsAny(spec.ID, " /?#:") {
		return bad("client id %q: want a plain name", spec.ID)
	}
	if spec.AuthMethod == "" {
		spec.AuthMethod = AuthSecretBasic
	}
	if len(spec.GrantTypes) == 0 {
		spec.GrantTypes = []string{"authorization_code", "refresh_token"}
	}
	if len(spec.Scopes) == 0 {
		spec.Scopes = []string{"openid", "profile"}
	}
	for _, g := range spec.GrantTypes {
		if !slices.Contains([]string{"authorization_code", "refresh_token", "client_credentials"}, g) {
			return bad("grant type %q: want authorization_code, refresh_token or client_credentials", g)
		}
	}
	for _, s := range spec.Scopes {
		if !slices.Contains(knownScopes, s) {
			return bad("scope %q: want one of %s", s, strings.Join(knownScopes, ", "))
		}
	}
	code := slices.Contains(spec.GrantTypes, "authorization_code")
	if code && len(spec.RedirectURIs) == 0 {
		return bad("an authorization_code client needs a redirect URI")
	}
	for _, u := range append(slices.Clone(spec.RedirectURIs), spec.PostLogoutRedirectURIs...) {
		p, err := url.Parse(u)
		if err != nil || !p.IsAbs() || p.Fragment != "" || (p.Scheme != "https" && !(p.Scheme == "http" && isLoopback(p.Hostname()))) {
			return bad("redirect URI %q: want an absolute https URI without a fragment (http only on loopback)", u)
		}
	}
	for _, a := range spec.AllowedACR {
		if !slices.Contains([]string{LoALow, LoASubstantial, LoAHigh}, a) {
			return bad("acr %q: want an eIDAS level of assurance URI", a)
		}
	}
	if !slices.Contains([]string{"", "ES256", "RS256"}, spec.IDTokenAlg) {
		return bad("id_token_signed_response_alg %q: want ES256 or RS256", spec.IDTokenAlg)
	}
	if spec.RequestObjectAlg != "" && !slices.Contains(requestObjectAlgs, spec.RequestObjectAlg) {
		return bad("request_object_signing_alg %q: want one of %s", spec.RequestObjectAlg, strings.Join(requestObjectAlgs, ", "))
	}
	switch spec.Profile {
	case "":
	case ProfileFAPI2:
		if spec.AuthMethod != AuthPrivateKeyJWT {
			return bad("profile fapi2 needs private_key_jwt client authentication (FAPI 2.0 §5.3.2.1; mTLS is not offered)")
		}
		spec.RequirePAR, spec.DPoP = true, DPoPRequired
	default:
		return bad("profile %q: want %q or nothing", spec.Profile, ProfileFAPI2)
	}
	if spec.DPoP != "" && spec.DPoP != DPoPRequired {
		return bad("dpop %q: want %q or nothing", spec.DPoP, DPoPRequired)
	}
	rec := store.Client{ID: spec.ID, Name: spec.Name, RedirectURIs: spec.RedirectURIs, PostLogoutRedirectURIs: spec.PostLogoutRedirectURIs,
		GrantTypes: spec.GrantTypes, ResponseTypes: []string{"code"}, Scopes: spec.Scopes, TokenEndpointAuthMethod: spec.AuthMethod,
		JWKSURI: spec.JWKSURI, RequirePAR: spec.RequirePAR, AllowedACR: spec.AllowedACR, SectorIdentifier: spec.SectorIdentifier,
		OrganizationID: spec.OrganizationID,
		Policy: store.ClientPolicy{Introspection: spec.Introspection, IDTokenAlg: spec.IDTokenAlg, RequestObjectAlg: spec.RequestObjectAlg,
			DPoP: spec.DPoP, Profile: spec.Profile}}
	if !code {
		rec.ResponseTypes = []string{}
	}
	var secret string
	switch spec.AuthMethod {
	case AuthSecretBasic:
		b := make([]byte, 32)
		rand.Read(b)
		secret = base64.RawURLEncoding.EncodeToString(b)
		rec.SecretHash, _ = secretHasher{}.Hash(context.Background(), []byte(secret))
	case AuthPrivateKeyJWT:
		if len(spec.JWKS) == 0 && spec.JWKSURI == "" {
			return bad("private_key_jwt needs the client's JWKS or jwks_uri")
		}
		if len(spec.JWKS) > 0 {
			var set jose.JSONWebKeySet
			if err := json.Unmarshal(spec.JWKS, &set); err != nil || len(set.Keys) == 0 {
				return bad("jwks: not a JSON Web Key Set with keys")
			}
			for _, k := range set.Keys {
				if !k.IsPublic() || !k.Valid() {
					return bad("jwks: key %q is not a valid public key", k.KeyID)
				}
			}
			rec.JWKS = spec.JWKS
		}
	case AuthNone:
		if slices.Contains(spec.GrantTypes, "client_credentials") {
			return bad("a public client cannot use client_credentials")
		}
	default:
		return bad("token endpoint auth method %q: want private_key_jwt, client_secret_basic or none", spec.AuthMethod)
	}
	return rec, secret, nil
}

// ClientRegistry is what registering a client needs of the durable store.
type ClientRegistry interface {
	CreateClient(ctx context.Context, c store.Client) error
	Organization(ctx context.Context, id string) (store.Organization, error)
}

var _ ClientRegistry = store.Durable(nil)

// RegisterClient stores a client made by NewClient, after checking that the institution it acts
// for exists: a client bound to no organization would be accepted and then fail every seal
// (409). An unknown organization is ErrInvalidClient.
func RegisterClient(ctx context.Context, db ClientRegistry, rec store.Client) error {
	if rec.OrganizationID != "" {
		_, err := db.Organization(ctx, rec.OrganizationID)
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("%w: organization %q does not exist (vula orgs list; vula orgs create)", ErrInvalidClient, rec.OrganizationID)
		}
		if err != nil {
			return err
		}
	}
	return db.CreateClient(ctx, rec)
}

// ErrInvalidClient is a client registration that cannot be accepted.
var ErrInvalidClient = problem.New(problem.InvalidRequest, "idp: invalid client")

func isLoopback(host string) bool {
	return host == "localhost" || host == "127.0.0.1" || host == "::1"
}

// secretHasher hashes client secrets with SHA-256. Vula makes every secret itself, 256 random
// bits, so a slow password hash would add nothing but latency on every token request (fosite's
// default is bcrypt, tens of milliseconds a check).
type secretHasher struct{}

var _ fosite.Hasher = secretHasher{}

func (secretHasher) Hash(_ context.Context, data []byte) ([]byte, error) {
	h := sha256.Sum256(data)
	return h[:], nil
}

func (secretHasher) Compare(_ context.Context, hash, data []byte) error {
	h := sha256.Sum256(data)
	if subtle.ConstantTimeCompare(hash, h[:]) != 1 {
		return fosite.ErrInvalidClient
	}
	return nil
}
