package pades_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vula-eid/vula/internal/signing"
	"github.com/vula-eid/vula/internal/signing/pades"
	"github.com/vula-eid/vula/internal/signing/signingtest"
)

// signTime is the signing time of the tests: now (the certificates are new, and pdfsig
// validates them at /M), in a zone east of UTC to test /M's offset.
var signTime = time.Now().Truncate(time.Second).In(time.FixedZone("CET", 3600))

func levelOpts(env *signingtest.Env, l signing.Level) pades.Options {
	return pades.Options{Level: l, Timestamper: env.TSA, Revocation: env.PKI, Reason: "Approved",
		Location: "Prishtinë", Time: signTime}
}

// checkSigned runs every external check on a signed PDF: qpdf --check, pdfsig (valid and
// trusted, n signatures besides document timestamps), openssl cms -verify of each CMS over its
// byte ranges, openssl ts -verify of each document timestamp, openssl ocsp of each DSS answer.
func checkSigned(t *testing.T, env *signingtest.Env, nss string, file []byte, n int) {
	t.Helper()
	need(t, "qpdf", "pdfsig", "openssl")
	p := writeTemp(t, "signed.pdf", file)
	if out, err := run(t, "qpdf", "--check", p); err != nil || !strings.Contains(out, "No syntax or stream encoding errors") {
		t.Errorf("qpdf --check: %v\n%s", err, out)
	}
	// pdfsig checks the signer's certificate by OCSP at its AIA URL (signingtest serves the
	// PKI). It reads NSS's last error code, not CERT_PKIXVerifyCert's result, so any soft
	// failure on the way (no OCSP answer, or -no-ocsp with a leaf without extendedKeyUsage)
	// shows as "Unknown issue with Certificate" even for a chain NSS accepts.
	out, _ := run(t, "pdfsig", "-nssdir", "sql:"+nss, p)
	if got := strings.Count(out, "Signature is Valid."); got < n {
		t.Errorf("pdfsig: %d valid signatures, want %d\n%s", got, n, out)
	}
	if got := strings.Count(out, "Certificate is Trusted."); got < n {
		t.Errorf("pdfsig: %d trusted certificates, want %d\n%s", got, n, out)
	}
	// And NSS's own validator, vfychain (PKIX, email-signer usage: what pdfsig asks), over the
	// certificates in each CMS, against the same database.
	sigs := signatures(t, file)
	count := 0
	for _, s := range sigs {
		data := writeTemp(t, "ranges", ranges(t, file, s.byteRange))
		der := writeTemp(t, "contents.der", s.contents)
		switch s.subFilter {
		case "ETSI.CAdES.detached":
			count++
			out, err := run(t, "openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", der, "-content", data,
				"-CAfile", env.RootPEM, "-purpose", "any", "-out", os.DevNull)
			if err != nil || !strings.Contains(out, "Verification successful") {
				t.Errorf("%s: openssl cms -verify: %v\n%s", s.field, err, out)
			}
			nssTrusts(t, nss, s.contents)
		case "ETSI.RFC3161":
			if s.typ != "DocTimeStamp" {
				t.Errorf("%s: /Type %s, want DocTimeStamp", s.field, s.typ)
			}
			out, err := run(t, "openssl", "ts", "-verify", "-data", data, "-in", der, "-token_in", "-CAfile", env.RootPEM,
				"-untrusted", env.AllPEM)
			if err != nil || !strings.Contains(out, "Verification: OK") {
				t.Errorf("%s: openssl ts -verify: %v\n%s", s.field, err, out)
			}
		default:
			t.Errorf("%s: /SubFilter %s", s.field, s.subFilter)
		}
	}
	if count != n {
		t.Errorf("%d CAdES signatures, want %d", count, n)
	}
	for i, o := range dssStreams(t, file, "OCSPs") {
		f := writeTemp(t, "ocsp.der", o)
		out, err := run(t, "openssl", "ocsp", "-respin", f, "-CAfile", env.RootPEM, "-verify_other", env.AllPEM, "-resp_text")
		if err != nil || !strings.Contains(out, "Response verify OK") {
			t.Errorf("DSS OCSP %d: openssl ocsp: %v\n%s", i, err, out)
		}
	}
}

