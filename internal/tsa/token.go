package tsa

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"io"
	"math/big"
	"slices"
	"time"

	"github.com/vula-eid/vula/internal/cms"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// Why the token is encoded here and not by github.com/digitorus/timestamp: that library builds
// each token through a generic CMS package (reflection-based asn1.Marshal of every structure,
// the certificate hashed again, a BER-to-DER pass) and does not let the caller choose the serial,
// so the serial had to be read back by parsing, and so verifying, the token it had just made.
// That cost about six times the signature itself. Here everything that is the same for every
// token (certificates, the signer's identity, ESSCertIDv2, algorithm identifiers) is encoded once,
// and a token is a few appends around one signature. digitorus/timestamp still parses the
// queries and encodes the rejections, and the tests read our tokens with it and with openssl.

var (
	oidSignedData     = cms.OIDSignedData
	oidTSTInfo        = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 1, 4}
	oidContentType    = cms.OIDContentType
	oidMessageDigest  = cms.OIDMessageDigest
	oidQCStatements   = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 1, 3}
	oidQTSTStatement1 = asn1.ObjectIdentifier{0, 4, 0, 19422, 1, 1} // esi4-qtstStatement-1 (EN 319 422)
	oidDigest         = cms.OIDDigest
)

// encoder makes signed TimeStampResp messages (RFC 3161 §2.4.2, CMS per RFC 5652, the signer
// identified by ESSCertIDv2 per RFC 5816) for one TSA certificate and key.
type encoder struct {
	signer crypto.Signer
	hash   crypto.Hash // of the signed attributes: SHA-384 for a P-384 key, SHA-256 otherwise

	digestAlgs  []byte // SET OF AlgorithmIdentifier
	certs       []byte // [0] IMPLICIT SET OF Certificate: the TSA's and the chain
	sid         []byte // version 1, IssuerAndSerialNumber, digestAlgorithm
	sigAlg      []byte // AlgorithmIdentifier
	contentType []byte // the content-type attribute
	signingCert []byte // the signing-certificate-v2 attribute
	policy      []byte // the policy OID
	accuracy    []byte // Accuracy, or nil
	extensions  []byte // [1] IMPLICIT Extensions (the qualified statement), or nil
}

func newEncoder(cfg Config, cert *x509.Certificate, signer crypto.Signer) (*encoder, error) {
	e := &encoder{signer: signer, hash: crypto.SHA256}
	if pub, ok := signer.Public().(*ecdsa.PublicKey); ok && pub.Curve == elliptic.P384() {
		e.hash = crypto.SHA384
	}
	var err error
	if e.sigAlg, err = cms.SignatureAlgorithm(signer.Public(), e.hash); err != nil {
		return nil, fmt.Errorf("tsa: %w", err)
	}
	if !publicKeysEqual(cert.PublicKey, signer.Public()) {
		return nil, fmt.Errorf("tsa: the key does not match the certificate %q", cert.Subject)
	}
	e.digestAlgs = cms.Build(func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) { b.AddBytes(cms.AlgID(oidDigest[e.hash], true)) })
	})
	// DER wants a SET OF sorted by encoding; verifiers find the signer by issuer and serial.
	all := [][]byte{cert.Raw}
	for _, c := range cfg.Chain {
		all = append(all, c.Raw)
	}
	slices.SortFunc(all, bytes.Compare)
	e.certs = cms.Build(func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.Tag(0).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
			for _, c := range all {
				b.AddBytes(c)
			}
		})
	})
	e.sid = cms.Build(func(b *cryptobyte.Builder) {
		b.AddASN1Int64(1)
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddBytes(cert.RawIssuer)
			b.AddASN1BigInt(cert.SerialNumber)
		})
		b.AddBytes(cms.AlgID(oidDigest[e.hash], true))
	})
	e.contentType = cms.Attribute(oidContentType, func(b *cryptobyte.Builder) { b.AddASN1ObjectIdentifier(oidTSTInfo) })
	e.signingCert = cms.SigningCertificateV2(cert)
	e.policy = cms.Build(func(b *cryptobyte.Builder) { b.AddASN1ObjectIdentifier(cfg.Policy) })
	e.accuracy = accuracy(cfg.Accuracy)
	if cfg.Qualified {
		e.extensions = cms.Build(func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.Tag(1).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // Extension
					b.AddASN1ObjectIdentifier(oidQCStatements)
					b.AddASN1OctetString(cms.Build(func(b *cryptobyte.Builder) {
						b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // QCStatements
							b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { b.AddASN1ObjectIdentifier(oidQTSTStatement1) })
						})
					}))
				})
			})
		})
	}
	for _, part := range [][]byte{e.digestAlgs, e.certs, e.sid, e.contentType, e.signingCert, e.policy} {
		if part == nil {
			return nil, fmt.Errorf("tsa: cannot encode the token's fixed parts for %q", cert.Subject)
		}
	}
	return e, nil
}

// token is what goes into one TSTInfo.
type token struct {
	hash   crypto.Hash
	digest []byte
	serial *big.Int
	time   time.Time
	nonce  *big.Int
	certs  bool // the query's certReq
}

// newSerial draws a positive serial of at most 160 bits (RFC 3161 §2.4.2): 159 random bits
// make it unique across restarts and replicas without coordination.
func newSerial() (*big.Int, error) {
	b := make([]byte, 20)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	b[0] &= 0x7f
	b[0] |= 0x40 // never short, never zero
	return new(big.Int).SetBytes(b), nil
}

