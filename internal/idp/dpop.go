package idp

import (
	"context"
	"crypto"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v3"
	"github.com/go-jose/go-jose/v3/jwt"
	"github.com/ory/fosite"

	"github.com/vula-eid/vula/internal/auth"
	"github.com/vula-eid/vula/internal/store"
)

// DPoP: sender-constrained tokens (RFC 9449).
//
// A client that sends a DPoP proof to the token endpoint gets an access token bound to the
// proof's key (cnf.jkt, token_type DPoP); every API then wants the token as "DPoP <token>" with
// a fresh proof of the same key over that request (ath the token's hash). A public client's
// refresh token is bound too. PAR and the authorization endpoint take dpop_jkt (or a proof at
// PAR), and the code is then redeemable only with that key. Proof jtis are remembered in the
// ephemeral store until the proof is too old to be accepted, so a proof is used once.
//
// The authorization server requires a server nonce in proofs (§8): it answers a proof without
// one, or with a stale one, with use_dpop_nonce and a DPoP-Nonce header. A nonce is a time
// window MACed with the provider's shared secret, so any replica accepts any replica's nonce
// without shared state; the current and the previous window are accepted.

// dpopAlgs are the proof algorithms accepted.
var dpopAlgs = auth.DPoPAlgs

const (
	dpopScheme = auth.DPoPScheme
	// dpopMaxAge is how old a proof's iat may be, dpopLeeway how far in the future.
	dpopMaxAge = 5 * time.Minute
	dpopLeeway = 30 * time.Second
	// nonceWindow is how long one server nonce lives (it is accepted for up to twice that).
	nonceWindow = 5 * time.Minute
)

// errDPoP is RFC 9449 §7.1's invalid_dpop_proof (400 at the authorization server).
func errDPoP(hint string) *fosite.RFC6749Error {
	return &fosite.RFC6749Error{ErrorField: "invalid_dpop_proof", CodeField: http.StatusBadRequest,
		DescriptionField: "The DPoP proof is invalid.", HintField: hint}
}

// errUseNonce asks the client to send its proof again with the nonce in DPoP-Nonce (§8).
func errUseNonce() *fosite.RFC6749Error {
	return &fosite.RFC6749Error{ErrorField: "use_dpop_nonce", CodeField: http.StatusBadRequest,
		DescriptionField: "Authorization server requires nonce in DPoP proof."}
}

// dpopProof is a checked proof: the thumbprint of its key (RFC 7638, base64url).
type dpopProof struct {
	JKT string
}

// dpopCheck is what a proof must match.
type dpopCheck struct {
	method, url string
	token       string // the access token, for ath (resource requests); "" at the server
	nonce       bool   // a server nonce is required
}

// proof reads and checks r's DPoP header; nil without one.
func (p *Provider) proof(ctx context.Context, r *http.Request, want dpopCheck) (*dpopProof, error) {
	vals := r.Header.Values("DPoP")
	if len(vals) == 0 {
		return nil, nil
	}
	if len(vals) > 1 {
		return nil, errDPoP("More than one DPoP header.")
	}
	tok, err := jwt.ParseSigned(vals[0])
	if err != nil || len(tok.Headers) != 1 {
		return nil, errDPoP("The DPoP proof is not a signed JWT.")
	}
	h := tok.Headers[0]
	if typ, _ := h.ExtraHeaders[jose.HeaderType].(string); typ != "dpop+jwt" {
		return nil, errDPoP("typ must be dpop+jwt.")
	}
	if !slices.Contains(dpopAlgs, h.Algorithm) {
		return nil, errDPoP("alg must be one of " + strings.Join(dpopAlgs, ", ") + ".")
	}
	if h.JSONWebKey == nil || !h.JSONWebKey.Valid() || !h.JSONWebKey.IsPublic() {
		return nil, errDPoP("jwk must be a public key.")
	}
	var claims struct {
		jwt.Claims
		HTM   string `json:"htm"`
		HTU   string `json:"htu"`
		ATH   string `json:"ath"`
		Nonce string `json:"nonce"`
	}
	if err := tok.Claims(h.JSONWebKey.Key, &claims); err != nil {
		return nil, errDPoP("The proof's signature does not verify with its jwk.")
	}
	now := p.now()
	switch {
	case claims.ID == "":
		return nil, errDPoP("jti is missing.")
	case claims.HTM != want.method:
		return nil, errDPoP("htm is not this request's method.")
	case !sameHTU(claims.HTU, want.url):
		return nil, errDPoP("htu is not this request's URL.")
	case claims.IssuedAt == nil || claims.IssuedAt.Time().Before(now.Add(-dpopMaxAge)) || claims.IssuedAt.Time().After(now.Add(dpopLeeway)):
		return nil, errDPoP("iat is missing or not recent.")
	}
	if want.token != "" {
		sum := sha256.Sum256([]byte(want.token))
		if subtle.ConstantTimeCompare([]byte(claims.ATH), []byte(base64.RawURLEncoding.EncodeToString(sum[:]))) != 1 {
			return nil, errDPoP("ath is not the hash of the access token.")
		}
	}
	if want.nonce && !p.validNonce(claims.Nonce) {
		return nil, errUseNonce()
	}
	tp, err := h.JSONWebKey.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, errDPoP("The jwk has no thumbprint.")
	}
	jkt := base64.RawURLEncoding.EncodeToString(tp)
	first, err := p.eph.SeenOnce(ctx, "idp:dpop:"+jkt+":"+claims.ID, dpopMaxAge+dpopLeeway)
	if err != nil {
		return nil, err
	}
	if !first {
		return nil, errDPoP("This proof was used before.")
	}
	return &dpopProof{JKT: jkt}, nil
}

