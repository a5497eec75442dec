package validation_test

import (
	"strings"
	"testing"

	"github.com/vula-eid/vula/internal/signing"
	"github.com/vula-eid/vula/internal/signing/signingtest"
	"github.com/vula-eid/vula/internal/signing/xades"
	"github.com/vula-eid/vula/internal/validation"
)

// soapTemplate is a signature over one element by its Id (#body), placed in the header, the
// layout the XML signature wrapping attacks (Somorovsky et al., USENIX Security 2012) target.
const soapTemplate = `<?xml version="1.0" encoding="UTF-8"?>
<env:Envelope xmlns:env="urn:example:env">
<env:Header><Signature xmlns="http://www.w3.org/2000/09/xmldsig#"><SignedInfo>` +
	`<CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>` +
	`<SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"/>` +
	`<Reference URI="#body"><Transforms><Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/></Transforms>` +
	`<DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/><DigestValue/></Reference></SignedInfo>` +
	`<SignatureValue/><KeyInfo><X509Data><X509Certificate/></X509Data></KeyInfo></Signature></env:Header>` +
	`<env:Body Id="body"><op:Transfer xmlns:op="urn:example:op" amount="100" to="alice"/></env:Body>
</env:Envelope>
`

const evilTransfer = `<op:Transfer xmlns:op="urn:example:op" amount="1000000" to="mallory"/>`

// TestSignatureWrapping: each wrapping variant either fails, or passes naming only the element
// truly signed, by its position, never the attacker's element.
func TestSignatureWrapping(t *testing.T) {
	env := signingtest.New(t, signingtest.Options{})
	opts := validation.Options{TrustAnchors: anchors(env), Fetch: validation.RevocationFetcher{R: env.PKI}}
	s := newSoftwareSigner(t, env, false, false)
	doc := string(xmlsecSignArgs(t, s, soapTemplate, "--id-attr:Id", "urn:example:env:Body"))

	rep := validate(t, []byte(doc), opts)
	const bodyPath = "/env:Envelope[1]/env:Body[1]"
	if rep.Indication != validation.TotalPassed || rep.Signatures[0].SignedObjects[0].Target != bodyPath {
		t.Fatalf("the honest document: %s\n%s", rep.Indication, dump(t, rep))
	}

	i := strings.Index(doc, `<env:Body Id="body">`)
	j := strings.Index(doc, `</env:Body>`) + len(`</env:Body>`)
	body := doc[i:j]
	evilBody := `<env:Body Id="body">` + evilTransfer + `</env:Body>`
	evilNoID := `<env:Body>` + evilTransfer + `</env:Body>`
	without := doc[:i] + "%s" + doc[j:] // the original's place
	inHeader := func(s string) string { return strings.Replace(without, "</env:Header>", s+"</env:Header>", 1) }
	inSignature := func(s string) string { return strings.Replace(without, "</Signature>", s+"</Signature>", 1) }
	sprintf := func(f, a string) string { return strings.Replace(f, "%s", a, 1) }

	for _, tc := range []struct {
		name, doc string
		mustFail  bool
		target    string // what a pass must name as signed
	}{
		// XSW: the attacker's element carries the signed Id too, before or after the original.
		{"duplicate Id before the original", sprintf(without, evilBody+body), true, ""},
		{"duplicate Id after the original", sprintf(without, body+evilBody), true, ""},
		{"duplicate Id, original moved into the header", sprintf(inHeader("<Wrapper>"+body+"</Wrapper>"), evilBody), true, ""},
		// XSW: the original moved into an unsigned wrapper, the attacker's element (no Id) in
		// its place: the signature still verifies, over the wrapped original only.
		{"original moved into a header wrapper", sprintf(inHeader("<Wrapper>"+body+"</Wrapper>"), evilNoID), false, "/env:Envelope[1]/env:Header[1]/Wrapper[1]/env:Body[1]"},
		// XSW: the attacker's element (no Id) just before the original, where a reader
		// looking for the first Body finds it.
		{"attacker's element before the original", sprintf(without, evilNoID+body), false, "/env:Envelope[1]/env:Body[2]"},
		// XSW: the original wrapped in a ds:Object of the signature (hidden from readers).
		{"original wrapped in ds:Object", sprintf(inSignature("<Object>"+body+"</Object>"), evilNoID), true, ""},
		{"original in ds:Object with a wrapper", sprintf(inSignature("<Object><Wrapper>"+body+"</Wrapper></Object>"), evilNoID), true, ""},
		{"attacker's element in ds:Object with the same Id", sprintf(inSignature("<Object>"+evilBody+"</Object>"), body), true, ""},
		// XSW: the original moved into KeyInfo, which no digest covers.
		{"original moved into KeyInfo", strings.Replace(sprintf(without, evilNoID), "</KeyInfo>", body+"</KeyInfo>", 1), true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(tc.doc, "mallory") {
				t.Fatal("the attack document has no attacker's content")
			}
			rep := validate(t, []byte(tc.doc), opts)
			s := rep.Signatures[0]
			if rep.Indication == validation.TotalPassed {
				if tc.mustFail {
					t.Fatalf("passed:\n%s", rep.Text())
				}
				for _, o := range s.SignedObjects {
					if o.Target == bodyPath {
						t.Fatalf("the report names the attacker's element %s as signed\n%s", bodyPath, rep.Text())
					}
				}
				if len(s.SignedObjects) != 1 || s.SignedObjects[0].Target != tc.target {
					t.Fatalf("signed objects %+v, want the original at %s", s.SignedObjects, tc.target)
				}
				return
			}
			if rep.Indication != validation.TotalFailed {
				t.Fatalf("%s/%s, want TOTAL-FAILED\n%s", rep.Indication, rep.SubIndication, rep.Text())
			}
			t.Logf("%s: %s", rep.SubIndication, s.Checks[len(s.Checks)-1].Message)
		})
	}
}

