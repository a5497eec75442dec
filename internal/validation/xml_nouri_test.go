package validation_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"fmt"
	"math/big"
	"strings"
	"testing"

	"github.com/vula-eid/vula/internal/signing/signingtest"
	"github.com/vula-eid/vula/internal/signing/xades"
	"github.com/vula-eid/vula/internal/validation"
)

// noURISignature is an XML-DSig signature over content whose one Reference has no URI, as
// xadesjs writes when it signs detached data: the verifier is to know what it covers.
func noURISignature(t *testing.T, env *signingtest.Env, content []byte) []byte {
	t.Helper()
	digest := sha256.Sum256(content)
	const ds = "http://www.w3.org/2000/09/xmldsig#"
	signedInfo := `<ds:SignedInfo xmlns:ds="` + ds + `">` +
		`<ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>` +
		`<ds:SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"/>` +
		`<ds:Reference><ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/>` +
		`<ds:DigestValue>` + base64.StdEncoding.EncodeToString(digest[:]) + `</ds:DigestValue></ds:Reference></ds:SignedInfo>`
	doc, err := xades.ParseXML([]byte(signedInfo))
	if err != nil {
		t.Fatal(err)
	}
	c14n, err := xades.ExcC14N(doc.Root())
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(c14n)
	der, err := env.Seal.Key.Sign(rand.Reader, h[:], crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	var rs struct{ R, S *big.Int }
	if _, err := asn1.Unmarshal(der, &rs); err != nil {
		t.Fatal(err)
	}
	if _, ok := env.Seal.Key.Public().(*ecdsa.PublicKey); !ok {
		t.Fatal("the seal key is not ECDSA")
	}
	raw := append(rs.R.FillBytes(make([]byte, 32)), rs.S.FillBytes(make([]byte, 32))...) // XML-DSig's r||s
	var certs strings.Builder
	for _, c := range append([]*x509.Certificate{env.Seal.Cert}, env.Seal.Chain...) {
		certs.WriteString("<ds:X509Certificate>" + base64.StdEncoding.EncodeToString(c.Raw) + "</ds:X509Certificate>")
	}
	// The SignedInfo inherits the prefix from the Signature: its exclusive canonical form is
	// the one signed above.
	return []byte(fmt.Sprintf(`<?xml version="1.0" encoding="UTF-8"?>`+"\n"+
		`<ds:Signature xmlns:ds="%s">%s<ds:SignatureValue>%s</ds:SignatureValue><ds:KeyInfo><ds:X509Data>%s</ds:X509Data></ds:KeyInfo></ds:Signature>`,
		ds, strings.Replace(signedInfo, ` xmlns:ds="`+ds+`"`, "", 1), base64.StdEncoding.EncodeToString(raw), certs.String()))
}

// TestXMLReferenceWithoutURI: a Reference without URI (legal in XML-DSig; xadesjs writes it
// for detached data) is resolved against the detached content given with the signature; with
// none given the verdict is EN 319 102-1's INDETERMINATE/SIGNED_DATA_NOT_FOUND, and other
// content is a HASH_FAILURE. It was a FORMAT_FAILURE.
func TestXMLReferenceWithoutURI(t *testing.T) {
	env := signingtest.New(t, signingtest.Options{})
	content := []byte("Faturë / Рачун 2026-117\n")
	sig := noURISignature(t, env, content)
	opts := func(c []byte) validation.Options {
		o := validation.Options{TrustAnchors: anchors(env), Fetch: validation.RevocationFetcher{R: env.PKI}}
		if c != nil {
			o.Content, o.ContentSize = bytes.NewReader(c), int64(len(c))
		}
		return o
	}
	rep := validate(t, sig, opts(content))
	expect(t, rep, validation.TotalPassed, "")
	if objs := rep.Signatures[0].SignedObjects; len(objs) != 1 || objs[0].URI != "" || objs[0].Target != "content:" {
		t.Errorf("signed objects %+v, want the given content", objs)
	}
	rep = validate(t, sig, opts(nil))
	expect(t, rep, validation.Indeterminate, validation.SignedDataNotFound)
	if !strings.Contains(rep.Text(), "a Reference without URI") {
		t.Errorf("the report does not name the Reference\n%s", rep.Text())
	}
	expect(t, validate(t, sig, opts([]byte("other content"))), validation.TotalFailed, validation.HashFailure)
}
