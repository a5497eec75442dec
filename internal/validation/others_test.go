package validation_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/digitorus/pdfsign/sign"

	"github.com/vula-eid/vula/internal/signing"
	"github.com/vula-eid/vula/internal/signing/pades"
	"github.com/vula-eid/vula/internal/signing/signingtest"
	"github.com/vula-eid/vula/internal/testenv"
	"github.com/vula-eid/vula/internal/validation"
)

// opensslPKI is a CA, a signer and a TSA made by openssl, nothing of Vula's: the signatures
// and timestamps they make are "made by others".
type opensslPKI struct {
	dir string
	ca  *x509.Certificate
	crl []byte // DER, empty, signed by the CA
	run func(args ...string) []byte
	t   testing.TB
}

func newOpenSSLPKI(t testing.TB) *opensslPKI {
	t.Helper()
	testenv.Need(t, "openssl")
	dir := t.TempDir()
	p := &opensslPKI{dir: dir, t: t}
	p.run = func(args ...string) []byte {
		t.Helper()
		cmd := exec.Command("openssl", args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	write := func(name, s string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("leaf.ext", "keyUsage=critical,digitalSignature,nonRepudiation\nbasicConstraints=CA:FALSE\n")
	write("tsa.ext", "keyUsage=critical,digitalSignature\nextendedKeyUsage=critical,timeStamping\nbasicConstraints=CA:FALSE\n")
	write("index.txt", "")
	write("crlnumber", "01\n")
	write("tsaserial", "01\n")
	write("ca.cnf", `[ca]
default_ca = CA_default
[CA_default]
database = index.txt
crlnumber = crlnumber
default_md = sha256
default_crl_days = 30
certificate = ca.pem
private_key = ca.key
`)
	write("tsa.cnf", `[tsa]
default_tsa = tsa1
[tsa1]
serial = tsaserial
crypto_device = builtin
signer_cert = tsa.pem
signer_key = tsa.key
signer_digest = sha256
default_policy = 1.2.3.4.1
digests = sha256, sha384, sha512
accuracy = secs:1
ordering = no
tsa_name = no
ess_cert_id_chain = no
ess_cert_id_alg = sha256
`)
	p.run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
		"-days", "30", "-subj", "/CN=Other Root CA/O=Others", "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
	for _, l := range []struct{ name, subj, ext string }{{"leaf", "/CN=Other Signer/O=Others", "leaf.ext"}, {"tsa", "/CN=Other TSA/O=Others", "tsa.ext"}} {
		p.run("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", l.name+".key", "-out", l.name+".csr", "-subj", l.subj)
		p.run("x509", "-req", "-in", l.name+".csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", l.name+".pem", "-days", "30", "-extfile", l.ext)
	}
	p.run("ca", "-config", "ca.cnf", "-gencrl", "-out", "crl.pem")
	p.run("crl", "-in", "crl.pem", "-outform", "DER", "-out", "crl.der")
	p.ca = readCert(t, filepath.Join(dir, "ca.pem"))
	var err error
	if p.crl, err = os.ReadFile(filepath.Join(dir, "crl.der")); err != nil {
		t.Fatal(err)
	}
	return p
}

func (p *opensslPKI) path(name string) string { return filepath.Join(p.dir, name) }

func (p *opensslPKI) read(name string) []byte {
	b, err := os.ReadFile(p.path(name))
	if err != nil {
		p.t.Fatal(err)
	}
	return b
}

// crlFetcher answers every CRL request with the openssl CA's CRL: revocation "fetched".
type crlFetcher struct{ crl []byte }

func (f crlFetcher) OCSP(context.Context, *x509.Certificate, *x509.Certificate) ([]byte, error) {
	return nil, os.ErrNotExist
}
func (f crlFetcher) CRL(context.Context, *x509.Certificate) ([]byte, error) { return f.crl, nil }

func readCert(t testing.TB, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestOpenSSLCAdES(t *testing.T) {
	p := newOpenSSLPKI(t)
	content := []byte("a contract signed by openssl\n")
	if err := os.WriteFile(p.path("content.txt"), content, 0o600); err != nil {
		t.Fatal(err)
	}
	p.run("cms", "-sign", "-binary", "-cades", "-in", "content.txt", "-signer", "leaf.pem", "-inkey", "leaf.key", "-md", "sha256",
		"-outform", "DER", "-out", "sig.der")
	sig := p.read("sig.der")
	opts := validation.Options{TrustAnchors: []*x509.Certificate{p.ca}, Fetch: crlFetcher{p.crl},
		Content: bytes.NewReader(content), ContentSize: int64(len(content))}
	rep := validate(t, sig, opts)
	s := rep.Signatures[0]
	if rep.Indication != validation.TotalPassed || s.Format != "CAdES-BASELINE" || s.Level != "B-B" || s.ClaimedSigningTime == nil {
		t.Fatalf("%s %s level %s\n%s", rep.Indication, s.Format, s.Level, dump(t, rep))
	}
	if s.Revocation[0].Type != "CRL" || s.Revocation[0].Source != "fetched" {
		t.Errorf("revocation %+v", s.Revocation)
	}

	t.Run("other content", func(t *testing.T) {
		other := []byte("another contract\n")
		o := opts
		o.Content, o.ContentSize = bytes.NewReader(other), int64(len(other))
		rep := validate(t, sig, o)
		if rep.Indication != validation.TotalFailed || rep.SubIndication != validation.HashFailure {
			t.Fatalf("%s/%s, want TOTAL-FAILED/HASH_FAILURE", rep.Indication, rep.SubIndication)
		}
	})
	t.Run("no content", func(t *testing.T) {
		o := opts
		o.Content = nil
		rep := validate(t, sig, o)
		if rep.Indication != validation.Indeterminate || rep.SubIndication != validation.SignedDataNotFound {
			t.Fatalf("%s/%s, want INDETERMINATE/SIGNED_DATA_NOT_FOUND", rep.Indication, rep.SubIndication)
		}
	})
	t.Run("not a trust anchor", func(t *testing.T) {
		env := signingtest.New(t, signingtest.Options{})
		o := opts
		o.TrustAnchors = anchors(env)
		rep := validate(t, sig, o)
		if rep.Indication != validation.Indeterminate || rep.SubIndication != validation.NoCertificateChainFound {
			t.Fatalf("%s/%s, want INDETERMINATE/NO_CERTIFICATE_CHAIN_FOUND", rep.Indication, rep.SubIndication)
		}
	})
	t.Run("no revocation data", func(t *testing.T) {
		o := opts
		o.Fetch = nil
		rep := validate(t, sig, o)
		if rep.Indication != validation.Indeterminate || rep.SubIndication != validation.TryLater {
			t.Fatalf("%s/%s, want INDETERMINATE/TRY_LATER", rep.Indication, rep.SubIndication)
		}
	})
	t.Run("plain CMS without -cades", func(t *testing.T) {
		p.run("cms", "-sign", "-binary", "-in", "content.txt", "-signer", "leaf.pem", "-inkey", "leaf.key", "-md", "sha256",
			"-outform", "DER", "-out", "plain.der")
		rep := validate(t, p.read("plain.der"), opts)
		if s := rep.Signatures[0]; rep.Indication != validation.TotalPassed || s.Format != "CMS" || s.Level != "" {
			t.Fatalf("%s %s %s\n%s", rep.Indication, s.Format, s.Level, rep.Text())
		}
	})
}

func TestOpenSSLTimestamp(t *testing.T) {
	p := newOpenSSLPKI(t)
	data := []byte("data timestamped by openssl\n")
	if err := os.WriteFile(p.path("data.txt"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	p.run("ts", "-query", "-data", "data.txt", "-sha256", "-cert", "-out", "q.tsq")
	p.run("ts", "-reply", "-config", "tsa.cnf", "-queryfile", "q.tsq", "-out", "r.tsr")
	p.run("ts", "-reply", "-config", "tsa.cnf", "-queryfile", "q.tsq", "-token_out", "-out", "t.tok")
	// openssl's own verdict on the reply, so that the test's input is known good.
	p.run("ts", "-verify", "-data", "data.txt", "-in", "r.tsr", "-CAfile", "ca.pem", "-untrusted", "tsa.pem")
	base := validation.Options{TrustAnchors: []*x509.Certificate{p.ca}, Fetch: crlFetcher{p.crl}}
	for _, name := range []string{"r.tsr", "t.tok"} {
		t.Run(name, func(t *testing.T) {
			o := base
			o.Content, o.ContentSize = bytes.NewReader(data), int64(len(data))
			rep := validate(t, p.read(name), o)
			s := rep.Signatures[0]
			if rep.Format != "RFC3161" || rep.Indication != validation.TotalPassed || s.TimestampTime == nil || !strings.Contains(s.Signer.Subject, "Other TSA") {
				t.Fatalf("%s %s\n%s", rep.Format, rep.Indication, dump(t, rep))
			}
			// A timestamp over another digest.
			other := []byte("other data\n")
			o.Content, o.ContentSize = bytes.NewReader(other), int64(len(other))
			rep = validate(t, p.read(name), o)
			if rep.Indication != validation.TotalFailed || rep.SubIndication != validation.HashFailure {
				t.Fatalf("over other data: %s/%s, want TOTAL-FAILED/HASH_FAILURE", rep.Indication, rep.SubIndication)
			}
		})
	}
}

// TestPdfsign: a PDF signed by github.com/digitorus/pdfsign's default mode
// (adbe.pkcs7.detached) is a PKCS#7 signature, checked for integrity but not PAdES baseline.
func TestPdfsign(t *testing.T) {
	env := signingtest.New(t, signingtest.Options{})
	in := env.WriteFile(t, "in.pdf", signingtest.PDF("pdfsign"))
	out := filepath.Join(env.Dir, "out.pdf")
	err := sign.SignFile(in, out, sign.SignData{
		Signature: sign.SignDataSignature{CertType: sign.ApprovalSignature, Info: sign.SignDataSignatureInfo{Name: "pdfsign", Reason: "test"}},
		Signer:    env.Seal.Key, Certificate: env.Seal.Cert, DigestAlgorithm: crypto.SHA256,
		CertificateChains: [][]*x509.Certificate{append([]*x509.Certificate{env.Seal.Cert}, env.Seal.Chain...)},
	})
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	opts := validation.Options{TrustAnchors: anchors(env), Fetch: validation.RevocationFetcher{R: env.PKI}}
	rep := validate(t, doc, opts)
	s := rep.Signatures[0]
	if rep.Indication != validation.TotalPassed || s.Format != "PKCS#7" || s.Level != "" || !s.CoversWholeDocument {
		t.Fatalf("%s %s level %q\n%s", rep.Indication, s.Format, s.Level, dump(t, rep))
	}
	if !hasCheck(s, "message-digest", "PASSED") || !hasCheck(s, "byte-range", "PASSED") {
		t.Fatalf("integrity not checked\n%s", dump(t, rep))
	}
	// With pdfsign's embedded revocation data (adbe-revocationInfoArchival, fetched by pdfsign
	// from the served PKI) the signature validates offline.
	lt := filepath.Join(env.Dir, "out-lt.pdf")
	if err := sign.SignFile(in, lt, sign.SignData{
		Signature: sign.SignDataSignature{CertType: sign.ApprovalSignature, Info: sign.SignDataSignatureInfo{Name: "pdfsign"}},
		Signer:    env.Seal.Key, Certificate: env.Seal.Cert, DigestAlgorithm: crypto.SHA256,
		CertificateChains:  [][]*x509.Certificate{append([]*x509.Certificate{env.Seal.Cert}, env.Seal.Chain...)},
		RevocationFunction: sign.DefaultEmbedRevocationStatusFunction,
	}); err != nil {
		t.Fatal(err)
	}
	ltDoc, err := os.ReadFile(lt)
	if err != nil {
		t.Fatal(err)
	}
	offline := validate(t, ltDoc, validation.Options{TrustAnchors: anchors(env)})
	if offline.Indication != validation.TotalPassed || offline.Signatures[0].Revocation[0].Source != "CMS" {
		t.Fatalf("pdfsign with revocation data, offline: %s\n%s", offline.Indication, dump(t, offline))
	}

	// One byte of the signed text changed: the digest no longer matches.
	bad := bytes.Replace(doc, []byte("(pdfsign) Tj"), []byte("(pdfsigm) Tj"), 1)
	if bytes.Equal(bad, doc) {
		t.Fatal("the page text is not in the file")
	}
	if rep := validate(t, bad, opts); rep.Indication != validation.TotalFailed || rep.SubIndication != validation.HashFailure {
		t.Fatalf("%s/%s, want TOTAL-FAILED/HASH_FAILURE", rep.Indication, rep.SubIndication)
	}
}

func hasCheck(s validation.SignatureReport, name, result string) bool {
	for _, c := range s.Checks {
		if c.Name == name && c.Result == result {
			return true
		}
	}
	return false
}

// TestDocMDP: after a certification signature with P=1 (made by pdfsign) a further signature
// is a change the certifier did not permit; after P=2 (Vula's) it is allowed.
func TestDocMDP(t *testing.T) {
	env := signingtest.New(t, signingtest.Options{})
	opts := validation.Options{TrustAnchors: anchors(env), Fetch: validation.RevocationFetcher{R: env.PKI}}
	chain := [][]*x509.Certificate{append([]*x509.Certificate{env.Seal.Cert}, env.Seal.Chain...)}
	pdfsignWith := func(in, out string, sig sign.SignDataSignature) []byte {
		t.Helper()
		if err := sign.SignFile(in, out, sign.SignData{Signature: sig, Signer: env.Seal.Key, Certificate: env.Seal.Cert,
			DigestAlgorithm: crypto.SHA256, CertificateChains: chain}); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	in := env.WriteFile(t, "in.pdf", signingtest.PDF("certified"))
	certified := pdfsignWith(in, filepath.Join(env.Dir, "p1.pdf"), sign.SignDataSignature{CertType: sign.CertificationSignature,
		DocMDPPerm: sign.DoNotAllowAnyChangesPerms, Info: sign.SignDataSignatureInfo{Name: "certifier"}})
	expect(t, validate(t, certified, opts), validation.TotalPassed, "")
	second := pdfsignWith(filepath.Join(env.Dir, "p1.pdf"), filepath.Join(env.Dir, "p1-2.pdf"),
		sign.SignDataSignature{CertType: sign.ApprovalSignature, Info: sign.SignDataSignatureInfo{Name: "second"}})
	rep := validate(t, second, opts)
	expect(t, rep, validation.TotalFailed, validation.FormatFailure)
	if !strings.Contains(rep.Text(), "DocMDP P=1") || rep.Signatures[1].Indication != validation.TotalPassed {
		t.Fatalf("%s", rep.Text())
	}

	var out bytes.Buffer
	doc := signingtest.PDF("certified P=2")
	if err := pades.Sign(context.Background(), bytes.NewReader(doc), int64(len(doc)), &out, env.Seal, pades.Options{Certify: true}); err != nil {
		t.Fatal(err)
	}
	expect(t, validate(t, signPDF(t, env, env.Official, out.Bytes(), signing.LevelB), opts), validation.TotalPassed, "")
}
