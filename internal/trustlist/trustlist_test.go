package trustlist_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vula-eid/vula/internal/signing"
	"github.com/vula-eid/vula/internal/trustlist"
	tt "github.com/vula-eid/vula/internal/trustlist/trustlisttest"
	"github.com/vula-eid/vula/internal/validation"
)

func TestQualifiedForeignSigner(t *testing.T) {
	f := tt.NewQTSP(t)
	since := time.Now().AddDate(-1, 0, 0)
	tl := tt.SignWithXmlsec(t, tt.ListXML("ZZ", trustlist.TypeEUGeneric, 7, []tt.Service{
		{Name: "ZZ QC", Type: trustlist.TypeCAQC, Status: granted, Since: since, Cert: f.CA.Cert, Extensions: tt.Additional(trustlist.ForESignatures)},
	}, nil), f.TLSigner)
	set, err := trustlist.Load(trustlist.Source{Lists: []trustlist.Input{{Name: "zz.xml", Data: tl, Signers: []*x509.Certificate{f.TLSigner.Cert}}}}, validation.ListVerifier{})
	if err != nil {
		t.Fatal(err)
	}
	l := set.Lists()[0]
	if l.Territory != "ZZ" || l.SequenceNumber != 7 || len(l.Providers) != 1 || l.Providers[0].Name != "Foreign QTSP" {
		t.Fatalf("list read as %+v", l)
	}
	now := time.Now()
	if a := set.Anchors(now, false); len(a) != 1 || !a[0].Equal(f.CA.Cert) {
		t.Fatalf("anchors %v, want the CA", a)
	}
	if a := set.Anchors(now, true); len(a) != 0 {
		t.Fatalf("a CA/QC service is no timestamping anchor: %v", a)
	}
	r := set.Qualify([]*x509.Certificate{f.Signer.Cert, f.CA.Cert}, now, now)
	if r.Qualification != "QESig" || r.Territory != "ZZ" || r.StatusAtSigning != granted {
		t.Fatalf("qualification %+v, want QESig from ZZ", r)
	}

	// Without QcSSCD the certificate is qualified, the key not on a QSCD.
	noSSCD := tt.Leaf(t, f.CA, "Zef Zeka", tt.QCStatements(t, false, 1))
	if r := set.Qualify([]*x509.Certificate{noSSCD.Cert, f.CA.Cert}, now, now); r.Qualification != "AdESig-QC" {
		t.Fatalf("without QcSSCD: %+v", r)
	}
	// A seal certificate from a service for e-signatures only is not qualified.
	seal := tt.Leaf(t, f.CA, "ZZ Ministry", tt.QCStatements(t, true, 2))
	if r := set.Qualify([]*x509.Certificate{seal.Cert, f.CA.Cert}, now, now); r.Qualification != "AdESeal" {
		t.Fatalf("a seal under a ForeSignatures service: %+v", r)
	}
	// A certificate from a CA no list names is not qualified, whatever it claims.
	other := tt.NewParty(t, "Other CA", nil, nil)
	claims := tt.Leaf(t, other, "Claimant", tt.QCStatements(t, true, 1))
	if r := set.Qualify([]*x509.Certificate{claims.Cert, other.Cert}, now, now); r.Qualification != "" {
		t.Fatalf("an unlisted issuer: %+v", r)
	}
}

