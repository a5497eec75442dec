package xmlsig

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/url"
	"strings"

	"github.com/beevik/etree"
	dsig "github.com/russellhaering/goxmldsig"

	"github.com/vula-eid/vula/internal/signing/xades"
	"github.com/vula-eid/vula/internal/validation/core"
)

// The XML-DSig core (references, transforms, SignatureValue) is written here over etree rather
// than taken from goxmldsig's ValidationContext, because that one checks a single Reference to
// the element it was handed, resolves IDs without refusing duplicates, cannot tell where the
// referenced element stands, and verifies ECDSA as DER where XML-DSig has raw r||s (see
// ../shared/TRAPS.md): a validator must report what each Reference covers, and refuse what
// signature wrapping needs. Canonicalization is not hand-written: exclusive C14N is
// internal/signing/xades's (goxmldsig's transform with the fixes that match xmllint), inclusive
// C14N 1.0 is goxmldsig's.

const (
	NSDS       = "http://www.w3.org/2000/09/xmldsig#" // XML-DSig's namespace
	nsXAdES    = "http://uri.etsi.org/01903/v1.3.2#"
	nsXAdES141 = "http://uri.etsi.org/01903/v1.4.1#"

	algExcC14N        = "http://www.w3.org/2001/10/xml-exc-c14n#"
	algExcC14NComment = "http://www.w3.org/2001/10/xml-exc-c14n#WithComments"
	algC14N10         = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"
	algC14N10Comment  = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315#WithComments"
	algC14N11         = "http://www.w3.org/2006/12/xml-c14n11"
	algC14N11Comment  = "http://www.w3.org/2006/12/xml-c14n11#WithComments"
	algEnveloped      = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
	algBase64         = "http://www.w3.org/2000/09/xmldsig#base64"
	typeSignedProps   = "http://uri.etsi.org/01903#SignedProperties"
)

var xmlDigests = map[string]crypto.Hash{
	"http://www.w3.org/2000/09/xmldsig#sha1":        crypto.SHA1,
	"http://www.w3.org/2001/04/xmlenc#sha256":       crypto.SHA256,
	"http://www.w3.org/2001/04/xmldsig-more#sha384": crypto.SHA384,
	"http://www.w3.org/2001/04/xmlenc#sha512":       crypto.SHA512,
}

// DigestOf is the hash of an XML-DSig DigestMethod Algorithm URI (SHA-1 included, for the
// caller to refuse by name).
func DigestOf(alg string) (crypto.Hash, bool) {
	h, ok := xmlDigests[alg]
	return h, ok
}

var xmlSigAlgs = map[string]struct {
	hash crypto.Hash
	kind string
}{
	"http://www.w3.org/2000/09/xmldsig#rsa-sha1":             {crypto.SHA1, "rsa"},
	"http://www.w3.org/2001/04/xmldsig-more#rsa-sha256":      {crypto.SHA256, "rsa"},
	"http://www.w3.org/2001/04/xmldsig-more#rsa-sha384":      {crypto.SHA384, "rsa"},
	"http://www.w3.org/2001/04/xmldsig-more#rsa-sha512":      {crypto.SHA512, "rsa"},
	"http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha1":      {crypto.SHA1, "ecdsa"},
	"http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256":    {crypto.SHA256, "ecdsa"},
	"http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384":    {crypto.SHA384, "ecdsa"},
	"http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512":    {crypto.SHA512, "ecdsa"},
	"http://www.w3.org/2009/xmldsig11#dsa-sha256":            {0, "dsa"},
	"http://www.w3.org/2000/09/xmldsig#dsa-sha1":             {0, "dsa"},
	"http://www.w3.org/2001/04/xmldsig-more#hmac-sha256":     {0, "hmac"},
	"http://www.w3.org/2000/09/xmldsig#hmac-sha1":            {0, "hmac"},
	"http://www.w3.org/2007/05/xmldsig-more#sha256-rsa-MGF1": {0, "rsa-pss"},
}

// Doc is a parsed XML document with its ID index.
type Doc struct {
	doc *etree.Document
	// ids maps each value of an Id, ID, id or xml:id attribute to every element carrying it.
	ids map[string][]*etree.Element
	// work is the validation's budget (shared by the XML files of a container).
	work *WorkBudget
}

