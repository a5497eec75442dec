package holder

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v3"
)

var b64 = base64.RawURLEncoding

// Errors of what the wallet receives.
var (
	ErrUntrusted = errors.New("the signer's certificate chain does not end at a trust anchor of the wallet")
	ErrInvalid   = errors.New("invalid")
)

// sigAlgs are the JWS algorithms the wallet verifies (none and HMAC never).
var sigAlgs = []string{"ES256", "ES384", "ES512", "PS256", "PS384", "PS512", "RS256", "EdDSA"}

// thumbprint is the RFC 7638 SHA-256 thumbprint of a public key, base64url.
func thumbprint(pub crypto.PublicKey) (string, error) {
	t, err := (&jose.JSONWebKey{Key: pub}).Thumbprint(crypto.SHA256)
	if err != nil {
		return "", err
	}
	return b64.EncodeToString(t), nil
}

// signJWT signs claims with key as ES256, with typ and, when embed, the public key as jwk.
func signJWT(key *ecdsa.PrivateKey, typ string, embed bool, extra map[jose.HeaderKey]any, claims any) (string, error) {
	opts := (&jose.SignerOptions{EmbedJWK: embed}).WithType(jose.ContentType(typ))
	for k, v := range extra {
		opts = opts.WithHeader(k, v)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, opts)
	if err != nil {
		return "", err
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	jws, err := s.Sign(payload)
	if err != nil {
		return "", err
	}
	return jws.CompactSerialize()
}

// signedJWT is a compact JWS, parsed but not yet verified.
type signedJWT struct {
	jws    *jose.JSONWebSignature
	header jose.Header
	typ    string
	x5c    []*x509.Certificate
}

// parseJWT parses a compact JWS of at most limit bytes with one signature of an accepted
// algorithm, and its x5c header when there is one.
func parseJWT(s string, limit int) (*signedJWT, error) {
	if len(s) > limit {
		return nil, fmt.Errorf("%w: a JWT larger than %d bytes", ErrInvalid, limit)
	}
	jws, err := jose.ParseSigned(s)
	if err != nil {
		return nil, fmt.Errorf("%w: not a compact JWS: %v", ErrInvalid, err)
	}
	if len(jws.Signatures) != 1 {
		return nil, fmt.Errorf("%w: not one signature", ErrInvalid)
	}
	h := jws.Signatures[0].Protected
	if !slices.Contains(sigAlgs, h.Algorithm) {
		return nil, fmt.Errorf("%w: alg %q is not accepted", ErrInvalid, h.Algorithm)
	}
	t := &signedJWT{jws: jws, header: h}
	t.typ, _ = h.ExtraHeaders[jose.HeaderType].(string)
	// go-jose keeps x5c to itself: read it from the protected header.
	seg, _, _ := strings.Cut(s, ".")
	hb, err := b64.DecodeString(seg)
	if err != nil {
		return nil, fmt.Errorf("%w: the header is not base64url", ErrInvalid)
	}
	var hdr struct {
		X5C []string `json:"x5c"`
	}
	if err := json.Unmarshal(hb, &hdr); err != nil {
		return nil, fmt.Errorf("%w: x5c is not an array of strings", ErrInvalid)
	}
	if len(hdr.X5C) > 8 {
		return nil, fmt.Errorf("%w: more than 8 certificates in x5c", ErrInvalid)
	}
	for _, str := range hdr.X5C {
		der, err := base64.StdEncoding.DecodeString(str)
		if err != nil {
			return nil, fmt.Errorf("%w: an x5c entry is not base64", ErrInvalid)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("%w: an x5c entry is not a certificate: %v", ErrInvalid, err)
		}
		t.x5c = append(t.x5c, c)
	}
	return t, nil
}

// verify checks the signature with pub and decodes the claims into v.
func (t *signedJWT) verify(pub crypto.PublicKey, v any) error {
	payload, err := t.jws.Verify(pub)
	if err != nil {
		return fmt.Errorf("%w: the signature does not verify", ErrInvalid)
	}
	if err := json.Unmarshal(payload, v); err != nil {
		return fmt.Errorf("%w: the claims are not the JSON object expected: %v", ErrInvalid, err)
	}
	return nil
}

// verifyChain checks that chain[0] chains, through the rest of chain, to one of the anchors at
// time at. The chain may end below the anchor (which is then left out, as HAIP sends it) or
// include it.
func verifyChain(chain []*x509.Certificate, anchors []*x509.Certificate, at time.Time) error {
	if len(chain) == 0 {
		return fmt.Errorf("%w: no certificate chain (x5c) to check", ErrUntrusted)
	}
	if len(anchors) == 0 {
		return fmt.Errorf("%w: the wallet has no trust anchors (give --trust)", ErrUntrusted)
	}
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	for _, a := range anchors {
		roots.AddCert(a)
	}
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, err := chain[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: at,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrUntrusted, chain[0].Subject, err)
	}
	return nil
}
