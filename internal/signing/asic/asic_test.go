package asic_test

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vula-eid/vula/hsm"
	"github.com/vula-eid/vula/internal/signing"
	"github.com/vula-eid/vula/internal/signing/asic"
	"github.com/vula-eid/vula/internal/signing/cades"
	"github.com/vula-eid/vula/internal/signing/signingtest"
	"github.com/vula-eid/vula/internal/signing/xades"
	"github.com/vula-eid/vula/internal/testenv"
)

func need(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Missing(t, tool+" not installed (test/deps.sh)")
		}
	}
}

func run(t testing.TB, dir, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// testFiles are data files on disk, opened only when the container asks for them.
func testFiles(t testing.TB, dir string) []asic.File {
	t.Helper()
	contents := []struct{ name, mime, body string }{
		{"decision.pdf", "application/pdf", "%PDF-1.7\n" + strings.Repeat("vendim ", 5000)},
		{"annexes/table.csv", "text/csv", "nr;emri\n1;Arta\n2;Dritë\n"},
		{"shënime & notes.txt", "", "a name with a space, an ampersand and ë\n"},
	}
	var files []asic.File
	for _, c := range contents {
		p := filepath.Join(dir, "in", filepath.FromSlash(c.name))
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(c.body), 0o600); err != nil {
			t.Fatal(err)
		}
		files = append(files, asic.File{Name: c.name, MimeType: c.mime, Open: func() (io.ReadCloser, error) { return os.Open(p) }})
	}
	return files
}

// checkLayout checks the ZIP with unzip and zipinfo: mimetype first, stored, with no extra
// field, then the data files in order, then META-INF.
func checkLayout(t *testing.T, container string, files []asic.File, meta ...string) {
	t.Helper()
	names := strings.Split(strings.TrimSpace(run(t, "", "unzip", "-Z1", container)), "\n")
	want := []string{"mimetype"}
	for _, f := range files {
		want = append(want, f.Name)
	}
	want = append(want, meta...)
	if strings.Join(names, "|") != strings.Join(want, "|") {
		t.Fatalf("unzip -Z1: %q, want %q", names, want)
	}
	info := run(t, "", "zipinfo", "-v", container, "mimetype")
	for _, w := range []string{"compression method:                             none (stored)",
		"length of extra field:                          0 bytes", "extended local header:                          no"} {
		if !strings.Contains(info, w) {
			t.Errorf("zipinfo -v shows no %q for mimetype:\n%s", w, info)
		}
	}
	if out := run(t, "", "unzip", "-p", container, "mimetype"); out != asic.MimeType {
		t.Fatalf("mimetype content %q", out)
	}
	// Where EN 319 162-1 and file(1) look for the media type: right after the first local header.
	raw, err := os.ReadFile(container)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(raw[30:], []byte("mimetype"+asic.MimeType)) {
		t.Fatalf("bytes 30..: %q", raw[30:min(len(raw), 80)])
	}
	run(t, "", "unzip", "-tq", container)
}