func TestQualifiers(t *testing.T) {
	f := tt.NewQTSP(t)
	// The service says its certificates' keys are on a QSCD and that they are for seals,
	// though the certificate says neither.
	quals := `<tsl:Extension Critical="true"><tslx:Qualifications><tslx:QualificationElement><tslx:Qualifiers><tslx:Qualifier uri="http://uri.etsi.org/TrstSvc/TrustedList/SvcInfoExt/QCWithQSCD"/><tslx:Qualifier uri="http://uri.etsi.org/TrstSvc/TrustedList/SvcInfoExt/QCForESeal"/></tslx:Qualifiers>
<tslx:CriteriaList assert="all"><tslx:KeyUsage><tslx:KeyUsageBit name="nonRepudiation">true</tslx:KeyUsageBit></tslx:KeyUsage></tslx:CriteriaList></tslx:QualificationElement></tslx:Qualifications></tsl:Extension>`
	tl := tt.SignWithXmlsec(t, tt.ListXML("ZZ", trustlist.TypeEUGeneric, 1, []tt.Service{
		{Name: "ZZ QC", Type: trustlist.TypeCAQC, Status: granted, Since: time.Now().AddDate(-1, 0, 0), Cert: f.CA.Cert, Extensions: quals},
	}, nil), f.TLSigner)
	set, err := trustlist.Load(trustlist.Source{Lists: []trustlist.Input{{Name: "zz.xml", Data: tl, Signers: []*x509.Certificate{f.TLSigner.Cert}}}}, validation.ListVerifier{})
	must(t, err)
	type stmt struct{ ID asn1.ObjectIdentifier }
	v, _ := asn1.Marshal([]stmt{{asn1.ObjectIdentifier{0, 4, 0, 1862, 1, 1}}})
	compliance := pkix.Extension{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 1, 3}, Value: v}
	c := tt.Leaf(t, f.CA, "ZZ Agency", compliance)
	now := time.Now()
	if r := set.Qualify([]*x509.Certificate{c.Cert, f.CA.Cert}, now, now); r.Qualification != "QESeal" {
		t.Fatalf("qualifiers QCWithQSCD+QCForESeal: %+v", r)
	}
	// The criteria select by key usage: a certificate without nonRepudiation is not selected.
	d := tt.NewParty(t, "ZZ Device", f.CA, func(x *x509.Certificate) {
		x.IsCA, x.KeyUsage, x.ExtraExtensions = false, x509.KeyUsageDigitalSignature, []pkix.Extension{compliance}
	})
	if r := set.Qualify([]*x509.Certificate{d.Cert, f.CA.Cert}, now, now); r.Qualification != "AdESig-QC" {
		t.Fatalf("criteria not met: %+v", r)
	}
}

func TestTamperedListRefused(t *testing.T) {
	f := tt.NewQTSP(t)
	tl := tt.SignWithXmlsec(t, tt.ListXML("ZZ", trustlist.TypeEUGeneric, 1, []tt.Service{
		{Name: "ZZ QC", Type: trustlist.TypeCAQC, Status: trustlist.StatusWithdrawn, Since: time.Now().AddDate(-1, 0, 0), Cert: f.CA.Cert},
	}, nil), f.TLSigner)
	src := func(data []byte, signer *x509.Certificate) trustlist.Source {
		return trustlist.Source{Lists: []trustlist.Input{{Name: "zz.xml", Data: data, Signers: []*x509.Certificate{signer}}}}
	}
	if _, err := trustlist.Load(src(tl, f.TLSigner.Cert), validation.ListVerifier{}); err != nil {
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
			_, err := trustlist.Load(src(data, f.TLSigner.Cert), validation.ListVerifier{})
			if !errors.Is(err, trustlist.ErrSignature) {
				t.Fatalf("a changed list: %v, want ErrSignature", err)
			}
		})
	}
	t.Run("another signer", func(t *testing.T) {
		_, err := trustlist.Load(src(tl, f.CA.Cert), validation.ListVerifier{})
		if !errors.Is(err, trustlist.ErrSignature) {
			t.Fatalf("signed by someone else: %v, want ErrSignature", err)
		}
	})
	t.Run("unsigned", func(t *testing.T) {
		_, err := trustlist.Load(src([]byte(tt.ListXML("ZZ", trustlist.TypeEUGeneric, 1, nil, nil)), f.TLSigner.Cert), validation.ListVerifier{})
		if !errors.Is(err, trustlist.ErrSignature) {
			t.Fatalf("an unsigned template: %v, want ErrSignature", err)
		}
	})
}

