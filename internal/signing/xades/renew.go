package xades

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"io"
	"net/url"
	"strings"

	"github.com/beevik/etree"

	"github.com/vula-eid/vula/internal/signing"
)

// Renew adds one more xadesv141:ArchiveTimeStamp to every XAdES signature of the document
// data (a signed XML document as Sign and SignFiles make them), turning B-LT into B-LTA and
// renewing B-LTA before its archive timestamps' TSA certificates expire or their algorithms
// weaken. The new timestamp covers what the signature and its unsigned properties hold now,
// the earlier archive timestamps included (EN 319 132-1 clause 5.5.2). With rev set, a
// signature that already has an archive timestamp first gets a xadesv141:TimeStampValidationData
// with the certificates and fresh revocation data of that timestamp's TSA, so that the new
// timestamp covers them too.
//
// The References are resolved as Sign makes them: the enveloped document (URI="" with the
// enveloped-signature transform and exclusive C14N), an enveloping ds:Object (base64
// transform), the SignedProperties (exclusive C14N); a detached file by name through open,
// which may be nil when no signature is detached. A signature below B-LT, or with any other
// kind of Reference, is refused (signing.ErrInvalid, signing.ErrUnsupported); nothing that was
// there changes: the document is parsed and written as Sign writes it, and the new elements are
// appended.
func Renew(ctx context.Context, data []byte, ts signing.Timestamper, rev signing.Revocation, open func(name string) (io.ReadCloser, error)) ([]byte, error) {
	if ts == nil {
		return nil, fmt.Errorf("%w: xades: no timestamper", signing.ErrInvalid)
	}
	doc, err := parseXML(data)
	if err != nil {
		return nil, err
	}
	var sigs []*etree.Element
	collect(doc.Root(), &sigs)
	if len(sigs) == 0 {
		return nil, fmt.Errorf("%w: xades: the document holds no XML signature", signing.ErrInvalid)
	}
	for _, sig := range sigs {
		if err := renewOne(ctx, doc, sig, ts, rev, open); err != nil {
			return nil, err
		}
	}
	return writeDoc(doc)
}

// collect gathers the ds:Signature elements under el, el included.
func collect(el *etree.Element, out *[]*etree.Element) {
	if el == nil {
		return
	}
	if el.Tag == "Signature" && el.NamespaceURI() == nsDS {
		*out = append(*out, el)
		return
	}
	for _, c := range el.ChildElements() {
		collect(c, out)
	}
}

// child is the first child of el named local in namespace ns.
func child(el *etree.Element, ns, local string) *etree.Element {
	if el == nil {
		return nil
	}
	for _, c := range el.ChildElements() {
		if c.Tag == local && c.NamespaceURI() == ns {
			return c
		}
	}
	return nil
}

