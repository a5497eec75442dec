package xmlsig

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/beevik/etree"
	"golang.org/x/crypto/cryptobyte"

	"github.com/vula-eid/vula/internal/signing"
	"github.com/vula-eid/vula/internal/signing/xades"
	"github.com/vula-eid/vula/internal/validation/cades"
	"github.com/vula-eid/vula/internal/validation/core"
)

// XML signatures (XML-DSig, XAdES baseline of EN 319 132-1) are validated thus:
//
//   - The document is parsed by xades.ParseXML: a DTD, and so any entity declaration, is
//     refused before parsing (nothing is expanded or fetched), nesting is bounded, and the
//     document is at most MaxSize bytes.
//   - Every ds:Signature in the document is a signature of the report. Each Reference is
//     resolved only within the document (URI="" or #id; an Id, ID, id or xml:id value must be
//     unique in the whole document, else the Reference fails), or to the detached content the
//     caller gave (Options.Content, or an ASiC-E entry); an absolute or external URI fails and
//     is never fetched. Inside its own signature a Reference may point only at a ds:Object
//     child or at its SignedProperties. The report names, per Reference, the element it
//     covers by its position (SignedObject.Target): what was verified, nothing looked up again.
//   - With xades:QualifyingProperties (Target = the signature's Id) the signature is XAdES:
//     exactly one Reference of Type SignedProperties must cover that very SignedProperties,
//     whose SigningCertificateV2 must name the certificate that verifies the SignatureValue.
//     SignatureTimeStamp is over the canonical ds:SignatureValue (B-T); CertificateValues and
//     RevocationValues are the embedded validation data (B-LT when they were enough);
//     xadesv141:ArchiveTimeStamp is over the input of EN 319 132-1 §5.5.2.2 (B-LTA); once
//     passed it is a proof of existence of what precedes it (newest first, see signature.trust).
//   - Without it the signature is plain XML-DSig (no baseline level); its signer is the
//     KeyInfo X509Certificate whose key verifies the SignatureValue, and its chain is checked.
//   - Transforms: enveloped-signature, exclusive C14N (with an InclusiveNamespaces PrefixList),
//     inclusive C14N 1.0 and 1.1, base64; XPath, XSLT and XPointer URIs are refused. Signature
//     methods: RSA PKCS#1 v1.5 and ECDSA (raw r||s) with SHA-256/384/512; SHA-1 fails with
//     CRYPTO_CONSTRAINTS_FAILURE.
//   - The work is bounded: at most MaxSignatures signatures and maxReferences References
//     each, and the bytes canonicalized and digested within a WorkBudget of the input's size.

// MaxSize bounds an XML document or a signature file of a container.
const MaxSize = 64 << 20

// maxXMLNodes bounds the elements and attributes of an XML document: a parsed node costs a
// few hundred bytes whatever its size in the input, so without it a 14 MB file of empty
// elements took over 400 MB to parse. A signed invoice with thousands of lines stays far below.
const maxXMLNodes = 100_000

// Parse is xades.ParseXML for untrusted input: a document of more than maxXMLNodes nodes is
// refused before it is parsed into a tree.
func Parse(data []byte) (*etree.Document, error) {
	return xades.ParseXMLBounded(data, maxXMLNodes)
}

// MaxSignatures bounds the signatures of a document or container, and maxReferences the
// References of one: each signature costs chain and revocation checks, whatever its size.
const (
	MaxSignatures = 100
	maxReferences = 1000
)

// WorkBudget bounds the bytes a validation canonicalizes and digests: a few Reference elements
// can each ask for the whole document (or a whole container entry) again, so the work is
// bounded by what the input justifies, not by the number of References. Past it, the
// Reference fails as too costly rather than being skipped.
type WorkBudget struct{ left int64 }

// NewWorkBudget is the budget for an input of input bytes.
func NewWorkBudget(input int64) *WorkBudget { return &WorkBudget{left: 4*input + 4<<20} }

// Spend takes n bytes from the budget; an error once it is spent.
func (b *WorkBudget) Spend(n int64) error {
	if b.left -= n; b.left < 0 {
		return fmt.Errorf("the signatures ask for more canonicalization and digesting than the input's size justifies")
	}
	return nil
}

