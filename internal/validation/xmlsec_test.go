package validation_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vula-eid/vula/internal/certs"
	"github.com/vula-eid/vula/internal/signing/signingtest"
	"github.com/vula-eid/vula/internal/testenv"
	"github.com/vula-eid/vula/internal/validation"
)

// xmlsecTemplate is an enveloped-signature template for xmlsec1 --sign: the whole document
// (URI=""), with the canonicalization and signature method given.
func xmlsecTemplate(c14n, sigAlg string, transforms ...string) string {
	var ts strings.Builder
	for _, t := range transforms {
		ts.WriteString(`<Transform Algorithm="` + t + `"/>`)
	}
	return `<?xml version="1.0" encoding="UTF-8"?>
<doc:Order xmlns:doc="urn:example:order" xmlns:unused="urn:example:unused">
  <doc:Item Id="item-1" qty="2">Widget &amp; co</doc:Item>
  <doc:Item Id="item-2" qty="1">Gadget</doc:Item>
  <Signature xmlns="http://www.w3.org/2000/09/xmldsig#">
    <SignedInfo>
      <CanonicalizationMethod Algorithm="` + c14n + `"/>
      <SignatureMethod Algorithm="` + sigAlg + `"/>
      <Reference URI="">
        <Transforms>` + ts.String() + `</Transforms>
        <DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/>
        <DigestValue/>
      </Reference>
    </SignedInfo>
    <SignatureValue/>
    <KeyInfo><X509Data><X509Certificate/></X509Data></KeyInfo>
  </Signature>
</doc:Order>
`
}

const (
	algExc   = "http://www.w3.org/2001/10/xml-exc-c14n#"
	algC14N  = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"
	algEnv   = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
	rsaSHA   = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
	ecdsaSHA = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"
)

// softwareSigner is a key made here (xmlsec1 needs it as a PEM file) with a certificate from
// the platform's real CA (natural-person profile), or self-signed when foreign.
type softwareSigner struct {
	key   crypto.Signer
	cert  *x509.Certificate
	chain []*x509.Certificate // the issuing CA, none when self-signed
}

func newSoftwareSigner(t testing.TB, env *signingtest.Env, rsaKey, foreign bool) softwareSigner {
	t.Helper()
	var key crypto.Signer
	var err error
	if rsaKey {
		key, err = rsa.GenerateKey(rand.Reader, 3072)
	} else {
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if foreign {
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "Foreign Signer", Country: []string{"XK"}},
			NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(1, 0, 0), KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
		if err != nil {
			t.Fatal(err)
		}
		c, _ := x509.ParseCertificate(der)
		return softwareSigner{key: key, cert: c}
	}
	c, err := env.PKI.IssueLeaf(context.Background(), certs.Request{Profile: certs.NaturalPerson,
		Subject:   certs.NaturalPersonName("Drita", "Berisha", "9876543210", "XK"),
		PublicKey: key.Public(), NotBefore: now.Add(-time.Minute), NotAfter: now.AddDate(1, 0, 0)}, "test:xmlsec1-key")
	if err != nil {
		t.Fatal(err)
	}
	return softwareSigner{key: key, cert: c, chain: env.Official.Chain[:1]}
}

// xmlsecSign signs template with xmlsec1 --sign under s; the key and certificate are written
// as PEM files for it.
func xmlsecSign(t testing.TB, s softwareSigner, template string) []byte {
	t.Helper()
	return xmlsecSignArgs(t, s, template)
}

