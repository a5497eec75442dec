package xades

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io"

	"github.com/beevik/etree"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/vula-eid/vula/hsm"
	"github.com/vula-eid/vula/internal/signing"
)

const (
	nsDS     = "http://www.w3.org/2000/09/xmldsig#"
	nsXAdES  = "http://uri.etsi.org/01903/v1.3.2#"
	nsXAdES4 = "http://uri.etsi.org/01903/v1.4.1#"

	algEnveloped   = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
	algBase64      = "http://www.w3.org/2000/09/xmldsig#base64"
	typeSignedProp = "http://uri.etsi.org/01903#SignedProperties"
)

var digestURI = map[crypto.Hash]string{
	crypto.SHA256: "http://www.w3.org/2001/04/xmlenc#sha256",
	crypto.SHA384: "http://www.w3.org/2001/04/xmldsig-more#sha384",
	crypto.SHA512: "http://www.w3.org/2001/04/xmlenc#sha512",
}

// builder assembles one signature. Data References come first, in the order they are added;
// finish adds the Reference to the SignedProperties, signs, and adds the unsigned properties.
type builder struct {
	s    signing.Signer
	opts Options
	hash crypto.Hash
	id   string // the signature's Id; the other Ids derive from it

	doc                                   *etree.Document
	sig, signedInfo, keyInfo, qp          *etree.Element
	signedProps, dataObjProps, unsignedSP *etree.Element
	nRefs                                 int
	pendingObjects                        []*etree.Element // enveloped data, placed after KeyInfo

	// arch receives, as they are made, the octets of each Reference in SignedInfo order: step 1
	// of the archive timestamp's input (EN 319 132-1, 5.5.2.2). It is io.Discard below B-LTA.
	arch     io.Writer
	archHash interface{ Sum([]byte) []byte }
	read     int64 // bytes of data read so far, against MaxSize
}

func newBuilder(s signing.Signer, opts Options) (*builder, error) {
	h, err := signing.HashFor(s.Key.Public())
	if err != nil {
		return nil, err
	}
	if _, ok := digestURI[h]; !ok {
		return nil, fmt.Errorf("%w: xades: digest %v", signing.ErrUnsupported, h)
	}
	rnd := make([]byte, 12)
	if _, err := rand.Read(rnd); err != nil {
		return nil, err
	}
	b := &builder{s: s, opts: opts, hash: h, id: "id-" + hex.EncodeToString(rnd), arch: io.Discard}
	if opts.Level.AtLeast(signing.LevelLTA) {
		ah := h.New()
		b.arch, b.archHash = ah, ah
	}

	b.sig = etree.NewElement("ds:Signature")
	b.sig.CreateAttr("xmlns:ds", nsDS)
	b.sig.CreateAttr("Id", b.id)
	b.signedInfo = b.sig.CreateElement("ds:SignedInfo")
	b.signedInfo.CreateElement("ds:CanonicalizationMethod").CreateAttr("Algorithm", algExcC14N)
	alg, err := signatureURI(s.Key.Public(), h)
	if err != nil {
		return nil, err
	}
	b.signedInfo.CreateElement("ds:SignatureMethod").CreateAttr("Algorithm", alg)

	b.qp = etree.NewElement("xades:QualifyingProperties")
	b.qp.CreateAttr("xmlns:xades", nsXAdES)
	b.qp.CreateAttr("Target", "#"+b.id)
	b.signedProps = b.qp.CreateElement("xades:SignedProperties")
	b.signedProps.CreateAttr("Id", b.id+"-signedprops")
	ssp := b.signedProps.CreateElement("xades:SignedSignatureProperties")
	ssp.CreateElement("xades:SigningTime").SetText(opts.Time.UTC().Format("2006-01-02T15:04:05Z"))
	cert := ssp.CreateElement("xades:SigningCertificateV2").CreateElement("xades:Cert")
	cd := cert.CreateElement("xades:CertDigest")
	cd.CreateElement("ds:DigestMethod").CreateAttr("Algorithm", digestURI[h])
	cd.CreateElement("ds:DigestValue").SetText(b64(digest(h, s.Cert.Raw)))
	is, err := issuerSerial(s.Cert)
	if err != nil {
		return nil, err
	}
	cert.CreateElement("xades:IssuerSerialV2").SetText(b64(is))
	b.dataObjProps = b.signedProps.CreateElement("xades:SignedDataObjectProperties")
	return b, nil
}

func signatureURI(pub crypto.PublicKey, h crypto.Hash) (string, error) {
	name := map[crypto.Hash]string{crypto.SHA256: "sha256", crypto.SHA384: "sha384", crypto.SHA512: "sha512"}[h]
	switch pub.(type) {
	case *ecdsa.PublicKey:
		return "http://www.w3.org/2001/04/xmldsig-more#ecdsa-" + name, nil
	default:
		if h != crypto.SHA256 {
			return "", fmt.Errorf("%w: xades: RSA with %v", signing.ErrUnsupported, h)
		}
		return "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256", nil
	}
}

// issuerSerial is the DER IssuerSerial of RFC 5035 (GeneralNames holding the issuer's
// directoryName, and the serial number) that IssuerSerialV2 carries base64-encoded.
func issuerSerial(c *x509.Certificate) ([]byte, error) {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.Tag(4).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
				b.AddBytes(c.RawIssuer)
			})
		})
		b.AddASN1BigInt(c.SerialNumber)
	})
	return b.Bytes()
}