// NewDoc indexes doc's IDs; work is the validation's budget.
func NewDoc(doc *etree.Document, work *WorkBudget) *Doc {
	x := &Doc{doc: doc, ids: map[string][]*etree.Element{}, work: work}
	var walk func(e *etree.Element)
	walk = func(e *etree.Element) {
		for _, a := range e.Attr {
			if (a.Space == "" && (a.Key == "Id" || a.Key == "ID" || a.Key == "id")) || (a.Space == "xml" && a.Key == "id") {
				x.ids[a.Value] = append(x.ids[a.Value], e)
			}
		}
		for _, c := range e.ChildElements() {
			walk(c)
		}
	}
	if r := doc.Root(); r != nil {
		walk(r)
	}
	return x
}

// Is reports whether e is the element {ns}local.
func Is(e *etree.Element, ns, local string) bool {
	return e != nil && e.Tag == local && e.NamespaceURI() == ns
}

// Children are e's child elements {ns}local.
func Children(e *etree.Element, ns, local string) []*etree.Element {
	var out []*etree.Element
	for _, c := range e.ChildElements() {
		if Is(c, ns, local) {
			out = append(out, c)
		}
	}
	return out
}

// Only is the single child {ns}local of e, or nil when there is none or more than one.
func Only(e *etree.Element, ns, local string) *etree.Element {
	if e == nil {
		return nil
	}
	c := Children(e, ns, local)
	if len(c) != 1 {
		return nil
	}
	return c[0]
}

// inside reports whether e is anc or a descendant of it.
func inside(e, anc *etree.Element) bool {
	for ; e != nil; e = e.Parent() {
		if e == anc {
			return true
		}
	}
	return false
}

// elementPath names e by its position in the document, /Root[1]/Child[2], counting siblings of
// the same name: what the report says a Reference covers.
func elementPath(e *etree.Element) string {
	var parts []string
	for ; e != nil && e.Parent() != nil; e = e.Parent() {
		n := 1
		for _, s := range e.Parent().ChildElements() {
			if s == e {
				break
			}
			if s.FullTag() == e.FullTag() {
				n++
			}
		}
		parts = append(parts, fmt.Sprintf("%s[%d]", e.FullTag(), n))
	}
	var b strings.Builder
	for i := len(parts) - 1; i >= 0; i-- {
		b.WriteString("/" + parts[i])
	}
	return b.String()
}

// DecodeBase64 decodes base64 text with the white space XML puts in it.
func DecodeBase64(s string) ([]byte, error) {
	s = strings.Map(func(r rune) rune {
		if r == ' ' || r == '\t' || r == '\r' || r == '\n' {
			return -1
		}
		return r
	}, s)
	return base64.StdEncoding.DecodeString(s)
}

// canonical is the canonical form of el in its document by the algorithm alg. Comments are
// always left out: the same-document references that reach here (URI="" and #id) remove them
// (XML-DSig 1.1 §4.4.3.3), and a SignedInfo WithComments is refused by the caller.
func canonical(alg, prefixes string, el *etree.Element) ([]byte, error) {
	switch alg {
	case algExcC14N, algExcC14NComment:
		if prefixes != "" {
			return xades.ExcC14NPrefixes(el, prefixes)
		}
		return xades.ExcC14N(el)
	case algC14N10, algC14N10Comment, algC14N11, algC14N11Comment:
		if alg == algC14N11 || alg == algC14N11Comment {
			// C14N 1.1 differs from 1.0 only in how xml:id and xml:base of ancestors are
			// carried down; with neither above el the two forms are the same.
			for p := el.Parent(); p != nil; p = p.Parent() {
				for _, a := range p.Attr {
					if a.Space == "xml" && (a.Key == "id" || a.Key == "base") {
						return nil, fmt.Errorf("C14N 1.1 with an inherited xml:%s is not supported", a.Key)
					}
				}
			}
		}
		return dsig.MakeC14N10RecCanonicalizer().Canonicalize(el)
	}
	return nil, fmt.Errorf("canonicalization %q is not supported", alg)
}

// c14nParams reads a Transform's or CanonicalizationMethod's algorithm and, for exclusive
// C14N, its InclusiveNamespaces PrefixList. Any other parameter (XPath, XSLT) is refused:
// ignoring one would digest something other than what the signer meant.
func c14nParams(e *etree.Element) (alg, prefixes string, err error) {
	alg = e.SelectAttrValue("Algorithm", "")
	kids := e.ChildElements()
	switch {
	case len(kids) == 0:
		return alg, "", nil
	case (alg == algExcC14N || alg == algExcC14NComment) && len(kids) == 1 && Is(kids[0], algExcC14N, "InclusiveNamespaces"):
		return alg, kids[0].SelectAttrValue("PrefixList", ""), nil
	}
	return alg, "", fmt.Errorf("%q has parameters that are not supported", alg)
}