// A CAdES container: its layout, the manifest (xmllint) with the digests sha256sum/openssl dgst
// compute over the extracted files, the signature over the manifest (openssl cms -verify), and
// a changed manifest refused. The P-384 container is at B-LTA: its signature carries the
// validation data and an archive timestamp (with a SHA-384 hash index).
func TestCAdES(t *testing.T) {
	need(t, "unzip", "zipinfo", "xmllint", "openssl", "sha256sum")
	for _, alg := range []hsm.Algorithm{hsm.ECP256, hsm.ECP384} {
		t.Run(string(alg), func(t *testing.T) {
			e := signingtest.New(t, signingtest.Options{Algorithm: alg})
			files := testFiles(t, e.Dir)
			var buf bytes.Buffer
			opts := cades.Options{SigningTime: time.Now(), Timestamper: e.TSA}
			want := []string{"id-smime-aa-timeStampToken"}
			if alg == hsm.ECP384 {
				opts.Revocation, opts.Archive = e.PKI, true
				want = append(want, "id-smime-aa-ets-certValues", "id-smime-aa-ets-revocationValues", "0.4.0.1733.2.4")
			}
			if err := asic.WriteCAdES(context.Background(), &buf, e.Seal, files, opts); err != nil {
				t.Fatal(err)
			}
			container := e.WriteFile(t, "signed.asice", buf.Bytes())
			checkLayout(t, container, files, asic.ManifestName, asic.CAdESSigName)

			out := filepath.Join(e.Dir, "out")
			run(t, "", "unzip", "-q", container, "-d", out)
			manifest := filepath.Join(out, filepath.FromSlash(asic.ManifestName))
			run(t, "", "xmllint", "--noout", manifest)
			xpath := func(expr string) string {
				return strings.TrimSpace(run(t, "", "xmllint", "--xpath", expr, manifest))
			}
			if got := xpath("string(/*[local-name()='ASiCManifest']/*[local-name()='SigReference']/@URI)"); got != asic.CAdESSigName {
				t.Fatalf("SigReference URI %q", got)
			}
			for _, f := range files {
				ref := fmt.Sprintf("/*[local-name()='ASiCManifest']/*[local-name()='DataObjectReference'][@URI=%q]", uriOf(f.Name))
				b64 := xpath("string(" + ref + "/*[local-name()='DigestValue'])")
				got, err := base64.StdEncoding.DecodeString(b64)
				if err != nil {
					t.Fatalf("%s: DigestValue %q: %v", f.Name, b64, err)
				}
				extracted := filepath.Join(out, filepath.FromSlash(f.Name))
				var want, method string
				if alg == hsm.ECP256 {
					want = strings.Fields(run(t, "", "sha256sum", extracted))[0]
					method = "http://www.w3.org/2001/04/xmlenc#sha256"
				} else {
					want = strings.Fields(run(t, "", "openssl", "dgst", "-sha384", "-r", extracted))[0]
					method = "http://www.w3.org/2001/04/xmldsig-more#sha384"
				}
				if hex.EncodeToString(got) != want {
					t.Errorf("%s: manifest digest %x, the extracted file's %s", f.Name, got, want)
				}
				if m := xpath("string(" + ref + "/*[local-name()='DigestMethod']/@Algorithm)"); m != method {
					t.Errorf("%s: DigestMethod %q", f.Name, m)
				}
				wantMime := f.MimeType
				if wantMime == "" {
					wantMime = "application/octet-stream"
				}
				if m := xpath("string(" + ref + "/@MimeType)"); m != wantMime {
					t.Errorf("%s: MimeType %q", f.Name, m)
				}
			}
			sig := filepath.Join(out, filepath.FromSlash(asic.CAdESSigName))
			// openssl's default (S/MIME signing) purpose check, as in cades' tests.
			verify := func(content string) ([]byte, error) {
				return exec.Command("openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", sig,
					"-content", content, "-CAfile", e.RootPEM, "-out", os.DevNull).CombinedOutput()
			}
			if msg, err := verify(manifest); err != nil {
				t.Fatalf("openssl cms -verify of the manifest: %v\n%s", err, msg)
			}
			p := run(t, "", "openssl", "cms", "-cmsout", "-print", "-inform", "DER", "-in", sig)
			for _, w := range want {
				if !strings.Contains(p, w) {
					t.Errorf("the container's signature has no %s", w)
				}
			}
			m, _ := os.ReadFile(manifest)
			changed := e.WriteFile(t, "changed.xml", bytes.Replace(m, []byte("text/csv"), []byte("text/xml"), 1))
			if msg, err := verify(changed); err == nil {
				t.Fatalf("openssl accepted a changed manifest:\n%s", msg)
			}
		})
	}
}

func uriOf(name string) string {
	return strings.NewReplacer(" ", "%20", "ë", "%C3%AB").Replace(name) // the test files' only specials
}