// addRef adds a data Reference and its DataObjectFormat, and returns the Reference.
func (b *builder) addRef(uri, mime string, transforms ...string) *etree.Element {
	ref := b.signedInfo.CreateElement("ds:Reference")
	refID := fmt.Sprintf("%s-ref-%d", b.id, b.nRefs)
	b.nRefs++
	ref.CreateAttr("Id", refID)
	ref.CreateAttr("URI", uri)
	if len(transforms) > 0 {
		ts := ref.CreateElement("ds:Transforms")
		for _, t := range transforms {
			ts.CreateElement("ds:Transform").CreateAttr("Algorithm", t)
		}
	}
	ref.CreateElement("ds:DigestMethod").CreateAttr("Algorithm", digestURI[b.hash])
	dof := b.dataObjProps.CreateElement("xades:DataObjectFormat")
	dof.CreateAttr("ObjectReference", "#"+refID)
	dof.CreateElement("xades:MimeType").SetText(mime)
	return ref
}

// enveloped signs doc's whole content (URI="", enveloped-signature then exclusive C14N) and
// puts the signature last in the root element.
func (b *builder) enveloped(doc *etree.Document) error {
	octets, err := docC14N(doc)
	if err != nil {
		return err
	}
	_, _ = b.arch.Write(octets) // a hash or io.Discard: never fails
	ref := b.addRef("", "text/xml", algEnveloped, algExcC14N)
	ref.CreateElement("ds:DigestValue").SetText(b64(digest(b.hash, octets)))
	b.doc = doc
	doc.Root().AddChild(b.sig)
	return nil
}

// enveloping puts data base64-encoded in a ds:Object, referenced through the base64 transform:
// the digest is over the bytes themselves.
func (b *builder) enveloping(data []byte, mime string) {
	objID := b.id + "-object"
	_, _ = b.arch.Write(data) // a hash or io.Discard: never fails
	ref := b.addRef("#"+objID, mime, algBase64)
	ref.CreateElement("ds:DigestValue").SetText(b64(digest(b.hash, data)))
	b.doc = newDoc(b.sig)
	obj := etree.NewElement("ds:Object")
	obj.CreateAttr("Id", objID)
	obj.CreateAttr("MimeType", mime)
	obj.CreateAttr("Encoding", algBase64)
	obj.SetText(b64(data))
	b.pendingObjects = append(b.pendingObjects, obj)
}

// detached adds a Reference to the file f, hashing r as it streams.
func (b *builder) detached(f File, r io.Reader) error {
	uri, err := refURI(f.Name)
	if err != nil {
		return err
	}
	h := b.hash.New()
	if err := copyHashed(r, b.opts.MaxSize, &b.read, h, b.arch); err != nil {
		return err
	}
	ref := b.addRef(uri, mimeOr(f.MimeType))
	ref.CreateElement("ds:DigestValue").SetText(b64(h.Sum(nil)))
	if b.doc == nil {
		b.doc = newDoc(b.sig)
	}
	return nil
}

func newDoc(root *etree.Element) *etree.Document {
	doc := etree.NewDocument()
	doc.CreateProcInst("xml", `version="1.0" encoding="UTF-8"`)
	doc.SetRoot(root)
	return doc
}

// finish references the SignedProperties, signs SignedInfo, adds the unsigned properties the
// level asks for and returns the document.
func (b *builder) finish(ctx context.Context) ([]byte, error) {
	keyInfo := b.sig.CreateElement("ds:KeyInfo")
	x509Data := keyInfo.CreateElement("ds:X509Data")
	for _, c := range b.keyInfoCerts() {
		x509Data.CreateElement("ds:X509Certificate").SetText(b64(c.Raw))
	}
	b.keyInfo = keyInfo
	for _, o := range b.pendingObjects {
		b.sig.AddChild(o)
	}
	b.sig.CreateElement("ds:Object").AddChild(b.qp)

	sp, err := excC14N(b.signedProps)
	if err != nil {
		return nil, err
	}
	_, _ = b.arch.Write(sp) // a hash or io.Discard: never fails
	ref := b.signedInfo.CreateElement("ds:Reference")
	ref.CreateAttr("Type", typeSignedProp)
	ref.CreateAttr("URI", "#"+b.id+"-signedprops")
	ref.CreateElement("ds:Transforms").CreateElement("ds:Transform").CreateAttr("Algorithm", algExcC14N)
	ref.CreateElement("ds:DigestMethod").CreateAttr("Algorithm", digestURI[b.hash])
	ref.CreateElement("ds:DigestValue").SetText(b64(digest(b.hash, sp)))

	si, err := excC14N(b.signedInfo)
	if err != nil {
		return nil, err
	}
	sv, err := b.signValue(si)
	if err != nil {
		return nil, err
	}
	sigValue := etree.NewElement("ds:SignatureValue")
	sigValue.CreateAttr("Id", b.id+"-sigvalue")
	sigValue.SetText(b64(sv))
	b.sig.InsertChildAt(b.signedInfo.Index()+1, sigValue)

	if b.opts.Level.AtLeast(signing.LevelT) {
		if err := b.addUnsigned(ctx, sigValue); err != nil {
			return nil, err
		}
	}
	return writeDoc(b.doc)
}

// keyInfoCerts are the signer's certificate and its chain.
func (b *builder) keyInfoCerts() []*x509.Certificate {
	return append([]*x509.Certificate{b.s.Cert}, b.s.Chain...)
}

// signValue signs the canonical SignedInfo; ECDSA signatures become the raw r||s of XML-DSig.
func (b *builder) signValue(si []byte) ([]byte, error) {
	sig, err := b.s.Key.Sign(rand.Reader, digest(b.hash, si), b.hash)
	if err != nil {
		return nil, fmt.Errorf("xades: sign: %w", err)
	}
	if k, ok := b.s.Key.Public().(*ecdsa.PublicKey); ok {
		raw, err := hsm.ECDSARaw(sig, k.Curve)
		if err != nil {
			return nil, fmt.Errorf("xades: sign: %w", err)
		}
		return raw, nil
	}
	return sig, nil
}