func TestWithdrawnService(t *testing.T) {
	f := tt.NewQTSP(t)
	withdrawn := time.Now().Add(-time.Hour)
	tl := tt.SignWithXmlsec(t, tt.ListXML("ZZ", trustlist.TypeEUGeneric, 3, []tt.Service{{
		Name: "ZZ QC", Type: trustlist.TypeCAQC, Status: trustlist.StatusWithdrawn, Since: withdrawn, Cert: f.CA.Cert,
		History: []tt.Service{{Name: "ZZ QC", Type: trustlist.TypeCAQC, Status: granted, Since: time.Now().AddDate(-1, 0, 0)}},
	}}, nil), f.TLSigner)
	set, err := trustlist.Load(trustlist.Source{Lists: []trustlist.Input{{Name: "zz.xml", Data: tl, Signers: []*x509.Certificate{f.TLSigner.Cert}}}}, validation.ListVerifier{})
	must(t, err)
	now := time.Now()
	chain := []*x509.Certificate{f.Signer.Cert, f.CA.Cert}
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
	f := tt.NewQTSP(t)
	lotlSigner := tt.NewParty(t, "EU LOTL Signer", nil, nil)
	lotl := tt.SignWithXmlsec(t, tt.ListXML("EU", trustlist.TypeEULOTL, 300, nil, []tt.Pointer{{Territory: "ZZ", Signer: f.TLSigner.Cert}}), lotlSigner)
	tl := tt.SignWithXmlsec(t, tt.ListXML("ZZ", trustlist.TypeEUGeneric, 9, []tt.Service{
		{Name: "ZZ QC", Type: trustlist.TypeCAQC, Status: granted, Since: time.Now().AddDate(-1, 0, 0), Cert: f.CA.Cert},
	}, nil), f.TLSigner)
	src := trustlist.Source{
		LOTL:  &trustlist.Input{Name: "lotl.xml", Data: lotl, Signers: []*x509.Certificate{lotlSigner.Cert}},
		Lists: []trustlist.Input{{Name: "zz.xml", Data: tl}}, // no signer configured: the LOTL's pointer names it
	}
	set, err := trustlist.Load(src, validation.ListVerifier{})
	must(t, err)
	if len(set.Lists()) != 2 || !set.Lists()[0].IsLOTL() || len(set.Lists()[0].Pointers) != 1 {
		t.Fatalf("lists %+v", set.Lists())
	}
	now := time.Now()
	if r := set.Qualify([]*x509.Certificate{f.Signer.Cert, f.CA.Cert}, now, now); r.Qualification != "QESig" {
		t.Fatalf("through the LOTL: %+v", r)
	}

	// A list for ZZ signed by a key the pointer does not name is refused.
	impostor := tt.NewParty(t, "ZZ Impostor", nil, nil)
	src.Lists[0].Data = tt.SignWithXmlsec(t, tt.ListXML("ZZ", trustlist.TypeEUGeneric, 10, nil, nil), impostor)
	if _, err := trustlist.Load(src, validation.ListVerifier{}); !errors.Is(err, trustlist.ErrSignature) {
		t.Fatalf("a list signed by another key: %v", err)
	}
	// A LOTL signed by another key is refused.
	src.LOTL.Data = tt.SignWithXmlsec(t, tt.ListXML("EU", trustlist.TypeEULOTL, 301, nil, []tt.Pointer{{Territory: "ZZ", Signer: impostor.Cert}}), impostor)
	if _, err := trustlist.Load(src, validation.ListVerifier{}); !errors.Is(err, trustlist.ErrSignature) {
		t.Fatalf("a LOTL signed by another key: %v", err)
	}
	// Without a LOTL a list needs its own signers.
	if _, err := trustlist.Load(trustlist.Source{Lists: []trustlist.Input{{Name: "zz.xml", Data: tl}}}, validation.ListVerifier{}); !errors.Is(err, trustlist.ErrSignature) {
		t.Fatalf("no Signer: %v", err)
	}
}

