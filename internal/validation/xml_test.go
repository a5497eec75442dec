package validation_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vula-eid/vula/hsm"
	"github.com/vula-eid/vula/internal/signing"
	"github.com/vula-eid/vula/internal/signing/signingtest"
	"github.com/vula-eid/vula/internal/signing/xades"
	"github.com/vula-eid/vula/internal/testenv"
	"github.com/vula-eid/vula/internal/validation"
)

const invoiceXML = `<?xml version="1.0" encoding="UTF-8"?>
<inv:Invoice xmlns:inv="urn:vula:invoice" xmlns:x="urn:other" Id="invoice">
  <inv:Party Id="party">Tax Administration</inv:Party>
  <!-- a comment -->
  <inv:Amount currency="EUR">100.00</inv:Amount>
  <x:Note>ë ç č ć š ž đ &amp; &lt;</x:Note>
</inv:Invoice>
`

// signXAdES signs input with s as Vula's xades package does.
func signXAdES(t testing.TB, env *signingtest.Env, s signing.Signer, input []byte, p xades.Packaging, level signing.Level) []byte {
	t.Helper()
	opts := xades.Options{Level: level, Packaging: p, Timestamper: env.TSA, Revocation: env.PKI}
	if p != xades.Enveloped {
		opts.MimeType = "application/xml"
	}
	if p == xades.Detached {
		opts.FileName = "invoice file.xml"
	}
	out, err := xades.Sign(context.Background(), bytes.NewReader(input), s, opts)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// xmlsecVerify runs xmlsec1 --verify on doc trusting the platform's root (detached data in
// the same directory under the names given, extra arguments such as --id-attr after the
// usual ones); it returns whether xmlsec1 said OK.
func xmlsecVerify(t testing.TB, env *signingtest.Env, doc []byte, files map[string][]byte, extra ...string) (bool, string) {
	t.Helper()
	testenv.Need(t, "xmlsec1")
	dir := t.TempDir()
	for n, b := range files {
		if err := os.WriteFile(filepath.Join(dir, n), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "sig.xml"), doc, 0o600); err != nil {
		t.Fatal(err)
	}
	// xmlsec1 reads one certificate per --untrusted-pem file: each issuing CA in its own.
	args := []string{"--verify", "--trusted-pem", env.RootPEM}
	for i, ca := range []*x509.Certificate{env.Seal.Chain[0], env.Official.Chain[0]} {
		f := filepath.Join(dir, fmt.Sprintf("ca%d.pem", i))
		if err := os.WriteFile(f, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw}), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--untrusted-pem", f)
	}
	args = append(args, "--id-attr:Id", "http://uri.etsi.org/01903/v1.3.2#:SignedProperties", "--id-attr:Id", "http://www.w3.org/2000/09/xmldsig#:Object")
	args = append(append(args, extra...), "sig.xml")
	cmd := exec.Command("xmlsec1", args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	return err == nil && bytes.Contains(out, []byte("OK")), string(out)
}

func TestXAdESLevels(t *testing.T) {
	env := signingtest.New(t, signingtest.Options{})
	input := []byte(invoiceXML)
	for _, p := range []xades.Packaging{xades.Enveloped, xades.Enveloping, xades.Detached} {
		for _, level := range signing.Levels {
			t.Run(string(p)+"/"+string(level), func(t *testing.T) {
				doc := signXAdES(t, env, env.Seal, input, p, level)
				opts := validation.Options{TrustAnchors: anchors(env)}
				if !level.AtLeast(signing.LevelLT) {
					opts.Fetch = validation.RevocationFetcher{R: env.PKI}
				}
				if p == xades.Detached {
					opts.Content, opts.ContentSize = bytes.NewReader(input), int64(len(input))
				}
				rep := validate(t, doc, opts)
				if rep.Indication != validation.TotalPassed || rep.Format != "XML" || len(rep.Signatures) != 1 {
					t.Fatalf("%s/%s\n%s", rep.Indication, rep.SubIndication, rep.Text())
				}
				s := rep.Signatures[0]
				if s.Format != "XAdES-BASELINE" || s.Level != level || s.Qualification != "QESeal" {
					t.Fatalf("format %s level %s qualification %s\n%s", s.Format, s.Level, s.Qualification, rep.Text())
				}
				want := map[xades.Packaging]string{xades.Enveloped: "/", xades.Enveloping: "/ds:Signature[1]/ds:Object[1]", xades.Detached: "content:invoice file.xml"}[p]
				if len(s.SignedObjects) != 1 || s.SignedObjects[0].Target != want {
					t.Fatalf("signed objects %+v, want %s", s.SignedObjects, want)
				}
				if level.AtLeast(signing.LevelLT) {
					for _, r := range s.Revocation {
						if r.Source != "XAdES" {
							t.Errorf("revocation of %s from %s, want XAdES (RevocationValues)", r.Subject, r.Source)
						}
					}
				}
				if level == signing.LevelLTA && (len(s.Timestamps) != 2 || s.Timestamps[1].Kind != "archive-timestamp" || s.Timestamps[1].Indication != validation.TotalPassed) {
					t.Fatalf("no passed archive timestamp\n%s", dump(t, rep))
				}
				t.Log(rep.Text())
				if !strings.Contains(rep.Text(), "signed: "+want) {
					t.Errorf("the text report does not name what is signed:\n%s", rep.Text())
				}
			})
		}
	}
}

// TestXAdESTampered: a changed data byte, SigningTime or SignatureValue fails (HASH_FAILURE,
// SIG_CRYPTO_FAILURE), and xmlsec1 --verify agrees with each verdict.
func TestXAdESTampered(t *testing.T) {
	env := signingtest.New(t, signingtest.Options{})
	doc := signXAdES(t, env, env.Seal, []byte(invoiceXML), xades.Enveloped, signing.LevelT)
	opts := validation.Options{TrustAnchors: anchors(env), Fetch: validation.RevocationFetcher{R: env.PKI}}
	if ok, out := xmlsecVerify(t, env, doc, nil); !ok {
		t.Fatalf("xmlsec1 rejects the untampered signature:\n%s", out)
	}
	if rep := validate(t, append([]byte("\xef\xbb\xbf"), doc...), opts); rep.Indication != validation.TotalPassed {
		t.Fatalf("with a byte order mark: %s\n%s", rep.Indication, rep.Text())
	}
	for _, tc := range []struct {
		name, old, new string
		sub            validation.SubIndication
	}{
		{"data", "100.00", "900.00", validation.HashFailure},
		{"signing time", "<xades:SigningTime>20", "<xades:SigningTime>19", validation.HashFailure},
		{"signature value", "-sigvalue\">", "-sigvalue\">AAAA", validation.SigCryptoFailure},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := bytes.Replace(doc, []byte(tc.old), []byte(tc.new), 1)
			if bytes.Equal(bad, doc) {
				t.Fatalf("%q is not in the document", tc.old)
			}
			rep := validate(t, bad, opts)
			if rep.Indication != validation.TotalFailed || rep.SubIndication != tc.sub {
				t.Fatalf("%s/%s, want TOTAL-FAILED/%s\n%s", rep.Indication, rep.SubIndication, tc.sub, rep.Text())
			}
			if ok, out := xmlsecVerify(t, env, bad, nil); ok {
				t.Fatalf("xmlsec1 accepts what Vula fails:\n%s", out)
			}
		})
	}
}

