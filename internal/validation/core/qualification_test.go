package core

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"testing"

	"github.com/vula-eid/vula/internal/trustlist/trustlisttest"
)

// Qualification reads what the certificate claims: QcCompliance, QcSSCD and QcType, else the
// subject (an organization is a seal).
func TestQualification(t *testing.T) {
	ca := trustlisttest.NewParty(t, "CA", nil, nil)
	leaf := func(edit func(*x509.Certificate), exts ...pkix.Extension) *x509.Certificate {
		return trustlisttest.NewParty(t, "Leaf", ca, func(c *x509.Certificate) {
			c.IsCA, c.BasicConstraintsValid = false, true
			c.KeyUsage = x509.KeyUsageDigitalSignature
			c.ExtraExtensions = exts
			if edit != nil {
				edit(c)
			}
		}).Cert
	}
	malformed := trustlisttest.QCStatements(t, true, 1)
	malformed.Value = malformed.Value[:len(malformed.Value)-1]
	for _, tc := range []struct {
		name string
		cert *x509.Certificate
		want string
	}{
		{"qualified signature", leaf(nil, trustlisttest.QCStatements(t, true, 1)), "QESig"},
		{"qualified seal", leaf(nil, trustlisttest.QCStatements(t, true, 2)), "QESeal"},
		{"seal without QSCD", leaf(nil, trustlisttest.QCStatements(t, false, 2)), "AdESeal-QC"},
		{"an organization without statements", leaf(func(c *x509.Certificate) { c.Subject.Organization = []string{"Org"} }), "AdESeal"},
		{"a person without statements", leaf(func(c *x509.Certificate) { c.Subject = pkix.Name{CommonName: "Leaf"} }), "unknown"},
		{"a person's qualified certificate without QcType", leaf(func(c *x509.Certificate) { c.Subject = pkix.Name{CommonName: "Leaf"} },
			qcWithoutType(t)), "QESig"},
		{"malformed statements", leaf(nil, malformed), "unknown"},
		{"no signing key usage", leaf(func(c *x509.Certificate) { c.KeyUsage = x509.KeyUsageKeyEncipherment }, trustlisttest.QCStatements(t, true, 1)), "unknown"},
	} {
		if got, why := Qualification(tc.cert); got != tc.want {
			t.Errorf("%s: %s (%s), want %s", tc.name, got, why, tc.want)
		}
	}
}

// qcWithoutType is QCStatements of QcCompliance and QcSSCD only.
func qcWithoutType(t *testing.T) pkix.Extension {
	v, err := asn1.Marshal([]struct{ ID asn1.ObjectIdentifier }{{asn1.ObjectIdentifier{0, 4, 0, 1862, 1, 1}}, {asn1.ObjectIdentifier{0, 4, 0, 1862, 1, 4}}})
	if err != nil {
		t.Fatal(err)
	}
	return pkix.Extension{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 1, 3}, Value: v}
}
