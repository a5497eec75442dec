// Package trustlisttest makes trusted lists for tests: foreign trust service providers (an RSA
// CA and certificates under it, with EN 319 412-5 QC statements), TS 119 612 lists naming
// them, signed by xmlsec1 (a tool nobody here wrote).
package trustlisttest

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vula-eid/vula/internal/trustlist"
)

// Party is a key and its certificate.
type Party struct {
	Key  *rsa.PrivateKey
	Cert *x509.Certificate
}

var serial atomic.Int64

// NewParty makes an RSA key and a certificate for it, issued by issuer (self-signed when nil).
func NewParty(t testing.TB, cn string, issuer *Party, edit func(*x509.Certificate)) *Party {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial.Add(1)),
		Subject:      pkix.Name{CommonName: cn, Country: []string{"ZZ"}, Organization: []string{"Foreign QTSP"}},
		NotBefore:    time.Now().Add(-48 * time.Hour),
		NotAfter:     time.Now().AddDate(2, 0, 0),
		KeyUsage:     x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		IsCA:         true, BasicConstraintsValid: true,
	}
	if edit != nil {
		edit(tmpl)
	}
	parent, signer := tmpl, key
	if issuer != nil {
		parent, signer = issuer.Cert, issuer.Key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &Party{Key: key, Cert: c}
}

// QCStatements is an EN 319 412-5 QCStatements extension: QcCompliance, QcSSCD when sscd,
// QcType with the given type (1 esign, 2 eseal).
func QCStatements(t testing.TB, sscd bool, qcType int) pkix.Extension {
	t.Helper()
	type stmt struct {
		ID   asn1.ObjectIdentifier
		Info asn1.RawValue `asn1:"optional"`
	}
	types, err := asn1.Marshal([]asn1.ObjectIdentifier{{0, 4, 0, 1862, 1, 6, qcType}})
	if err != nil {
		t.Fatal(err)
	}
	stmts := []stmt{{ID: asn1.ObjectIdentifier{0, 4, 0, 1862, 1, 1}}}
	if sscd {
		stmts = append(stmts, stmt{ID: asn1.ObjectIdentifier{0, 4, 0, 1862, 1, 4}})
	}
	stmts = append(stmts, stmt{ID: asn1.ObjectIdentifier{0, 4, 0, 1862, 1, 6}, Info: asn1.RawValue{FullBytes: types}})
	v, err := asn1.Marshal(stmts)
	if err != nil {
		t.Fatal(err)
	}
	return pkix.Extension{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 1, 3}, Value: v}
}

// Leaf is an end-entity signing certificate under ca.
func Leaf(t testing.TB, ca *Party, cn string, exts ...pkix.Extension) *Party {
	return NewParty(t, cn, ca, func(c *x509.Certificate) {
		c.IsCA, c.BasicConstraintsValid = false, true
		c.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment
		c.NotBefore = time.Now().Add(-24 * time.Hour)
		c.ExtraExtensions = exts
	})
}

// Service is a service of a test list; history holds older states, newest first.
type Service struct {
	Name, Type, Status string
	Since              time.Time
	Cert               *x509.Certificate
	Extensions         string // raw ServiceInformationExtensions content
	History            []Service
}

// Pointer is a LOTL pointer.
type Pointer struct {
	Territory string
	Signer    *x509.Certificate
}