func renewOne(ctx context.Context, doc *etree.Document, sig *etree.Element, ts signing.Timestamper, rev signing.Revocation, open func(string) (io.ReadCloser, error)) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: xades: renewal: "+format, append([]any{signing.ErrInvalid}, args...)...)
	}
	signedInfo := child(sig, nsDS, "SignedInfo")
	sigValue := child(sig, nsDS, "SignatureValue")
	keyInfo := child(sig, nsDS, "KeyInfo")
	var qp *etree.Element
	for _, o := range sig.ChildElements() {
		if o.Tag == "Object" && o.NamespaceURI() == nsDS {
			if q := child(o, nsXAdES, "QualifyingProperties"); q != nil {
				qp = q
			}
		}
	}
	usp := child(child(qp, nsXAdES, "UnsignedProperties"), nsXAdES, "UnsignedSignatureProperties")
	if signedInfo == nil || sigValue == nil || usp == nil {
		return bad("a signature without SignedInfo, SignatureValue or unsigned signature properties (below B-T)")
	}
	var lastATS *etree.Element
	hasLT := false
	for _, p := range usp.ChildElements() {
		switch {
		case p.Tag == "RevocationValues" && p.NamespaceURI() == nsXAdES:
			hasLT = true
		case p.Tag == "ArchiveTimeStamp" && p.NamespaceURI() == nsXAdES4:
			lastATS = p
		}
	}
	if !hasLT {
		return bad("the signature is below B-LT (no RevocationValues): an archive timestamp needs its validation data first")
	}

	refs := signedInfo.SelectElements("ds:Reference")
	if len(refs) == 0 {
		return bad("SignedInfo has no Reference")
	}
	hash, ok := hashOf(child(refs[0], nsDS, "DigestMethod"))
	if !ok {
		return fmt.Errorf("%w: xades: renewal: the References' digest method", signing.ErrUnsupported)
	}

	if rev != nil && lastATS != nil {
		token, err := tokenOf(lastATS)
		if err != nil {
			return err
		}
		if err := addTSValidationData(ctx, usp, token, rev); err != nil {
			return err
		}
	}

	h := hash.New()
	for _, r := range refs {
		if err := refOctets(doc, sig, r, h, open); err != nil {
			return err
		}
	}
	els := []*etree.Element{signedInfo, sigValue}
	if keyInfo != nil {
		els = append(els, keyInfo)
	}
	els = append(els, usp.ChildElements()...)
	for _, o := range sig.ChildElements() {
		if o.Tag == "Object" && o.NamespaceURI() == nsDS && o != qp.Parent() {
			els = append(els, o)
		}
	}
	for _, el := range els {
		c, err := excC14N(el)
		if err != nil {
			return err
		}
		h.Write(c)
	}
	token, err := ts.Timestamp(ctx, hash, h.Sum(nil))
	if err != nil {
		return fmt.Errorf("xades: archive timestamp: %w", err)
	}
	n := len(usp.SelectElements("xadesv141:ArchiveTimeStamp")) + 1
	id := sig.SelectAttrValue("Id", "sig") + fmt.Sprintf("-archts-%d", n)
	ats := usp.CreateElement("xadesv141:ArchiveTimeStamp")
	ats.CreateAttr("xmlns:xadesv141", nsXAdES4)
	ats.CreateAttr("Id", id)
	ats.CreateElement("ds:CanonicalizationMethod").CreateAttr("Algorithm", algExcC14N)
	ats.CreateElement("xades:EncapsulatedTimeStamp").SetText(b64(token))
	if rev != nil {
		// A TSA the signature holds nothing on (a new one): its validation data follow the new
		// timestamp, so that it validates offline at once; the next renewal covers them.
		chain, err := signing.TokenCerts(token)
		if err != nil {
			return fmt.Errorf("xades: the new archive timestamp: %w", err)
		}
		if !holdsCert(sig, chain[0]) {
			return addTSValidationData(ctx, usp, token, rev)
		}
	}
	return nil
}

// holdsCert reports whether the signature carries c (in KeyInfo, CertificateValues or a
// TimeStampValidationData).
func holdsCert(sig *etree.Element, c *x509.Certificate) bool {
	want := b64(c.Raw)
	found := false
	var walk func(el *etree.Element)
	walk = func(el *etree.Element) {
		if (el.Tag == "X509Certificate" || el.Tag == "EncapsulatedX509Certificate") && strings.Join(strings.Fields(el.Text()), "") == want {
			found = true
		}
		for _, ch := range el.ChildElements() {
			walk(ch)
		}
	}
	walk(sig)
	return found
}

// tokenOf is the token of a XAdESTimeStampType element.
func tokenOf(ts *etree.Element) ([]byte, error) {
	enc := child(ts, nsXAdES, "EncapsulatedTimeStamp")
	if enc == nil {
		return nil, fmt.Errorf("%w: xades: renewal: a timestamp without EncapsulatedTimeStamp", signing.ErrInvalid)
	}
	token, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(enc.Text()), ""))
	if err != nil {
		return nil, fmt.Errorf("%w: xades: renewal: a timestamp that is not base64", signing.ErrInvalid)
	}
	return token, nil
}