// token signs t and returns the DER TimeStampToken (a CMS ContentInfo).
func (e *encoder) token(ctx context.Context, t token) ([]byte, error) {
	// Each structure is built in room sized for it: grown from nothing, the builders'
	// reallocations and copies were 11 % of a token's server CPU.
	tstInfo := cms.BuildSized(128+len(e.policy)+len(e.accuracy)+len(e.extensions)+len(t.digest), func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1Int64(1)
			b.AddBytes(e.policy)
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // MessageImprint
				b.AddBytes(cms.AlgID(oidDigest[t.hash], true))
				b.AddASN1OctetString(t.digest)
			})
			b.AddASN1BigInt(t.serial)
			// GeneralizedTime with the fraction DER wants: no trailing zeros, no empty dot.
			b.AddASN1(cbasn1.GeneralizedTime, func(b *cryptobyte.Builder) {
				b.AddBytes(t.time.UTC().AppendFormat(nil, "20060102150405.999999Z"))
			})
			b.AddBytes(e.accuracy)
			if t.nonce != nil {
				b.AddASN1BigInt(t.nonce)
			}
			b.AddBytes(e.extensions)
		})
	})
	h := e.hash.New()
	h.Write(tstInfo)
	messageDigest := cms.Attribute(oidMessageDigest, func(b *cryptobyte.Builder) { b.AddASN1OctetString(h.Sum(nil)) })
	attrs := [][]byte{e.contentType, messageDigest, e.signingCert}
	slices.SortFunc(attrs, bytes.Compare) // DER SET OF
	// The signature covers the attributes as a SET (RFC 5652 §5.4); the token carries them
	// under [0] IMPLICIT.
	signedAttrs := cms.Build(func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) {
			for _, a := range attrs {
				b.AddBytes(a)
			}
		})
	})
	if tstInfo == nil || messageDigest == nil || signedAttrs == nil {
		return nil, fmt.Errorf("tsa: cannot encode the token")
	}
	h = e.hash.New()
	h.Write(signedAttrs)
	sig, err := e.sign(ctx, h.Sum(nil))
	if err != nil {
		return nil, err
	}
	signedAttrs[0] = 0xa0 // SET → [0] IMPLICIT, same length
	tok := cms.BuildSized(64+len(e.digestAlgs)+len(tstInfo)+len(e.certs)+len(e.sid)+len(signedAttrs)+len(e.sigAlg)+len(sig), func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // ContentInfo
			b.AddASN1ObjectIdentifier(oidSignedData)
			b.AddASN1(cbasn1.Tag(0).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // SignedData
					b.AddASN1Int64(3)
					b.AddBytes(e.digestAlgs)
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // EncapsulatedContentInfo
						b.AddASN1ObjectIdentifier(oidTSTInfo)
						b.AddASN1(cbasn1.Tag(0).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
							b.AddASN1OctetString(tstInfo)
						})
					})
					if t.certs {
						b.AddBytes(e.certs)
					}
					b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) {
						b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // SignerInfo
							b.AddBytes(e.sid)
							b.AddBytes(signedAttrs)
							b.AddBytes(e.sigAlg)
							b.AddASN1OctetString(sig)
						})
					})
				})
			})
		})
	})
	if tok == nil {
		return nil, fmt.Errorf("tsa: cannot encode the token")
	}
	return tok, nil
}

// encode signs t and returns the DER TimeStampResp with status granted.
func (e *encoder) encode(ctx context.Context, t token) ([]byte, error) {
	tok, err := e.token(ctx, t)
	if err != nil {
		return nil, err
	}
	resp := cms.BuildSized(16+len(tok), func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // TimeStampResp
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { b.AddASN1Int64(0) }) // granted
			b.AddBytes(tok)
		})
	})
	if resp == nil {
		return nil, fmt.Errorf("tsa: cannot encode the token")
	}
	return resp, nil
}

// sign passes ctx on, so the key layer's audit record names the requester and request.
func (e *encoder) sign(ctx context.Context, digest []byte) ([]byte, error) {
	return cms.Sign(ctx, e.signer, digest, e.hash)
}

// accuracy encodes d as RFC 3161's Accuracy (seconds, millis 1..999, micros 1..999; zero parts
// left out); below a microsecond it rounds up to one.
func accuracy(d time.Duration) []byte {
	if d <= 0 {
		return nil
	}
	d = max(d, time.Microsecond)
	secs, ms, us := int64(d/time.Second), int64(d%time.Second/time.Millisecond), int64(d%time.Millisecond/time.Microsecond)
	return cms.Build(func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			if secs > 0 {
				b.AddASN1Int64(secs)
			}
			if ms > 0 {
				b.AddASN1Int64WithTag(ms, cbasn1.Tag(0).ContextSpecific())
			}
			if us > 0 {
				b.AddASN1Int64WithTag(us, cbasn1.Tag(1).ContextSpecific())
			}
		})
	})
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}

// maxTokenSize bounds the length of every token Timestamp makes: a token with the longest
// imprint (SHA-512), serial and time, the certificates, and a signature of the longest DER
// length the key can give, encoded without signing.
func (e *encoder) maxTokenSize() (int, error) {
	n, err := cms.MaxSignatureLen(e.signer.Public())
	if err != nil {
		return 0, err
	}
	sizing := *e
	sizing.signer = fixedSigner{pub: e.signer.Public(), n: n}
	serial := new(big.Int).SetBytes(bytes.Repeat([]byte{0x7f}, 20))
	tok, err := sizing.token(context.Background(), token{hash: crypto.SHA512, digest: make([]byte, 64), serial: serial, certs: true,
		time: time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC)})
	return len(tok), err
}

// fixedSigner "signs" with n zero bytes: only for sizing.
type fixedSigner struct {
	pub crypto.PublicKey
	n   int
}

func (f fixedSigner) Public() crypto.PublicKey { return f.pub }
func (f fixedSigner) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) {
	return make([]byte, f.n), nil
}
