package holder

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v3"
)

// OpenID for Verifiable Presentations 1.0 as the holder answers it: a signed request object
// whose client identifier the x5c leaf proves (x509_san_dns, x509_hash), a DCQL query, and the
// response posted to the verifier's response_uri in the clear (direct_post) or encrypted to its
// key (direct_post.jwt).

// Errors of a presentation.
var (
	ErrRequest  = errors.New("the presentation request")
	ErrNoMatch  = errors.New("no credential in the wallet answers the request")
	ErrDeclined = errors.New("the holder declined to disclose")
)

// Request is a verified authorization request of a verifier.
type Request struct {
	ClientID     string
	ResponseURI  string
	ResponseMode string // direct_post or direct_post.jwt
	Nonce        string
	State        string
	// Verifier is the subject of the certificate that signed the request; Trusted says whether
	// that certificate chains to one of the wallet's anchors (given with --trust).
	Verifier string
	Trusted  bool
	query    dcqlQuery
	metadata clientMetadata
}

type clientMetadata struct {
	JWKS *jose.JSONWebKeySet `json:"jwks"`
	// OpenID4VP 1.0 names the content encryptions; earlier drafts one, as
	// authorization_encrypted_response_enc.
	EncValues []string `json:"encrypted_response_enc_values_supported"`
	LegacyEnc string   `json:"authorization_encrypted_response_enc"`
}

type requestClaims struct {
	ClientID       string          `json:"client_id"`
	ResponseType   string          `json:"response_type"`
	ResponseMode   string          `json:"response_mode"`
	ResponseURI    string          `json:"response_uri"`
	Nonce          string          `json:"nonce"`
	State          string          `json:"state"`
	Exp            int64           `json:"exp"`
	DCQL           json.RawMessage `json:"dcql_query"`
	ClientMetadata clientMetadata  `json:"client_metadata"`
	PresDef        json.RawMessage `json:"presentation_definition"`
}

// ParseRequestURI reads an OpenID4VP request (openid4vp://?client_id=...&request_uri=..., or a
// request by value), fetches the request object, and checks it: its signature by the x5c leaf,
// that the leaf is what the client_id prefix says, that it chains to trust when trust is given.
func (c Client) ParseRequestURI(ctx context.Context, raw string, trust []*x509.Certificate) (*Request, error) {
	if len(raw) > maxRequest {
		return nil, fmt.Errorf("%w: longer than %d bytes", ErrRequest, maxRequest)
	}
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil {
		return nil, fmt.Errorf("%w: not a URI: %v", ErrRequest, err)
	}
	q := u.Query()
	clientID := q.Get("client_id")
	if clientID == "" {
		return nil, fmt.Errorf("%w: no client_id", ErrRequest)
	}
	jwt := q.Get("request")
	if ru := q.Get("request_uri"); ru != "" {
		if jwt != "" {
			return nil, fmt.Errorf("%w: both request and request_uri", ErrRequest)
		}
		if jwt, err = c.fetchRequest(ctx, ru, q.Get("request_uri_method")); err != nil {
			return nil, err
		}
	}
	if jwt == "" {
		return nil, fmt.Errorf("%w: %w: an unsigned request (give request or request_uri)", ErrRequest, ErrUnsupported)
	}
	return parseRequestObject(jwt, clientID, trust, c.now())
}

func (c Client) fetchRequest(ctx context.Context, ru, method string) (string, error) {
	var req *http.Request
	var err error
	switch method {
	case "", "get":
		req, err = http.NewRequestWithContext(ctx, http.MethodGet, ru, nil)
	case "post":
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, ru, strings.NewReader(""))
		if req != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
	default:
		return "", fmt.Errorf("%w: request_uri_method %q", ErrRequest, method)
	}
	if err != nil {
		return "", err
	}
	req.Header.Set("Accept", "application/oauth-authz-req+jwt")
	_, b, err := c.do(req, maxRequest)
	if err != nil {
		return "", fmt.Errorf("%w: request_uri: %v", ErrRequest, err)
	}
	return strings.TrimSpace(string(b)), nil
}