// TestXAdESWrapping: the XAdES properties are those of the SignedProperties the Reference
// covers, in this signature: a lookalike in its place fails, so does unsigned content hidden in
// a ds:Object of an enveloped signature (whose transform leaves the signature out of the digest).
func TestXAdESWrapping(t *testing.T) {
	env := signingtest.New(t, signingtest.Options{})
	opts := validation.Options{TrustAnchors: anchors(env), Fetch: validation.RevocationFetcher{R: env.PKI}}
	doc := string(signXAdES(t, env, env.Seal, []byte(invoiceXML), xades.Enveloped, signing.LevelB))
	i := strings.Index(doc, "<xades:SignedProperties")
	j := strings.Index(doc, "</xades:SignedProperties>") + len("</xades:SignedProperties>")
	sp := doc[i:j]
	evil := strings.Replace(sp, "<xades:SigningTime>20", "<xades:SigningTime>19", 1)
	evilOtherID := strings.Replace(evil, `-signedprops"`, `-other"`, 1)
	for name, bad := range map[string]string{
		"SignedProperties duplicated with its Id":          doc[:j] + evil + doc[j:],
		"original moved out, a lookalike in its place":     strings.Replace(doc[:i]+evilOtherID+doc[j:], "</inv:Invoice>", sp+"</inv:Invoice>", 1),
		"original moved out, a lookalike with the same Id": strings.Replace(doc[:i]+evil+doc[j:], "</inv:Invoice>", sp+"</inv:Invoice>", 1),
		"an unsigned ds:Object in the enveloped signature": strings.Replace(doc, "</ds:Signature>", `<ds:Object><inv:Amount xmlns:inv="urn:vula:invoice">900.00</inv:Amount></ds:Object></ds:Signature>`, 1),
	} {
		t.Run(name, func(t *testing.T) {
			if bad == doc {
				t.Fatal("the attack changed nothing")
			}
			rep := validate(t, []byte(bad), opts)
			if rep.Indication != validation.TotalFailed {
				t.Fatalf("%s/%s, want TOTAL-FAILED\n%s", rep.Indication, rep.SubIndication, rep.Text())
			}
			// Not a claim of agreement: xmlsec1 checks the cryptography, not XAdES nor where
			// the signed content stands, so it is only logged.
			ok, _ := xmlsecVerify(t, env, []byte(bad), nil)
			t.Logf("%s/%s; xmlsec1 --verify OK: %v", rep.Indication, rep.SubIndication, ok)
		})
	}
}
