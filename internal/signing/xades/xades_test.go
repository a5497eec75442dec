package xades_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/beevik/etree"
	"golang.org/x/crypto/ocsp"

	"github.com/vula-eid/vula/hsm"
	"github.com/vula-eid/vula/internal/signing"
	"github.com/vula-eid/vula/internal/signing/signingtest"
	"github.com/vula-eid/vula/internal/signing/xades"
	"github.com/vula-eid/vula/internal/testenv"
)

const (
	nsDS    = "http://www.w3.org/2000/09/xmldsig#"
	nsXAdES = "http://uri.etsi.org/01903/v1.3.2#"
)

var signTime = time.Date(2026, 11, 22, 10, 30, 0, 0, time.UTC)

func need(t testing.TB, cmd string) {
	t.Helper()
	if _, err := exec.LookPath(cmd); err != nil {
		testenv.Missing(t, cmd+" is not installed (test/deps.sh installs it)")
	}
}

// nodeDir installs the xadesjs checker once (npm ci, from the committed package-lock.json).
var nodeOnce sync.Once
var nodeErr error

func nodeDir(t testing.TB) string {
	t.Helper()
	need(t, "node")
	need(t, "npm")
	dir, _ := filepath.Abs(filepath.Join("testdata", "node"))
	nodeOnce.Do(func() {
		if _, err := os.Stat(filepath.Join(dir, "node_modules", "xadesjs")); err == nil {
			return
		}
		cmd := exec.Command("npm", "ci", "--no-audit", "--no-fund")
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			nodeErr = fmt.Errorf("npm ci: %v\n%s", err, out)
		}
	})
	if nodeErr != nil {
		t.Fatal(nodeErr)
	}
	return dir
}

// xmlsec verifies file with xmlsec1, trusting only the root; it returns its output and whether
// it said OK.
func xmlsec(t testing.TB, env *signingtest.Env, file string) (string, bool) {
	t.Helper()
	cmd := exec.Command("xmlsec1", "--verify", "--trusted-pem", env.RootPEM, "--untrusted-pem", env.ChainPEM,
		"--id-attr:Id", nsXAdES+":SignedProperties", "--id-attr:Id", nsDS+":Object", filepath.Base(file))
	cmd.Dir = filepath.Dir(file) // detached Reference URIs are relative to the signature
	out, err := cmd.CombinedOutput()
	return string(out), err == nil && bytes.Contains(out, []byte("OK"))
}