// parseRequestObject checks a request object against the client_id it came with.
func parseRequestObject(jwt, clientID string, trust []*x509.Certificate, now time.Time) (*Request, error) {
	t, err := parseJWT(jwt, maxRequest)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRequest, err)
	}
	if t.typ != "oauth-authz-req+jwt" {
		return nil, fmt.Errorf("%w: typ %q is not oauth-authz-req+jwt", ErrRequest, t.typ)
	}
	if len(t.x5c) == 0 {
		return nil, fmt.Errorf("%w: no x5c in the request object's header", ErrRequest)
	}
	leaf := t.x5c[0]
	prefix, value, _ := strings.Cut(clientID, ":")
	switch prefix {
	case "x509_san_dns":
		if !slices.Contains(leaf.DNSNames, value) {
			return nil, fmt.Errorf("%w: the request's certificate has no DNS name %q (client_id %s)", ErrRequest, value, clientID)
		}
	case "x509_hash":
		h := sha256.Sum256(leaf.Raw)
		if b64.EncodeToString(h[:]) != value {
			return nil, fmt.Errorf("%w: the request's certificate is not the one client_id %s names", ErrRequest, clientID)
		}
	default:
		return nil, fmt.Errorf("%w: %w: client_id prefix %q (this wallet takes x509_san_dns and x509_hash)", ErrRequest, ErrUnsupported, prefix)
	}
	var rc requestClaims
	if err := t.verify(leaf.PublicKey, &rc); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRequest, err)
	}
	r := &Request{ClientID: rc.ClientID, ResponseURI: rc.ResponseURI, ResponseMode: rc.ResponseMode, Nonce: rc.Nonce, State: rc.State,
		Verifier: leaf.Subject.String(), metadata: rc.ClientMetadata}
	if len(trust) > 0 {
		if err := verifyChain(t.x5c, trust, now); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrRequest, err)
		}
		r.Trusted = true
	}
	switch {
	case rc.ClientID != clientID:
		return nil, fmt.Errorf("%w: the request object's client_id %q is not the URI's %q", ErrRequest, rc.ClientID, clientID)
	case rc.ResponseType != "vp_token":
		return nil, fmt.Errorf("%w: response_type %q (want vp_token)", ErrRequest, rc.ResponseType)
	case rc.ResponseMode != "direct_post" && rc.ResponseMode != "direct_post.jwt":
		return nil, fmt.Errorf("%w: %w: response_mode %q (this wallet posts: direct_post, direct_post.jwt)", ErrRequest, ErrUnsupported, rc.ResponseMode)
	case rc.Nonce == "":
		return nil, fmt.Errorf("%w: no nonce", ErrRequest)
	case rc.Exp != 0 && !now.Before(time.Unix(rc.Exp, 0).Add(clockSkew)):
		return nil, fmt.Errorf("%w: the request expired", ErrRequest)
	case len(rc.DCQL) == 0 && len(rc.PresDef) > 0:
		return nil, fmt.Errorf("%w: %w: presentation_definition (this wallet reads DCQL)", ErrRequest, ErrUnsupported)
	case len(rc.DCQL) == 0:
		return nil, fmt.Errorf("%w: no dcql_query", ErrRequest)
	}
	ru, err := checkURL(rc.ResponseURI)
	if err != nil {
		return nil, fmt.Errorf("%w: response_uri: %v", ErrRequest, err)
	}
	// Without a trusted list of verifiers, the response goes only to the host the certificate
	// names (OpenID4VP 1.0 §5.9.3).
	if prefix == "x509_san_dns" && ru.Hostname() != value {
		return nil, fmt.Errorf("%w: response_uri %s is not on %s, the client_id's host", ErrRequest, rc.ResponseURI, value)
	}
	if r.query, err = parseDCQL(rc.DCQL); err != nil {
		return nil, err
	}
	if rc.ResponseMode == "direct_post.jwt" {
		if _, _, err := r.encryptionKey(); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// encryptionKey is the verifier's key for direct_post.jwt and the content encryption to use.
func (r *Request) encryptionKey() (*jose.JSONWebKey, jose.ContentEncryption, error) {
	md := r.metadata
	enc := jose.A128GCM
	offered := md.EncValues
	if len(offered) == 0 && md.LegacyEnc != "" {
		offered = []string{md.LegacyEnc}
	}
	if len(offered) > 0 {
		enc = ""
		for _, e := range offered {
			if e == string(jose.A128GCM) || e == string(jose.A256GCM) {
				enc = jose.ContentEncryption(e)
				break
			}
		}
		if enc == "" {
			return nil, "", fmt.Errorf("%w: %w: none of the content encryptions %v", ErrRequest, ErrUnsupported, offered)
		}
	}
	if md.JWKS == nil {
		return nil, "", fmt.Errorf("%w: direct_post.jwt without client_metadata.jwks", ErrRequest)
	}
	for i, k := range md.JWKS.Keys {
		if _, ok := k.Key.(*ecdsa.PublicKey); ok && (k.Use == "" || k.Use == "enc") && (k.Algorithm == "" || k.Algorithm == string(jose.ECDH_ES)) {
			return &md.JWKS.Keys[i], enc, nil
		}
	}
	return nil, "", fmt.Errorf("%w: no EC key for ECDH-ES in client_metadata.jwks", ErrRequest)
}

// Match is a credential the wallet would present for one credential query, and the claims the
// query asks of it.
type Match struct {
	QueryID    string
	Credential Credential
	Claims     [][]any // claim paths, as the query names them
	sd         *sdJWT
	md         *issuedMdoc
}

// ClaimNames are the asked claims as dotted paths (null, an array's every element, as *).
func (m Match) ClaimNames() []string {
	out := make([]string, len(m.Claims))
	for i, p := range m.Claims {
		out[i] = pathName(p)
	}
	return out
}

func pathName(p []any) string {
	parts := make([]string, len(p))
	for i, e := range p {
		if e == nil {
			parts[i] = "*"
		} else {
			parts[i] = fmt.Sprint(e)
		}
	}
	return strings.Join(parts, ".")
}

// Match finds, for the request's DCQL query, the credentials to present: the first that fits
// each credential query the credential sets require (all queries, without sets). A credential
// that no longer verifies, has expired, or that its status list says is revoked or suspended is
// not offered (one whose status cannot be read is).
func (c Client) Match(ctx context.Context, r *Request, w *Wallet) ([]Match, error) {
	anchors := w.Trust()
	now := c.now()
	found := map[string]*Match{}
	cache := map[string]*statusList{}
	for _, cq := range r.query.Credentials {
		for _, cr := range w.Credentials() {
			m := cq.match(cr, anchors, now)
			if m == nil {
				continue
			}
			var ref *statusRef
			if m.sd != nil {
				ref = m.sd.status
			} else {
				ref = m.md.statusRef()
			}
			if ref != nil {
				if s, err := c.status(ctx, ref, anchors, cache); err == nil && s != StatusValid {
					continue
				}
			}
			found[cq.ID] = m
			break
		}
	}
	var ids []string
	if len(r.query.Sets) == 0 {
		for _, cq := range r.query.Credentials {
			if found[cq.ID] == nil {
				return nil, fmt.Errorf("%w: nothing answers credential query %q", ErrNoMatch, cq.ID)
			}
			ids = append(ids, cq.ID)
		}
	} else {
		for i, s := range r.query.Sets {
			var chosen []string
			for _, opt := range s.Options {
				if !slices.ContainsFunc(opt, func(id string) bool { return found[id] == nil }) {
					chosen = opt
					break
				}
			}
			if chosen == nil && (s.Required == nil || *s.Required) {
				return nil, fmt.Errorf("%w: no option of credential set %d", ErrNoMatch, i)
			}
			for _, id := range chosen {
				if !slices.Contains(ids, id) {
					ids = append(ids, id)
				}
			}
		}
	}
	out := make([]Match, 0, len(ids))
	for _, id := range ids {
		out = append(out, *found[id])
	}
	return out, nil
}

// Response is the verifier's answer to a posted presentation.
type Response struct {
	Status      int
	Body        json.RawMessage
	RedirectURI string
}

// Present answers r with the matches, each disclosing only the claims at the paths in
// disclose[i] (a subset of matches[i].Claims), bound to the request's client_id and nonce, and
// posts the answer to the verifier.
func (c Client) Present(ctx context.Context, w *Wallet, r *Request, matches []Match, disclose [][][]any) (*Response, error) {
	if len(matches) != len(disclose) {
		return nil, errors.New("holder: one disclosure list per match")
	}
	var encKey *jose.JSONWebKey
	var enc jose.ContentEncryption
	if r.ResponseMode == "direct_post.jwt" {
		var err error
		if encKey, enc, err = r.encryptionKey(); err != nil {
			return nil, err
		}
	}
	vp := map[string][]string{}
	for i, m := range matches {
		key, err := w.Key(m.Credential.KeyID)
		if err != nil {
			return nil, err
		}
		var p string
		switch {
		case m.sd != nil:
			p, err = c.presentSDJWT(m.sd, key, r, disclose[i])
		case m.md != nil:
			p, err = presentMdoc(m.md, key, r, encKey, disclose[i])
		}
		if err != nil {
			return nil, err
		}
		vp[m.QueryID] = append(vp[m.QueryID], p)
	}
	form := url.Values{}
	if encKey != nil {
		payload := map[string]any{"vp_token": vp}
		if r.State != "" {
			payload["state"] = r.State
		}
		jwe, err := encrypt(encKey, enc, payload)
		if err != nil {
			return nil, err
		}
		form.Set("response", jwe)
	} else {
		b, err := json.Marshal(vp)
		if err != nil {
			return nil, err
		}
		form.Set("vp_token", string(b))
		if r.State != "" {
			form.Set("state", r.State)
		}
	}
	resp, b, err := c.postForm(ctx, r.ResponseURI, form, http.Header{"Accept": {"application/json"}}, maxJSON)
	if err != nil {
		var he *httpError
		if errors.As(err, &he) && resp != nil {
			return &Response{Status: resp.StatusCode, Body: jsonOrString(b)}, fmt.Errorf("the verifier refused the presentation: %w", err)
		}
		return nil, err
	}
	out := &Response{Status: resp.StatusCode, Body: jsonOrString(b)}
	var ans struct {
		RedirectURI string `json:"redirect_uri"`
	}
	if json.Unmarshal(b, &ans) == nil {
		out.RedirectURI = ans.RedirectURI
	}
	return out, nil
}

func jsonOrString(b []byte) json.RawMessage {
	if len(b) == 0 {
		return nil
	}
	if json.Valid(b) {
		return b
	}
	s, _ := json.Marshal(string(b))
	return s
}

// presentSDJWT is the SD-JWT with the chosen disclosures and a key-binding JWT (RFC 9901 §4.3)
// for the verifier: aud its client_id, its nonce, now, and the hash of what precedes it.
func (c Client) presentSDJWT(t *sdJWT, key *ecdsa.PrivateKey, r *Request, paths [][]any) (string, error) {
	sd := t.present(paths)
	kb, err := signJWT(key, typKB, false, nil, map[string]any{
		"iat": c.now().Unix(), "aud": r.ClientID, "nonce": r.Nonce, "sd_hash": sdDigest(sd),
	})
	if err != nil {
		return "", err
	}
	return sd + kb, nil
}

// encrypt makes the direct_post.jwt response: a JWE (ECDH-ES, enc) to the verifier's key.
func encrypt(key *jose.JSONWebKey, enc jose.ContentEncryption, payload any) (string, error) {
	e, err := jose.NewEncrypter(enc, jose.Recipient{Algorithm: jose.ECDH_ES, Key: key.Key, KeyID: key.KeyID}, nil)
	if err != nil {
		return "", err
	}
	b, err := json.Marshal(payload)
	if err != nil {
		return "", err
	}
	obj, err := e.Encrypt(b)
	if err != nil {
		return "", err
	}
	return obj.CompactSerialize()
}