// canonicalDoc is the canonical form of the whole document (URI=""): the processing
// instructions around the root element and the root, without comments.
func canonicalDoc(alg, prefixes string, doc *etree.Document) ([]byte, error) {
	if (alg == algExcC14N || alg == algExcC14NComment) && prefixes == "" {
		return xades.DocC14N(doc)
	}
	// The same layout as xades.DocC14N, with the root in inclusive form.
	var out bytes.Buffer
	seenRoot := false
	for _, t := range doc.Child {
		switch t := t.(type) {
		case *etree.ProcInst:
			if t.Target == "xml" {
				continue
			}
			if seenRoot {
				out.WriteByte('\n')
			}
			out.WriteString("<?" + t.Target)
			if t.Inst != "" {
				out.WriteString(" " + t.Inst)
			}
			out.WriteString("?>")
			if !seenRoot {
				out.WriteByte('\n')
			}
		case *etree.Element:
			b, err := canonical(alg, prefixes, t)
			if err != nil {
				return nil, err
			}
			out.Write(b)
			seenRoot = true
		}
	}
	return out.Bytes(), nil
}

// Detached is what a Reference to something outside the XML document resolves to: the
// detached content given to the validation, or an entry of an ASiC container.
type Detached struct {
	Target string                    // how the report names it: content:NAME, entry:NAME
	Size   int64                     // its size, spent from the work budget at each read
	Open   func() (io.Reader, error) // read again for each digest
}

// Resolver resolves a relative Reference URI (already percent-decoded) or says no.
type Resolver func(name string) (Detached, bool)

// reference is one verified (or failed) ds:Reference.
type reference struct {
	el     *etree.Element
	uri    string
	typ    string
	target *etree.Element // the referenced element, nil for URI="" and detached data
	det    *Detached
	octets []byte // what the transforms yielded (same-document references)
	hash   crypto.Hash
	ok     bool
	obj    core.SignedObject
}

// writeOctets writes what the reference's transforms yielded (the archive timestamp input).
func (r *reference) writeOctets(w io.Writer, work *WorkBudget) error {
	if r.det != nil {
		if err := work.Spend(r.det.Size); err != nil {
			return err
		}
		rd, err := r.det.Open()
		if err != nil {
			return err
		}
		_, err = io.Copy(w, rd)
		return err
	}
	if err := work.Spend(int64(len(r.octets))); err != nil {
		return err
	}
	_, err := w.Write(r.octets)
	return err
}

// refError is a Reference that cannot be processed: a failure (FORMAT_FAILURE) or, with
// missing, data that is not there (SIGNED_DATA_NOT_FOUND).
type refError struct {
	msg     string
	missing bool
}

func (e *refError) Error() string { return e.msg }

func refErrf(format string, args ...any) error { return &refError{msg: fmt.Sprintf(format, args...)} }