// xmlsecSignArgs is xmlsecSign with more xmlsec1 arguments (--id-attr).
func xmlsecSignArgs(t testing.TB, s softwareSigner, template string, args ...string) []byte {
	t.Helper()
	testenv.Need(t, "xmlsec1")
	dir := t.TempDir()
	der, err := x509.MarshalPKCS8PrivateKey(s.key)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("key.pem", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	files := "key.pem"
	for i, c := range append([]*x509.Certificate{s.cert}, s.chain...) {
		name := fmt.Sprintf("cert%d.pem", i)
		write(name, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
		files += "," + name
	}
	write("tmpl.xml", []byte(template))
	// The issuing CA goes with the key so that xmlsec1 writes it in KeyInfo too.
	cmd := exec.Command("xmlsec1", append(append([]string{"--sign", "--privkey-pem", files}, args...), "--output", "signed.xml", "tmpl.xml")...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("xmlsec1 --sign: %v\n%s", err, out)
	}
	b, err := os.ReadFile(filepath.Join(dir, "signed.xml"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestXmlsec1Signatures: enveloped signatures made by xmlsec1 (RSA with exclusive C14N,
// ECDSA with inclusive C14N 1.0 and the enveloped transform alone) pass as plain XML-DSig when
// the certificate chains to the anchors, as xmlsec1 --verify agrees; a self-signed foreign
// certificate passes neither; a changed item fails both.
func TestXmlsec1Signatures(t *testing.T) {
	env := signingtest.New(t, signingtest.Options{})
	opts := validation.Options{TrustAnchors: anchors(env), Fetch: validation.RevocationFetcher{R: env.PKI}}
	for _, tc := range []struct {
		name     string
		rsa      bool
		template string
	}{
		{"RSA exc-c14n", true, xmlsecTemplate(algExc, rsaSHA, algEnv, algExc)},
		{"ECDSA c14n 1.0", false, xmlsecTemplate(algC14N, ecdsaSHA, algEnv)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSoftwareSigner(t, env, tc.rsa, false)
			doc := xmlsecSign(t, s, tc.template)
			if ok, out := xmlsecVerify(t, env, doc, nil); !ok {
				t.Fatalf("xmlsec1 --verify rejects its own signature:\n%s", out)
			}
			rep := validate(t, doc, opts)
			if rep.Indication != validation.TotalPassed {
				t.Fatalf("%s/%s\n%s\n%s", rep.Indication, rep.SubIndication, rep.Text(), doc)
			}
			sig := rep.Signatures[0]
			if sig.Format != "XML-DSig" || sig.Level != "" || sig.Qualification != "QESig" || len(sig.SignedObjects) != 1 || sig.SignedObjects[0].Target != "/" {
				t.Fatalf("format %s level %q qualification %s objects %+v\n%s", sig.Format, sig.Level, sig.Qualification, sig.SignedObjects, dump(t, rep))
			}
			if sig.Signer.SHA256 != certInfoSHA(s.cert) {
				t.Fatalf("the signer reported is not xmlsec1's certificate")
			}

			bad := []byte(strings.Replace(string(doc), "Gadget", "Gadgets", 1))
			rep = validate(t, bad, opts)
			if rep.Indication != validation.TotalFailed || rep.SubIndication != validation.HashFailure {
				t.Fatalf("a changed item: %s/%s\n%s", rep.Indication, rep.SubIndication, rep.Text())
			}
			if ok, out := xmlsecVerify(t, env, bad, nil); ok {
				t.Fatalf("xmlsec1 accepts the changed item:\n%s", out)
			}

			foreign := xmlsecSign(t, newSoftwareSigner(t, env, tc.rsa, true), tc.template)
			rep = validate(t, foreign, opts)
			if rep.Indication == validation.TotalPassed || rep.SubIndication != validation.NoCertificateChainFound ||
				!hasCheck(rep.Signatures[0], "signature", "PASSED") {
				t.Fatalf("a foreign certificate: %s/%s\n%s", rep.Indication, rep.SubIndication, rep.Text())
			}
			if ok, out := xmlsecVerify(t, env, foreign, nil); ok {
				t.Fatalf("xmlsec1 accepts the foreign certificate under the platform's root:\n%s", out)
			}
		})
	}
}

// TestXmlsec1Canonicalization: xmlsec1 signatures under each canonicalization Vula reads
// (inclusive C14N 1.0 and 1.1, exclusive, exclusive with an InclusiveNamespaces PrefixList),
// over a document whose attributes sort differently by
// prefix and by namespace URI, with xmlns="" undeclarations and xml:lang, over the whole
// document and over one element by Id (inclusive C14N then carries the ancestors' namespaces
// and xml:lang down): xmlsec1 --verify and Vula agree on each, and both fail a changed byte.
func TestXmlsec1Canonicalization(t *testing.T) {
	env := signingtest.New(t, signingtest.Options{})
	opts := validation.Options{TrustAnchors: anchors(env), Fetch: validation.RevocationFetcher{R: env.PKI}}
	s := newSoftwareSigner(t, env, false, false)
	const withPrefixes = "exc-c14n with an InclusiveNamespaces PrefixList"
	for _, alg := range []string{algC14N, algExc, "http://www.w3.org/2006/12/xml-c14n11", withPrefixes} {
		for _, uri := range []string{"", "#item-1"} {
			t.Run(alg+"/"+uri, func(t *testing.T) {
				var tm string
				if alg == withPrefixes {
					// The listed prefixes are rendered as inclusive C14N would: ignoring the
					// list changes the digest of SignedInfo and of the Reference.
					tm = xmlsecTemplate(algExc, ecdsaSHA, algEnv, algExc)
					params := `"><InclusiveNamespaces xmlns="` + algExc + `" PrefixList="unused #default"/></`
					tm = strings.Replace(tm, `<CanonicalizationMethod Algorithm="`+algExc+`"/>`, `<CanonicalizationMethod Algorithm="`+algExc+params+`CanonicalizationMethod>`, 1)
					tm = strings.Replace(tm, `<Transform Algorithm="`+algExc+`"/>`, `<Transform Algorithm="`+algExc+params+`Transform>`, 1)
				} else {
					tm = xmlsecTemplate(alg, ecdsaSHA, algEnv, alg)
				}
				tm = strings.Replace(tm, `<doc:Order `, `<doc:Order xml:lang="sq" `, 1)
				tm = strings.Replace(tm, `<doc:Item Id="item-1" qty="2">`, `<doc:Item xmlns:b="urn:a" xmlns:a="urn:z" a:y="1" b:x="2" Id="item-1" qty="2">`+
					`<inner xmlns="">t</inner><in2 xmlns="urn:d"><in3 xmlns="">x</in3></in2>`, 1)
				tm = strings.Replace(tm, `<Reference URI="">`, `<Reference URI="`+uri+`">`, 1)
				doc := xmlsecSignArgs(t, s, tm, "--id-attr:Id", "urn:example:order:Item")
				idAttr := []string{"--id-attr:Id", "urn:example:order:Item"}
				if ok, out := xmlsecVerify(t, env, doc, nil, idAttr...); !ok {
					t.Fatalf("xmlsec1:\n%s", out)
				}
				if rep := validate(t, doc, opts); rep.Indication != validation.TotalPassed {
					t.Fatalf("%s/%s\n%s", rep.Indication, rep.SubIndication, rep.Text())
				}
				bad := []byte(strings.Replace(string(doc), ">t</inner>", ">T</inner>", 1))
				if rep := validate(t, bad, opts); rep.Indication != validation.TotalFailed || rep.SubIndication != validation.HashFailure {
					t.Fatalf("changed: %s/%s\n%s", rep.Indication, rep.SubIndication, rep.Text())
				}
				if ok, _ := xmlsecVerify(t, env, bad, nil, idAttr...); ok {
					t.Fatal("xmlsec1 accepts the changed document")
				}
			})
		}
	}
}
