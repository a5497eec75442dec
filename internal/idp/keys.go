package idp

import (
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v3"
	"github.com/go-jose/go-jose/v3/cryptosigner"
	fjwt "github.com/ory/fosite/token/jwt"

	"github.com/vula-eid/vula/hsm"
	"github.com/vula-eid/vula/internal/rawsig"
	"github.com/vula-eid/vula/internal/store"
)

// tokenKeys signs ID tokens and JWT access tokens with the key layer's oidc-token keys, and
// publishes their public keys (JWKS). The newest active key signs. Rotation (RotateTokenKey)
// makes a new key and retires the others; a retired key stays published, so that the tokens it
// signed still verify, until grace (the longest lifetime of a signed token, plus the time a
// replica may keep an old key set) has passed since its retirement, and is then left out. The
// retirement time is kept in the durable settings, so every replica drops the key at the same
// moment; a key retired some other way (vula keys retire) starts its grace when a replica first
// sees it retired.
//
// Why not fosite's jwt.DefaultSigner: it takes only in-memory keys (its opaque-signer branch
// looks for a private key type in the public key), and an HSM key never leaves the key layer.
type tokenKeys struct {
	keys  hsm.Manager // instrumented: every token signature is audited
	db    store.Settings
	alg   hsm.Algorithm
	grace time.Duration
	now   func() time.Time

	mu     sync.Mutex
	cached *keySet

	verified verifiedTokens
}

type keySet struct {
	signing tokenKey // the configured algorithm's newest active key
	rsa     tokenKey // the newest active RSA key, for clients that want RS256 ID tokens
	jwks    jose.JSONWebKeySet
	byKID   map[string]crypto.PublicKey
	loaded  time.Time
}

type tokenKey struct {
	uri string
	kid string
	alg jose.SignatureAlgorithm
}

var _ fjwt.Signer = (*tokenKeys)(nil)

// keySetTTL bounds how long a new or retired key takes to be seen by every replica.
const keySetTTL = 30 * time.Second

// joseAlg is the JWS algorithm for a key algorithm: ES256/ES384 for EC, PS256 for RSA.
func joseAlg(a hsm.Algorithm) jose.SignatureAlgorithm {
	switch a {
	case hsm.ECP256:
		return jose.ES256
	case hsm.ECP384:
		return jose.ES384
	}
	return jose.PS256
}

// retiredSetting names the setting that holds when a token key was retired (RFC 3339).
func retiredSetting(uri string) string { return "idp.token_key_retired:" + uri }

// ensure makes a signing key when there is no active one, and loads the set.
func (t *tokenKeys) ensure(ctx context.Context) error {
	set, err := t.load(ctx, true)
	if err != nil {
		return err
	}
	if set.signing.uri != "" {
		return nil
	}
	if _, err := t.create(ctx); err != nil {
		return err
	}
	_, err = t.load(ctx, true)
	return err
}

func (t *tokenKeys) create(ctx context.Context) (hsm.KeyInfo, error) {
	return t.createAlg(ctx, t.alg)
}

func isRSA(a hsm.Algorithm) bool { return a == hsm.RSA3072 || a == hsm.RSA4096 }

// rs256Suffix ends the label of a key made only for RS256 ID tokens: it never becomes the
// signing key of the configured algorithm.
const rs256Suffix = "-rs256"

func (t *tokenKeys) createAlg(ctx context.Context, alg hsm.Algorithm) (hsm.KeyInfo, error) {
	label := "oidc-token-" + t.now().UTC().Format("20060102-150405.000")
	if alg != t.alg {
		label += rs256Suffix
	}
	k, err := t.keys.CreateKey(ctx, hsm.KeySpec{Label: label, Algorithm: alg, Purpose: hsm.PurposeOIDCToken})
	if err != nil && !errors.Is(err, hsm.ErrConflict) {
		return k, fmt.Errorf("idp: creating the token-signing key: %w", err)
	}
	return k, nil
}

