package validation_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vula-eid/vula/hsm"
	"github.com/vula-eid/vula/internal/certs"
	"github.com/vula-eid/vula/internal/signing"
	"github.com/vula-eid/vula/internal/signing/signingtest"
	"github.com/vula-eid/vula/internal/store"
	"github.com/vula-eid/vula/internal/tsa"
	"github.com/vula-eid/vula/internal/validation"
)

type systemClock struct{}

func (systemClock) Now() time.Time               { return time.Now() }
func (systemClock) Synced(context.Context) error { return nil }

// longTSA is a second timestamping unit of env's PKI, issued by seal-ca with the CA's own key
// from the key layer, whose certificate lasts years (Env.TSA's lasts two, like the signer's):
// what a trust service renews its timestamps with. Its certificate is recorded in the PKI's
// store, so the PKI's OCSP responder answers for it.
func longTSA(t testing.TB, env *signingtest.Env, years int) (*tsa.Responder, *x509.Certificate) {
	t.Helper()
	ctx := context.Background()
	recs, err := env.DB.KeyRecords(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var caURI string
	for _, r := range recs {
		if r.Owner == certs.NameSealCA {
			caURI = r.URI
		}
	}
	caSigner, err := env.Keys.Signer(ctx, caURI, hsm.PurposeCA)
	if err != nil {
		t.Fatal(err)
	}
	sealCA, _ := env.PKI.Certificate(certs.NameSealCA)
	k, err := env.Keys.CreateKey(ctx, hsm.KeySpec{Label: "tsa-long", Algorithm: hsm.ECP256, Purpose: hsm.PurposeTSA, Owner: "tsa-long"})
	if err != nil {
		t.Fatal(err)
	}
	s, err := env.Keys.Signer(ctx, k.URI, hsm.PurposeTSA)
	if err != nil {
		t.Fatal(err)
	}
	linter, err := certs.NewLinter()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	req := certs.Request{Profile: certs.TSA, PublicKey: s.Public(), NotBefore: now.Add(-time.Minute), NotAfter: now.AddDate(years, 0, 0),
		Subject: pkix.Name{Country: []string{"XK"}, Organization: []string{"Vula Demo"}, CommonName: "Vula Demo Timestamping Unit 2"}}
	pol := certs.Policy{BaseURL: env.URL, PolicyOIDs: []asn1.ObjectIdentifier{{1, 3, 6, 1, 4, 1, 99999, 1, 1}}}
	cert, err := certs.Issue(req, &certs.Issuer{Name: certs.NameSealCA, Cert: sealCA, Signer: caSigner}, nil, pol, linter)
	if err != nil {
		t.Fatal(err)
	}
	if err := env.DB.CreateCertificate(ctx, store.Certificate{CA: certs.NameSealCA, Serial: fmt.Sprintf("%x", cert.SerialNumber),
		Subject: cert.Subject.String(), KeyURI: k.URI, Profile: string(certs.TSA), DER: cert.Raw, NotBefore: cert.NotBefore, NotAfter: cert.NotAfter}); err != nil {
		t.Fatal(err)
	}
	r, err := tsa.New(tsa.Config{Policy: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 2, 1}, Chain: []*x509.Certificate{sealCA}},
		cert, s, systemClock{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return r, cert
}

// addDocTimestamp appends a document timestamp by ts (a new signature field with a
// /DocTimeStamp dictionary, in the AcroForm only) as an incremental update, the way a trust
// service renews a B-LTA document: its range covers everything before it. It returns the
// file and the token.
func addDocTimestamp(t testing.TB, doc []byte, ts signing.Timestamper, name string) ([]byte, []byte) {
	t.Helper()
	var token []byte
	out := appendSignature(t, doc, name, "", nil, "/Type /DocTimeStamp /Filter /Adobe.PPKLite /SubFilter /ETSI.RFC3161", func(covered []byte) []byte {
		d := sha256.Sum256(covered)
		var err error
		if token, err = ts.Timestamp(context.Background(), crypto.SHA256, d[:]); err != nil {
			t.Fatal(err)
		}
		return token
	})
	return out, token
}

// appendSignature appends an incremental update with a new signature field named name
// (fieldExtra added to its dictionary, e.g. a /Lock; listed in the AcroForm only) whose value
// is a signature dictionary with the entries sigEntries, a /ByteRange over the whole new file
// and the /Contents that contents makes of the bytes the range covers. objs are further
// objects of the same update.
func appendSignature(t testing.TB, doc []byte, name, fieldExtra string, objs map[int]string, sigEntries string, contents func(covered []byte) []byte) []byte {
	t.Helper()
	i := bytes.LastIndex(doc, []byte("trailer"))
	root := regexp.MustCompile(`/Root (\d+) 0 R`).FindSubmatch(doc[i:])
	size := regexp.MustCompile(`/Size (\d+)`).FindSubmatch(doc[i:])
	if root == nil || size == nil {
		t.Fatal("no /Root or /Size")
	}
	form := regexp.MustCompile(`/AcroForm (\d+) 0 R`).FindStringSubmatch(latestObject(t, doc, string(root[1])))
	if form == nil {
		t.Fatal("no indirect /AcroForm")
	}
	var n, num int
	fmt.Sscan(string(size[1]), &n)
	fmt.Sscan(form[1], &num)
	n = max(n, 1000) // above objs' numbers
	field, sig := n, n+1
	acro := regexp.MustCompile(`/Fields \[([^\]]*)\]`).ReplaceAllString(latestObject(t, doc, form[1]), fmt.Sprintf("/Fields [$1 %d 0 R]", field))
	const placeholder = "/ByteRange [0 0000000000 0000000000 0000000000]"
	const room = 32768
	all := map[int]string{
		num:   acro,
		field: fmt.Sprintf("<< /FT /Sig /T (%s) /V %d 0 R /Type /Annot /Subtype /Widget /Rect [0 0 0 0] /F 132 %s >>", name, sig, fieldExtra),
		sig:   "<< " + sigEntries + " " + placeholder + " /Contents <" + strings.Repeat("0", room) + "> >>",
	}
	for k, v := range objs {
		all[k] = v
	}
	out := appendUpdate(t, doc, all)
	p := bytes.Index(out[len(doc):], []byte(placeholder)) + len(doc)
	a := bytes.Index(out[p:], []byte("/Contents <")) + p + len("/Contents ")
	b := a + room + 2
	copy(out[p:], fmt.Sprintf("/ByteRange [0 %010d %010d %010d]", a, b, len(out)-b))
	covered := append(append([]byte{}, out[:a]...), out[b:]...)
	c := contents(covered)
	if 2*len(c) > room {
		t.Fatalf("/Contents of %d bytes", len(c))
	}
	hex.Encode(out[a+1:], c)
	return out
}

// latestObject is the body of the last definition of object num (a dictionary).
func latestObject(t testing.TB, doc []byte, num string) string {
	t.Helper()
	all := regexp.MustCompile(`(?s)\n`+num+` 0 obj\n(<<.*?>>)\nendobj`).FindAllSubmatch(doc, -1)
	if all == nil {
		t.Fatalf("no object %s", num)
	}
	return string(all[len(all)-1][1])
}

// TestLongTermProofOfExistence: the long-term (LTA) validation of EN 319 102-1 §5.6.3.
//
// The times: the signer's certificate and Env.TSA's both last two years from now, the issuing
// CAs ten, the root twenty. The document timestamps that keep a signature alive come from a
// second TSA under the same seal-ca whose certificate lasts eight years. Five years on, the
// signer's and the first TSA's certificates have expired while seal-ca, the root and the
// second TSA's are valid: that is the validation time. (Ten years on, as a renewal policy
// would also face, seal-ca itself has expired, and then only a timestamp from a TSA under a
// newer CA could help; this PKI has none.)
//
// The latest timestamp is validated at the validation time, so its TSA's certificate must be
// valid then, not only when it was made: a timestamp is no proof of its own existence.
func TestLongTermProofOfExistence(t *testing.T) {
	env := signingtest.New(t, signingtest.Options{})
	tsa2, tsa2Cert := longTSA(t, env, 8)
	at := func(d time.Duration) validation.Options {
		return validation.Options{TrustAnchors: anchors(env), Fetch: validation.RevocationFetcher{R: env.PKI},
			Time: func() time.Time { return time.Now().Add(d) }}
	}
	const year = 365 * 24 * time.Hour
	later := at(5 * year)
	if tsu := env.PKI.TSA().Cert; !env.Seal.Cert.NotAfter.Before(later.Time()) || !tsu.NotAfter.Before(later.Time()) || !tsa2Cert.NotAfter.After(later.Time()) {
		t.Fatalf("the times do not make the case: signer until %v, TSA until %v, TSA 2 until %v", env.Seal.Cert.NotAfter, tsu.NotAfter, tsa2Cert.NotAfter)
	}
	lt := signPDF(t, env, env.Seal, signingtest.PDF("keep me"), signing.LevelLT)
	lta1 := signPDF(t, env, env.Seal, signingtest.PDF("keep me"), signing.LevelLTA) // its document timestamp by Env.TSA

	t.Run("B-LT after the certificates expired", func(t *testing.T) {
		rep := validate(t, lt, later)
		expect(t, rep, validation.Indeterminate, validation.OutOfBoundsNoPOE)
		s := rep.Signatures[0]
		if len(s.Timestamps) != 1 || s.Timestamps[0].SubIndication != validation.OutOfBoundsNoPOE || !hasCheck(s, "chain", "INDETERMINATE") {
			t.Fatalf("%s", dump(t, rep))
		}
		expect(t, validate(t, lt, at(0)), validation.TotalPassed, "")
	})

	t.Run("a document timestamp of a TSA still valid", func(t *testing.T) {
		doc, token := addDocTimestamp(t, lt, tsa2, "DocTimeStamp2")
		verifyTokenWithOpenSSL(t, env, doc, token, tsa2Cert)
		for _, o := range []validation.Options{at(0), later} {
			rep := validate(t, doc, o)
			expect(t, rep, validation.TotalPassed, "")
			s := rep.Signatures[0]
			if s.Level != signing.LevelLTA || len(rep.Signatures) != 2 || rep.Signatures[1].Kind != "document-timestamp" {
				t.Fatalf("%s", dump(t, rep))
			}
			// The signature's proof of existence is still its own timestamp's time, which the
			// document timestamp keeps valid.
			if s.ProofOfExistence.After(*rep.Signatures[1].TimestampTime) || !s.ProofOfExistence.Before(env.Seal.Cert.NotAfter) {
				t.Fatalf("POE %v\n%s", s.ProofOfExistence, dump(t, rep))
			}
			if o.Time().After(env.Seal.Cert.NotAfter) && !hasCheck(s.Timestamps[0], "proof-of-existence", "INFO") {
				t.Fatalf("the signature timestamp does not say what proves it\n%s", dump(t, rep))
			}
		}
		// The renewing TSA's certificate has expired too (nine years on): nothing proves the
		// last timestamp, so nothing before it either.
		rep := validate(t, doc, at(9*year))
		expect(t, rep, validation.Indeterminate, validation.OutOfBoundsNoPOE)
		if rep.Signatures[1].Indication != validation.Indeterminate {
			t.Fatalf("%s", dump(t, rep))
		}
	})

	t.Run("B-LTA whose only document timestamp has expired", func(t *testing.T) {
		expect(t, validate(t, lta1, at(0)), validation.TotalPassed, "")
		rep := validate(t, lta1, later)
		expect(t, rep, validation.Indeterminate, validation.OutOfBoundsNoPOE)
		if rep.Signatures[0].Level == signing.LevelLTA {
			t.Fatalf("%s", dump(t, rep))
		}
	})

	t.Run("a chain of document timestamps", func(t *testing.T) {
		doc, _ := addDocTimestamp(t, lta1, tsa2, "DocTimeStamp2")
		rep := validate(t, doc, later)
		expect(t, rep, validation.TotalPassed, "")
		if len(rep.Signatures) != 3 || rep.Signatures[0].Level != signing.LevelLTA {
			t.Fatalf("%s", dump(t, rep))
		}
		// doc-ts1 (Env.TSA, expired) is kept alive by doc-ts2 (the second TSA).
		first := rep.Signatures[1]
		if first.Indication != validation.TotalPassed || !strings.Contains(checkMessage(first, "proof-of-existence"), "doc-ts2 covers it") {
			t.Fatalf("%s", dump(t, rep))
		}
	})
}

// verifyTokenWithOpenSSL checks a document timestamp made by the test with openssl ts -verify
// over the bytes its range covers.
func verifyTokenWithOpenSSL(t *testing.T, env *signingtest.Env, doc, token []byte, tsaCert *x509.Certificate) {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		newOpenSSLPKI(t) // skips, or fails under CI, through testenv
	}
	br, _ := byteRangeLast(t, doc)
	var covered []byte
	covered = append(covered, doc[:br[1]]...)
	covered = append(covered, doc[br[2]:br[2]+br[3]]...)
	tok := env.WriteFile(t, "docts.tst", token)
	data := env.WriteFile(t, "covered.bin", covered)
	untrusted := env.WriteFile(t, "tsa2.pem", pemCert(tsaCert))
	out, err := exec.Command("openssl", "ts", "-verify", "-token_in", "-in", tok, "-data", data, "-CAfile", env.AllPEM, "-untrusted", untrusted).CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("Verification: OK")) {
		t.Fatalf("openssl ts -verify: %v\n%s", err, out)
	}
}

// byteRangeLast is byteRange for the last /ByteRange of the file.
func byteRangeLast(t testing.TB, doc []byte) ([4]int64, []int) {
	t.Helper()
	all := regexp.MustCompile(`/ByteRange\s*\[`).FindAllIndex(doc, -1)
	if all == nil {
		t.Fatal("no /ByteRange")
	}
	off := all[len(all)-1][0]
	br, m := byteRange(t, doc[off:])
	for i := range m {
		m[i] += off
	}
	return br, m
}

func pemCert(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

func checkMessage(s validation.SignatureReport, name string) string {
	for _, c := range s.Checks {
		if c.Name == name {
			return c.Message
		}
	}
	return ""
}
