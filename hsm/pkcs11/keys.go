package pkcs11

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/asn1"
	"fmt"
	"io"
	"math/big"
	"strings"

	p11 "github.com/miekg/pkcs11"
	"go.step.sm/crypto/kms/uri"

	"github.com/vula-eid/vula/hsm"
)

var curveOIDs = map[hsm.Algorithm]asn1.ObjectIdentifier{
	hsm.ECP256: {1, 2, 840, 10045, 3, 1, 7},
	hsm.ECP384: {1, 3, 132, 0, 34},
}

// keyTemplates are the attributes of a new key pair: the private key sensitive, never
// extractable and good only for signing (SoftHSM2 would otherwise allow decrypt, unwrap, derive).
func keyTemplates(alg hsm.Algorithm, label string, id []byte) (pub, priv []*p11.Attribute, mech []*p11.Mechanism, err error) {
	pub = []*p11.Attribute{
		p11.NewAttribute(p11.CKA_CLASS, p11.CKO_PUBLIC_KEY),
		p11.NewAttribute(p11.CKA_TOKEN, true),
		p11.NewAttribute(p11.CKA_PRIVATE, false),
		p11.NewAttribute(p11.CKA_VERIFY, true),
		p11.NewAttribute(p11.CKA_ENCRYPT, false),
		p11.NewAttribute(p11.CKA_WRAP, false),
		p11.NewAttribute(p11.CKA_LABEL, label),
		p11.NewAttribute(p11.CKA_ID, id),
	}
	priv = []*p11.Attribute{
		p11.NewAttribute(p11.CKA_CLASS, p11.CKO_PRIVATE_KEY),
		p11.NewAttribute(p11.CKA_TOKEN, true),
		p11.NewAttribute(p11.CKA_PRIVATE, true),
		p11.NewAttribute(p11.CKA_SENSITIVE, true),
		p11.NewAttribute(p11.CKA_EXTRACTABLE, false),
		p11.NewAttribute(p11.CKA_SIGN, true),
		p11.NewAttribute(p11.CKA_DECRYPT, false),
		p11.NewAttribute(p11.CKA_UNWRAP, false),
		p11.NewAttribute(p11.CKA_DERIVE, false),
		p11.NewAttribute(p11.CKA_LABEL, label),
		p11.NewAttribute(p11.CKA_ID, id),
	}
	switch alg {
	case hsm.ECP256, hsm.ECP384:
		params, _ := asn1.Marshal(curveOIDs[alg])
		pub = append(pub, p11.NewAttribute(p11.CKA_KEY_TYPE, p11.CKK_EC), p11.NewAttribute(p11.CKA_EC_PARAMS, params))
		priv = append(priv, p11.NewAttribute(p11.CKA_KEY_TYPE, p11.CKK_EC))
		mech = []*p11.Mechanism{p11.NewMechanism(p11.CKM_EC_KEY_PAIR_GEN, nil)}
	case hsm.RSA3072, hsm.RSA4096:
		bits := 3072
		if alg == hsm.RSA4096 {
			bits = 4096
		}
		pub = append(pub, p11.NewAttribute(p11.CKA_KEY_TYPE, p11.CKK_RSA), p11.NewAttribute(p11.CKA_MODULUS_BITS, bits),
			p11.NewAttribute(p11.CKA_PUBLIC_EXPONENT, []byte{1, 0, 1}))
		priv = append(priv, p11.NewAttribute(p11.CKA_KEY_TYPE, p11.CKK_RSA))
		mech = []*p11.Mechanism{p11.NewMechanism(p11.CKM_RSA_PKCS_KEY_PAIR_GEN, nil)}
	default:
		err = fmt.Errorf("%w: algorithm %q", hsm.ErrInvalid, alg)
	}
	return pub, priv, mech, err
}

// publicKey reads a public key object into a Go public key.
func (m *Manager) publicKey(s p11.SessionHandle, h p11.ObjectHandle, alg hsm.Algorithm) (crypto.PublicKey, error) {
	c := m.mod.ctx
	if alg.IsRSA() {
		attrs, err := c.GetAttributeValue(s, h, []*p11.Attribute{
			p11.NewAttribute(p11.CKA_MODULUS, nil), p11.NewAttribute(p11.CKA_PUBLIC_EXPONENT, nil)})
		if err != nil {
			return nil, err
		}
		e := new(big.Int).SetBytes(attrs[1].Value)
		if !e.IsInt64() || e.Int64() > 1<<31 {
			return nil, fmt.Errorf("%w: RSA public exponent too large", hsm.ErrKeystore)
		}
		return &rsa.PublicKey{N: new(big.Int).SetBytes(attrs[0].Value), E: int(e.Int64())}, nil
	}
	attrs, err := c.GetAttributeValue(s, h, []*p11.Attribute{p11.NewAttribute(p11.CKA_EC_POINT, nil)})
	if err != nil {
		return nil, err
	}
	// CKA_EC_POINT is the uncompressed point wrapped in a DER OCTET STRING.
	var point []byte
	if rest, err := asn1.Unmarshal(attrs[0].Value, &point); err != nil || len(rest) != 0 {
		point = attrs[0].Value // some tokens give the raw point
	}
	curve := elliptic.P256()
	if alg == hsm.ECP384 {
		curve = elliptic.P384()
	}
	pub, err := ecdsa.ParseUncompressedPublicKey(curve, point) // checks the point is on the curve
	if err != nil {
		return nil, fmt.Errorf("%w: bad EC point: %v", hsm.ErrKeystore, err)
	}
	return pub, nil
}