// rotate makes a new signing key with the configured algorithm and retires every other active
// token key (their retirement time recorded first, so the grace runs from then).
func (t *tokenKeys) rotate(ctx context.Context) (hsm.KeyInfo, error) {
	infos, err := t.keys.Keys(ctx)
	if err != nil {
		return hsm.KeyInfo{}, fmt.Errorf("idp: listing token keys: %w", err)
	}
	k, err := t.create(ctx)
	if err != nil {
		return k, err
	}
	at := []byte(t.now().UTC().Format(time.RFC3339Nano))
	for _, o := range infos {
		if o.Purpose != hsm.PurposeOIDCToken || o.State != hsm.StateActive || o.URI == k.URI {
			continue
		}
		if _, err := t.db.PutSettingIfAbsent(ctx, retiredSetting(o.URI), at); err != nil {
			return k, fmt.Errorf("idp: recording the retirement of %s: %w", o.URI, err)
		}
		if err := t.keys.Retire(ctx, o.URI); err != nil {
			return k, fmt.Errorf("idp: retiring %s: %w", o.URI, err)
		}
	}
	_, err = t.load(ctx, true)
	return k, err
}

// published reports whether a retired key is still within its grace.
func (t *tokenKeys) published(ctx context.Context, uri string) (bool, error) {
	now := t.now().UTC()
	v, err := t.db.PutSettingIfAbsent(ctx, retiredSetting(uri), []byte(now.Format(time.RFC3339Nano)))
	if err != nil {
		return false, err
	}
	at, err := time.Parse(time.RFC3339Nano, string(v))
	if err != nil {
		return false, fmt.Errorf("idp: retirement time of %s: %w", uri, err)
	}
	return now.Sub(at) < t.grace, nil
}

// load returns the key set, read again from the key layer when stale or when fresh is asked.
func (t *tokenKeys) load(ctx context.Context, fresh bool) (*keySet, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !fresh && t.cached != nil && t.now().Sub(t.cached.loaded) < keySetTTL {
		return t.cached, nil
	}
	infos, err := t.keys.Keys(ctx)
	if err != nil {
		return nil, fmt.Errorf("idp: listing token keys: %w", err)
	}
	sort.Slice(infos, func(i, j int) bool { return infos[i].Created.After(infos[j].Created) })
	set := &keySet{jwks: jose.JSONWebKeySet{Keys: []jose.JSONWebKey{}}, byKID: map[string]crypto.PublicKey{}, loaded: t.now()}
	for _, k := range infos {
		if k.Purpose != hsm.PurposeOIDCToken || (k.State != hsm.StateActive && k.State != hsm.StateRetired) {
			continue
		}
		if k.State == hsm.StateRetired {
			if ok, err := t.published(ctx, k.URI); err != nil {
				return nil, err
			} else if !ok {
				continue // every token it signed has expired
			}
		}
		pub, err := t.keys.PublicKey(ctx, k.URI)
		if err != nil {
			return nil, err
		}
		// An RSA key signs PS256 tokens (when so configured) and RS256 ID tokens, so its JWK
		// names no single algorithm.
		jwk := jose.JSONWebKey{Key: pub, Algorithm: string(joseAlg(k.Algorithm)), Use: "sig"}
		if isRSA(k.Algorithm) {
			jwk.Algorithm = ""
		}
		tp, err := jwk.Thumbprint(crypto.SHA256)
		if err != nil {
			return nil, err
		}
		jwk.KeyID = base64.RawURLEncoding.EncodeToString(tp) // RFC 7638
		set.jwks.Keys = append(set.jwks.Keys, jwk)
		set.byKID[jwk.KeyID] = pub
		if k.State == hsm.StateActive && set.signing.uri == "" && !strings.HasSuffix(k.Label, rs256Suffix) {
			set.signing = tokenKey{uri: k.URI, kid: jwk.KeyID, alg: joseAlg(k.Algorithm)}
		}
		if k.State == hsm.StateActive && set.rsa.uri == "" && isRSA(k.Algorithm) {
			set.rsa = tokenKey{uri: k.URI, kid: jwk.KeyID, alg: jose.RS256}
		}
	}
	t.cached = set
	return set, nil
}

// JWKS is the published key set.
func (t *tokenKeys) JWKS(ctx context.Context) (jose.JSONWebKeySet, error) {
	set, err := t.load(ctx, false)
	if err != nil {
		return jose.JSONWebKeySet{}, err
	}
	return set.jwks, nil
}