func certInfoSHA(c *x509.Certificate) string {
	s := sha256.Sum256(c.Raw)
	return hex.EncodeToString(s[:])
}

// TestXAdESArchiveTimestamp: the archive timestamp covers the validation data before it: a
// change to RevocationValues that leaves every OCSP response intact (a line break in the base64)
// fails the archive timestamp's imprint and so the signature; the signature timestamp over
// another signature's SignatureValue fails too.
func TestXAdESArchiveTimestamp(t *testing.T) {
	env := signingtest.New(t, signingtest.Options{})
	opts := validation.Options{TrustAnchors: anchors(env)}
	doc := signXAdES(t, env, env.Seal, []byte(invoiceXML), xades.Enveloped, signing.LevelLTA)
	bad := bytes.Replace(doc, []byte("<xades:EncapsulatedOCSPValue>"), []byte("<xades:EncapsulatedOCSPValue>\n"), 1)
	rep := validate(t, bad, opts)
	s := rep.Signatures[0]
	if rep.Indication != validation.TotalFailed || rep.SubIndication != validation.HashFailure ||
		s.Timestamps[0].Indication != validation.TotalPassed || s.Timestamps[1].Indication != validation.TotalFailed {
		t.Fatalf("%s/%s\n%s", rep.Indication, rep.SubIndication, rep.Text())
	}

	other := signXAdES(t, env, env.Seal, []byte(invoiceXML), xades.Enveloped, signing.LevelT)
	tsOf := func(b []byte) []byte {
		i := bytes.Index(b, []byte("<xades:EncapsulatedTimeStamp>"))
		j := bytes.Index(b, []byte("</xades:EncapsulatedTimeStamp>"))
		return b[i:j]
	}
	borrowed := bytes.Replace(other, tsOf(other), tsOf(doc), 1)
	if rep := validate(t, borrowed, opts); rep.Indication != validation.TotalFailed || rep.SubIndication != validation.HashFailure {
		t.Fatalf("a borrowed signature timestamp: %s/%s\n%s", rep.Indication, rep.SubIndication, rep.Text())
	}
}

