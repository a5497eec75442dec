package validation_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/vula-eid/vula/internal/certs"
	"github.com/vula-eid/vula/internal/signing"
	"github.com/vula-eid/vula/internal/signing/signingtest"
	"github.com/vula-eid/vula/internal/signing/xades"
	"github.com/vula-eid/vula/internal/trustlist"
	tt "github.com/vula-eid/vula/internal/trustlist/trustlisttest"
	"github.com/vula-eid/vula/internal/validation"
)

// foreignCRL serves the foreign CA's CRL, as its CRL distribution point would: the foreign
// certificates name no URL, and a test downloads nothing.
type foreignCRL struct{ ca *tt.Party }

func (f foreignCRL) OCSP(context.Context, *x509.Certificate, *x509.Certificate) ([]byte, error) {
	return nil, errors.New("no OCSP responder")
}

func (f foreignCRL) CRL(_ context.Context, c *x509.Certificate) ([]byte, error) {
	if !bytes.Equal(c.RawIssuer, f.ca.Cert.RawSubject) {
		return nil, errors.New("not the foreign CA's")
	}
	return x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(1),
		ThisUpdate: time.Now().Add(-time.Hour), NextUpdate: time.Now().Add(24 * time.Hour)}, f.ca.Cert, f.ca.Key)
}

// foreignList is the trusted list of ZZ naming the QTSP's CA as CA/QC with status since then,
// and granted for a year before.
func foreignList(t *testing.T, f tt.QTSP, status string, since time.Time) *trustlist.Set {
	t.Helper()
	tl := tt.SignWithXmlsec(t, tt.ListXML("ZZ", trustlist.TypeEUGeneric, 1, []tt.Service{{
		Name: "ZZ QC", Type: trustlist.TypeCAQC, Status: status, Since: since, Cert: f.CA.Cert,
		History: []tt.Service{{Name: "ZZ QC", Type: trustlist.TypeCAQC, Status: trustlist.StatusGranted, Since: since.AddDate(-1, 0, 0)}},
	}}, nil), f.TLSigner)
	set, err := trustlist.Load(trustlist.Source{Lists: []trustlist.Input{{Name: "zz.xml", Data: tl, Signers: []*x509.Certificate{f.TLSigner.Cert}}}}, validation.ListVerifier{})
	if err != nil {
		t.Fatal(err)
	}
	return set
}

func TestForeignQualifiedSignature(t *testing.T) {
	f := tt.NewQTSP(t)
	signed, err := xades.Sign(context.Background(), strings.NewReader(invoiceXML),
		signing.Signer{Key: f.Signer.Key, Cert: f.Signer.Cert, Chain: []*x509.Certificate{f.CA.Cert}},
		xades.Options{Level: signing.LevelB, Packaging: xades.Enveloped})
	if err != nil {
		t.Fatal(err)
	}
	validate := func(opts validation.Options) validation.SignatureReport {
		t.Helper()
		opts.Fetch = foreignCRL{f.CA}
		rep, err := validation.Validate(context.Background(), bytes.NewReader(signed), int64(len(signed)), opts)
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.Signatures) != 1 {
			t.Fatalf("%d signatures", len(rep.Signatures))
		}
		return rep.Signatures[0]
	}

	// Trusted and qualified through ZZ's list.
	s := validate(validation.Options{TrustedLists: foreignList(t, f, trustlist.StatusGranted, time.Now().AddDate(-1, 0, 0))})
	if s.Indication != validation.TotalPassed || s.Qualification != "QESig" || s.QualificationSource != "trusted list" ||
		s.TrustedService == nil || s.TrustedService.Territory != "ZZ" || s.TrustedService.StatusAtSigning != trustlist.StatusGranted {
		t.Fatalf("with ZZ's list: %s / %s, %s from %s, %+v", s.Indication, s.SubIndication, s.Qualification, s.QualificationSource, s.TrustedService)
	}

	// Without the list the foreign CA is unknown: no chain, and what the certificate claims is
	// reported as such.
	env := signingtest.New(t, signingtest.Options{})
	s = validate(validation.Options{TrustAnchors: []*x509.Certificate{env.Root}})
	if s.Indication != validation.Indeterminate || s.SubIndication != validation.NoCertificateChainFound || s.QualificationSource != "certificate" {
		t.Fatalf("without the list: %s / %s from %s", s.Indication, s.SubIndication, s.QualificationSource)
	}

	// The service withdrawn an hour ago and the signature proven to exist only now: the CA is
	// no anchor (EN 319 102-1: INDETERMINATE, NO_CERTIFICATE_CHAIN_FOUND) and the signature not
	// qualified (TS 119 615: the service was not granted at the signing time).
	s = validate(validation.Options{TrustedLists: foreignList(t, f, trustlist.StatusWithdrawn, time.Now().Add(-time.Hour))})
	if s.Indication != validation.Indeterminate || s.SubIndication != validation.NoCertificateChainFound || s.Qualification != "AdESig" {
		t.Fatalf("withdrawn: %s / %s, %s", s.Indication, s.SubIndication, s.Qualification)
	}
}

