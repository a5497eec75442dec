package idp

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"net/http"
	"time"

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

// proof reads and checks r's DPoP header (auth.CheckDPoP); nil without one.
func (p *Provider) proof(ctx context.Context, r *http.Request, want dpopCheck) (*dpopProof, error) {
	w := auth.DPoPWant{Method: want.method, URL: want.url, Token: want.token, ReplayPrefix: "idp:dpop:"}
	if want.nonce {
		w.Nonce = func(_ context.Context, n string) (bool, error) { return p.validNonce(n), nil }
	}
	jkt, err := auth.CheckDPoP(ctx, r, w, p.eph, p.now())
	var bad *auth.DPoPError
	switch {
	case errors.As(err, &bad):
		return nil, errDPoP(bad.Hint)
	case errors.Is(err, auth.ErrUseDPoPNonce):
		return nil, errUseNonce()
	case err != nil:
		return nil, err
	case jkt == "":
		return nil, nil
	}
	return &dpopProof{JKT: jkt}, nil
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
