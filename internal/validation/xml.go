package validation

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/beevik/etree"
	"golang.org/x/crypto/cryptobyte"

	"github.com/vula-eid/vula/internal/signing"
	"github.com/vula-eid/vula/internal/signing/xades"
)

// XML signatures (XML-DSig, XAdES baseline of EN 319 132-1) are validated thus:
//
//   - The document is parsed by xades.ParseXML: a DTD, and so any entity declaration, is
//     refused before parsing (nothing is expanded or fetched), nesting is bounded, and the
//     document is at most maxXMLSize bytes.
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
//     passed it is a proof of existence of what precedes it (newest first, see xmlSignature).
//   - Without it the signature is plain XML-DSig (no baseline level); its signer is the
//     KeyInfo X509Certificate whose key verifies the SignatureValue, and its chain is checked.
//   - Transforms: enveloped-signature, exclusive C14N (with an InclusiveNamespaces PrefixList),
//     inclusive C14N 1.0 and 1.1, base64; XPath, XSLT and XPointer URIs are refused. Signature
//     methods: RSA PKCS#1 v1.5 and ECDSA (raw r||s) with SHA-256/384/512; SHA-1 fails with
//     CRYPTO_CONSTRAINTS_FAILURE.
//   - The work is bounded: at most maxXMLSignatures signatures and maxReferences References
//     each, and the bytes canonicalized and digested within a workBudget of the input's size.

// maxXMLSize bounds an XML document or a signature file of a container.
const maxXMLSize = 64 << 20

// maxXMLNodes bounds the elements and attributes of an XML document: a parsed node costs a
// few hundred bytes whatever its size in the input, so without it a 14 MB file of empty
// elements took over 400 MB to parse. A signed invoice with thousands of lines stays far below.
const maxXMLNodes = 100_000

// parseXML is xades.ParseXML for untrusted input: a document of more than maxXMLNodes nodes is
// refused before it is parsed into a tree.
func parseXML(data []byte) (*etree.Document, error) {
	dec := xml.NewDecoder(bytes.NewReader(data))
	nodes := 0
	for {
		tok, err := dec.RawToken()
		if err != nil {
			break // xades.ParseXML says what is wrong
		}
		if t, ok := tok.(xml.StartElement); ok {
			if nodes += 1 + len(t.Attr); nodes > maxXMLNodes {
				return nil, fmt.Errorf("%w: validation: the XML document has more than %d elements and attributes", signing.ErrTooLarge, maxXMLNodes)
			}
		}
	}
	return xades.ParseXML(data)
}

// maxXMLSignatures bounds the signatures of a document or container, and maxReferences the
// References of one: each signature costs chain and revocation checks, whatever its size.
const (
	maxXMLSignatures = 100
	maxReferences    = 1000
)

// workBudget bounds the bytes a validation canonicalizes and digests: a few Reference elements
// can each ask for the whole document (or a whole container entry) again, so the work is
// bounded by what the input justifies, not by the number of References. Past it, the
// Reference fails as too costly rather than being skipped.
type workBudget struct{ left int64 }

func newWorkBudget(input int64) *workBudget { return &workBudget{left: 4*input + 4<<20} }

func (b *workBudget) spend(n int64) error {
	if b.left -= n; b.left < 0 {
		return fmt.Errorf("the signatures ask for more canonicalization and digesting than the input's size justifies")
	}
	return nil
}