// TestOwnListMakesSealsQualified: the platform's published list, loaded into a validator that
// has no other anchor, makes its seals QESeal and its officials' signatures QESig.
func TestOwnListMakesSealsQualified(t *testing.T) {
	env := signingtest.New(t, signingtest.Options{})
	personCA, _ := env.PKI.Certificate(certs.NamePersonCA)
	sealCA, _ := env.PKI.Certificate(certs.NameSealCA)
	iss := env.PKI.TSLSigner()
	since := time.Now().Add(-time.Hour)
	tl, err := trustlist.Publish(context.Background(), trustlist.Publication{SequenceNumber: 1, Operator: "Vula Demo", Territory: "XK",
		InfoURI: "https://vula.example/pki", IssueDate: time.Now(), NextUpdate: time.Now().Add(24 * time.Hour),
		Services: []trustlist.PublishedService{
			{Name: "Qualified CA for Natural Persons", Type: trustlist.TypeCAQC, Status: trustlist.StatusGranted, Since: since, Certificate: personCA, Additional: []string{trustlist.ForESignatures}},
			{Name: "Qualified CA for Legal Persons", Type: trustlist.TypeCAQC, Status: trustlist.StatusGranted, Since: since, Certificate: sealCA, Additional: []string{trustlist.ForESeals}},
			{Name: "Qualified Timestamping Unit 1", Type: trustlist.TypeQTST, Status: trustlist.StatusGranted, Since: since, Certificate: env.PKI.TSA().Cert},
		}}, signing.Signer{Key: iss.Signer, Cert: iss.Cert, Chain: env.PKI.Chain(iss.Cert)})
	if err != nil {
		t.Fatal(err)
	}
	set, err := trustlist.Load(trustlist.Source{Lists: []trustlist.Input{{Name: "vula.xml", Data: tl, Signers: []*x509.Certificate{iss.Cert}}}}, validation.ListVerifier{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		s    signing.Signer
		want string
	}{{env.Seal, "QESeal"}, {env.Official, "QESig"}} {
		doc := signXAdES(t, env, c.s, []byte(invoiceXML), xades.Enveloped, signing.LevelT)
		rep, err := validation.Validate(context.Background(), bytes.NewReader(doc), int64(len(doc)),
			validation.Options{TrustedLists: set, Fetch: validation.RevocationFetcher{R: env.PKI}})
		if err != nil {
			t.Fatal(err)
		}
		s := rep.Signatures[0]
		if s.Indication != validation.TotalPassed || s.Qualification != c.want || s.TrustedService == nil || s.TrustedService.Territory != "XK" {
			t.Errorf("%s: %s / %s, %s\n%s", c.s.Cert.Subject, s.Indication, s.SubIndication, s.Qualification, rep.Text())
		}
		// The signature timestamp's TSA chain ends at the TSU the list names as TSA/QTST.
		if len(s.Timestamps) != 1 || s.Timestamps[0].Indication != validation.TotalPassed {
			t.Errorf("the signature timestamp: %+v", s.Timestamps)
		}
		if !strings.Contains(rep.Text(), "qualification: "+c.want+" (from the trusted list)") {
			t.Errorf("the text report does not say the qualification:\n%s", rep.Text())
		}
	}
}