// sameHTU compares htu with the request's URL, ignoring query and fragment (§4.3) and the
// case of scheme and host.
func sameHTU(htu, want string) bool {
	a, err1 := url.Parse(htu)
	b, err2 := url.Parse(want)
	return err1 == nil && err2 == nil && strings.EqualFold(a.Scheme, b.Scheme) && strings.EqualFold(a.Host, b.Host) &&
		a.EscapedPath() == b.EscapedPath()
}

// offerNonce gives a client that sends DPoP proofs the current nonce (§8); others need none,
// so the token path of a plain client computes no MAC.
func (p *Provider) offerNonce(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("DPoP") != "" {
		w.Header().Set("DPoP-Nonce", p.nonce())
	}
}

// nonce is the current server nonce.
func (p *Provider) nonce() string { return p.nonceAt(p.now().Unix() / int64(nonceWindow.Seconds())) }

func (p *Provider) nonceAt(window int64) string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(window))
	m := hmac.New(sha256.New, p.st.cfg.GlobalSecret)
	m.Write([]byte("vula dpop nonce\x00"))
	m.Write(b[:])
	return base64.RawURLEncoding.EncodeToString(append(b[:], m.Sum(nil)[:16]...))
}

func (p *Provider) validNonce(n string) bool {
	w := p.now().Unix() / int64(nonceWindow.Seconds())
	return n != "" && (hmac.Equal([]byte(n), []byte(p.nonceAt(w))) || hmac.Equal([]byte(n), []byte(p.nonceAt(w-1))))
}

// endpointURL is the URL a proof sent to this server's path names: the issuer's, since behind a
// proxy the request's own host is not the public one.
func (p *Provider) endpointURL(r *http.Request) string { return p.cfg.Issuer + r.URL.Path }

// accessToken reads the access token of a request to an API (auth.Token).
func accessToken(r *http.Request) (scheme, token string) { return auth.Token(r) }

// checkBinding checks that a request to an API presents the token the way it was issued: a
// DPoP-bound token with the DPoP scheme and a proof by its key; a plain one as Bearer.
func (p *Provider) checkBinding(r *http.Request, scheme, token string, sess *Session) error {
	if sess.DPoPJKT == "" {
		if scheme != "Bearer" {
			return ErrTokenInvalid // the DPoP scheme for a token that is not bound
		}
		return nil
	}
	if scheme != dpopScheme {
		return ErrTokenInvalid // a bound token sent as a bearer token (RFC 9449 §7.1)
	}
	pr, err := p.proof(r.Context(), r, dpopCheck{method: r.Method, url: p.endpointURL(r), token: token})
	if err != nil {
		if errors.Is(err, store.ErrUnavailable) || isUnavailable(err) {
			return err
		}
		return ErrDPoPProof
	}
	if pr == nil || pr.JKT != sess.DPoPJKT {
		return ErrDPoPProof
	}
	return nil
}

// dpopChallenge is auth's challenge for a DPoP error at an API.
func dpopChallenge(errCode string) string { return auth.DPoPChallenge(errCode) }

// parProof reads a DPoP proof sent to PAR (§10.1): its key becomes the request's dpop_jkt, so
// the code can be redeemed only with it. A dpop_jkt beside the proof must name the same key.
func (p *Provider) parProof(w http.ResponseWriter, r *http.Request) error {
	p.offerNonce(w, r)
	pr, err := p.proof(r.Context(), r, dpopCheck{method: http.MethodPost, url: p.endpointURL(r), nonce: true})
	if err != nil || pr == nil {
		return err
	}
	if jkt := r.Form.Get("dpop_jkt"); jkt != "" && jkt != pr.JKT {
		return errDPoP("dpop_jkt is not the thumbprint of the proof's key.")
	}
	r.Form.Set("dpop_jkt", pr.JKT)
	if r.PostForm != nil {
		r.PostForm.Set("dpop_jkt", pr.JKT)
	}
	return nil
}

// checkDPoPJKT checks that a dpop_jkt parameter is a SHA-256 JWK thumbprint (43 base64url
// characters).
func checkDPoPJKT(ar fosite.AuthorizeRequester) error {
	jkt := ar.GetRequestForm().Get("dpop_jkt")
	if jkt == "" {
		return nil
	}
	if b, err := base64.RawURLEncoding.DecodeString(jkt); err != nil || len(b) != sha256.Size {
		return fosite.ErrInvalidRequest.WithHint("dpop_jkt must be a base64url SHA-256 JWK thumbprint (RFC 9449 §10).")
	}
	return nil
}
