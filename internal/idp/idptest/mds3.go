package idptest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// MDS3Signer is a FIDO Metadata Service of a test's own: a root (what the operator configures
// as idp.passkey_mds3_root) and a BLOB signing certificate under it.
type MDS3Signer struct {
	Root    *x509.Certificate
	RootPEM []byte
	key     crypto.Signer
	leaf    *x509.Certificate
}

// CA makes a self-signed CA certificate and its key, valid from an hour ago for a year.
func CA(t testing.TB, name string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name, Organization: []string{"Test"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(1, 0, 0), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c, k
}

// Leaf makes a certificate for a new key under ca, valid from an hour ago for a year.
func Leaf(t testing.TB, name string, ca *x509.Certificate, caKey crypto.Signer) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name, Organization: []string{"Test"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(1, 0, 0), BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, k.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c, k
}

// NewMDS3Signer makes a metadata service's root and signing certificate.
func NewMDS3Signer(t testing.TB) *MDS3Signer {
	t.Helper()
	root, rootKey := CA(t, "Test MDS Root")
	leaf, key := Leaf(t, "Test MDS BLOB Signer", root, rootKey)
	return &MDS3Signer{Root: root, RootPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: root.Raw}), key: key, leaf: leaf}
}

// MDS3Entry is one authenticator model of a BLOB.
type MDS3Entry struct {
	AAGUID string // 8-4-4-4-12 hex
	// Roots are the model's attestationRootCertificates.
	Roots []*x509.Certificate
	// Status is its one status report (FIDO_CERTIFIED_L1 when empty; REVOKED, ...).
	Status string
}

// Blob is a BLOB with entries and nextUpdate next, signed ES256 with the x5c chain
// [signing certificate, root].
func (s *MDS3Signer) Blob(t testing.TB, next time.Time, entries ...MDS3Entry) []byte {
	t.Helper()
	var list []map[string]any
	for _, e := range entries {
		var roots []string
		for _, r := range e.Roots {
			roots = append(roots, base64.StdEncoding.EncodeToString(r.Raw))
		}
		status := e.Status
		if status == "" {
			status = "FIDO_CERTIFIED_L1"
		}
		list = append(list, map[string]any{
			"aaguid": e.AAGUID,
			"metadataStatement": map[string]any{"aaguid": e.AAGUID, "description": "Test authenticator " + e.AAGUID,
				"authenticatorVersion": 1, "protocolFamily": "fido2", "schema": 3,
				"attestationTypes": []string{"basic_full"}, "attestationRootCertificates": roots},
			"statusReports":          []map[string]any{{"status": status, "effectiveDate": time.Now().AddDate(0, -1, 0).Format(time.DateOnly)}},
			"timeOfLastStatusChange": time.Now().AddDate(0, -1, 0).Format(time.DateOnly),
		})
	}
	payload, _ := json.Marshal(map[string]any{"legalHeader": "test", "no": 42, "nextUpdate": next.Format(time.DateOnly), "entries": list})
	opts := (&jose.SignerOptions{}).WithType("JWT").WithHeader("x5c", []string{
		base64.StdEncoding.EncodeToString(s.leaf.Raw), base64.StdEncoding.EncodeToString(s.Root.Raw)})
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: s.key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return []byte(out)
}
