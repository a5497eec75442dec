package pades_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vula-eid/vula/internal/certs"
	"github.com/vula-eid/vula/internal/signing"
	"github.com/vula-eid/vula/internal/signing/pades"
	"github.com/vula-eid/vula/internal/signing/signingtest"
)

// TestWriteTestdata rewrites the seed PDFs in testdata when PADES_UPDATE_TESTDATA=1.
func TestWriteTestdata(t *testing.T) {
	if os.Getenv("PADES_UPDATE_TESTDATA") != "1" {
		t.Skip("set PADES_UPDATE_TESTDATA=1 to rewrite testdata")
	}
	os.MkdirAll("testdata", 0o755)
	os.WriteFile("testdata/simple.pdf", pdfBytes(t, pdfOpts{}), 0o644)
	os.WriteFile("testdata/form.pdf", pdfBytes(t, pdfOpts{pages: 2, form: true}), 0o644)
	if out, err := run(t, "qpdf", "--object-streams=generate", "testdata/form.pdf", "testdata/xrefstream.pdf"); err != nil {
		t.Fatalf("qpdf: %v\n%s", err, out)
	}
}

func TestBadInput(t *testing.T) {
	need(t, "qpdf")
	env := signingtest.New(t, signingtest.Options{})
	good := pdfBytes(t, pdfOpts{pages: 2})
	xref := bytes.LastIndex(good, []byte("\nxref\n")) + 1
	brokenXref := bytes.Clone(good)
	// Every offset in the table points one byte into the wrong place.
	first := xref + bytes.Index(good[xref:], []byte("f\r\n")) + 3
	copy(brokenXref[first:], "0000000003 00000 n\r\n0000000004 00000 n\r\n")
	noTrailer := bytes.Clone(good[:xref+10])
	encrypted := func() []byte {
		in := writeTemp(t, "plain.pdf", good)
		out := filepath.Join(t.TempDir(), "enc.pdf")
		if o, err := run(t, "qpdf", "--encrypt", "user", "owner", "256", "--", in, out); err != nil {
			t.Fatalf("qpdf --encrypt: %v\n%s", err, o)
		}
		b, _ := os.ReadFile(out)
		return b
	}()
	encryptedRC4 := func() []byte {
		in := writeTemp(t, "plain.pdf", good)
		out := filepath.Join(t.TempDir(), "enc.pdf")
		if o, err := run(t, "qpdf", "--allow-weak-crypto", "--encrypt", "", "owner", "128", "--use-aes=n", "--", in, out); err != nil {
			t.Fatalf("qpdf --encrypt: %v\n%s", err, o)
		}
		b, _ := os.ReadFile(out)
		return b
	}()
	cases := []struct {
		name    string
		in      []byte
		maxSize int64
		want    error
		says    string
	}{
		{"not a PDF", []byte("GIF89a this is not a PDF at all, though it is long enough"), 0, signing.ErrInvalid, "not a PDF"},
		{"empty", nil, 0, signing.ErrInvalid, "not a PDF"},
		{"truncated", good[:len(good)/2], 0, signing.ErrInvalid, "EOF"},
		{"no trailer", noTrailer, 0, signing.ErrInvalid, "cross-reference"},
		{"broken xref", brokenXref, 0, signing.ErrInvalid, "malformed PDF"},
		{"huge object numbers", bytes.Replace(good, []byte("xref\n0 "), []byte("xref\n999999999 "), 1), 0, signing.ErrInvalid, "declares"},
		{"encrypted AES-256", encrypted, 0, signing.ErrUnsupported, "encrypted PDFs cannot be sealed or signed; remove the encryption first"},
		{"encrypted RC4, empty user password", encryptedRC4, 0, signing.ErrUnsupported, "encrypted PDFs cannot be sealed or signed; remove the encryption first"},
		{"fixture not-a-pdf", fixture(t, "bad/not-a-pdf.pdf"), 0, signing.ErrInvalid, "not a PDF"},
		{"fixture truncated", fixture(t, "bad/truncated.pdf"), 0, signing.ErrInvalid, "EOF"},
		{"fixture broken-xref", fixture(t, "bad/broken-xref.pdf"), 0, signing.ErrInvalid, "malformed PDF"},
		{"fixture broken-startxref", fixture(t, "bad/broken-startxref.pdf"), 0, signing.ErrInvalid, "cross-reference"},
		{"fixture encrypted", fixture(t, "bad/encrypted.pdf"), 0, signing.ErrUnsupported, "encrypted PDFs cannot be sealed or signed; remove the encryption first"},
		{"fixture encrypted-owner-only", fixture(t, "bad/encrypted-owner-only.pdf"), 0, signing.ErrUnsupported, "encrypted PDFs cannot be sealed or signed; remove the encryption first"},
		{"above MaxSize", good, int64(len(good) - 1), signing.ErrTooLarge, "limit"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var w bytes.Buffer
			err := pades.Sign(context.Background(), bytes.NewReader(c.in), int64(len(c.in)), &w, env.Seal,
				pades.Options{Level: signing.LevelB, MaxSize: c.maxSize})
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.says) {
				t.Errorf("got %v, want %v saying %q", err, c.want, c.says)
			}
			// An encrypted PDF is not called malformed, nor its key described.
			if errors.Is(c.want, signing.ErrUnsupported) && strings.Contains(err.Error(), "malformed") || strings.Contains(err.Error(), "-bit") {
				t.Errorf("got %v", err)
			}
			if w.Len() != 0 {
				t.Errorf("%d bytes written on error", w.Len())
			}
		})
	}
	// Options that cannot be honoured are refused up front too.
	for name, o := range map[string]pades.Options{
		"B-T without timestamper": {Level: signing.LevelT},
		"B-LT without revocation": {Level: signing.LevelLT, Timestamper: env.TSA},
		"unknown level":           {Level: "B-X"},
		"page out of range":       {Visible: &pades.Appearance{Page: 3, Rect: [4]float64{0, 0, 10, 10}}},
		"empty rectangle":         {Visible: &pades.Appearance{Page: 1, Rect: [4]float64{10, 10, 10, 50}}},
		"bad image":               {Visible: &pades.Appearance{Page: 1, Rect: [4]float64{0, 0, 10, 10}, Image: []byte("GIF89a")}},
	} {
		var w bytes.Buffer
		if err := pades.Sign(context.Background(), bytes.NewReader(good), int64(len(good)), &w, env.Seal, o); !errors.Is(err, signing.ErrInvalid) || w.Len() != 0 {
			t.Errorf("%s: %v (%d bytes written), want ErrInvalid", name, err, w.Len())
		}
	}
}