func TestLevels(t *testing.T) {
	env := signingtest.New(t, signingtest.Options{})
	nss := nssDir(t, env)
	in := pdfBytes(t, pdfOpts{pages: 2})
	for _, l := range signing.Levels {
		t.Run(string(l), func(t *testing.T) {
			out := signBytes(t, env.Seal, in, levelOpts(env, l))
			checkSigned(t, env, nss, out, 1)
			sigs := signatures(t, out)
			wantSigs := 1
			if l == signing.LevelLTA {
				wantSigs = 2
			}
			if len(sigs) != wantSigs {
				t.Fatalf("%d signature fields, want %d", len(sigs), wantSigs)
			}
			hasDSS := strings.Contains(string(out[len(in):]), "/DSS")
			if hasDSS != l.AtLeast(signing.LevelLT) {
				t.Errorf("DSS present: %v", hasDSS)
			}
			if l.AtLeast(signing.LevelLT) {
				if n := len(dssStreams(t, out, "OCSPs")); n < 2 { // the seal's and the TSA's
					t.Errorf("%d OCSP answers in the DSS, want 2", n)
				}
				if n := len(dssStreams(t, out, "CRLs")); n < 1 {
					t.Errorf("%d CRLs in the DSS", n)
				}
				if !regexp.MustCompile(`/VRI << /[0-9A-F]{40} <<`).Match(out[len(in):]) {
					t.Error("no VRI entry keyed by an upper-case SHA-1")
				}
			}
			// PAdES baseline: no signing-time in the CMS; /M carries the time.
			if !bytes.Contains(out, []byte("/M ("+signTime.Format("D:20060102150405")+"+01'00')")) {
				t.Error("no /M with the signing time")
			}
			if bytes.Contains(sigs[0].contents, []byte{0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x05}) {
				t.Error("the CMS has a signing-time attribute")
			}
		})
	}
}

func TestApprovalCertificationVisible(t *testing.T) {
	env := signingtest.New(t, signingtest.Options{})
	nss := nssDir(t, env)
	in := pdfBytes(t, pdfOpts{pages: 3})
	logo := pngImage(t)
	cases := []struct {
		name string
		opts func(o *pades.Options)
	}{
		{"approval invisible", func(o *pades.Options) {}},
		{"certification invisible", func(o *pades.Options) { o.Certify = true }},
		{"approval visible", func(o *pades.Options) { o.Visible = &pades.Appearance{Page: 2, Rect: [4]float64{300, 50, 550, 120}} }},
		{"certification visible with image", func(o *pades.Options) {
			o.Certify = true
			o.Visible = &pades.Appearance{Page: 3, Rect: [4]float64{50, 50, 350, 130}, Image: logo, Text: "Vulosur nga\nAdministrata Tatimore"}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := levelOpts(env, signing.LevelLT)
			c.opts(&o)
			out := signBytes(t, env.Official, in, o)
			checkSigned(t, env, nss, out, 1)
			p := writeTemp(t, "signed.pdf", out)
			res, _ := run(t, "pdfsig", "-nssdir", "sql:"+nss, p)
			if o.Certify != strings.Contains(string(out[len(in):]), "/DocMDP") {
				t.Errorf("DocMDP present: %v, want %v", !o.Certify, o.Certify)
			}
			if o.Visible != nil && !strings.Contains(res, "Signature Type: ETSI.CAdES.detached") {
				t.Errorf("pdfsig:\n%s", res)
			}
		})
	}
}

func TestSignTwice(t *testing.T) {
	env := signingtest.New(t, signingtest.Options{})
	nss := nssDir(t, env)
	for _, l := range []signing.Level{signing.LevelB, signing.LevelLT, signing.LevelLTA} {
		t.Run(string(l), func(t *testing.T) {
			in := pdfBytes(t, pdfOpts{pages: 1, form: true})
			o1 := levelOpts(env, l)
			o1.Certify = true
			once := signBytes(t, env.Seal, in, o1)
			o2 := levelOpts(env, l)
			o2.Visible = &pades.Appearance{Page: 1, Rect: [4]float64{300, 50, 550, 120}}
			twice := signBytes(t, env.Official, once, o2)
			checkSigned(t, env, nss, twice, 2)
			names := fieldNames(t, twice)
			for _, want := range []string{"name", "agree", "Signature1", "Signature2"} {
				if !strings.Contains(names, want) {
					t.Errorf("field %q is missing: %s", want, names)
				}
			}
			// Certifying again is refused: only the first signature can certify.
			o3 := levelOpts(env, l)
			o3.Certify = true
			err := pades.Sign(context.Background(), bytes.NewReader(twice), int64(len(twice)), &bytes.Buffer{}, env.Seal, o3)
			if !errorIs(err, signing.ErrUnsupported) {
				t.Errorf("certifying a signed PDF: %v, want ErrUnsupported", err)
			}
		})
	}
}