// SigningAlg is the algorithm tokens are signed with now.
func (t *tokenKeys) SigningAlg(ctx context.Context) string {
	set, err := t.load(ctx, false)
	if err != nil || set.signing.uri == "" {
		return string(joseAlg(t.alg))
	}
	return string(set.signing.alg)
}

// algHeader is a header entry that asks Generate for an algorithm other than the configured
// one (fosite's headers drop alg itself); Generate removes it from the token.
const algHeader = "vula-alg"

// Generate signs claims with the current signing key (fosite's jwt.Signer); algHeader RS256 (an
// ID token for a client registered with id_token_signed_response_alg RS256) signs with the
// newest RSA key instead, made on first use.
func (t *tokenKeys) Generate(ctx context.Context, claims fjwt.MapClaims, header fjwt.Mapper) (string, string, error) {
	hdr := header.ToMap()
	wantRS256 := hdr[algHeader] == string(jose.RS256)
	pick := func(set *keySet) tokenKey {
		if wantRS256 {
			return set.rsa
		}
		return set.signing
	}
	set, err := t.load(ctx, false)
	if err != nil {
		return "", "", err
	}
	if pick(set).uri == "" && wantRS256 {
		if _, err := t.createAlg(ctx, hsm.RSA3072); err != nil {
			return "", "", err
		}
		if set, err = t.load(ctx, true); err != nil {
			return "", "", err
		}
	}
	key := pick(set)
	if key.uri == "" {
		return "", "", errors.New("idp: no active token-signing key")
	}
	s, err := t.keys.Signer(ctx, key.uri, hsm.PurposeOIDCToken)
	if errors.Is(err, hsm.ErrKeyNotActive) {
		// Another replica rotated since this one loaded the set.
		if set, err = t.load(ctx, true); err != nil {
			return "", "", err
		}
		if key = pick(set); key.uri == "" {
			return "", "", errors.New("idp: no active token-signing key")
		}
		s, err = t.keys.Signer(ctx, key.uri, hsm.PurposeOIDCToken)
	}
	if err != nil {
		return "", "", err
	}
	if key.alg == jose.ES256 || key.alg == jose.ES384 {
		raw, err := signES(ctx, s, key.kid, claims, hdr)
		if err != nil {
			return "", "", err
		}
		sig, err := t.GetSignature(ctx, raw)
		return raw, sig, err
	}
	tok := fjwt.NewWithClaims(key.alg, claims)
	for k, v := range hdr {
		if k != algHeader {
			tok.Header[k] = v
		}
	}
	tok.Header["kid"] = key.kid
	raw, err := tok.SignedString(&jose.JSONWebKey{Key: cryptosigner.Opaque(s), KeyID: key.kid, Algorithm: string(key.alg)})
	if err != nil {
		// fosite's jwt wraps the signer's error in a ValidationError that does not unwrap:
		// hand on the key layer's own, so that an audit log that is down stays a 503.
		var ve *fjwt.ValidationError
		if errors.As(err, &ve) && ve.Inner != nil {
			err = ve.Inner
		}
		return "", "", err
	}
	sig, err := t.GetSignature(ctx, raw)
	return raw, sig, err
}

// signES is a compact JWS of claims under an ECDSA key, with hdr's entries (not the internal
// alg request) and kid. Through rawsig rather than go-jose: go-jose's JSON encoder, its
// JSONWebSignature object and the cryptosigner wrapper were a tenth of a client_credentials
// token's CPU; Decode (go-jose) reads what this writes.
func signES(ctx context.Context, s crypto.Signer, kid string, claims fjwt.MapClaims, hdr map[string]any) (string, error) {
	h := make(map[string]any, len(hdr)+2)
	for k, v := range hdr {
		if k != algHeader {
			h[k] = v
		}
	}
	h["kid"] = kid
	return rawsig.JWS(ctx, s, h, claims)
}