// FuzzSign feeds Sign arbitrary bytes: every error must wrap ErrInvalid or ErrUnsupported,
// nothing may be written on error, and a success must begin with the input.
//
// The PKI is made once per fuzzing process, in the body before f.Fuzz (each worker runs the
// body once). The fuzzer signs with its own key, certified by that PKI's seal CA, through a
// signer that makes deterministic (RFC 6979) ECDSA signatures at a fixed /M: the fuzzer's
// coverage spans every package linked in, and the key layer's random nonces, latency
// histograms and audit log lines made each signed input look new, so that the fuzzer spent
// its time minimizing noise (a few executions a minute) instead of mutating.
func FuzzSign(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*.pdf")
	for _, p := range seeds {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("%PDF-1.7\n%%EOF\n"))
	shortMinimize(f)
	s := deterministicSigner(f, signingtest.New(f, signingtest.Options{}))
	opts := pades.Options{Level: signing.LevelB, Time: signTime}
	f.Fuzz(func(t *testing.T, in []byte) {
		var w bytes.Buffer
		err := pades.Sign(context.Background(), bytes.NewReader(in), int64(len(in)), &w, s, opts)
		if err != nil {
			if !errors.Is(err, signing.ErrInvalid) && !errors.Is(err, signing.ErrUnsupported) && !errors.Is(err, signing.ErrTooLarge) {
				t.Fatalf("an error that is neither ErrInvalid, ErrUnsupported nor ErrTooLarge: %v", err)
			}
			if w.Len() != 0 {
				t.Fatal("bytes written on error")
			}
			return
		}
		if !bytes.HasPrefix(w.Bytes(), in) {
			t.Fatal("the output does not begin with the input")
		}
	})
}

// shortMinimize sets -test.fuzzminimizetime to 5s unless the command line set it. Go's
// minimizer is quadratic in the input's length: on a 1 KB PDF at this function's speed it
// used the whole default minute for each new input, so a one-minute run did a dozen
// executions and nothing else.
func shortMinimize(f *testing.F) {
	set := false
	flag.Visit(func(fl *flag.Flag) { set = set || fl.Name == "test.fuzzminimizetime" })
	if !set {
		if err := flag.Set("test.fuzzminimizetime", "5s"); err != nil {
			f.Fatal(err)
		}
	}
}