// addTSValidationData adds, after the last property, a xadesv141:TimeStampValidationData with
// the certificates and revocation data of the TSA that made token.
func addTSValidationData(ctx context.Context, usp *etree.Element, token []byte, rev signing.Revocation) error {
	chain, err := signing.TokenCerts(token)
	if err != nil {
		return fmt.Errorf("xades: renewal: an archive timestamp: %w", err)
	}
	vd, err := signing.Collect(ctx, rev, chain)
	if err != nil {
		return fmt.Errorf("xades: renewal: validation data of an archive timestamp: %w", err)
	}
	tvd := usp.CreateElement("xadesv141:TimeStampValidationData")
	tvd.CreateAttr("xmlns:xadesv141", nsXAdES4)
	addValidationData(tvd, vd, nil)
	return nil
}

// hashOf is the digest a ds:DigestMethod names.
func hashOf(dm *etree.Element) (crypto.Hash, bool) {
	if dm == nil {
		return 0, false
	}
	alg := dm.SelectAttrValue("Algorithm", "")
	for h, uri := range digestURI {
		if uri == alg {
			return h, true
		}
	}
	return 0, false
}

// refOctets writes to w what the Reference r yields after its transforms, for the kinds of
// Reference Sign makes.
func refOctets(doc *etree.Document, sig, r *etree.Element, w io.Writer, open func(string) (io.ReadCloser, error)) error {
	uri := r.SelectAttrValue("URI", "")
	var transforms []string
	if t := child(r, nsDS, "Transforms"); t != nil {
		for _, x := range t.ChildElements() {
			transforms = append(transforms, x.SelectAttrValue("Algorithm", ""))
		}
	}
	is := func(want ...string) bool { return strings.Join(transforms, " ") == strings.Join(want, " ") }
	unsupported := fmt.Errorf("%w: xades: renewal: a Reference URI=%q with transforms %q (Vula renews the signatures it makes)", signing.ErrUnsupported, uri, transforms)
	switch {
	case uri == "" && is(algEnveloped, algExcC14N):
		// The document without this signature: what the enveloped-signature transform leaves.
		c := doc.Copy()
		target := &c.Element
		for _, i := range elementPath(sig) {
			target = target.ChildElements()[i]
		}
		target.Parent().RemoveChild(target)
		octets, err := docC14N(c)
		if err != nil {
			return err
		}
		_, err = w.Write(octets)
		return err
	case strings.HasPrefix(uri, "#"):
		el := byID(sig, uri[1:])
		if el == nil {
			return fmt.Errorf("%w: xades: renewal: Reference %s names no element of the signature", signing.ErrInvalid, uri)
		}
		switch {
		case is(algExcC14N):
			c, err := excC14N(el)
			if err != nil {
				return err
			}
			_, err = w.Write(c)
			return err
		case is(algBase64):
			data, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(el.Text()), ""))
			if err != nil {
				return fmt.Errorf("%w: xades: renewal: the ds:Object %s is not base64", signing.ErrInvalid, uri)
			}
			_, err = w.Write(data)
			return err
		}
		return unsupported
	case uri != "" && len(transforms) == 0:
		if open == nil {
			return fmt.Errorf("%w: xades: renewal: the signature is detached; its data file %q is needed", signing.ErrInvalid, uri)
		}
		name, err := url.PathUnescape(uri)
		if err != nil {
			return fmt.Errorf("%w: xades: renewal: Reference URI %q", signing.ErrInvalid, uri)
		}
		rc, err := open(name)
		if err != nil {
			return fmt.Errorf("%w: xades: renewal: the data file %q: %w", signing.ErrInvalid, uri, err)
		}
		defer func() { _ = rc.Close() }() // read only
		_, err = io.Copy(w, rc)
		return err
	}
	return unsupported
}

// elementPath is the indexes among their parents' child elements of el and its ancestors,
// from the document's root element down to el: where el is in a copy of its document.
func elementPath(el *etree.Element) []int {
	var path []int
	for e := el; e.Parent() != nil; e = e.Parent() {
		for i, c := range e.Parent().ChildElements() {
			if c == e {
				path = append([]int{i}, path...)
			}
		}
	}
	return path
}

// byID is the element under root whose Id attribute is id.
func byID(root *etree.Element, id string) *etree.Element {
	if root.SelectAttrValue("Id", "") == id {
		return root
	}
	for _, c := range root.ChildElements() {
		if e := byID(c, id); e != nil {
			return e
		}
	}
	return nil
}