// Decode parses and verifies a token signed by any published key. A token verified before is
// taken from the cache of verified tokens while its key is still published (see verifiedTokens).
func (t *tokenKeys) Decode(ctx context.Context, raw string) (*fjwt.Token, error) {
	set, err := t.load(ctx, false)
	if err != nil {
		return nil, err
	}
	h := sha256.Sum256([]byte(raw))
	if tok := t.verified.get(h, set, t.now()); tok != nil {
		return tok, nil
	}
	var kid string
	tok, err := fjwt.ParseWithClaims(raw, fjwt.MapClaims{}, func(tok *fjwt.Token) (interface{}, error) {
		kid, _ = tok.Header["kid"].(string)
		pub, ok := set.byKID[kid]
		if !ok {
			return nil, fmt.Errorf("idp: unknown key id %q", kid)
		}
		return pub, nil
	})
	if err == nil {
		t.verified.put(h, tok, kid, t.now())
	}
	return tok, err
}

// verifiedTokens remembers the tokens Decode verified, by the SHA-256 of the whole token, so
// that a bearer token presented again (every call of a sealing or signing client, every
// introspection) is not parsed and its P-256 signature checked again: that was most of a bearer
// check's CPU. Only the signature check is saved: whether the token is still active (not
// revoked, on any replica) is read from the ephemeral store at every use, and its claims'
// times are checked by fosite after Decode. An entry is used only while the key that signed
// the token is in this replica's key set (a key dropped from it stops its tokens at once, as
// without the cache) and until the token's exp; tokens without exp are not kept. At most
// verifiedMax entries: when full, expired ones are dropped, and all of them if none has.
type verifiedTokens struct {
	mu sync.Mutex
	m  map[[sha256.Size]byte]verifiedToken
}

type verifiedToken struct {
	tok   *fjwt.Token
	kid   string
	until time.Time
}

const verifiedMax = 4096

// get returns a copy of the verified token, or nil.
func (v *verifiedTokens) get(h [sha256.Size]byte, set *keySet, now time.Time) *fjwt.Token {
	v.mu.Lock()
	e, ok := v.m[h]
	v.mu.Unlock()
	if !ok || !now.Before(e.until) {
		return nil
	}
	if _, published := set.byKID[e.kid]; !published {
		return nil
	}
	// Callers get their own maps (fosite only reads them; a copy keeps it so).
	c := *e.tok
	c.Header, c.Claims = maps.Clone(e.tok.Header), maps.Clone(e.tok.Claims)
	return &c
}

func (v *verifiedTokens) put(h [sha256.Size]byte, tok *fjwt.Token, kid string, now time.Time) {
	var until time.Time
	switch exp := tok.Claims["exp"].(type) {
	case float64:
		until = time.Unix(int64(exp), 0)
	case int64:
		until = time.Unix(exp, 0)
	default:
		return
	}
	if !now.Before(until) {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.m == nil {
		v.m = map[[sha256.Size]byte]verifiedToken{}
	}
	if len(v.m) >= verifiedMax {
		maps.DeleteFunc(v.m, func(_ [sha256.Size]byte, e verifiedToken) bool { return !now.Before(e.until) })
		if len(v.m) >= verifiedMax {
			clear(v.m)
		}
	}
	c := *tok // the caller keeps its own maps
	c.Header, c.Claims = maps.Clone(tok.Header), maps.Clone(tok.Claims)
	v.m[h] = verifiedToken{tok: &c, kid: kid, until: until}
}

// Validate verifies a token and returns its signature part.
func (t *tokenKeys) Validate(ctx context.Context, raw string) (string, error) {
	if _, err := t.Decode(ctx, raw); err != nil {
		return "", err
	}
	return t.GetSignature(ctx, raw)
}

// GetSignature is the token's third part.
func (t *tokenKeys) GetSignature(ctx context.Context, raw string) (string, error) {
	return (&fjwt.DefaultSigner{}).GetSignature(ctx, raw)
}

// Hash is SHA-256, as fosite's signer uses for at_hash and c_hash.
func (t *tokenKeys) Hash(ctx context.Context, in []byte) ([]byte, error) {
	return (&fjwt.DefaultSigner{}).Hash(ctx, in)
}

// GetSigningMethodLength is SHA-256's size.
func (t *tokenKeys) GetSigningMethodLength(context.Context) int { return fjwt.SHA256HashSize }