// TestXMLWorkBounded: a signature that asks for the whole document again and again (900
// References URI="") fails once the work passes what the document's size justifies, instead of
// canonicalizing a megabyte a thousand times; more signatures than the bound are refused.
func TestXMLWorkBounded(t *testing.T) {
	env := signingtest.New(t, signingtest.Options{})
	big := strings.Replace(invoiceXML, "</inv:Invoice>", strings.Repeat("<inv:Line>padding padding padding</inv:Line>\n", 25000)+"</inv:Invoice>", 1)
	doc := string(signXAdES(t, env, env.Seal, []byte(big), xades.Enveloped, signing.LevelB))
	i := strings.Index(doc, "<ds:Reference ")
	j := strings.Index(doc, "</ds:Reference>") + len("</ds:Reference>")
	many := doc[:i] + strings.Repeat(doc[i:j], 900) + doc[i:]
	rep := validate(t, []byte(many), validation.Options{TrustAnchors: anchors(env)})
	s := rep.Signatures[0]
	if rep.Indication != validation.TotalFailed || !strings.Contains(s.Checks[len(s.Checks)-1].Message, "more canonicalization") {
		t.Fatalf("%s/%s %s", rep.Indication, rep.SubIndication, s.Checks[len(s.Checks)-1].Message)
	}
	sigs := "<d>" + strings.Repeat(`<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"/>`, 101) + "</d>"
	if _, err := validation.Validate(context.Background(), strings.NewReader(sigs), int64(len(sigs)), validation.Options{TrustAnchors: anchors(env)}); !errors.Is(err, signing.ErrTooLarge) {
		t.Fatalf("101 signatures: %v", err)
	}
}

// TestXAdESAlgorithms: RSA-3072 (rsa-sha256) and P-384 (ecdsa-sha384, SHA-384 digests)
// signers, at B-LTA enveloped and B-LT detached in ASiC-E.
func TestXAdESAlgorithms(t *testing.T) {
	for _, alg := range []hsm.Algorithm{hsm.RSA3072, hsm.ECP384} {
		t.Run(string(alg), func(t *testing.T) {
			env := signingtest.New(t, signingtest.Options{Algorithm: alg})
			opts := validation.Options{TrustAnchors: anchors(env)}
			doc := signXAdES(t, env, env.Official, []byte(invoiceXML), xades.Enveloped, signing.LevelLTA)
			if rep := validate(t, doc, opts); rep.Indication != validation.TotalPassed || rep.Signatures[0].Level != signing.LevelLTA ||
				rep.Signatures[0].Qualification != "QESig" {
				t.Fatalf("%s/%s\n%s", rep.Indication, rep.SubIndication, rep.Text())
			}
			if ok, out := xmlsecVerify(t, env, doc, nil); !ok {
				t.Fatalf("xmlsec1:\n%s", out)
			}
			if rep := validate(t, asicXAdES(t, env, signing.LevelLT), opts); rep.Indication != validation.TotalPassed || rep.Signatures[0].Level != signing.LevelLT {
				t.Fatalf("ASiC-E: %s/%s\n%s", rep.Indication, rep.SubIndication, rep.Text())
			}
		})
	}
}