// verifyReference resolves ref, applies its transforms and compares its digest. sig is the
// ds:Signature holding it and qp its QualifyingProperties (nil for plain XML-DSig).
func verifyReference(ref *etree.Element, sig, qp *etree.Element, x *Doc, det Resolver) (*reference, error) {
	r := &reference{el: ref, typ: ref.SelectAttrValue("Type", "")}
	// A Reference may omit URI (XML-DSig 4.4.3.1): "the receiving application is expected to
	// know the identity of the object". Here that is the detached content given with the
	// signature (as xadesjs signs detached data); without it the data is not found.
	uriAttr := ref.SelectAttr("URI")
	noURI := uriAttr == nil
	label := "a Reference without URI"
	if !noURI {
		r.uri = uriAttr.Value
		label = fmt.Sprintf("Reference %q", r.uri)
	}
	r.obj = core.SignedObject{URI: r.uri, Type: r.typ}
	dm := Only(ref, NSDS, "DigestMethod")
	dv := Only(ref, NSDS, "DigestValue")
	if dm == nil || dv == nil {
		return r, refErrf("%s: no single DigestMethod and DigestValue", label)
	}
	h, ok := xmlDigests[dm.SelectAttrValue("Algorithm", "")]
	if !ok {
		return r, refErrf("%s: digest %q is not supported", label, dm.SelectAttrValue("Algorithm", ""))
	}
	r.hash = h
	want, err := DecodeBase64(dv.Text())
	if err != nil {
		return r, refErrf("%s: DigestValue is not base64", label)
	}
	type transform struct{ alg, prefixes string }
	var transforms []transform
	if ts := Children(ref, NSDS, "Transforms"); len(ts) > 1 {
		return r, refErrf("%s: two Transforms", label)
	} else if len(ts) == 1 {
		for _, t := range ts[0].ChildElements() {
			if !Is(t, NSDS, "Transform") {
				return r, refErrf("%s: <%s> in Transforms", label, t.FullTag())
			}
			alg, prefixes, err := c14nParams(t)
			if err != nil {
				return r, refErrf("%s: %v", label, err)
			}
			transforms = append(transforms, transform{alg, prefixes})
		}
	}

	// Resolve the URI: the whole document, one element by its ID, or detached data by name.
	var node *etree.Element // nil with doc: the whole document
	var doc *etree.Document
	switch {
	case r.uri == "" && !noURI:
		doc = x.doc
		r.obj.Target = "/"
	case strings.HasPrefix(r.uri, "#xpointer("):
		return r, refErrf("Reference %q: XPointer URIs are not supported", r.uri)
	case strings.HasPrefix(r.uri, "#"):
		id := r.uri[1:]
		els := x.ids[id]
		switch {
		case len(els) == 0:
			return r, refErrf("Reference %q: no element has the Id %q", r.uri, id)
		case len(els) > 1:
			return r, refErrf("Reference %q: %d elements have the Id %q (%s, %s): the reference is ambiguous, as signature wrapping makes it", r.uri, len(els), id, elementPath(els[0]), elementPath(els[1]))
		}
		node = els[0]
		// Inside its own signature a Reference may point only at a ds:Object child
		// (enveloping) or at the SignedProperties of its QualifyingProperties: anything else
		// there is hidden from a reader of the document (the Object wrapping attack).
		if inside(node, sig) && node != sig {
			okPlace := (Is(node, NSDS, "Object") && node.Parent() == sig) ||
				(qp != nil && node.Parent() == qp && Is(node, nsXAdES, "SignedProperties"))
			if !okPlace {
				return r, refErrf("Reference %q points at %s inside the signature itself, where no signed content belongs", r.uri, elementPath(node))
			}
		}
		r.target = node
		r.obj.Target = elementPath(node)
	default:
		u, err := url.Parse(r.uri)
		if noURI {
			u, err = &url.URL{}, nil
		} else if err != nil || u.Scheme != "" || u.Host != "" || strings.HasPrefix(r.uri, "/") || u.RawQuery != "" || u.Fragment != "" {
			return r, refErrf("%s: an external or absolute URI; nothing outside the document and its given content is read", label)
		}
		name, err := url.PathUnescape(u.EscapedPath())
		if err != nil || det == nil {
			return r, &refError{msg: label + ": detached data that was not given", missing: true}
		}
		d, ok := det(name)
		if !ok {
			return r, &refError{msg: label + ": detached data that was not given", missing: true}
		}
		if len(transforms) > 0 {
			return r, refErrf("%s: transforms on detached data are not supported", label)
		}
		r.det = &d
		r.obj.Target = d.Target
		if err := x.work.Spend(d.Size); err != nil {
			return r, refErrf("%s: %v", label, err)
		}
		rd, err := d.Open()
		if err != nil {
			return r, &refError{msg: fmt.Sprintf("%s: %v", label, err), missing: true}
		}
		hh := h.New()
		if _, err := io.Copy(hh, rd); err != nil {
			return r, &refError{msg: fmt.Sprintf("%s: reading: %v", label, err), missing: true}
		}
		if !bytes.Equal(hh.Sum(nil), want) {
			return r, nil
		}
		r.ok = true
		return r, nil
	}

	// Same-document data: a node set until a canonicalization or base64 makes it octets.
	enveloped := false
	var octets []byte
	isOctets := false
	toOctets := func(alg, prefixes string) ([]byte, error) {
		if enveloped && (doc != nil || inside(sig, node)) && sig.Parent() != nil {
			// The enveloped-signature transform: the node set without this ds:Signature.
			p, i := sig.Parent(), sig.Index()
			p.RemoveChildAt(i)
			defer p.InsertChildAt(i, sig)
		}
		if doc != nil {
			return canonicalDoc(alg, prefixes, doc)
		}
		return canonical(alg, prefixes, node)
	}
	for _, tr := range transforms {
		switch t := tr.alg; t {
		case algEnveloped:
			if isOctets {
				return r, refErrf("Reference %q: enveloped-signature after octets", r.uri)
			}
			enveloped = true
		case algExcC14N, algExcC14NComment, algC14N10, algC14N10Comment, algC14N11, algC14N11Comment:
			if isOctets {
				return r, refErrf("Reference %q: canonicalization of octets is not supported", r.uri)
			}
			if octets, err = toOctets(t, tr.prefixes); err != nil {
				return r, refErrf("Reference %q: %v", r.uri, err)
			}
			isOctets = true
		case algBase64:
			text := ""
			if isOctets {
				text = string(octets)
			} else {
				e := node
				if doc != nil {
					e = doc.Root()
				}
				text = textOf(e, sig, enveloped)
			}
			if octets, err = DecodeBase64(text); err != nil {
				return r, refErrf("Reference %q: the base64 transform's input is not base64", r.uri)
			}
			isOctets = true
		default:
			return r, refErrf("Reference %q: transform %q is not supported", r.uri, t)
		}
	}
	if !isOctets {
		// A node set left at the end becomes octets by inclusive C14N 1.0 (XML-DSig §4.4.3.2).
		if octets, err = toOctets(algC14N10, ""); err != nil {
			return r, refErrf("Reference %q: %v", r.uri, err)
		}
	}
	if err := x.work.Spend(int64(len(octets))); err != nil {
		return r, refErrf("Reference %q: %v", r.uri, err)
	}
	r.octets = octets
	hh := h.New()
	hh.Write(octets)
	r.ok = bytes.Equal(hh.Sum(nil), want)
	return r, nil
}

