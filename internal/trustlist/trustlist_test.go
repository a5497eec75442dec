package trustlist_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vula-eid/vula/internal/signing"
	"github.com/vula-eid/vula/internal/trustlist"
	"github.com/vula-eid/vula/internal/validation"
)

// party is a key and its certificate.
type party struct {
	key  *rsa.PrivateKey
	cert *x509.Certificate
}

var serial int64

// newParty makes an RSA key and a certificate for it, issued by issuer (self-signed when nil).
func newParty(t testing.TB, cn string, issuer *party, edit func(*x509.Certificate)) *party {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	serial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
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
		parent, signer = issuer.cert, issuer.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &party{key: key, cert: c}
}

// qcStatements is an EN 319 412-5 QCStatements extension: QcCompliance, QcSSCD when sscd,
// QcType with the given type (1 esign, 2 eseal).
func qcStatements(t testing.TB, sscd bool, qcType int) pkix.Extension {
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

// leaf is an end-entity signing certificate under ca.
func leaf(t testing.TB, ca *party, cn string, exts ...pkix.Extension) *party {
	return newParty(t, cn, ca, func(c *x509.Certificate) {
		c.IsCA, c.BasicConstraintsValid = false, true
		c.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment
		c.NotBefore = time.Now().Add(-24 * time.Hour)
		c.ExtraExtensions = exts
	})
}

// svc is a service of a test list; history holds older states, newest first.
type svc struct {
	name, typ, status string
	since             time.Time
	cert              *x509.Certificate
	extensions        string // raw ServiceInformationExtensions content
	history           []svc
}

// ptr is a LOTL pointer.
type ptr struct {
	territory string
	signer    *x509.Certificate
}

const granted = trustlist.StatusGranted

// listXML writes a TS 119 612 list with an XML-DSig template for xmlsec1 to fill in.
func listXML(territory, tslType string, seq int, services []svc, pointers []ptr) string {
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
`, base64.StdEncoding.EncodeToString(p.signer.Raw), p.territory, trustlist.TypeEUGeneric, p.territory)
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
			if len(s.history) > 0 {
				b.WriteString("<tsl:ServiceHistory>")
				for _, h := range s.history {
					h.cert = s.cert
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

func writeState(b *strings.Builder, s svc) {
	fmt.Fprintf(b, "<tsl:ServiceTypeIdentifier>%s</tsl:ServiceTypeIdentifier><tsl:ServiceName><tsl:Name xml:lang=\"en\">%s</tsl:Name></tsl:ServiceName>", s.typ, s.name)
	fmt.Fprintf(b, "<tsl:ServiceDigitalIdentity><tsl:DigitalId><tsl:X509Certificate>%s</tsl:X509Certificate></tsl:DigitalId></tsl:ServiceDigitalIdentity>", base64.StdEncoding.EncodeToString(s.cert.Raw))
	fmt.Fprintf(b, "<tsl:ServiceStatus>%s</tsl:ServiceStatus><tsl:StatusStartingTime>%s</tsl:StatusStartingTime>", s.status, s.since.UTC().Format(time.RFC3339))
	if s.extensions != "" {
		fmt.Fprintf(b, "<tsl:ServiceInformationExtensions>%s</tsl:ServiceInformationExtensions>", s.extensions)
	}
}

// additional is an AdditionalServiceInformation extension.
func additional(uri string) string {
	return `<tsl:Extension Critical="false"><tsl:AdditionalServiceInformation><tsl:URI xml:lang="en">` + uri + `</tsl:URI></tsl:AdditionalServiceInformation></tsl:Extension>`
}

// xmlsecSign signs the list's template with xmlsec1.
func xmlsecSign(t testing.TB, doc string, p *party) []byte {
	t.Helper()
	if _, err := exec.LookPath("xmlsec1"); err != nil {
		t.Skip("xmlsec1 is not installed (test/deps.sh installs it)")
	}
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "key.pem")
	certFile := filepath.Join(dir, "cert.pem")
	in := filepath.Join(dir, "tl.xml")
	out := filepath.Join(dir, "tl-signed.xml")
	keyDER, err := x509.MarshalPKCS8PrivateKey(p.key)
	if err != nil {
		t.Fatal(err)
	}
	must(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600))
	must(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.cert.Raw}), 0o600))
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

// foreign is a foreign QTSP: a CA listed as CA/QC and a qualified signer under it.
type foreign struct {
	ca, signer, tlSigner *party
}

func newForeign(t testing.TB) foreign {
	ca := newParty(t, "ZZ Qualified CA", nil, nil)
	return foreign{
		ca:       ca,
		signer:   leaf(t, ca, "Zana Zeqiri", qcStatements(t, true, 1)),
		tlSigner: newParty(t, "ZZ Trusted List Signer", nil, func(c *x509.Certificate) { c.IsCA = false; c.KeyUsage = x509.KeyUsageDigitalSignature }),
	}
}

func TestQualifiedForeignSigner(t *testing.T) {
	f := newForeign(t)
	since := time.Now().AddDate(-1, 0, 0)
	tl := xmlsecSign(t, listXML("ZZ", trustlist.TypeEUGeneric, 7, []svc{
		{name: "ZZ QC", typ: trustlist.TypeCAQC, status: granted, since: since, cert: f.ca.cert, extensions: additional(trustlist.ForESignatures)},
	}, nil), f.tlSigner)
	set, err := trustlist.Load(trustlist.Source{Lists: []trustlist.Input{{Name: "zz.xml", Data: tl, Signers: []*x509.Certificate{f.tlSigner.cert}}}}, validation.ListVerifier{})
	if err != nil {
		t.Fatal(err)
	}
	l := set.Lists()[0]
	if l.Territory != "ZZ" || l.SequenceNumber != 7 || len(l.Providers) != 1 || l.Providers[0].Name != "Foreign QTSP" {
		t.Fatalf("list read as %+v", l)
	}
	now := time.Now()
	if a := set.Anchors(now, false); len(a) != 1 || !a[0].Equal(f.ca.cert) {
		t.Fatalf("anchors %v, want the CA", a)
	}
	if a := set.Anchors(now, true); len(a) != 0 {
		t.Fatalf("a CA/QC service is no timestamping anchor: %v", a)
	}
	r := set.Qualify([]*x509.Certificate{f.signer.cert, f.ca.cert}, now, now)
	if r.Qualification != "QESig" || r.Territory != "ZZ" || r.StatusAtSigning != granted {
		t.Fatalf("qualification %+v, want QESig from ZZ", r)
	}

	// Without QcSSCD the certificate is qualified, the key not on a QSCD.
	noSSCD := leaf(t, f.ca, "Zef Zeka", qcStatements(t, false, 1))
	if r := set.Qualify([]*x509.Certificate{noSSCD.cert, f.ca.cert}, now, now); r.Qualification != "AdESig-QC" {
		t.Fatalf("without QcSSCD: %+v", r)
	}
	// A seal certificate from a service for e-signatures only is not qualified.
	seal := leaf(t, f.ca, "ZZ Ministry", qcStatements(t, true, 2))
	if r := set.Qualify([]*x509.Certificate{seal.cert, f.ca.cert}, now, now); r.Qualification != "AdESeal" {
		t.Fatalf("a seal under a ForeSignatures service: %+v", r)
	}
	// A certificate from a CA no list names is not qualified, whatever it claims.
	other := newParty(t, "Other CA", nil, nil)
	claims := leaf(t, other, "Claimant", qcStatements(t, true, 1))
	if r := set.Qualify([]*x509.Certificate{claims.cert, other.cert}, now, now); r.Qualification != "" {
		t.Fatalf("an unlisted issuer: %+v", r)
	}
}

func TestQualifiers(t *testing.T) {
	f := newForeign(t)
	// The service says its certificates' keys are on a QSCD and that they are for seals,
	// though the certificate says neither.
	quals := `<tsl:Extension Critical="true"><tslx:Qualifications><tslx:QualificationElement><tslx:Qualifiers><tslx:Qualifier uri="http://uri.etsi.org/TrstSvc/TrustedList/SvcInfoExt/QCWithQSCD"/><tslx:Qualifier uri="http://uri.etsi.org/TrstSvc/TrustedList/SvcInfoExt/QCForESeal"/></tslx:Qualifiers>
<tslx:CriteriaList assert="all"><tslx:KeyUsage><tslx:KeyUsageBit name="nonRepudiation">true</tslx:KeyUsageBit></tslx:KeyUsage></tslx:CriteriaList></tslx:QualificationElement></tslx:Qualifications></tsl:Extension>`
	tl := xmlsecSign(t, listXML("ZZ", trustlist.TypeEUGeneric, 1, []svc{
		{name: "ZZ QC", typ: trustlist.TypeCAQC, status: granted, since: time.Now().AddDate(-1, 0, 0), cert: f.ca.cert, extensions: quals},
	}, nil), f.tlSigner)
	set, err := trustlist.Load(trustlist.Source{Lists: []trustlist.Input{{Name: "zz.xml", Data: tl, Signers: []*x509.Certificate{f.tlSigner.cert}}}}, validation.ListVerifier{})
	must(t, err)
	type stmt struct{ ID asn1.ObjectIdentifier }
	v, _ := asn1.Marshal([]stmt{{asn1.ObjectIdentifier{0, 4, 0, 1862, 1, 1}}})
	compliance := pkix.Extension{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 1, 3}, Value: v}
	c := leaf(t, f.ca, "ZZ Agency", compliance)
	now := time.Now()
	if r := set.Qualify([]*x509.Certificate{c.cert, f.ca.cert}, now, now); r.Qualification != "QESeal" {
		t.Fatalf("qualifiers QCWithQSCD+QCForESeal: %+v", r)
	}
	// The criteria select by key usage: a certificate without nonRepudiation is not selected.
	d := newParty(t, "ZZ Device", f.ca, func(x *x509.Certificate) {
		x.IsCA, x.KeyUsage, x.ExtraExtensions = false, x509.KeyUsageDigitalSignature, []pkix.Extension{compliance}
	})
	if r := set.Qualify([]*x509.Certificate{d.cert, f.ca.cert}, now, now); r.Qualification != "AdESig-QC" {
		t.Fatalf("criteria not met: %+v", r)
	}
}

func TestTamperedListRefused(t *testing.T) {
	f := newForeign(t)
	tl := xmlsecSign(t, listXML("ZZ", trustlist.TypeEUGeneric, 1, []svc{
		{name: "ZZ QC", typ: trustlist.TypeCAQC, status: trustlist.StatusWithdrawn, since: time.Now().AddDate(-1, 0, 0), cert: f.ca.cert},
	}, nil), f.tlSigner)
	src := func(data []byte, signer *x509.Certificate) trustlist.Source {
		return trustlist.Source{Lists: []trustlist.Input{{Name: "zz.xml", Data: data, Signers: []*x509.Certificate{signer}}}}
	}
	if _, err := trustlist.Load(src(tl, f.tlSigner.cert), validation.ListVerifier{}); err != nil {
		t.Fatalf("the list as signed: %v", err)
	}
	cases := map[string][]byte{
		"withdrawn made granted": bytes.Replace(tl, []byte(trustlist.StatusWithdrawn), []byte(granted), 1),
		"sequence number":        bytes.Replace(tl, []byte("<tsl:TSLSequenceNumber>1<"), []byte("<tsl:TSLSequenceNumber>2<"), 1),
	}
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			if bytes.Equal(data, tl) {
				t.Fatal("the test changed nothing")
			}
			_, err := trustlist.Load(src(data, f.tlSigner.cert), validation.ListVerifier{})
			if !errors.Is(err, trustlist.ErrSignature) {
				t.Fatalf("a changed list: %v, want ErrSignature", err)
			}
		})
	}
	t.Run("another signer", func(t *testing.T) {
		_, err := trustlist.Load(src(tl, f.ca.cert), validation.ListVerifier{})
		if !errors.Is(err, trustlist.ErrSignature) {
			t.Fatalf("signed by someone else: %v, want ErrSignature", err)
		}
	})
	t.Run("unsigned", func(t *testing.T) {
		_, err := trustlist.Load(src([]byte(listXML("ZZ", trustlist.TypeEUGeneric, 1, nil, nil)), f.tlSigner.cert), validation.ListVerifier{})
		if !errors.Is(err, trustlist.ErrSignature) {
			t.Fatalf("an unsigned template: %v, want ErrSignature", err)
		}
	})
}

func TestWithdrawnService(t *testing.T) {
	f := newForeign(t)
	withdrawn := time.Now().Add(-time.Hour)
	tl := xmlsecSign(t, listXML("ZZ", trustlist.TypeEUGeneric, 3, []svc{{
		name: "ZZ QC", typ: trustlist.TypeCAQC, status: trustlist.StatusWithdrawn, since: withdrawn, cert: f.ca.cert,
		history: []svc{{name: "ZZ QC", typ: trustlist.TypeCAQC, status: granted, since: time.Now().AddDate(-1, 0, 0)}},
	}}, nil), f.tlSigner)
	set, err := trustlist.Load(trustlist.Source{Lists: []trustlist.Input{{Name: "zz.xml", Data: tl, Signers: []*x509.Certificate{f.tlSigner.cert}}}}, validation.ListVerifier{})
	must(t, err)
	now := time.Now()
	chain := []*x509.Certificate{f.signer.cert, f.ca.cert}
	// Signed now, after the withdrawal: no anchor, not qualified.
	if a := set.Anchors(now, false); len(a) != 0 {
		t.Fatalf("a withdrawn service is an anchor: %v", a)
	}
	if r := set.Qualify(chain, now, now); r.Qualification != "AdESig" || r.StatusAtSigning != trustlist.StatusWithdrawn {
		t.Fatalf("after the withdrawal: %+v", r)
	}
	// Proven to exist before the withdrawal: the service was granted then.
	before := withdrawn.Add(-time.Minute)
	if a := set.Anchors(before, false); len(a) != 1 {
		t.Fatalf("anchors before the withdrawal: %v", a)
	}
	if r := set.Qualify(chain, before, now); r.Qualification != "QESig" {
		t.Fatalf("before the withdrawal: %+v", r)
	}
}

func TestLOTLPointsAtList(t *testing.T) {
	f := newForeign(t)
	lotlSigner := newParty(t, "EU LOTL Signer", nil, nil)
	lotl := xmlsecSign(t, listXML("EU", trustlist.TypeEULOTL, 300, nil, []ptr{{territory: "ZZ", signer: f.tlSigner.cert}}), lotlSigner)
	tl := xmlsecSign(t, listXML("ZZ", trustlist.TypeEUGeneric, 9, []svc{
		{name: "ZZ QC", typ: trustlist.TypeCAQC, status: granted, since: time.Now().AddDate(-1, 0, 0), cert: f.ca.cert},
	}, nil), f.tlSigner)
	src := trustlist.Source{
		LOTL:  &trustlist.Input{Name: "lotl.xml", Data: lotl, Signers: []*x509.Certificate{lotlSigner.cert}},
		Lists: []trustlist.Input{{Name: "zz.xml", Data: tl}}, // no signer configured: the LOTL's pointer names it
	}
	set, err := trustlist.Load(src, validation.ListVerifier{})
	must(t, err)
	if len(set.Lists()) != 2 || !set.Lists()[0].IsLOTL() || len(set.Lists()[0].Pointers) != 1 {
		t.Fatalf("lists %+v", set.Lists())
	}
	now := time.Now()
	if r := set.Qualify([]*x509.Certificate{f.signer.cert, f.ca.cert}, now, now); r.Qualification != "QESig" {
		t.Fatalf("through the LOTL: %+v", r)
	}

	// A list for ZZ signed by a key the pointer does not name is refused.
	impostor := newParty(t, "ZZ Impostor", nil, nil)
	src.Lists[0].Data = xmlsecSign(t, listXML("ZZ", trustlist.TypeEUGeneric, 10, nil, nil), impostor)
	if _, err := trustlist.Load(src, validation.ListVerifier{}); !errors.Is(err, trustlist.ErrSignature) {
		t.Fatalf("a list signed by another key: %v", err)
	}
	// A LOTL signed by another key is refused.
	src.LOTL.Data = xmlsecSign(t, listXML("EU", trustlist.TypeEULOTL, 301, nil, []ptr{{territory: "ZZ", signer: impostor.cert}}), impostor)
	if _, err := trustlist.Load(src, validation.ListVerifier{}); !errors.Is(err, trustlist.ErrSignature) {
		t.Fatalf("a LOTL signed by another key: %v", err)
	}
	// Without a LOTL a list needs its own signers.
	if _, err := trustlist.Load(trustlist.Source{Lists: []trustlist.Input{{Name: "zz.xml", Data: tl}}}, validation.ListVerifier{}); !errors.Is(err, trustlist.ErrSignature) {
		t.Fatalf("no signer: %v", err)
	}
}

func TestParseRefuses(t *testing.T) {
	for name, doc := range map[string]string{
		"DTD":          `<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><tsl:TrustServiceStatusList xmlns:tsl="http://uri.etsi.org/02231/v2#">&e;</tsl:TrustServiceStatusList>`,
		"not a list":   `<a/>`,
		"no version":   `<tsl:TrustServiceStatusList xmlns:tsl="http://uri.etsi.org/02231/v2#"><tsl:SchemeInformation/></tsl:TrustServiceStatusList>`,
		"many nodes":   `<r>` + strings.Repeat(`<a/>`, 600_000) + `</r>`,
		"bad sequence": strings.Replace(listXML("ZZ", trustlist.TypeEUGeneric, 1, nil, nil), "<tsl:TSLSequenceNumber>1<", "<tsl:TSLSequenceNumber>x<", 1),
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := trustlist.Parse([]byte(doc)); !errors.Is(err, signing.ErrInvalid) && !errors.Is(err, signing.ErrTooLarge) {
				t.Fatalf("got %v, want ErrInvalid or ErrTooLarge", err)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	// An ECDSA certificate: RSA key generation under the fuzzer's instrumentation takes long.
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(f, err)
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Fuzz CA"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}, &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Fuzz CA"}}, &key.PublicKey, key)
	must(f, err)
	cert, err := x509.ParseCertificate(der)
	must(f, err)
	ca := &party{cert: cert}
	f.Add([]byte(listXML("ZZ", trustlist.TypeEUGeneric, 1, []svc{{name: "QC", typ: trustlist.TypeCAQC, status: granted, since: time.Now(), cert: ca.cert,
		extensions: additional(trustlist.ForESeals), history: []svc{{name: "QC", typ: trustlist.TypeCAQC, status: trustlist.StatusWithdrawn, since: time.Now().AddDate(-1, 0, 0)}}}}, nil)))
	f.Add([]byte(listXML("EU", trustlist.TypeEULOTL, 2, nil, []ptr{{territory: "ZZ", signer: ca.cert}})))
	f.Fuzz(func(t *testing.T, data []byte) {
		l, err := trustlist.Parse(data)
		if err != nil {
			if !errors.Is(err, signing.ErrInvalid) && !errors.Is(err, signing.ErrTooLarge) {
				t.Fatalf("an error that is neither ErrInvalid nor ErrTooLarge: %v", err)
			}
			return
		}
		if l.SequenceNumber < 1 {
			t.Fatalf("accepted sequence number %d", l.SequenceNumber)
		}
	})
}