// deterministicSigner is a seal signer whose key signs with RFC 6979 nonces, certified by
// env's seal CA.
func deterministicSigner(t testing.TB, env *signingtest.Env) signing.Signer {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	c, err := env.PKI.IssueLeaf(context.Background(), certs.Request{Profile: certs.LegalPerson,
		Subject:   certs.LegalPersonName("Fuzzing Office", "810000002", "XK"),
		PublicKey: k.Public(), NotBefore: now.Add(-time.Minute), NotAfter: now.AddDate(0, 0, 1)}, "test:fuzz")
	if err != nil {
		t.Fatal(err)
	}
	return signing.Signer{Key: rfc6979{k}, Cert: c, Chain: env.PKI.Chain(c)}
}

type rfc6979 struct{ k *ecdsa.PrivateKey }

var _ crypto.Signer = rfc6979{}

func (s rfc6979) Public() crypto.PublicKey { return s.k.Public() }

func (s rfc6979) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	return s.k.Sign(nil, digest, opts) // nil: deterministic
}

// TestPdfsigTrust: pdfsig trusts our signature when the chain lacks what trips its 22.12
// check (see checkSigned): a root and leaf made by openssl, the key used through the same
// signing.Signer seam.
func TestPdfsigTrust(t *testing.T) {
	need(t, "openssl", "pdfsig", "certutil")
	dir := t.TempDir()
	sh := func(args ...string) {
		if out, err := run(t, "openssl", args...); err != nil {
			t.Fatalf("openssl %v: %v\n%s", args, err, out)
		}
	}
	p := func(n string) string { return filepath.Join(dir, n) }
	sh("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", p("ca.key"), "-out", p("ca.pem"),
		"-subj", "/CN=Pdfsig Test Root", "-days", "2", "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
	sh("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", p("leaf.key"), "-out", p("leaf.csr"), "-subj", "/CN=Pdfsig Test Signer")
	os.WriteFile(p("ext"), []byte("keyUsage=critical,nonRepudiation\nbasicConstraints=critical,CA:FALSE\n"), 0o600)
	sh("x509", "-req", "-in", p("leaf.csr"), "-CA", p("ca.pem"), "-CAkey", p("ca.key"), "-CAcreateserial", "-out", p("leaf.pem"), "-days", "1", "-extfile", p("ext"))
	der := func(n string) []byte {
		b, _ := os.ReadFile(p(n))
		blk, _ := pem.Decode(b)
		return blk.Bytes
	}
	k, err := x509.ParsePKCS8PrivateKey(der("leaf.key"))
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der("leaf.pem"))
	root, _ := x509.ParseCertificate(der("ca.pem"))
	s := signing.Signer{Key: k.(crypto.Signer), Cert: leaf, Chain: []*x509.Certificate{root}}
	nss := t.TempDir()
	run(t, "certutil", "-N", "-d", "sql:"+nss, "--empty-password")
	if out, err := run(t, "certutil", "-A", "-d", "sql:"+nss, "-n", "root", "-t", "CT,C,C", "-i", p("ca.pem")); err != nil {
		t.Fatalf("certutil: %v\n%s", err, out)
	}
	once := signBytes(t, s, pdfBytes(t, pdfOpts{form: true}), pades.Options{Level: signing.LevelB, Certify: true})
	twice := signBytes(t, s, once, pades.Options{Level: signing.LevelB, Visible: &pades.Appearance{Page: 1, Rect: [4]float64{300, 50, 550, 120}}})
	out, _ := run(t, "pdfsig", "-nssdir", "sql:"+nss, writeTemp(t, "t.pdf", twice))
	if strings.Count(out, "Signature is Valid.") != 2 || strings.Count(out, "Certificate is Trusted.") != 2 {
		t.Errorf("pdfsig:\n%s", out)
	}
}

func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRealWorld signs each real-world fixture at B-LT (and once more at B-LTA), checks it with
// qpdf, pdfsig, vfychain and openssl, and checks that the form fields stay.
func TestRealWorld(t *testing.T) {
	files, _ := filepath.Glob("testdata/realworld/*.pdf")
	if len(files) == 0 {
		t.Fatal("no fixtures in testdata/realworld")
	}
	env := signingtest.New(t, signingtest.Options{})
	nss := nssDir(t, env)
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			in, _ := os.ReadFile(f)
			before := fieldNames(t, in)
			once := signBytes(t, env.Seal, in, levelOpts(env, signing.LevelLT))
			checkSigned(t, env, nss, once, 1)
			o := levelOpts(env, signing.LevelLTA)
			o.Visible = &pades.Appearance{Page: 2, Rect: [4]float64{300, 40, 560, 110}}
			twice := signBytes(t, env.Official, once, o)
			checkSigned(t, env, nss, twice, 2)
			after := fieldNames(t, twice)
			for _, name := range strings.Split(before, ",") {
				if name != "" && !strings.Contains(after, name) {
					t.Errorf("field %q lost: before %s, after %s", name, before, after)
				}
			}
		})
	}
}