// ListXML writes a TS 119 612 list with an XML-DSig template for xmlsec1 to fill in.
func ListXML(territory, tslType string, seq int, services []Service, pointers []Pointer) string {
	var b strings.Builder
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>
<tsl:TrustServiceStatusList xmlns:tsl="http://uri.etsi.org/02231/v2#" xmlns:tslx="http://uri.etsi.org/TrstSvc/SvcInfoExt/eSigDir-1999-93-EC-TrustedList/#" xmlns:ns3="http://uri.etsi.org/02231/v2/additionaltypes#" xmlns:xades="http://uri.etsi.org/01903/v1.3.2#" Id="tsl" TSLTag="http://uri.etsi.org/19612/TSLTag">
<tsl:SchemeInformation>
<tsl:TSLVersionIdentifier>5</tsl:TSLVersionIdentifier>
`)
	fmt.Fprintf(&b, "<tsl:TSLSequenceNumber>%d</tsl:TSLSequenceNumber>\n<tsl:TSLType>%s</tsl:TSLType>\n", seq, tslType)
	fmt.Fprintf(&b, "<tsl:SchemeOperatorName><tsl:Name xml:lang=\"en\">Supervisor of %s</tsl:Name></tsl:SchemeOperatorName>\n", territory)
	fmt.Fprintf(&b, "<tsl:SchemeTerritory>%s</tsl:SchemeTerritory>\n", territory)
	fmt.Fprintf(&b, "<tsl:ListIssueDateTime>%s</tsl:ListIssueDateTime>\n", time.Now().Add(-time.Hour).UTC().Format(time.RFC3339))
	fmt.Fprintf(&b, "<tsl:NextUpdate><tsl:dateTime>%s</tsl:dateTime></tsl:NextUpdate>\n", time.Now().AddDate(0, 6, 0).UTC().Format(time.RFC3339))
	if len(pointers) > 0 {
		b.WriteString("<tsl:PointersToOtherTSL>\n")
		for _, p := range pointers {
			fmt.Fprintf(&b, `<tsl:OtherTSLPointer><tsl:ServiceDigitalIdentities><tsl:ServiceDigitalIdentity><tsl:DigitalId><tsl:X509Certificate>%s</tsl:X509Certificate></tsl:DigitalId></tsl:ServiceDigitalIdentity></tsl:ServiceDigitalIdentities>
<tsl:TSLLocation>https://tsl.example/%s.xml</tsl:TSLLocation>
<tsl:AdditionalInformation><tsl:OtherInformation><tsl:TSLType>%s</tsl:TSLType></tsl:OtherInformation><tsl:OtherInformation><tsl:SchemeTerritory>%s</tsl:SchemeTerritory></tsl:OtherInformation><tsl:OtherInformation><ns3:MimeType>application/vnd.etsi.tsl+xml</ns3:MimeType></tsl:OtherInformation></tsl:AdditionalInformation>
</tsl:OtherTSLPointer>
`, base64.StdEncoding.EncodeToString(p.Signer.Raw), p.Territory, trustlist.TypeEUGeneric, p.Territory)
		}
		b.WriteString("</tsl:PointersToOtherTSL>\n")
	}
	b.WriteString("</tsl:SchemeInformation>\n")
	if len(services) > 0 {
		b.WriteString("<tsl:TrustServiceProviderList><tsl:TrustServiceProvider><tsl:TSPInformation><tsl:TSPName><tsl:Name xml:lang=\"en\">Foreign QTSP</tsl:Name></tsl:TSPName></tsl:TSPInformation><tsl:TSPServices>\n")
		for _, s := range services {
			b.WriteString("<tsl:TSPService><tsl:ServiceInformation>")
			writeState(&b, s)
			b.WriteString("</tsl:ServiceInformation>")
			if len(s.History) > 0 {
				b.WriteString("<tsl:ServiceHistory>")
				for _, h := range s.History {
					h.Cert = s.Cert
					b.WriteString("<tsl:ServiceHistoryInstance>")
					writeState(&b, h)
					b.WriteString("</tsl:ServiceHistoryInstance>")
				}
				b.WriteString("</tsl:ServiceHistory>")
			}
			b.WriteString("</tsl:TSPService>\n")
		}
		b.WriteString("</tsl:TSPServices></tsl:TrustServiceProvider></tsl:TrustServiceProviderList>\n")
	}
	b.WriteString(`<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#" Id="sig"><ds:SignedInfo>
<ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>
<ds:SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"/>
<ds:Reference URI=""><ds:Transforms><ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/><ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/></ds:Transforms>
<ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/><ds:DigestValue/></ds:Reference>
</ds:SignedInfo><ds:SignatureValue/><ds:KeyInfo><ds:X509Data/></ds:KeyInfo></ds:Signature>
</tsl:TrustServiceStatusList>
`)
	return b.String()
}

func writeState(b *strings.Builder, s Service) {
	fmt.Fprintf(b, "<tsl:ServiceTypeIdentifier>%s</tsl:ServiceTypeIdentifier><tsl:ServiceName><tsl:Name xml:lang=\"en\">%s</tsl:Name></tsl:ServiceName>", s.Type, s.Name)
	fmt.Fprintf(b, "<tsl:ServiceDigitalIdentity><tsl:DigitalId><tsl:X509Certificate>%s</tsl:X509Certificate></tsl:DigitalId></tsl:ServiceDigitalIdentity>", base64.StdEncoding.EncodeToString(s.Cert.Raw))
	fmt.Fprintf(b, "<tsl:ServiceStatus>%s</tsl:ServiceStatus><tsl:StatusStartingTime>%s</tsl:StatusStartingTime>", s.Status, s.Since.UTC().Format(time.RFC3339))
	if s.Extensions != "" {
		fmt.Fprintf(b, "<tsl:ServiceInformationExtensions>%s</tsl:ServiceInformationExtensions>", s.Extensions)
	}
}

// Additional is an AdditionalServiceInformation extension.
func Additional(uri string) string {
	return `<tsl:Extension Critical="false"><tsl:AdditionalServiceInformation><tsl:URI xml:lang="en">` + uri + `</tsl:URI></tsl:AdditionalServiceInformation></tsl:Extension>`
}

// SignWithXmlsec signs the list's template with xmlsec1.
func SignWithXmlsec(t testing.TB, doc string, p *Party) []byte {
	t.Helper()
	if _, err := exec.LookPath("xmlsec1"); err != nil {
		t.Skip("xmlsec1 is not installed (test/deps.sh installs it)")
	}
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "key.pem")
	certFile := filepath.Join(dir, "cert.pem")
	in := filepath.Join(dir, "tl.xml")
	out := filepath.Join(dir, "tl-signed.xml")
	keyDER, err := x509.MarshalPKCS8PrivateKey(p.Key)
	if err != nil {
		t.Fatal(err)
	}
	must(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600))
	must(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.Cert.Raw}), 0o600))
	must(t, os.WriteFile(in, []byte(doc), 0o600))
	cmd := exec.Command("xmlsec1", "--sign", "--privkey-pem", keyFile+","+certFile, "--output", out, in)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("xmlsec1 --sign: %v\n%s", err, b)
	}
	b, err := os.ReadFile(out)
	must(t, err)
	return b
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// QTSP is a foreign qualified trust service provider: a CA listed as CA/QC, a qualified
// signer under it (QcCompliance, QcSSCD, QcType esign) and the key its supervisor signs the
// trusted list with.
type QTSP struct {
	CA, Signer, TLSigner *Party
}

// NewQTSP makes a QTSP of the territory ZZ.
func NewQTSP(t testing.TB) QTSP {
	ca := NewParty(t, "ZZ Qualified CA", nil, nil)
	return QTSP{
		CA:       ca,
		Signer:   Leaf(t, ca, "Zana Zeqiri", QCStatements(t, true, 1)),
		TLSigner: NewParty(t, "ZZ Trusted List Signer", nil, func(c *x509.Certificate) { c.IsCA = false; c.KeyUsage = x509.KeyUsageDigitalSignature }),
	}
}