// textOf is the text of e and its descendants, without sig's when skip.
func textOf(e, sig *etree.Element, skip bool) string {
	var b strings.Builder
	var walk func(e *etree.Element)
	walk = func(e *etree.Element) {
		if skip && e == sig {
			return
		}
		for _, c := range e.Child {
			switch c := c.(type) {
			case *etree.CharData:
				b.WriteString(c.Data)
			case *etree.Element:
				walk(c)
			}
		}
	}
	walk(e)
	return b.String()
}

// verifySignatureValue checks the SignatureValue over the canonical SignedInfo with cert's key.
func verifySignatureValue(signedInfo, sigValue *etree.Element, cert *x509.Certificate) error {
	cm := Only(signedInfo, NSDS, "CanonicalizationMethod")
	sm := Only(signedInfo, NSDS, "SignatureMethod")
	if cm == nil || sm == nil {
		return errors.New("SignedInfo has no single CanonicalizationMethod and SignatureMethod")
	}
	calg, prefixes, err := c14nParams(cm)
	if err != nil {
		return err
	}
	if strings.HasSuffix(calg, "#WithComments") {
		return fmt.Errorf("canonicalization %q of SignedInfo is not supported", calg)
	}
	alg, ok := xmlSigAlgs[sm.SelectAttrValue("Algorithm", "")]
	if !ok || alg.hash == 0 {
		return fmt.Errorf("signature method %q is not supported", sm.SelectAttrValue("Algorithm", ""))
	}
	if alg.hash == crypto.SHA1 {
		return fmt.Errorf("%w: SHA-1 signatures are not accepted", errWeakAlgorithm)
	}
	si, err := canonical(calg, prefixes, signedInfo)
	if err != nil {
		return err
	}
	sv, err := DecodeBase64(sigValue.Text())
	if err != nil {
		return errors.New("SignatureValue is not base64")
	}
	hh := alg.hash.New()
	hh.Write(si)
	digest := hh.Sum(nil)
	switch pub := cert.PublicKey.(type) {
	case *ecdsa.PublicKey:
		if alg.kind != "ecdsa" {
			return errors.New("the signature method does not match the ECDSA key")
		}
		// XML-DSig's ECDSA value is r||s, each half the curve's size (RFC 4051 §3.3).
		n := (pub.Curve.Params().BitSize + 7) / 8
		if len(sv) != 2*n {
			return fmt.Errorf("the ECDSA SignatureValue has %d bytes, want %d (raw r||s)", len(sv), 2*n)
		}
		r, s := new(big.Int).SetBytes(sv[:n]), new(big.Int).SetBytes(sv[n:])
		if !ecdsa.Verify(pub, digest, r, s) {
			return errors.New("the ECDSA signature does not verify")
		}
	case *rsa.PublicKey:
		if alg.kind != "rsa" {
			return errors.New("the signature method does not match the RSA key")
		}
		if err := rsa.VerifyPKCS1v15(pub, alg.hash, digest, sv); err != nil {
			return fmt.Errorf("the RSA signature does not verify: %w", err)
		}
	default:
		return fmt.Errorf("key type %T is not supported", pub)
	}
	return nil
}
