package idp

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v3/jwt"
	"github.com/ory/fosite"
)

// JWT-secured authorization requests (RFC 9101), at the authorization endpoint and at PAR.
//
// Vula reads request objects itself, before fosite sees the request, and fosite's own handling
// is never reached: it accepts alg none, fetches any request_uri the client registered (a
// server-side request to wherever the client points), checks neither iss nor aud, and turns
// JSON values such as claims or authorization_details into Go's %s of a map.
//
// A request object must be signed (never none) by a key the client registered, with an
// algorithm of requestObjectAlgs (or the one the client is pinned to), its iss the client, its
// aud this issuer; only its parameters count (§6.3), the query's are dropped. request_uri is
// accepted only as a PAR reference.

// requestObjectMaxLife bounds exp - now, as FAPI 2.0 asks (at most 60 minutes).
const requestObjectMaxLife = time.Hour

// formOnly are the parameters kept from the outer request beside a request object: the client
// and, at PAR, its authentication.
var formOnly = []string{"client_id", "client_assertion", "client_assertion_type"}

// requestObject replaces r's parameters with those of its request object, if it has one. On an
// error it leaves r's parameters without the request object, so that fosite can still check
// the client and redirect URI and send the error back to a registered redirect URI.
func (p *Provider) requestObject(r *http.Request, pushed bool) error {
	if err := r.ParseForm(); err != nil {
		return fosite.ErrInvalidRequest.WithHint("The request's parameters cannot be read.")
	}
	if uri := r.Form.Get("request_uri"); uri != "" {
		if pushed {
			return fosite.ErrInvalidRequest.WithHint("request_uri cannot be pushed (RFC 9126 §2.1).")
		}
		if !strings.HasPrefix(uri, parPrefix) {
			r.Form.Del("request_uri")
			return fosite.ErrRequestURINotSupported.WithHint("request_uri is accepted only as returned by the pushed authorization request endpoint.")
		}
		return nil
	}
	raw := r.Form.Get("request")
	if raw == "" {
		return nil
	}
	drop := func() {
		r.Form.Del("request")
		if r.PostForm != nil {
			r.PostForm.Del("request")
		}
	}
	params, err := p.verifyRequestObject(r.Context(), r.Form.Get("client_id"), raw)
	if err != nil {
		drop()
		return err
	}
	for _, k := range formOnly {
		if v := r.Form.Get(k); v != "" {
			params.Set(k, v)
		}
	}
	r.Form = params
	if r.Method == http.MethodPost {
		r.PostForm = params
	}
	return nil
}

// verifyRequestObject checks raw, the request object of client id, and returns its
// parameters as a form.
func (p *Provider) verifyRequestObject(ctx context.Context, id, raw string) (url.Values, error) {
	bad := func(hint string) error { return fosite.ErrInvalidRequestObject.WithHint(hint) }
	if id == "" {
		return nil, fosite.ErrInvalidRequest.WithHint("client_id must be sent beside a request object (RFC 9101 §5).")
	}
	c, err := p.lookupClient(ctx, id)
	if err != nil {
		return nil, err
	}
	if strings.Count(raw, ".") == 4 {
		return nil, bad("Encrypted request objects are not supported.")
	}
	tok, err := jwt.ParseSigned(raw)
	if err != nil || len(tok.Headers) != 1 {
		return nil, bad("The request object is not a signed JWT.")
	}
	alg := tok.Headers[0].Algorithm
	if !slices.Contains(requestObjectAlgs, alg) {
		return nil, bad("The request object must be signed with one of " + strings.Join(requestObjectAlgs, ", ") + ".")
	}
	if pinned := c.rec.Policy.RequestObjectAlg; pinned != "" && alg != pinned {
		return nil, bad("This client's request objects must be signed with " + pinned + ".")
	}
	var claims map[string]any
	if err := p.verifyClientJWT(ctx, c, tok, &claims); err != nil {
		if isUnavailable(err) {
			return nil, err
		}
		return nil, bad("The request object is not signed by a key the client registered.")
	}
	var std jwt.Claims
	b, _ := json.Marshal(claims)
	if err := json.Unmarshal(b, &std); err != nil {
		return nil, bad("The request object's registered claims are malformed.")
	}
	if std.Issuer != id {
		return nil, bad("The request object's iss must be the client_id.")
	}
	if !slices.ContainsFunc(std.Audience, func(a string) bool { return a == p.cfg.Issuer || a == p.cfg.Issuer+"/" }) {
		return nil, bad("The request object's aud must be the issuer.")
	}
	now := p.now()
	if err := std.ValidateWithLeeway(jwt.Expected{Time: now}, assertionLeeway); err != nil {
		return nil, bad("The request object is expired or not yet valid.")
	}
	if std.Expiry != nil && std.Expiry.Time().After(now.Add(requestObjectMaxLife)) {
		return nil, bad("The request object's exp is more than an hour away.")
	}
	if cid, ok := claims["client_id"]; ok && cid != id {
		return nil, bad("The request object's client_id is another client's.")
	}
	params := url.Values{}
	for k, v := range claims {
		switch k {
		case "iss", "aud", "exp", "iat", "nbf", "jti", "sub":
			continue // the object's own claims, not request parameters
		case "request", "request_uri":
			return nil, bad("A request object cannot hold request or request_uri (RFC 9101 §4).")
		}
		s, err := paramValue(v)
		if err != nil {
			return nil, bad("The request object's " + k + " cannot be a request parameter.")
		}
		params.Set(k, s)
	}
	return params, nil
}

// paramValue is a request object claim as the request parameter it stands for: strings as
// they are, numbers and booleans in their JSON form, objects and arrays (claims,
// authorization_details) as JSON text.
func paramValue(v any) (string, error) {
	switch v := v.(type) {
	case string:
		return v, nil
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64), nil
	case bool:
		return strconv.FormatBool(v), nil
	case nil:
		return "", errors.New("null")
	default:
		b, err := json.Marshal(v)
		return string(b), err
	}
}