// fieldNames lists the form fields qpdf sees.
func fieldNames(t *testing.T, file []byte) string {
	t.Helper()
	need(t, "qpdf")
	out, err := run(t, "qpdf", "--json", "--json-key=acroform", writeTemp(t, "f.pdf", file))
	if err != nil {
		t.Fatalf("qpdf --json: %v\n%s", err, out)
	}
	var names []string
	for _, m := range regexp.MustCompile(`"fullname": "([^"]*)"`).FindAllStringSubmatch(out, -1) {
		names = append(names, m[1])
	}
	return strings.Join(names, ",")
}

func pngImage(t *testing.T) []byte {
	t.Helper()
	img := image.NewNRGBA(image.Rect(0, 0, 40, 40))
	for y := range 40 {
		for x := range 40 {
			img.Set(x, y, color.NRGBA{R: uint8(6 * x), G: 40, B: uint8(6 * y), A: uint8(100 + 3*x)})
		}
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestXrefStream(t *testing.T) {
	need(t, "qpdf")
	env := signingtest.New(t, signingtest.Options{})
	nss := nssDir(t, env)
	dir := t.TempDir()
	src := filepath.Join(dir, "in.pdf")
	os.WriteFile(src, pdfBytes(t, pdfOpts{pages: 2, form: true, version: "1.7"}), 0o600)
	dst := filepath.Join(dir, "xs.pdf")
	if out, err := run(t, "qpdf", "--object-streams=generate", src, dst); err != nil {
		t.Fatalf("qpdf: %v\n%s", err, out)
	}
	in, _ := os.ReadFile(dst)
	out := signBytes(t, env.Seal, in, levelOpts(env, signing.LevelLTA))
	if !bytes.Contains(out[len(in):], []byte("/Type /XRef")) {
		t.Error("the update's cross-reference section is not a stream, as the original's is")
	}
	checkSigned(t, env, nss, out, 1)
	if names := fieldNames(t, out); !strings.Contains(names, "name") || !strings.Contains(names, "agree") {
		t.Errorf("form fields lost: %s", names)
	}
}

// TestInputSHA256: a signature that goes on from the caller's hash of the input is the
// signature of that input (every external check, at B-B and at B-LTA, whose document timestamp
// hashes the input too), and the caller's hash is what is used: one of other bytes gives a
// signature that does not verify.
func TestInputSHA256(t *testing.T) {
	env := signingtest.New(t, signingtest.Options{})
	nss := nssDir(t, env)
	in := pdfBytes(t, pdfOpts{pages: 2})
	for _, l := range []signing.Level{signing.LevelB, signing.LevelLTA} {
		t.Run(string(l), func(t *testing.T) {
			opts := levelOpts(env, l)
			opts.InputSHA256 = sha256.New()
			opts.InputSHA256.Write(in)
			checkSigned(t, env, nss, signBytes(t, env.Seal, in, opts), 1)
		})
	}
	opts := levelOpts(env, signing.LevelB)
	opts.InputSHA256 = sha256.New()
	opts.InputSHA256.Write(append(bytes.Clone(in[:len(in)-1]), in[len(in)-1]^1))
	out := signBytes(t, env.Seal, in, opts)
	s := signatures(t, out)[0]
	data := writeTemp(t, "ranges", ranges(t, out, s.byteRange))
	der := writeTemp(t, "contents.der", s.contents)
	if o, err := run(t, "openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", der, "-content", data,
		"-CAfile", env.RootPEM, "-purpose", "any", "-out", os.DevNull); err == nil {
		t.Fatalf("a signature from the hash of other bytes verified:\n%s", o)
	}
}
