package xmlsig

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/beevik/etree"

	"github.com/vula-eid/vula/internal/trustlist"
)

// ListVerifier checks a trusted list's enveloped signature with this package's XML-DSig core
// (the same References, transforms and SignatureValue checks as a validated XML document).
// validation re-exports it.
type ListVerifier struct{}

var _ trustlist.Verifier = ListVerifier{}

// VerifyEnveloped implements trustlist.Verifier: the list holds exactly one ds:Signature, a
// child of its root; every Reference verifies, one covers the whole root, the others only the
// signature's own SignedProperties; the SignatureValue verifies with one of signers.
func (ListVerifier) VerifyEnveloped(data []byte, signers []*x509.Certificate) (*x509.Certificate, error) {
	if len(data) > trustlist.MaxSize {
		return nil, fmt.Errorf("the list has %d bytes, the limit is %d", len(data), trustlist.MaxSize)
	}
	doc, err := Parse(bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")))
	if err != nil {
		return nil, err
	}
	root := doc.Root()
	if all := findXMLSignatures(root); len(all) != 1 || all[0].Parent() != root {
		return nil, fmt.Errorf("the list holds %d signatures; it must hold one, a child of its root", len(all))
	}
	sig := Children(root, NSDS, "Signature")[0]
	kids := sig.ChildElements()
	if len(kids) < 2 || !Is(kids[0], NSDS, "SignedInfo") || !Is(kids[1], NSDS, "SignatureValue") {
		return nil, errors.New("ds:Signature does not start with SignedInfo and SignatureValue")
	}
	signedInfo, sigValue := kids[0], kids[1]
	var qp *etree.Element
	for _, o := range Children(sig, NSDS, "Object") {
		if q := Only(o, nsXAdES, "QualifyingProperties"); q != nil {
			qp = q
		}
	}
	x := NewDoc(doc, NewWorkBudget(int64(len(data))))
	refs := Children(signedInfo, NSDS, "Reference")
	if len(refs) == 0 || len(refs) > 2 {
		return nil, fmt.Errorf("SignedInfo has %d References; a list's signature has the list's and at most its SignedProperties'", len(refs))
	}
	covered := false
	for _, el := range refs {
		r, err := verifyReference(el, sig, qp, x, nil)
		switch {
		case err != nil:
			return nil, err
		case !r.ok:
			return nil, fmt.Errorf("the digest of Reference %q does not match: the list was changed after it was signed", r.uri)
		case r.hash == crypto.SHA1:
			return nil, fmt.Errorf("the Reference %q is digested with SHA-1", r.uri)
		case r.det == nil && (r.target == nil || r.target == root):
			covered = true
		case r.typ == typeSignedProps && qp != nil && r.target == Only(qp, nsXAdES, "SignedProperties"):
		default:
			return nil, fmt.Errorf("the Reference %q covers %s, neither the list nor its SignedProperties", r.uri, r.obj.Target)
		}
	}
	if !covered {
		return nil, errors.New("no Reference covers the whole list")
	}
	var last error
	for _, c := range signers {
		if last = verifySignatureValue(signedInfo, sigValue, c); last == nil {
			return c, nil
		}
	}
	return nil, fmt.Errorf("the SignatureValue verifies with none of the %d signer certificates (last: %v)", len(signers), last)
}