// xmlDocument validates each ds:Signature of an XML document.
func (v *validator) xmlDocument(data []byte, rep *Report) error {
	if len(data) > maxXMLSize {
		return fmt.Errorf("%w: validation: the XML document has %d bytes, the limit is %d", signing.ErrTooLarge, len(data), maxXMLSize)
	}
	// A UTF-8 byte order mark is no part of the document (nor of any canonical form);
	// encoding/xml would take it for text before the root.
	doc, err := parseXML(bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")))
	if err != nil {
		return fmt.Errorf("validation: %w", err)
	}
	x := newXMLDoc(doc, newWorkBudget(int64(len(data))))
	sigs := findXMLSignatures(doc.Root())
	if len(sigs) == 0 {
		return fmt.Errorf("%w: validation: the XML document holds no ds:Signature", signing.ErrInvalid)
	}
	if len(sigs) > maxXMLSignatures {
		return fmt.Errorf("%w: validation: %d signatures, the limit is %d", signing.ErrTooLarge, len(sigs), maxXMLSignatures)
	}
	var det resolveDetached
	if v.opts.Content != nil {
		det = func(name string) (detachedData, bool) {
			return detachedData{target: "content:" + name, size: v.opts.ContentSize, open: func() (io.Reader, error) {
				return io.NewSectionReader(v.opts.Content, 0, v.opts.ContentSize), nil
			}}, true
		}
	}
	for i, s := range sigs {
		rep.Signatures = append(rep.Signatures, v.xmlSignature(s, x, det, fmt.Sprintf("sig%d", i+1)))
	}
	return nil
}

// findXMLSignatures lists every ds:Signature under e, in document order.
func findXMLSignatures(e *etree.Element) []*etree.Element {
	var out []*etree.Element
	var walk func(e *etree.Element)
	walk = func(e *etree.Element) {
		if is(e, nsDS, "Signature") {
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

// xmlSignature validates one ds:Signature.
func (v *validator) xmlSignature(sig *etree.Element, x *xmlDoc, det resolveDetached, id string) (rep SignatureReport) {
	rep = SignatureReport{ID: id, Kind: "signature", Format: "XML-DSig"}
	defer rep.conclude()
	// The embedded validation data (CertificateValues, RevocationValues) are this
	// signature's alone: they stand where the DSS stands for a PDF while it is validated.
	savedCerts, savedOCSPs, savedCRLs, savedSource := v.extraCerts, v.ocsps, v.crls, v.source
	defer func() { v.extraCerts, v.ocsps, v.crls, v.source = savedCerts, savedOCSPs, savedCRLs, savedSource }()

	// Structure: SignedInfo, SignatureValue, KeyInfo?, Object*; nothing else, nothing twice.
	kids := sig.ChildElements()
	if len(kids) < 2 || !is(kids[0], nsDS, "SignedInfo") || !is(kids[1], nsDS, "SignatureValue") {
		rep.fail("format", FormatFailure, "ds:Signature does not start with SignedInfo and SignatureValue")
		return rep
	}
	signedInfo, sigValue := kids[0], kids[1]
	var keyInfo *etree.Element
	for i, k := range kids[2:] {
		switch {
		case i == 0 && is(k, nsDS, "KeyInfo"):
			keyInfo = k
		case is(k, nsDS, "Object"):
		default:
			rep.fail("format", FormatFailure, "unexpected <%s> in ds:Signature", k.FullTag())
			return rep
		}
	}
	refEls := children(signedInfo, nsDS, "Reference")
	if len(refEls) == 0 || len(refEls) > maxReferences {
		rep.fail("format", FormatFailure, "SignedInfo has %d References (1 to %d are validated)", len(refEls), maxReferences)
		return rep
	}
	sigID := sig.SelectAttrValue("Id", "")

	// XAdES: the QualifyingProperties that target this signature.
	var qp, signedProps *etree.Element
	var qps []*etree.Element
	for _, o := range children(sig, nsDS, "Object") {
		qps = append(qps, children(o, nsXAdES, "QualifyingProperties")...)
	}
	switch {
	case len(qps) > 1:
		rep.fail("format", FormatFailure, "%d QualifyingProperties in one signature", len(qps))
		return rep
	case len(qps) == 1:
		qp = qps[0]
		rep.Format = "XAdES-BASELINE"
		if sigID == "" || qp.SelectAttrValue("Target", "") != "#"+sigID {
			rep.fail("format", FormatFailure, "QualifyingProperties Target %q is not this signature's Id %q", qp.SelectAttrValue("Target", ""), sigID)
			return rep
		}
		if signedProps = only(qp, nsXAdES, "SignedProperties"); signedProps == nil {
			rep.fail("format", FormatFailure, "QualifyingProperties without exactly one SignedProperties")
			return rep
		}
	}
	rep.pass("format", "%s signature with %d Reference(s)", rep.Format, len(refEls))

	// Certificates: KeyInfo's, and for XAdES the CertificateValues.
	var keyCerts, embedded []*x509.Certificate
	if keyInfo != nil {
		for _, xd := range children(keyInfo, nsDS, "X509Data") {
			for _, c := range children(xd, nsDS, "X509Certificate") {
				der, err := decodeB64(c.Text())
				cert, perr := x509.ParseCertificate(der)
				if err != nil || perr != nil {
					rep.fail("format", FormatFailure, "a KeyInfo X509Certificate does not parse")
					return rep
				}
				keyCerts = append(keyCerts, cert)
			}
		}
	}
	var usp *etree.Element
	if qp != nil {
		if up := only(qp, nsXAdES, "UnsignedProperties"); up != nil {
			usp = only(up, nsXAdES, "UnsignedSignatureProperties")
		}
	}
	var ocsps, crls [][]byte
	hasRevValues := false
	if usp != nil {
		var err error
		if embedded, ocsps, crls, hasRevValues, err = validationValues(usp); err != nil {
			rep.fail("format", FormatFailure, "%v", err)
			return rep
		}
	}
	v.extraCerts, v.ocsps, v.crls, v.source = slices.Concat(embedded), ocsps, crls, "XAdES"
	allCerts := slices.Concat(keyCerts, embedded)

	// References: every digest, and the one to the SignedProperties.
	var refs []*reference
	spRefs := 0
	for _, el := range refEls {
		r, err := verifyReference(el, sig, qp, x, det)
		var re *refError
		switch {
		case errors.As(err, &re) && re.missing:
			rep.indeterminate("reference", SignedDataNotFound, "%s", re.msg)
			return rep
		case err != nil:
			rep.fail("reference", FormatFailure, "%v", err)
			return rep
		case !r.ok:
			rep.fail("reference", HashFailure, "the %v digest of Reference %q (%s) does not match", r.hash, r.uri, r.obj.Target)
			return rep
		}
		if r.hash == crypto.SHA1 {
			rep.indeterminate("reference", CryptoConstraintsFailure, "Reference %q is digested with SHA-1", r.uri)
			return rep
		}
		if r.typ == typeSignedProps {
			spRefs++
			if signedProps == nil || r.target != signedProps {
				rep.fail("signed-properties", FormatFailure, "the SignedProperties Reference %q does not cover this signature's SignedProperties", r.uri)
				return rep
			}
		} else {
			rep.SignedObjects = append(rep.SignedObjects, r.obj)
		}
		refs = append(refs, r)
		rep.pass("reference", "Reference %q (%s): the %v digest matches", r.uri, r.obj.Target, r.hash)
	}
	// A ds:Object is signed content or the QualifyingProperties' holder: anything else in the
	// signature is unsigned text a reader of the document might take for the signed one (and
	// the enveloped-signature transform hides it from every digest).
	for _, o := range children(sig, nsDS, "Object") {
		if qp != nil && qp.Parent() == o {
			continue
		}
		if !slices.ContainsFunc(refs, func(r *reference) bool { return r.target == o }) {
			rep.fail("format", FormatFailure, "%s is covered by no Reference: content inside a signature must be signed", elementPath(o))
			return rep
		}
	}
	if signedProps != nil {
		if spRefs != 1 {
			rep.fail("signed-properties", FormatFailure, "%d References of Type SignedProperties; exactly one must cover the SignedProperties", spRefs)
			return rep
		}
		rep.pass("signed-properties", "covered by a Reference of Type %s", typeSignedProps)
	} else {
		for _, r := range refs {
			if r.target != nil && is(r.target, nsXAdES, "SignedProperties") {
				rep.fail("signed-properties", FormatFailure, "a Reference covers SignedProperties that qualify no signature here")
				return rep
			}
		}
	}

	// The signer's certificate.
	var cert *x509.Certificate
	bindingOK := false
	if signedProps != nil {
		ssp := only(signedProps, nsXAdES, "SignedSignatureProperties")
		if ssp == nil {
			rep.fail("format", FormatFailure, "SignedProperties without SignedSignatureProperties")
			return rep
		}
		if st := only(ssp, nsXAdES, "SigningTime"); st != nil {
			if t, err := time.Parse(time.RFC3339, st.Text()); err == nil {
				t = t.UTC()
				rep.ClaimedSigningTime = &t
			}
		}
		var err error
		cert, err = signingCertV2(ssp, allCerts)
		if err != nil {
			rep.indeterminate("signing-certificate", NoSigningCertificateFound, "%v", err)
			return rep
		}
		bindingOK = true
		rep.pass("signing-certificate", "bound by SigningCertificateV2 (digest and IssuerSerialV2)")
	} else {
		if len(keyCerts) == 0 {
			rep.indeterminate("signing-certificate", NoSigningCertificateFound, "KeyInfo holds no X509Certificate")
			return rep
		}
		// Plain XML-DSig binds no certificate: the signer is the KeyInfo certificate whose key
		// verifies the SignatureValue (xmlsec1 writes the signer's first, but need not).
		cert = keyCerts[0]
		for _, c := range keyCerts {
			if verifySignatureValue(signedInfo, sigValue, c) == nil {
				cert = c
				break
			}
		}
		rep.info("signing-certificate", "the KeyInfo certificate whose key verifies; nothing signed binds it")
	}
	rep.Signer = certInfo(cert)
	if err := verifySignatureValue(signedInfo, sigValue, cert); err != nil {
		if errors.Is(err, errWeakAlgorithm) {
			rep.indeterminate("signature", CryptoConstraintsFailure, "%v", err)
		} else {
			rep.fail("signature", SigCryptoFailure, "%v", err)
		}
		return rep
	}
	rep.pass("signature", "the SignatureValue verifies over the canonical SignedInfo with the signer's key")

	// The archive timestamps (B-LTA), newest first: a passed one proves that the signature
	// and the properties before it (signature timestamps, validation values, older archive
	// timestamps) existed at its time, so they are validated at that time once a certificate
	// of theirs has expired (EN 319 102-1 §5.6.2.1); the newest is validated now.
	var props []*etree.Element
	if usp != nil {
		props = usp.ChildElements()
	}
	type archiveTS struct {
		at  int // its index in props
		rep SignatureReport
	}
	var archives []archiveTS
	for i, ats := range props {
		if is(ats, nsXAdES141, "ArchiveTimeStamp") {
			archives = append(archives, archiveTS{at: i})
		}
	}
	// later is the proof a passed archive timestamp gives to what precedes props[at] (at -1:
	// the signature itself): the earliest such timestamp's time.
	later := func(at int) proof {
		var p proof
		for _, a := range archives {
			if a.at > at && a.rep.Indication == TotalPassed {
				p = p.earlier(proof{at: a.rep.ProofOfExistence, by: "the archive timestamp " + a.rep.ID})
			}
		}
		return p
	}
	for n := len(archives) - 1; n >= 0; n-- {
		i := archives[n].at
		archives[n].rep = v.xmlTimestamp(props[i], "archive-timestamp", fmt.Sprintf("%s-ats%d", id, n+1), func(alg string, w io.Writer) error {
			return archiveInput(w, x.work, alg, refs, sig, signedInfo, sigValue, keyInfo, qp, props[:i])
		}, later(i))
	}

	// Timestamps over the SignatureValue: the proof of existence.
	var poe time.Time
	proven := false
	if usp != nil {
		for i, ts := range children(usp, nsXAdES, "SignatureTimeStamp") {
			tsr := v.xmlTimestamp(ts, "signature-timestamp", fmt.Sprintf("%s-ts%d", id, i+1), func(alg string, w io.Writer) error {
				c, err := canonical(alg, "", sigValue)
				_, _ = w.Write(c) // a hash: never fails
				return err
			}, later(slices.Index(props, ts)))
			rep.Timestamps = append(rep.Timestamps, tsr)
			switch tsr.Indication {
			case TotalPassed:
				if !proven || tsr.ProofOfExistence.Before(poe) {
					poe, proven = tsr.ProofOfExistence, true
				}
			case TotalFailed:
				rep.fail("signature-timestamp", tsr.SubIndication, "the signature timestamp %s failed", tsr.ID)
			default:
				rep.info("signature-timestamp", "the signature timestamp %s is indeterminate (%s): no proof of existence from it", tsr.ID, tsr.SubIndication)
			}
		}
	}
	if proven {
		rep.pass("signature-timestamp", "proof of existence at %s", poe.Format(time.RFC3339))
	} else {
		poe = v.vtime
	}
	timestamped := proven // the T level needs a signature timestamp, not an archive one
	if p := later(-1); p.ok() && (!proven || p.at.Before(poe)) {
		poe, proven = p.at, true
		rep.info("proof-of-existence", "the signature existed at %s: %s covers it", p.at.Format(time.RFC3339), p.by)
	}
	rep.ProofOfExistence = poe
	if rep.ClaimedSigningTime != nil && proven && rep.ClaimedSigningTime.After(poe.Add(time.Minute)) {
		rep.indeterminate("signing-time", TimestampOrderFailure, "the claimed signing time %s is after the signature timestamp %s", rep.ClaimedSigningTime.Format(time.RFC3339), poe.Format(time.RFC3339))
	}
	keyUsage(&rep, cert)
	q, why := qualification(cert)
	rep.Qualification = q
	rep.info("qualification", "%s: %s (from the certificate; no trusted list consulted)", q, why)
	chain := v.buildChain(&rep, cert, keyCerts, poe, proven, x509.ExtKeyUsageAny)
	embeddedOnly := false
	if chain != nil {
		embeddedOnly = v.revocation(&rep, chain, nil, nil, poe, proven)
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
		case TotalPassed:
			archived = true
		case TotalFailed:
			rep.fail("archive-timestamp", tsr.SubIndication, "the archive timestamp %s failed", tsr.ID)
		default:
			rep.info("archive-timestamp", "the archive timestamp %s is indeterminate (%s)", tsr.ID, tsr.SubIndication)
		}
	}

	rep.conclude()
	if rep.Format == "XAdES-BASELINE" && rep.ClaimedSigningTime == nil {
		// EN 319 132-1 §6.3: a baseline signature carries SigningTime.
		rep.info("baseline", "no SigningTime: the signature is XAdES, but not at a baseline level")
	} else if rep.Format == "XAdES-BASELINE" && bindingOK && !rep.failed() {
		rep.Level = signing.LevelB
		if timestamped {
			rep.Level = signing.LevelT
			if embeddedOnly && hasRevValues {
				rep.Level = signing.LevelLT
				if archived {
					rep.Level = signing.LevelLTA
				}
			}
		}
	}
	return rep
}

// errWeakAlgorithm marks an algorithm refused as too weak (CRYPTO_CONSTRAINTS_FAILURE).
var errWeakAlgorithm = errors.New("a weak algorithm")

// validationValues reads CertificateValues and RevocationValues.
func validationValues(usp *etree.Element) (certs []*x509.Certificate, ocsps, crls [][]byte, hasRev bool, err error) {
	for _, cv := range children(usp, nsXAdES, "CertificateValues") {
		for _, e := range children(cv, nsXAdES, "EncapsulatedX509Certificate") {
			der, err := decodeB64(e.Text())
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
	for _, rv := range children(usp, nsXAdES, "RevocationValues") {
		hasRev = true
		for _, l := range children(rv, nsXAdES, "CRLValues") {
			for _, e := range children(l, nsXAdES, "EncapsulatedCRLValue") {
				der, err := decodeB64(e.Text())
				if err != nil {
					return nil, nil, nil, false, errors.New("an EncapsulatedCRLValue is not base64")
				}
				crls = append(crls, der)
			}
		}
		for _, l := range children(rv, nsXAdES, "OCSPValues") {
			for _, e := range children(l, nsXAdES, "EncapsulatedOCSPValue") {
				der, err := decodeB64(e.Text())
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
	if only(ssp, nsXAdES, "SigningCertificate") != nil {
		return nil, errors.New("SigningCertificate (v1, SHA-1 era) is not accepted in a baseline signature; SigningCertificateV2 is required")
	}
	scv2 := only(ssp, nsXAdES, "SigningCertificateV2")
	if scv2 == nil {
		return nil, errors.New("no SigningCertificateV2 binds the signer's certificate")
	}
	cs := children(scv2, nsXAdES, "Cert")
	if len(cs) == 0 {
		return nil, errors.New("SigningCertificateV2 has no Cert")
	}
	// The first Cert is the signer's (EN 319 132-1 §5.2.2).
	c := cs[0]
	cd := only(c, nsXAdES, "CertDigest")
	if cd == nil {
		return nil, errors.New("SigningCertificateV2 Cert has no CertDigest")
	}
	dm, dv := only(cd, nsDS, "DigestMethod"), only(cd, nsDS, "DigestValue")
	if dm == nil || dv == nil {
		return nil, errors.New("CertDigest is malformed")
	}
	h, ok := xmlDigests[dm.SelectAttrValue("Algorithm", "")]
	if !ok || h == crypto.SHA1 {
		return nil, fmt.Errorf("CertDigest algorithm %q is not accepted", dm.SelectAttrValue("Algorithm", ""))
	}
	want, err := decodeB64(dv.Text())
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
	if isv2 := only(c, nsXAdES, "IssuerSerialV2"); isv2 != nil {
		der, err := decodeB64(isv2.Text())
		if err != nil {
			return nil, errors.New("IssuerSerialV2 is not base64")
		}
		if err := checkIssuerSerial(cryptobyte.String(der), found); err != nil {
			return nil, err
		}
	}
	return found, nil
}

// xmlTimestamp verifies a XAdESTimeStampType property: its EncapsulatedTimeStamp must cover
// input(its CanonicalizationMethod), C14N 1.0 when it names none (EN 319 132-1 §5.1.4.1).
// later is a proof of its existence from an archive timestamp over it (see timestampAt).
func (v *validator) xmlTimestamp(ts *etree.Element, kind, id string, input func(alg string, w io.Writer) error, later proof) SignatureReport {
	bad := func(msg string) SignatureReport {
		r := SignatureReport{ID: id, Kind: kind, Format: "RFC3161"}
		r.fail("format", FormatFailure, "%s", msg)
		r.conclude()
		return r
	}
	alg := algC14N10
	if cm := only(ts, nsDS, "CanonicalizationMethod"); cm != nil {
		alg = cm.SelectAttrValue("Algorithm", "")
	}
	et := children(ts, nsXAdES, "EncapsulatedTimeStamp")
	if len(et) != 1 {
		return bad("not exactly one EncapsulatedTimeStamp")
	}
	tok, err := decodeB64(et[0].Text())
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
	r, _ := v.timestampAt(tok, kind, id, imprint, later)
	return r
}

// archiveInput is the input of a xadesv141:ArchiveTimeStamp (EN 319 132-1 §5.5.2.2), as
// internal/signing/xades builds it: each Reference's octets after its transforms, in order;
// the canonical SignedInfo, SignatureValue and KeyInfo; each unsigned signature property
// before the timestamp; each ds:Object but the one holding the QualifyingProperties.
func archiveInput(w io.Writer, work *workBudget, alg string, refs []*reference, sig, signedInfo, sigValue, keyInfo, qp *etree.Element, before []*etree.Element) error {
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
	for _, o := range children(sig, nsDS, "Object") {
		if qp == nil || qp.Parent() != o {
			els = append(els, o)
		}
	}
	for _, el := range els {
		c, err := canonical(alg, "", el)
		if err != nil {
			return err
		}
		if err := work.spend(int64(len(c))); err != nil {
			return err
		}
		_, _ = w.Write(c) // a hash: never fails
	}
	return nil
}