// Validate validates each ds:Signature of an XML document; References to anything outside it
// resolve to Options.Content.
func Validate(v *core.Validator, data []byte, rep *core.Report) error {
	if len(data) > MaxSize {
		return fmt.Errorf("%w: validation: the XML document has %d bytes, the limit is %d", signing.ErrTooLarge, len(data), MaxSize)
	}
	// A UTF-8 byte order mark is no part of the document (nor of any canonical form);
	// encoding/xml would take it for text before the root.
	doc, err := Parse(bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")))
	if err != nil {
		return fmt.Errorf("validation: %w", err)
	}
	x := NewDoc(doc, NewWorkBudget(int64(len(data))))
	sigs := findXMLSignatures(doc.Root())
	if len(sigs) == 0 {
		return fmt.Errorf("%w: validation: the XML document holds no ds:Signature", signing.ErrInvalid)
	}
	if len(sigs) > MaxSignatures {
		return fmt.Errorf("%w: validation: %d signatures, the limit is %d", signing.ErrTooLarge, len(sigs), MaxSignatures)
	}
	var det Resolver
	if content, size := v.Content(); content != nil {
		det = func(name string) (Detached, bool) {
			return Detached{Target: "content:" + name, Size: size, Open: func() (io.Reader, error) {
				return io.NewSectionReader(content, 0, size), nil
			}}, true
		}
	}
	for i, s := range sigs {
		rep.Signatures = append(rep.Signatures, Signature(v, s, x, det, fmt.Sprintf("sig%d", i+1)))
	}
	return nil
}

// findXMLSignatures lists every ds:Signature under e, in document order.
func findXMLSignatures(e *etree.Element) []*etree.Element {
	var out []*etree.Element
	var walk func(e *etree.Element)
	walk = func(e *etree.Element) {
		if Is(e, NSDS, "Signature") {
			out = append(out, e)
		}
		for _, c := range e.ChildElements() {
			walk(c)
		}
	}
	if e != nil {
		walk(e)
	}
	return out
}

// Signature validates the ds:Signature sig of x as the report id; det resolves its References
// to what is outside x (nil: nothing is).
func Signature(v *core.Validator, sig *etree.Element, x *Doc, det Resolver, id string) core.SignatureReport {
	s := &signature{v: v, x: x, det: det, id: id, sig: sig, rep: core.SignatureReport{ID: id, Kind: "signature", Format: "XML-DSig"}}
	if s.structure() && s.validationData() && s.references() && s.signer() {
		s.trust()
	}
	s.rep.Conclude()
	return s.rep
}

// signature is the validation of one ds:Signature, built for it alone: its parts as they are
// found, and its validator, whose evidence is the signature's own CertificateValues and
// RevocationValues (where the DSS stands for a PDF), so nothing of one signature reaches
// another's. Each step adds its checks to rep and reports whether the next may run.
type signature struct {
	v   *core.Validator
	x   *Doc
	det Resolver
	id  string
	rep core.SignatureReport

	sig, signedInfo, sigValue, keyInfo *etree.Element
	refEls                             []*etree.Element
	// qp and signedProps are XAdES's QualifyingProperties and SignedProperties, usp the
	// UnsignedSignatureProperties; nil when absent.
	qp, signedProps, usp *etree.Element
	keyCerts, allCerts   []*x509.Certificate // KeyInfo's; with the CertificateValues
	hasRevValues         bool
	refs                 []*reference
	cert                 *x509.Certificate // the signer's
	bindingOK            bool              // SigningCertificateV2 binds cert
}

// structure checks the ds:Signature's elements: SignedInfo, SignatureValue, KeyInfo?, Object*,
// nothing else, nothing twice; and for XAdES the QualifyingProperties that target it.
func (s *signature) structure() bool {
	rep := &s.rep
	kids := s.sig.ChildElements()
	if len(kids) < 2 || !Is(kids[0], NSDS, "SignedInfo") || !Is(kids[1], NSDS, "SignatureValue") {
		rep.Fail("format", core.FormatFailure, "ds:Signature does not start with SignedInfo and SignatureValue")
		return false
	}
	s.signedInfo, s.sigValue = kids[0], kids[1]
	for i, k := range kids[2:] {
		switch {
		case i == 0 && Is(k, NSDS, "KeyInfo"):
			s.keyInfo = k
		case Is(k, NSDS, "Object"):
		default:
			rep.Fail("format", core.FormatFailure, "unexpected <%s> in ds:Signature", k.FullTag())
			return false
		}
	}
	s.refEls = Children(s.signedInfo, NSDS, "Reference")
	if len(s.refEls) == 0 || len(s.refEls) > maxReferences {
		rep.Fail("format", core.FormatFailure, "SignedInfo has %d References (1 to %d are validated)", len(s.refEls), maxReferences)
		return false
	}
	sigID := s.sig.SelectAttrValue("Id", "")

	// XAdES: the QualifyingProperties that target this signature.
	var qps []*etree.Element
	for _, o := range Children(s.sig, NSDS, "Object") {
		qps = append(qps, Children(o, nsXAdES, "QualifyingProperties")...)
	}
	switch {
	case len(qps) > 1:
		rep.Fail("format", core.FormatFailure, "%d QualifyingProperties in one signature", len(qps))
		return false
	case len(qps) == 1:
		s.qp = qps[0]
		rep.Format = "XAdES-BASELINE"
		if sigID == "" || s.qp.SelectAttrValue("Target", "") != "#"+sigID {
			rep.Fail("format", core.FormatFailure, "QualifyingProperties Target %q is not this signature's Id %q", s.qp.SelectAttrValue("Target", ""), sigID)
			return false
		}
		if s.signedProps = Only(s.qp, nsXAdES, "SignedProperties"); s.signedProps == nil {
			rep.Fail("format", core.FormatFailure, "QualifyingProperties without exactly one SignedProperties")
			return false
		}
	}
	rep.Pass("format", "%s signature with %d Reference(s)", rep.Format, len(s.refEls))
	return true
}

// validationData reads the certificates (KeyInfo's, and for XAdES the CertificateValues) and
// the RevocationValues, and gives the signature's validator its evidence.
func (s *signature) validationData() bool {
	rep := &s.rep
	var embedded []*x509.Certificate
	if s.keyInfo != nil {
		for _, xd := range Children(s.keyInfo, NSDS, "X509Data") {
			for _, c := range Children(xd, NSDS, "X509Certificate") {
				der, err := DecodeBase64(c.Text())
				cert, perr := x509.ParseCertificate(der)
				if err != nil || perr != nil {
					rep.Fail("format", core.FormatFailure, "a KeyInfo X509Certificate does not parse")
					return false
				}
				s.keyCerts = append(s.keyCerts, cert)
			}
		}
	}
	if s.qp != nil {
		if up := Only(s.qp, nsXAdES, "UnsignedProperties"); up != nil {
			s.usp = Only(up, nsXAdES, "UnsignedSignatureProperties")
		}
	}
	var ocsps, crls [][]byte
	if s.usp != nil {
		var err error
		if embedded, ocsps, crls, s.hasRevValues, err = validationValues(s.usp); err != nil {
			rep.Fail("format", core.FormatFailure, "%v", err)
			return false
		}
	}
	s.v = s.v.With(core.Evidence{Source: "XAdES", Certs: embedded, OCSPs: ocsps, CRLs: crls})
	s.allCerts = slices.Concat(s.keyCerts, embedded)
	return true
}

// references verifies every Reference's digest, and the one to the SignedProperties.
func (s *signature) references() bool {
	rep := &s.rep
	spRefs := 0
	for _, el := range s.refEls {
		r, err := verifyReference(el, s.sig, s.qp, s.x, s.det)
		var re *refError
		switch {
		case errors.As(err, &re) && re.missing:
			rep.Indeterminate("reference", core.SignedDataNotFound, "%s", re.msg)
			return false
		case err != nil:
			rep.Fail("reference", core.FormatFailure, "%v", err)
			return false
		case !r.ok:
			rep.Fail("reference", core.HashFailure, "the %v digest of Reference %q (%s) does not match", r.hash, r.uri, r.obj.Target)
			return false
		}
		if r.hash == crypto.SHA1 {
			rep.Indeterminate("reference", core.CryptoConstraintsFailure, "Reference %q is digested with SHA-1", r.uri)
			return false
		}
		if r.typ == typeSignedProps {
			spRefs++
			if s.signedProps == nil || r.target != s.signedProps {
				rep.Fail("signed-properties", core.FormatFailure, "the SignedProperties Reference %q does not cover this signature's SignedProperties", r.uri)
				return false
			}
		} else {
			rep.SignedObjects = append(rep.SignedObjects, r.obj)
		}
		s.refs = append(s.refs, r)
		rep.Pass("reference", "Reference %q (%s): the %v digest matches", r.uri, r.obj.Target, r.hash)
	}
	// A ds:Object is signed content or the QualifyingProperties' holder: anything else in the
	// signature is unsigned text a reader of the document might take for the signed one (and
	// the enveloped-signature transform hides it from every digest).
	for _, o := range Children(s.sig, NSDS, "Object") {
		if s.qp != nil && s.qp.Parent() == o {
			continue
		}
		if !slices.ContainsFunc(s.refs, func(r *reference) bool { return r.target == o }) {
			rep.Fail("format", core.FormatFailure, "%s is covered by no Reference: content inside a signature must be signed", elementPath(o))
			return false
		}
	}
	if s.signedProps != nil {
		if spRefs != 1 {
			rep.Fail("signed-properties", core.FormatFailure, "%d References of Type SignedProperties; exactly one must cover the SignedProperties", spRefs)
			return false
		}
		rep.Pass("signed-properties", "covered by a Reference of Type %s", typeSignedProps)
	} else {
		for _, r := range s.refs {
			if r.target != nil && Is(r.target, nsXAdES, "SignedProperties") {
				rep.Fail("signed-properties", core.FormatFailure, "a Reference covers SignedProperties that qualify no signature here")
				return false
			}
		}
	}
	return true
}

// signer finds the signer's certificate and verifies the SignatureValue with it.
func (s *signature) signer() bool {
	rep := &s.rep
	if s.signedProps != nil {
		ssp := Only(s.signedProps, nsXAdES, "SignedSignatureProperties")
		if ssp == nil {
			rep.Fail("format", core.FormatFailure, "SignedProperties without SignedSignatureProperties")
			return false
		}
		if st := Only(ssp, nsXAdES, "SigningTime"); st != nil {
			if t, err := time.Parse(time.RFC3339, st.Text()); err == nil {
				t = t.UTC()
				rep.ClaimedSigningTime = &t
			}
		}
		var err error
		s.cert, err = signingCertV2(ssp, s.allCerts)
		if err != nil {
			rep.Indeterminate("signing-certificate", core.NoSigningCertificateFound, "%v", err)
			return false
		}
		s.bindingOK = true
		rep.Pass("signing-certificate", "bound by SigningCertificateV2 (digest and IssuerSerialV2)")
	} else {
		if len(s.keyCerts) == 0 {
			rep.Indeterminate("signing-certificate", core.NoSigningCertificateFound, "KeyInfo holds no X509Certificate")
			return false
		}
		// Plain XML-DSig binds no certificate: the signer is the KeyInfo certificate whose key
		// verifies the SignatureValue (xmlsec1 writes the signer's first, but need not).
		s.cert = s.keyCerts[0]
		for _, c := range s.keyCerts {
			if verifySignatureValue(s.signedInfo, s.sigValue, c) == nil {
				s.cert = c
				break
			}
		}
		rep.Info("signing-certificate", "the KeyInfo certificate whose key verifies; nothing signed binds it")
	}
	rep.Signer = core.NewCertInfo(s.cert)
	if err := verifySignatureValue(s.signedInfo, s.sigValue, s.cert); err != nil {
		if errors.Is(err, errWeakAlgorithm) {
			rep.Indeterminate("signature", core.CryptoConstraintsFailure, "%v", err)
		} else {
			rep.Fail("signature", core.SigCryptoFailure, "%v", err)
		}
		return false
	}
	rep.Pass("signature", "the SignatureValue verifies over the canonical SignedInfo with the signer's key")
	return true
}

// trust validates the timestamps, the proof of existence they give, the signer's chain and
// its revocation at that time, and sets the baseline level.
func (s *signature) trust() {
	rep, v := &s.rep, s.v
	// The archive timestamps (B-LTA), newest first: a passed one proves that the signature
	// and the properties before it (signature timestamps, validation values, older archive
	// timestamps) existed at its time, so they are validated at that time once a certificate
	// of theirs has expired (EN 319 102-1 §5.6.2.1); the newest is validated now.
	var props []*etree.Element
	if s.usp != nil {
		props = s.usp.ChildElements()
	}
	type archiveTS struct {
		at  int // its index in props
		rep core.SignatureReport
	}
	var archives []archiveTS
	for i, ats := range props {
		if Is(ats, nsXAdES141, "ArchiveTimeStamp") {
			archives = append(archives, archiveTS{at: i})
		}
	}
	// later is the proof a passed archive timestamp gives to what precedes props[at] (at -1:
	// the signature itself): the earliest such timestamp's time.
	later := func(at int) core.Proof {
		var p core.Proof
		for _, a := range archives {
			if a.at > at && a.rep.Indication == core.TotalPassed {
				p = p.Earlier(core.Proof{At: a.rep.ProofOfExistence, By: "the archive timestamp " + a.rep.ID})
			}
		}
		return p
	}
	for n := len(archives) - 1; n >= 0; n-- {
		i := archives[n].at
		archives[n].rep = xmlTimestamp(v, props[i], "archive-timestamp", fmt.Sprintf("%s-ats%d", s.id, n+1), func(alg string, w io.Writer) error {
			return archiveInput(w, s.x.work, alg, s.refs, s.sig, s.signedInfo, s.sigValue, s.keyInfo, s.qp, props[:i])
		}, later(i))
	}

	// Timestamps over the SignatureValue: the proof of existence.
	var poe time.Time
	proven := false
	if s.usp != nil {
		for i, ts := range Children(s.usp, nsXAdES, "SignatureTimeStamp") {
			tsr := xmlTimestamp(v, ts, "signature-timestamp", fmt.Sprintf("%s-ts%d", s.id, i+1), func(alg string, w io.Writer) error {
				c, err := canonical(alg, "", s.sigValue)
				_, _ = w.Write(c) // a hash: never fails
				return err
			}, later(slices.Index(props, ts)))
			rep.Timestamps = append(rep.Timestamps, tsr)
			switch tsr.Indication {
			case core.TotalPassed:
				if !proven || tsr.ProofOfExistence.Before(poe) {
					poe, proven = tsr.ProofOfExistence, true
				}
			case core.TotalFailed:
				rep.Fail("signature-timestamp", tsr.SubIndication, "the signature timestamp %s failed", tsr.ID)
			default:
				rep.Info("signature-timestamp", "the signature timestamp %s is indeterminate (%s): no proof of existence from it", tsr.ID, tsr.SubIndication)
			}
		}
	}
	if proven {
		rep.Pass("signature-timestamp", "proof of existence at %s", poe.Format(time.RFC3339))
	} else {
		poe = v.Time()
	}
	timestamped := proven // the T level needs a signature timestamp, not an archive one
	if p := later(-1); p.OK() && (!proven || p.At.Before(poe)) {
		poe, proven = p.At, true
		rep.Info("proof-of-existence", "the signature existed at %s: %s covers it", p.At.Format(time.RFC3339), p.By)
	}
	rep.ProofOfExistence = poe
	if rep.ClaimedSigningTime != nil && proven && rep.ClaimedSigningTime.After(poe.Add(time.Minute)) {
		rep.Indeterminate("signing-time", core.TimestampOrderFailure, "the claimed signing time %s is after the signature timestamp %s", rep.ClaimedSigningTime.Format(time.RFC3339), poe.Format(time.RFC3339))
	}
	core.KeyUsage(rep, s.cert)
	chain := v.BuildChain(rep, s.cert, s.keyCerts, poe, proven, x509.ExtKeyUsageAny)
	v.Qualify(rep, s.cert, chain, poe)
	embeddedOnly := false
	if chain != nil {
		embeddedOnly = v.Revocation(rep, chain, nil, nil, poe, proven)
		for _, ts := range rep.Timestamps {
			for _, r := range ts.Revocation {
				if r.Source == "fetched" {
					embeddedOnly = false
				}
			}
		}
	}

	// The archive timestamps' outcome (B-LTA), in document order.
	archived := false
	for _, a := range archives {
		tsr := a.rep
		rep.Timestamps = append(rep.Timestamps, tsr)
		switch tsr.Indication {
		case core.TotalPassed:
			archived = true
		case core.TotalFailed:
			rep.Fail("archive-timestamp", tsr.SubIndication, "the archive timestamp %s failed", tsr.ID)
		default:
			rep.Info("archive-timestamp", "the archive timestamp %s is indeterminate (%s)", tsr.ID, tsr.SubIndication)
		}
	}

	rep.Conclude()
	if rep.Format == "XAdES-BASELINE" && rep.ClaimedSigningTime == nil {
		// EN 319 132-1 §6.3: a baseline signature carries SigningTime.
		rep.Info("baseline", "no SigningTime: the signature is XAdES, but not at a baseline level")
	} else if rep.Format == "XAdES-BASELINE" && s.bindingOK && !rep.Failed() {
		rep.Level = signing.LevelB
		if timestamped {
			rep.Level = signing.LevelT
			if embeddedOnly && s.hasRevValues {
				rep.Level = signing.LevelLT
				if archived {
					rep.Level = signing.LevelLTA
				}
			}
		}
	}
}

// errWeakAlgorithm marks an algorithm refused as too weak (CRYPTO_CONSTRAINTS_FAILURE).
var errWeakAlgorithm = errors.New("a weak algorithm")

// validationValues reads CertificateValues and RevocationValues, those of the signature and
// those of its xadesv141:TimeStampValidationData (a renewal's data on a timestamp's TSA).
func validationValues(usp *etree.Element) (certs []*x509.Certificate, ocsps, crls [][]byte, hasRev bool, err error) {
	for _, tvd := range Children(usp, nsXAdES141, "TimeStampValidationData") {
		c, o, r, _, err := validationValues(tvd)
		if err != nil {
			return nil, nil, nil, false, err
		}
		certs, ocsps, crls = append(certs, c...), append(ocsps, o...), append(crls, r...)
	}
	for _, cv := range Children(usp, nsXAdES, "CertificateValues") {
		for _, e := range Children(cv, nsXAdES, "EncapsulatedX509Certificate") {
			der, err := DecodeBase64(e.Text())
			if err != nil {
				return nil, nil, nil, false, errors.New("an EncapsulatedX509Certificate is not base64")
			}
			c, err := x509.ParseCertificate(der)
			if err != nil {
				return nil, nil, nil, false, fmt.Errorf("an EncapsulatedX509Certificate does not parse: %v", err)
			}
			certs = append(certs, c)
		}
	}
	for _, rv := range Children(usp, nsXAdES, "RevocationValues") {
		hasRev = true
		for _, l := range Children(rv, nsXAdES, "CRLValues") {
			for _, e := range Children(l, nsXAdES, "EncapsulatedCRLValue") {
				der, err := DecodeBase64(e.Text())
				if err != nil {
					return nil, nil, nil, false, errors.New("an EncapsulatedCRLValue is not base64")
				}
				crls = append(crls, der)
			}
		}
		for _, l := range Children(rv, nsXAdES, "OCSPValues") {
			for _, e := range Children(l, nsXAdES, "EncapsulatedOCSPValue") {
				der, err := DecodeBase64(e.Text())
				if err != nil {
					return nil, nil, nil, false, errors.New("an EncapsulatedOCSPValue is not base64")
				}
				ocsps = append(ocsps, der)
			}
		}
	}
	return certs, ocsps, crls, hasRev, nil
}

// signingCertV2 finds among certs the one SigningCertificateV2 names (CertDigest, and
// IssuerSerialV2 when present).
func signingCertV2(ssp *etree.Element, certs []*x509.Certificate) (*x509.Certificate, error) {
	if Only(ssp, nsXAdES, "SigningCertificate") != nil {
		return nil, errors.New("SigningCertificate (v1, SHA-1 era) is not accepted in a baseline signature; SigningCertificateV2 is required")
	}
	scv2 := Only(ssp, nsXAdES, "SigningCertificateV2")
	if scv2 == nil {
		return nil, errors.New("no SigningCertificateV2 binds the signer's certificate")
	}
	cs := Children(scv2, nsXAdES, "Cert")
	if len(cs) == 0 {
		return nil, errors.New("SigningCertificateV2 has no Cert")
	}
	// The first Cert is the signer's (EN 319 132-1 §5.2.2).
	c := cs[0]
	cd := Only(c, nsXAdES, "CertDigest")
	if cd == nil {
		return nil, errors.New("SigningCertificateV2 Cert has no CertDigest")
	}
	dm, dv := Only(cd, NSDS, "DigestMethod"), Only(cd, NSDS, "DigestValue")
	if dm == nil || dv == nil {
		return nil, errors.New("CertDigest is malformed")
	}
	h, ok := xmlDigests[dm.SelectAttrValue("Algorithm", "")]
	if !ok || h == crypto.SHA1 {
		return nil, fmt.Errorf("CertDigest algorithm %q is not accepted", dm.SelectAttrValue("Algorithm", ""))
	}
	want, err := DecodeBase64(dv.Text())
	if err != nil {
		return nil, errors.New("CertDigest DigestValue is not base64")
	}
	var found *x509.Certificate
	for _, x := range certs {
		hh := h.New()
		hh.Write(x.Raw)
		if bytes.Equal(hh.Sum(nil), want) {
			found = x
			break
		}
	}
	if found == nil {
		return nil, errors.New("SigningCertificateV2 names a certificate the signature does not carry")
	}
	if isv2 := Only(c, nsXAdES, "IssuerSerialV2"); isv2 != nil {
		der, err := DecodeBase64(isv2.Text())
		if err != nil {
			return nil, errors.New("IssuerSerialV2 is not base64")
		}
		if err := cades.CheckIssuerSerial(cryptobyte.String(der), found); err != nil {
			return nil, err
		}
	}
	return found, nil
}

// xmlTimestamp verifies a XAdESTimeStampType property: its EncapsulatedTimeStamp must cover
// input(its CanonicalizationMethod), C14N 1.0 when it names none (EN 319 132-1 §5.1.4.1).
// later is a proof of its existence from an archive timestamp over it (see timestampAt).
func xmlTimestamp(v *core.Validator, ts *etree.Element, kind, id string, input func(alg string, w io.Writer) error, later core.Proof) core.SignatureReport {
	bad := func(msg string) core.SignatureReport {
		r := core.SignatureReport{ID: id, Kind: kind, Format: "RFC3161"}
		r.Fail("format", core.FormatFailure, "%s", msg)
		r.Conclude()
		return r
	}
	alg := algC14N10
	if cm := Only(ts, NSDS, "CanonicalizationMethod"); cm != nil {
		alg = cm.SelectAttrValue("Algorithm", "")
	}
	et := Children(ts, nsXAdES, "EncapsulatedTimeStamp")
	if len(et) != 1 {
		return bad("not exactly one EncapsulatedTimeStamp")
	}
	tok, err := DecodeBase64(et[0].Text())
	if err != nil {
		return bad("the EncapsulatedTimeStamp is not base64")
	}
	imprint := func(h crypto.Hash) ([]byte, error) {
		if !h.Available() || h == crypto.SHA1 {
			return nil, fmt.Errorf("hash %v is not accepted", h)
		}
		x := h.New()
		if err := input(alg, x); err != nil {
			return nil, fmt.Errorf("the timestamped data cannot be formed: %v", err)
		}
		return x.Sum(nil), nil
	}
	return cades.Timestamp(v, tok, kind, id, imprint, later)
}

// archiveInput is the input of a xadesv141:ArchiveTimeStamp (EN 319 132-1 §5.5.2.2), as
// internal/signing/xades builds it: each Reference's octets after its transforms, in order;
// the canonical SignedInfo, SignatureValue and KeyInfo; each unsigned signature property
// before the timestamp; each ds:Object but the one holding the QualifyingProperties.
func archiveInput(w io.Writer, work *WorkBudget, alg string, refs []*reference, sig, signedInfo, sigValue, keyInfo, qp *etree.Element, before []*etree.Element) error {
	for _, r := range refs {
		if err := r.writeOctets(w, work); err != nil {
			return err
		}
	}
	els := []*etree.Element{signedInfo, sigValue}
	if keyInfo != nil {
		els = append(els, keyInfo)
	}
	els = append(els, before...)
	for _, o := range Children(sig, NSDS, "Object") {
		if qp == nil || qp.Parent() != o {
			els = append(els, o)
		}
	}
	for _, el := range els {
		c, err := canonical(alg, "", el)
		if err != nil {
			return err
		}
		if err := work.Spend(int64(len(c))); err != nil {
			return err
		}
		_, _ = w.Write(c) // a hash: never fails
	}
	return nil
}