// A XAdES container, signed by internal/signing/xades: its layout, signatures.xml well formed
// with one ds:Signature under asic:XAdESSignatures, and xmlsec1 verifies it from the
// extracted container's root (where the Reference URIs point).
func TestXAdES(t *testing.T) {
	need(t, "unzip", "zipinfo", "xmllint", "xmlsec1")
	e := signingtest.New(t, signingtest.Options{})
	files := testFiles(t, e.Dir)
	xs := asic.XMLSignerFunc(func(ctx context.Context, fs []asic.File) ([]byte, error) {
		xf := make([]xades.File, len(fs))
		for i, f := range fs {
			xf[i] = xades.File{Name: f.Name, MimeType: f.MimeType, Open: f.Open}
		}
		return xades.SignFiles(ctx, xf, e.Seal, xades.Options{Level: signing.LevelT, Timestamper: e.TSA})
	})
	var buf bytes.Buffer
	if err := asic.WriteXAdES(context.Background(), &buf, xs, files, time.Now()); err != nil {
		t.Fatal(err)
	}
	container := e.WriteFile(t, "signed.asice", buf.Bytes())
	checkLayout(t, container, files, asic.XAdESSigName)
	out := filepath.Join(e.Dir, "out")
	run(t, "", "unzip", "-q", container, "-d", out)
	sigs := filepath.Join(out, filepath.FromSlash(asic.XAdESSigName))
	run(t, "", "xmllint", "--noout", sigs)
	if n := run(t, "", "xmllint", "--xpath", "count(/*[local-name()='XAdESSignatures' and namespace-uri()='http://uri.etsi.org/02918/v1.2.1#']/*[local-name()='Signature' and namespace-uri()='http://www.w3.org/2000/09/xmldsig#'])", sigs); strings.TrimSpace(n) != "1" {
		t.Fatalf("%s ds:Signature under asic:XAdESSignatures", n)
	}
	verify := func() ([]byte, error) {
		cmd := exec.Command("xmlsec1", "--verify", "--trusted-pem", e.RootPEM, "--untrusted-pem", e.ChainPEM,
			"--id-attr:Id", "http://uri.etsi.org/01903/v1.3.2#:SignedProperties", filepath.FromSlash(asic.XAdESSigName))
		cmd.Dir = out
		return cmd.CombinedOutput()
	}
	if msg, err := verify(); err != nil {
		t.Fatalf("xmlsec1 --verify: %v\n%s", err, msg)
	}
	// A changed data file breaks its Reference.
	if err := os.WriteFile(filepath.Join(out, "annexes", "table.csv"), []byte("nr;emri\n1;Besa\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if msg, err := verify(); err == nil {
		t.Fatalf("xmlsec1 accepted a changed data file:\n%s", msg)
	}
}

// Unsafe names are refused with ErrInvalid before anything is written.
func TestNames(t *testing.T) {
	e := signingtest.New(t, signingtest.Options{})
	open := func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader("x")), nil }
	cases := map[string][]string{
		"empty":              {""},
		"absolute":           {"/etc/passwd"},
		"dot-dot":            {"../x"},
		"dot-dot inside":     {"a/../../x"},
		"dot-dot alone":      {".."},
		"dot segment":        {"a/./b"},
		"empty segment":      {"a//b"},
		"trailing slash":     {"dir/"},
		"backslash":          {`a\b`},
		"drive":              {"C:x"},
		"META-INF":           {"META-INF/signature.p7s"},
		"meta-inf lowercase": {"meta-inf/x"},
		"mimetype":           {"mimetype"},
		"control":            {"a\nb"},
		"not UTF-8":          {"a\xffb"},
		"duplicate":          {"a.txt", "a.txt"},
		"duplicate by case":  {"A.txt", "a.txt"},
	}
	for name, names := range cases {
		t.Run(name, func(t *testing.T) {
			var files []asic.File
			for _, n := range names {
				files = append(files, asic.File{Name: n, Open: open})
			}
			var buf bytes.Buffer
			err := asic.WriteCAdES(context.Background(), &buf, e.Seal, files, cades.Options{})
			if !errors.Is(err, signing.ErrInvalid) {
				t.Fatalf("WriteCAdES(%q): %v, want ErrInvalid", names, err)
			}
			if buf.Len() != 0 {
				t.Fatalf("%d bytes written before the refusal", buf.Len())
			}
			xs := asic.XMLSignerFunc(func(context.Context, []asic.File) ([]byte, error) {
				t.Fatal("the XML signer was called")
				return nil, nil
			})
			if err := asic.WriteXAdES(context.Background(), &buf, xs, files, time.Time{}); !errors.Is(err, signing.ErrInvalid) {
				t.Fatalf("WriteXAdES(%q): %v, want ErrInvalid", names, err)
			}
		})
	}
	if err := asic.WriteCAdES(context.Background(), io.Discard, e.Seal, nil, cades.Options{}); !errors.Is(err, signing.ErrInvalid) {
		t.Fatalf("no files: %v", err)
	}
	if err := asic.WriteCAdES(context.Background(), io.Discard, e.Seal, []asic.File{{Name: "a"}}, cades.Options{}); !errors.Is(err, signing.ErrInvalid) {
		t.Fatalf("no Open: %v", err)
	}
}

// patterned is a large deterministic reader, made as it is read.
type patterned struct{ left int64 }

func (p *patterned) Read(b []byte) (int, error) {
	if p.left <= 0 {
		return 0, io.EOF
	}
	n := int(min(int64(len(b)), p.left))
	for i := range n {
		b[i] = byte(p.left - int64(i))
	}
	p.left -= int64(n)
	return n, nil
}

// Files are streamed: a container over 3 × 32 MiB allocates far less than one file, and the
// manifest digest is that of the streamed bytes.
func TestStreams(t *testing.T) {
	e := signingtest.New(t, signingtest.Options{})
	const size = 32 << 20
	var files []asic.File
	for i := range 3 {
		files = append(files, asic.File{Name: fmt.Sprintf("big-%d.bin", i),
			Open: func() (io.ReadCloser, error) { return io.NopCloser(&patterned{left: size}), nil }})
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	var buf bytes.Buffer // the pattern deflates to almost nothing
	if err := asic.WriteCAdES(context.Background(), &buf, e.Seal, files, cades.Options{}); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > size/4 {
		t.Fatalf("%d MiB allocated for 3 files of %d MiB", alloc>>20, size>>20)
	}
	z, err := zip.NewReader(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	rc, err := z.Open(asic.ManifestName)
	if err != nil {
		t.Fatal(err)
	}
	manifest, _ := io.ReadAll(rc)
	h := sha256.New()
	io.Copy(h, &patterned{left: size})
	want := "<ds:DigestValue>" + base64.StdEncoding.EncodeToString(h.Sum(nil)) + "</ds:DigestValue>"
	if n := bytes.Count(manifest, []byte(want)); n != 3 {
		t.Fatalf("the streamed content's digest is in the manifest %d times, want 3:\n%s", n, manifest)
	}
}