func TestParseRefuses(t *testing.T) {
	for name, doc := range map[string]string{
		"DTD":          `<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><tsl:TrustServiceStatusList xmlns:tsl="http://uri.etsi.org/02231/v2#">&e;</tsl:TrustServiceStatusList>`,
		"not a list":   `<a/>`,
		"no version":   `<tsl:TrustServiceStatusList xmlns:tsl="http://uri.etsi.org/02231/v2#"><tsl:SchemeInformation/></tsl:TrustServiceStatusList>`,
		"many nodes":   `<r>` + strings.Repeat(`<a/>`, 600_000) + `</r>`,
		"bad sequence": strings.Replace(tt.ListXML("ZZ", trustlist.TypeEUGeneric, 1, nil, nil), "<tsl:TSLSequenceNumber>1<", "<tsl:TSLSequenceNumber>x<", 1),
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
	ca := &tt.Party{Cert: cert}
	f.Add([]byte(tt.ListXML("ZZ", trustlist.TypeEUGeneric, 1, []tt.Service{{Name: "QC", Type: trustlist.TypeCAQC, Status: granted, Since: time.Now(), Cert: ca.Cert,
		Extensions: tt.Additional(trustlist.ForESeals), History: []tt.Service{{Name: "QC", Type: trustlist.TypeCAQC, Status: trustlist.StatusWithdrawn, Since: time.Now().AddDate(-1, 0, 0)}}}}, nil)))
	f.Add([]byte(tt.ListXML("EU", trustlist.TypeEULOTL, 2, nil, []tt.Pointer{{Territory: "ZZ", Signer: ca.Cert}})))
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

const granted = trustlist.StatusGranted

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestLoadFiles(t *testing.T) {
	f := tt.NewQTSP(t)
	lotlSigner := tt.NewParty(t, "EU LOTL Signer", nil, nil)
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		must(t, os.WriteFile(p, b, 0o600))
		return p
	}
	pemOf := func(c *x509.Certificate) []byte {
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	files := trustlist.Files{
		LOTL:        write("lotl.xml", tt.SignWithXmlsec(t, tt.ListXML("EU", trustlist.TypeEULOTL, 1, nil, []tt.Pointer{{Territory: "ZZ", Signer: f.TLSigner.Cert}}), lotlSigner)),
		LOTLSigners: write("lotl-signers.pem", pemOf(lotlSigner.Cert)),
		Lists: []string{write("zz.xml", tt.SignWithXmlsec(t, tt.ListXML("ZZ", trustlist.TypeEUGeneric, 1, []tt.Service{
			{Name: "ZZ QC", Type: trustlist.TypeCAQC, Status: granted, Since: time.Now().AddDate(-1, 0, 0), Cert: f.CA.Cert},
		}, nil), f.TLSigner))},
	}
	set, err := trustlist.LoadFiles(files, validation.ListVerifier{})
	must(t, err)
	if len(set.Lists()) != 2 || len(set.Anchors(time.Now(), false)) != 1 {
		t.Fatalf("loaded %d lists, anchors %v", len(set.Lists()), set.Anchors(time.Now(), false))
	}
	if set, err := trustlist.LoadFiles(trustlist.Files{}, validation.ListVerifier{}); set != nil || err != nil {
		t.Fatalf("nothing configured: %v, %v", set, err)
	}
	files.LOTLSigners = write("wrong.pem", pemOf(f.CA.Cert))
	if _, err := trustlist.LoadFiles(files, validation.ListVerifier{}); !errors.Is(err, trustlist.ErrSignature) {
		t.Fatalf("the LOTL with another signer: %v", err)
	}
}

// FuzzVerifyEnveloped: the list verifier takes untrusted bytes; mutations of a signed list never
// panic, and a list it accepts is one Parse reads.
func FuzzVerifyEnveloped(f *testing.F) {
	if _, err := exec.LookPath("xmlsec1"); err != nil {
		f.Skip("xmlsec1 is not installed (test/deps.sh installs it)")
	}
	q := tt.NewQTSP(f)
	f.Add(tt.SignWithXmlsec(f, tt.ListXML("ZZ", trustlist.TypeEUGeneric, 1, []tt.Service{
		{Name: "ZZ QC", Type: trustlist.TypeCAQC, Status: granted, Since: time.Now(), Cert: q.CA.Cert},
	}, nil), q.TLSigner))
	signers := []*x509.Certificate{q.TLSigner.Cert}
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, err := (validation.ListVerifier{}).VerifyEnveloped(data, signers); err == nil {
			if _, err := trustlist.Parse(data); err != nil {
				t.Fatalf("a verified list does not parse: %v", err)
			}
		}
	})
}