// formatURI writes an RFC 7512 URI for a private key.
func formatURI(token, label string) string {
	return "pkcs11:token=" + escape(token) + ";object=" + escape(label) + ";type=private"
}

// escape percent-encodes everything but RFC 7512's unreserved characters.
func escape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~", c) >= 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// parseURI returns the object label of a pkcs11: URI on token. Attributes other than token,
// object, type (private) and id, and repeated attributes, are refused rather than ignored.
// The query part (pin-value, module-path) is ignored: the PIN and the module come from the
// configuration, never from a key's name.
func parseURI(raw, token string) (string, error) {
	u, err := uri.ParseWithScheme("pkcs11", raw)
	if err != nil {
		return "", fmt.Errorf("%w: not a pkcs11: URI: %q", hsm.ErrInvalid, raw)
	}
	for k, vs := range u.Values {
		switch k {
		case "token", "object", "type", "id":
		default:
			return "", fmt.Errorf("%w: pkcs11 URI attribute %q not supported", hsm.ErrInvalid, k)
		}
		if len(vs) > 1 {
			return "", fmt.Errorf("%w: pkcs11 URI attribute %q given twice", hsm.ErrInvalid, k)
		}
	}
	if typ := u.Values.Get("type"); u.Values.Has("type") && typ != "private" {
		return "", fmt.Errorf("%w: pkcs11 URI names a %s object, not a private key", hsm.ErrInvalid, typ)
	}
	label := u.Values.Get("object")
	if label == "" {
		return "", fmt.Errorf("%w: pkcs11 URI without object=", hsm.ErrInvalid)
	}
	if tok := u.Values.Get("token"); tok != "" && tok != token {
		return "", fmt.Errorf("%w: key on token %q, this backend serves %q", hsm.ErrNotFound, tok, token)
	}
	return label, nil
}

// signer signs with one key: ECDSA as ASN.1 DER, RSA as PKCS#1 v1.5 or, given *rsa.PSSOptions, PSS.
type signer struct {
	m     *Manager
	label string
	uri   string
	alg   hsm.Algorithm
	pub   crypto.PublicKey
}

var _ crypto.Signer = (*signer)(nil)

func (s *signer) Public() crypto.PublicKey { return s.pub }

// DigestInfo prefixes (RFC 8017 §9.2) for CKM_RSA_PKCS, which signs what it is given.
var digestInfo = map[crypto.Hash][]byte{
	crypto.SHA256: {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20},
	crypto.SHA384: {0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0x04, 0x30},
	crypto.SHA512: {0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0x04, 0x40},
}

var pssParams = map[crypto.Hash][2]uint{
	crypto.SHA256: {p11.CKM_SHA256, p11.CKG_MGF1_SHA256},
	crypto.SHA384: {p11.CKM_SHA384, p11.CKG_MGF1_SHA384},
	crypto.SHA512: {p11.CKM_SHA512, p11.CKG_MGF1_SHA512},
}

func (s *signer) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	h := hsm.HashOf(opts)
	if _, ok := digestInfo[h]; !ok {
		return nil, fmt.Errorf("%w: hash %v (want SHA-256, SHA-384 or SHA-512)", hsm.ErrUnsupportedOp, h)
	}
	if len(digest) != h.Size() {
		return nil, fmt.Errorf("%w: digest of %d bytes for %v", hsm.ErrInvalid, len(digest), h)
	}
	var mech *p11.Mechanism
	input := digest
	switch {
	case !s.alg.IsRSA():
		mech = p11.NewMechanism(p11.CKM_ECDSA, nil)
	default:
		if pss, ok := opts.(*rsa.PSSOptions); ok {
			salt := pss.SaltLength
			if salt == rsa.PSSSaltLengthAuto || salt == rsa.PSSSaltLengthEqualsHash {
				salt = h.Size()
			}
			p := pssParams[h]
			mech = p11.NewMechanism(p11.CKM_RSA_PKCS_PSS, p11.NewPSSParams(p[0], p[1], uint(salt)))
		} else {
			mech = p11.NewMechanism(p11.CKM_RSA_PKCS, nil)
			input = append(append([]byte{}, digestInfo[h]...), digest...)
		}
	}
	var sig []byte
	err := s.m.do(func(sess p11.SessionHandle, gen uint64) error {
		e, err := s.m.load(sess, s.label, gen)
		if err != nil {
			return err
		}
		if e.meta.State != hsm.StateActive {
			return fmt.Errorf("%w: %s is %s", hsm.ErrKeyNotActive, s.uri, e.meta.State)
		}
		if err := s.m.mod.ctx.SignInit(sess, []*p11.Mechanism{mech}, e.priv); err != nil {
			return err
		}
		sig, err = s.m.mod.ctx.Sign(sess, input)
		return err
	})
	if err != nil {
		return nil, s.m.wrap("sign with "+s.uri, err)
	}
	if !s.alg.IsRSA() {
		return hsm.ECDSADER(sig)
	}
	return sig, nil
}