// xadesjs verifies files with the npm package xadesjs (one node process for all): whether each
// verified, and what node wrote on stderr.
func xadesjs(t testing.TB, files ...string) ([]bool, string) {
	t.Helper()
	cmd := exec.Command("node", append([]string{filepath.Join(nodeDir(t), "verify.mjs"), "verify"}, files...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	lines := strings.Fields(string(out))
	if err != nil || len(lines) != len(files) {
		t.Fatalf("verify.mjs: %v\n%s\n%s", err, out, stderr.String())
	}
	ok := make([]bool, len(files))
	for i, l := range lines {
		ok[i] = l == "true"
	}
	return ok, stderr.String()
}

type algCase struct {
	name string
	alg  hsm.Algorithm
}

var algs = []algCase{{"P256", hsm.ECP256}, {"RSA3072", hsm.RSA3072}, {"P384", hsm.ECP384}}

func TestSign(t *testing.T) {
	need(t, "xmlsec1")
	need(t, "openssl")
	nodeDir(t)
	input, err := os.ReadFile(filepath.Join("testdata", "invoice.xml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range algs {
		t.Run(a.name, func(t *testing.T) {
			env := signingtest.New(t, signingtest.Options{Algorithm: a.alg})
			for _, p := range []xades.Packaging{xades.Enveloped, xades.Enveloping, xades.Detached} {
				for _, l := range signing.Levels {
					t.Run(string(p)+"/"+string(l), func(t *testing.T) {
						signAndCheck(t, env, p, l, input)
					})
				}
			}
		})
	}
}

func signAndCheck(t *testing.T, env *signingtest.Env, p xades.Packaging, l signing.Level, input []byte) {
	ctx := context.Background()
	dir := t.TempDir()
	opts := xades.Options{Level: l, Packaging: p, Timestamper: env.TSA, Revocation: env.PKI, Time: signTime}
	if p != xades.Enveloped {
		opts.MimeType = "application/xml"
	}
	if p == xades.Detached {
		opts.FileName = "invoice file.xml" // a space: the URI is percent-encoded
		if err := os.WriteFile(filepath.Join(dir, opts.FileName), input, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	signer := env.Seal
	out, err := xades.Sign(ctx, bytes.NewReader(input), signer, opts)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "signed.xml")
	write(t, file, out)

	if msg, ok := xmlsec(t, env, file); !ok {
		t.Fatalf("xmlsec1 --verify failed:\n%s\n%s", msg, out)
	}
	doc := etree.NewDocument()
	if err := doc.ReadFromBytes(out); err != nil {
		t.Fatal(err)
	}
	checkStructure(t, doc, signer, p, l)

	if l.AtLeast(signing.LevelT) {
		tokenVerifies(t, env, dir, file, "SignatureTimeStamp", "sigts")
	}
	if l.AtLeast(signing.LevelLT) {
		checkValidationData(t, doc, env, signer)
	}
	if l.AtLeast(signing.LevelLTA) {
		tokenVerifies(t, env, dir, file, "ArchiveTimeStamp", "archive")
	}

	// A changed SigningTime breaks the SignedProperties digest.
	changed := bytes.Replace(out, []byte("2026-11-22T10:30:00Z"), []byte("2026-11-21T10:30:00Z"), 1)
	if bytes.Equal(changed, out) {
		t.Fatal("no SigningTime to change")
	}
	timeFile := filepath.Join(dir, "time.xml")
	write(t, timeFile, changed)

	// A changed data byte breaks the data Reference.
	dataFile := filepath.Join(dir, "data.xml")
	switch p {
	case xades.Enveloped:
		write(t, dataFile, bytes.Replace(out, []byte("1200.50"), []byte("1200.51"), 1))
	case xades.Enveloping:
		obj := doc.FindElement("//Object[@MimeType]")
		data, _ := base64.StdEncoding.DecodeString(obj.Text())
		data = bytes.Replace(data, []byte("1200.50"), []byte("9200.50"), 1)
		write(t, dataFile, bytes.Replace(out, []byte(obj.Text()), []byte(base64.StdEncoding.EncodeToString(data)), 1))
	case xades.Detached:
		// the same signature next to a changed copy of the file
		tdir := filepath.Join(dir, "changed")
		os.Mkdir(tdir, 0o700)
		write(t, filepath.Join(tdir, opts.FileName), bytes.Replace(input, []byte("1200.50"), []byte("1200.51"), 1))
		dataFile = filepath.Join(tdir, "signed.xml")
		write(t, dataFile, out)
	}
	for _, f := range []string{timeFile, dataFile} {
		if msg, ok := xmlsec(t, env, f); ok {
			t.Errorf("xmlsec1 accepted %s:\n%s", f, msg)
		}
	}
	res, stderr := xadesjs(t, file, timeFile, dataFile)
	if !res[0] {
		t.Errorf("xadesjs did not verify the signature:\n%s", stderr)
	}
	if res[1] || res[2] {
		t.Errorf("xadesjs accepted a changed SigningTime (%v) or a changed data byte (%v)", res[1], res[2])
	}
}

func write(t testing.TB, f string, b []byte) {
	t.Helper()
	if err := os.WriteFile(f, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// checkStructure checks what xmlsec1 and xadesjs do not look at: the XAdES properties.
func checkStructure(t *testing.T, doc *etree.Document, s signing.Signer, p xades.Packaging, l signing.Level) {
	t.Helper()
	sig := doc.FindElement("//Signature")
	if sig == nil {
		t.Fatal("no ds:Signature")
	}
	if p == xades.Enveloped && sig.Parent() != doc.Root() {
		t.Error("the enveloped signature is not in the root element")
	}
	qp := sig.FindElement("Object/QualifyingProperties")
	if qp == nil || qp.SelectAttrValue("Target", "") != "#"+sig.SelectAttrValue("Id", "-") {
		t.Fatal("QualifyingProperties missing or not targeting the signature")
	}
	if got := qp.FindElement("SignedProperties/SignedSignatureProperties/SigningTime").Text(); got != "2026-11-22T10:30:00Z" {
		t.Errorf("SigningTime %q", got)
	}
	// IssuerSerialV2 is the DER IssuerSerial of the signer's certificate; CertDigest its digest.
	is, _ := base64.StdEncoding.DecodeString(qp.FindElement("//IssuerSerialV2").Text())
	if !bytes.Contains(is, s.Cert.RawIssuer) || !bytes.Contains(is, s.Cert.SerialNumber.Bytes()) {
		t.Error("IssuerSerialV2 does not name the signer's issuer and serial")
	}
	h, _ := signing.HashFor(s.Cert.PublicKey)
	d := h.New()
	d.Write(s.Cert.Raw)
	if qp.FindElement("//CertDigest/DigestValue").Text() != base64.StdEncoding.EncodeToString(d.Sum(nil)) {
		t.Error("CertDigest is not the signer certificate's digest")
	}
	var refID string
	for _, r := range sig.FindElements("SignedInfo/Reference") {
		if r.SelectAttrValue("Type", "") == "http://uri.etsi.org/01903#SignedProperties" {
			if r.SelectAttrValue("URI", "") != "#"+qp.FindElement("SignedProperties").SelectAttrValue("Id", "-") {
				t.Error("the SignedProperties Reference does not point at them")
			}
			continue
		}
		refID = r.SelectAttrValue("Id", "")
	}
	dof := qp.FindElement("//DataObjectFormat")
	if dof == nil || dof.SelectAttrValue("ObjectReference", "") != "#"+refID {
		t.Error("DataObjectFormat does not point at the data Reference")
	}
	wantMime := map[xades.Packaging]string{xades.Enveloped: "text/xml", xades.Enveloping: "application/xml", xades.Detached: "application/xml"}[p]
	if dof.FindElement("MimeType").Text() != wantMime {
		t.Errorf("MimeType %q", dof.FindElement("MimeType").Text())
	}
	has := func(path string) bool { return qp.FindElement(path) != nil }
	for path, from := range map[string]signing.Level{
		"UnsignedProperties/UnsignedSignatureProperties/SignatureTimeStamp":                       signing.LevelT,
		"UnsignedProperties/UnsignedSignatureProperties/CertificateValues":                        signing.LevelLT,
		"UnsignedProperties/UnsignedSignatureProperties/RevocationValues":                         signing.LevelLT,
		"UnsignedProperties/UnsignedSignatureProperties/ArchiveTimeStamp":                         signing.LevelLTA,
		"UnsignedProperties/UnsignedSignatureProperties/SignatureTimeStamp/EncapsulatedTimeStamp": signing.LevelT,
	} {
		if has(path) != l.AtLeast(from) {
			t.Errorf("%s: present %v at %s", path, has(path), l)
		}
	}
	if ats := qp.FindElement("//ArchiveTimeStamp"); ats != nil && ats.NamespaceURI() != "http://uri.etsi.org/01903/v1.4.1#" {
		t.Errorf("ArchiveTimeStamp in namespace %q", ats.NamespaceURI())
	}
}

// tokenVerifies checks a timestamp of the signature with openssl: its imprint is over the input
// that xmldsigjs's canonicalizer computes (verify.mjs, mode), and its signature chains to the
// root.
func tokenVerifies(t *testing.T, env *signingtest.Env, dir, file, prop, mode string) {
	t.Helper()
	doc := etree.NewDocument()
	if err := doc.ReadFromFile(file); err != nil {
		t.Fatal(err)
	}
	el := doc.FindElement("//" + prop + "/EncapsulatedTimeStamp")
	token, err := base64.StdEncoding.DecodeString(el.Text())
	if err != nil {
		t.Fatal(err)
	}
	tok := filepath.Join(dir, mode+".tst")
	write(t, tok, token)
	in := filepath.Join(dir, mode+".in")
	if out, err := exec.Command("node", filepath.Join(nodeDir(t), "verify.mjs"), mode, file, in).CombinedOutput(); err != nil {
		t.Fatalf("verify.mjs %s: %v\n%s", mode, err, out)
	}
	out, err := exec.Command("openssl", "ts", "-verify", "-data", in, "-in", tok, "-token_in",
		"-CAfile", env.RootPEM, "-untrusted", env.AllPEM).CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("Verification: OK")) {
		t.Fatalf("openssl ts -verify of the %s: %v\n%s", prop, err, out)
	}
}

// checkValidationData checks that B-LT carries what validation needs: every certificate of the
// signer's chain and the TSA's (in KeyInfo or CertificateValues), good OCSP responses on the
// signer and the TSA, and CRLs that parse.
func checkValidationData(t *testing.T, doc *etree.Document, env *signingtest.Env, s signing.Signer) {
	t.Helper()
	var certs []*x509.Certificate
	for _, el := range append(doc.FindElements("//KeyInfo/X509Data/X509Certificate"), doc.FindElements("//CertificateValues/EncapsulatedX509Certificate")...) {
		der, _ := base64.StdEncoding.DecodeString(el.Text())
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		certs = append(certs, c)
	}
	tsu := env.PKI.TSA()
	for _, want := range append([]*x509.Certificate{s.Cert, tsu.Cert}, s.Chain...) {
		found := false
		for _, c := range certs {
			found = found || c.Equal(want)
		}
		if !found {
			t.Errorf("certificate %s is in neither KeyInfo nor CertificateValues", want.Subject)
		}
	}
	good := map[string]bool{}
	for _, el := range doc.FindElements("//RevocationValues/OCSPValues/EncapsulatedOCSPValue") {
		der, _ := base64.StdEncoding.DecodeString(el.Text())
		r, err := ocsp.ParseResponse(der, nil)
		if err != nil {
			t.Fatal(err)
		}
		if r.Status == ocsp.Good {
			good[r.SerialNumber.String()] = true
		}
	}
	if !good[s.Cert.SerialNumber.String()] || !good[tsu.Cert.SerialNumber.String()] {
		t.Error("no good OCSP response on the signer or on the TSA")
	}
	crls := doc.FindElements("//RevocationValues/CRLValues/EncapsulatedCRLValue")
	if len(crls) == 0 {
		t.Error("no CRL")
	}
	for _, el := range crls {
		der, _ := base64.StdEncoding.DecodeString(el.Text())
		if _, err := x509.ParseRevocationList(der); err != nil {
			t.Error(err)
		}
	}
}

// TestCanonicalCorners signs the documents whose canonical form goxmldsig's transform alone gets
// wrong (see excC14N) and has xmlsec1 verify them. xadesjs 2.6 (xmldsigjs 2.8) is only logged:
// it renders an xmlns="" that Exclusive C14N leaves out and drops the processing instructions
// around the root from a URI="" Reference, so it rejects correct signatures of such documents
// (xmllint --exc-c14n agrees with Vula and xmlsec1 there; TestDocC14NAgainstXmllint).
func TestCanonicalCorners(t *testing.T) {
	need(t, "xmlsec1")
	env := sharedEnv(t)
	files, _ := filepath.Glob(filepath.Join("testdata", "c14n-*.xml"))
	for _, f := range append(files, filepath.Join("testdata", "invoice.xml")) {
		t.Run(filepath.Base(f), func(t *testing.T) {
			in, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			out, err := xades.Sign(context.Background(), bytes.NewReader(in), env.Seal, xades.Options{Packaging: xades.Enveloped})
			if err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(t.TempDir(), "signed.xml")
			write(t, p, out)
			if msg, ok := xmlsec(t, env, p); !ok {
				t.Fatalf("xmlsec1:\n%s\n%s", msg, out)
			}
			if _, err := exec.LookPath("node"); err == nil {
				res, _ := xadesjs(t, p)
				t.Logf("xadesjs: %v", res[0])
			}
		})
	}
}