// holeReader fails every read that touches [from, to): a disk error in the middle of a file,
// where only the hashing reads.
type holeReader struct {
	r        io.ReaderAt
	from, to int64
}

var errDisk = errors.New("disk error")

func (h holeReader) ReadAt(p []byte, off int64) (int, error) {
	if off < h.to && off+int64(len(p)) > h.from {
		return 0, errDisk
	}
	return h.r.ReadAt(p, off)
}

// TestReadError: a read error while hashing the original is returned, and nothing is written.
func TestReadError(t *testing.T) {
	env := signingtest.New(t, signingtest.Options{})
	in := pdfBytes(t, pdfOpts{big: 1 << 20})
	r := holeReader{r: bytes.NewReader(in), from: 512 << 10, to: 513 << 10}
	var w bytes.Buffer
	err := pades.Sign(context.Background(), r, int64(len(in)), &w, env.Seal, pades.Options{Level: signing.LevelB})
	if !errors.Is(err, errDisk) {
		t.Errorf("got %v, want the read error", err)
	}
	if w.Len() != 0 {
		t.Errorf("%d bytes written on error", w.Len())
	}
}

// withBigUpdate appends to in an update whose xref table lists n free entries (objects 1000
// on), so that its trailer, with /Prev to prev, lies more than 4 KB after the table's start.
func withBigUpdate(in []byte, n int, prev int) []byte {
	out := bytes.Clone(in)
	xref := len(out)
	out = append(out, fmt.Sprintf("xref\n1000 %d\n", n)...)
	for range n {
		out = append(out, "0000000000 00000 f\r\n"...)
	}
	out = append(out, fmt.Sprintf("trailer\n<< /Size %d /Root 1 0 R /Prev %d >>\nstartxref\n%d\n%%%%EOF\n", 1000+n, prev, xref)...)
	return out
}

// TestXrefBoundEverySection: an older xref section, reached through /Prev from a newest one
// whose trailer is far from its start, is bounded too.
func TestXrefBoundEverySection(t *testing.T) {
	env := signingtest.New(t, signingtest.Options{})
	good := pdfBytes(t, pdfOpts{})
	old := bytes.LastIndex(good, []byte("\nxref\n")) + 1
	// The older table's subsection header replaced (it comes after every object, so no
	// offset moves).
	header := func(h string) []byte {
		b := bytes.Clone(good)
		i := old + len("xref\n")
		end := i + bytes.IndexByte(b[i:], '\n')
		return append(append(append([]byte{}, b[:i]...), h...), b[end:]...)
	}
	cases := []struct {
		name string
		in   []byte
		says string
	}{
		{"older section with a huge count", withBigUpdate(header("0 7000000"), 300, old), "declares"},
		{"older section with a huge first number", withBigUpdate(header("6999999 7"), 300, old), "declares"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if len(c.in)-len(good) < 5000 {
				t.Fatalf("the update is only %d bytes", len(c.in)-len(good))
			}
			var w bytes.Buffer
			err := pades.Sign(context.Background(), bytes.NewReader(c.in), int64(len(c.in)), &w, env.Seal, pades.Options{Level: signing.LevelB})
			if !errors.Is(err, signing.ErrInvalid) || !strings.Contains(err.Error(), c.says) {
				t.Errorf("got %v, want ErrInvalid saying %q", err, c.says)
			}
			if w.Len() != 0 {
				t.Errorf("%d bytes written on error", w.Len())
			}
		})
	}
	// The same shape with honest numbers signs, and a /Prev loop ends in an error.
	t.Run("honest", func(t *testing.T) {
		in := withBigUpdate(good, 300, old)
		signBytes(t, env.Seal, in, pades.Options{Level: signing.LevelB})
	})
	t.Run("loop", func(t *testing.T) {
		in := withBigUpdate(good, 300, len(good)) // /Prev: the section itself
		err := pades.Sign(context.Background(), bytes.NewReader(in), int64(len(in)), io.Discard, env.Seal, pades.Options{Level: signing.LevelB})
		if !errors.Is(err, signing.ErrInvalid) {
			t.Errorf("got %v, want ErrInvalid", err)
		}
	})
}