// TestXAdESRevoked: a B-B signature whose signer is revoked since is INDETERMINATE
// (REVOKED_NO_POE: nothing proves it was made before); a B-LT one made before the revocation
// passes offline on its embedded OCSP response (proved by its timestamp to predate the
// revocation).
func TestXAdESRevoked(t *testing.T) {
	env := signingtest.New(t, signingtest.Options{})
	fetch := validation.Options{TrustAnchors: anchors(env), Fetch: validation.RevocationFetcher{R: env.PKI}}
	bb := signXAdES(t, env, env.Official, []byte(invoiceXML), xades.Enveloped, signing.LevelB)
	blt := signXAdES(t, env, env.Official, []byte(invoiceXML), xades.Enveloped, signing.LevelLT)
	time.Sleep(1100 * time.Millisecond) // the revocation comes strictly after the timestamp
	env.Revoke(t, env.Official)
	if rep := validate(t, bb, fetch); rep.Indication != validation.Indeterminate || rep.SubIndication != validation.RevokedNoPOE {
		t.Fatalf("B-B: %s/%s\n%s", rep.Indication, rep.SubIndication, rep.Text())
	}
	if rep := validate(t, blt, validation.Options{TrustAnchors: anchors(env)}); rep.Indication != validation.TotalPassed || rep.Signatures[0].Level != signing.LevelLT {
		t.Fatalf("B-LT offline: %s/%s\n%s", rep.Indication, rep.SubIndication, rep.Text())
	}
}

// TestXAdESCertificateBinding: SigningCertificateV2 binds the signer's certificate: with
// another certificate in its place in KeyInfo the signer is not found; with the bound one still
// there but a SignedProperties whose digest names another certificate, the signature fails.
func TestXAdESCertificateBinding(t *testing.T) {
	env := signingtest.New(t, signingtest.Options{})
	opts := validation.Options{TrustAnchors: anchors(env), Fetch: validation.RevocationFetcher{R: env.PKI}}
	doc := string(signXAdES(t, env, env.Seal, []byte(invoiceXML), xades.Enveloped, signing.LevelB))
	i := strings.Index(doc, "<ds:X509Certificate>") + len("<ds:X509Certificate>")
	j := strings.Index(doc, "</ds:X509Certificate>")
	swapped := doc[:i] + base64.StdEncoding.EncodeToString(env.Official.Cert.Raw) + doc[j:]
	if rep := validate(t, []byte(swapped), opts); rep.Indication != validation.Indeterminate || rep.SubIndication != validation.NoSigningCertificateFound {
		t.Fatalf("another certificate in KeyInfo: %s/%s\n%s", rep.Indication, rep.SubIndication, rep.Text())
	}
	sum := sha256.Sum256(env.Official.Cert.Raw)
	k := strings.Index(doc, "<xades:CertDigest>")
	dv := strings.Index(doc[k:], "<ds:DigestValue>") + k + len("<ds:DigestValue>")
	end := strings.Index(doc[dv:], "</ds:DigestValue>") + dv
	renamed := doc[:dv] + base64.StdEncoding.EncodeToString(sum[:]) + doc[end:]
	if rep := validate(t, []byte(renamed), opts); rep.Indication == validation.TotalPassed {
		t.Fatalf("a SignedProperties naming another certificate passed\n%s", rep.Text())
	}
}
