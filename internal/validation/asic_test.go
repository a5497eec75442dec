package validation_test

import (
	"archive/zip"
	"bytes"
	"compress/flate"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vula-eid/vula/internal/signing"
	"github.com/vula-eid/vula/internal/signing/asic"
	"github.com/vula-eid/vula/internal/signing/cades"
	"github.com/vula-eid/vula/internal/signing/signingtest"
	"github.com/vula-eid/vula/internal/signing/xades"
	"github.com/vula-eid/vula/internal/testenv"
	"github.com/vula-eid/vula/internal/validation"
)

type zipEntry struct {
	name  string
	data  []byte
	store bool
}

// zipOf writes entries as a ZIP, in order.
func zipOf(t testing.TB, entries []zipEntry) []byte {
	t.Helper()
	var b bytes.Buffer
	z := zip.NewWriter(&b)
	for _, e := range entries {
		m := zip.Deflate
		if e.store {
			m = zip.Store
		}
		w, err := z.CreateHeader(&zip.FileHeader{Name: e.name, Method: m})
		if err != nil {
			t.Fatal(err)
		}
		w.Write(e.data)
	}
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// rezip copies container's entries, changed by edit (nil: dropped), then adds extra.
func rezip(t testing.TB, container []byte, edit func(name string, data []byte) []byte, extra ...zipEntry) []byte {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(container), int64(len(container)))
	if err != nil {
		t.Fatal(err)
	}
	var entries []zipEntry
	for _, f := range zr.File {
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(rc)
		rc.Close()
		if data = edit(f.Name, data); data != nil {
			entries = append(entries, zipEntry{f.Name, data, f.Method == zip.Store})
		}
	}
	return zipOf(t, append(entries, extra...))
}

var asicFiles = map[string][]byte{
	"decision.pdf":  signingtest.PDF("decision"),
	"annexes/a.xml": []byte("<annex>ë</annex>\n"),
}

func asicInput() []asic.File {
	var files []asic.File
	for _, n := range []string{"decision.pdf", "annexes/a.xml"} {
		b := asicFiles[n]
		files = append(files, asic.File{Name: n, Open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }})
	}
	return files
}

func asicCAdES(t testing.TB, env *signingtest.Env, opts cades.Options) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := asic.WriteCAdES(context.Background(), &b, env.Seal, asicInput(), opts); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func asicXAdES(t testing.TB, env *signingtest.Env, level signing.Level) []byte {
	t.Helper()
	xs := asic.XMLSignerFunc(func(ctx context.Context, files []asic.File) ([]byte, error) {
		xf := make([]xades.File, len(files))
		for i, f := range files {
			xf[i] = xades.File{Name: f.Name, MimeType: f.MimeType, Open: f.Open}
		}
		return xades.SignFiles(ctx, xf, env.Seal, xades.Options{Level: level, Timestamper: env.TSA, Revocation: env.PKI})
	})
	var b bytes.Buffer
	if err := asic.WriteXAdES(context.Background(), &b, xs, asicInput(), time.Time{}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// unzipNames lists a container's entries with unzip -Z1 (Info-ZIP, not Go's archive/zip).
func unzipNames(t testing.TB, container []byte) []string {
	t.Helper()
	testenv.Need(t, "unzip")
	f := filepath.Join(t.TempDir(), "c.asice")
	if err := os.WriteFile(f, container, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("unzip", "-Z1", f).Output()
	if err != nil {
		t.Fatalf("unzip -Z1: %v", err)
	}
	return strings.Fields(string(out))
}

// TestASiCE: Vula's containers (CAdES over the ASiCManifest at B-B and B-T, XAdES at B-LT and
// B-LTA) pass with every data entry covered; the entries reported are those unzip lists. An
// entry added after signing leaves the signature valid but the container TOTAL-FAILED with the
// entry shown unsigned; a changed entry fails the signature; a removed one is not found.
func TestASiCE(t *testing.T) {
	env := signingtest.New(t, signingtest.Options{})
	opts := validation.Options{TrustAnchors: anchors(env), Fetch: validation.RevocationFetcher{R: env.PKI}}
	for _, tc := range []struct {
		name      string
		container []byte
		format    string
		level     signing.Level
		changed   validation.SubIndication
		removed   validation.SubIndication
	}{
		{"CAdES B-B", asicCAdES(t, env, cades.Options{SigningTime: time.Now()}), "CAdES-BASELINE", signing.LevelB, validation.HashFailure, validation.SignedDataNotFound},
		{"CAdES B-T", asicCAdES(t, env, cades.Options{Timestamper: env.TSA}), "CAdES-BASELINE", signing.LevelT, validation.HashFailure, validation.SignedDataNotFound},
		{"XAdES B-LT", asicXAdES(t, env, signing.LevelLT), "XAdES-BASELINE", signing.LevelLT, validation.HashFailure, validation.SignedDataNotFound},
		{"XAdES B-LTA", asicXAdES(t, env, signing.LevelLTA), "XAdES-BASELINE", signing.LevelLTA, validation.HashFailure, validation.SignedDataNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep := validate(t, tc.container, opts)
			if rep.Indication != validation.TotalPassed || rep.Format != "ASiC-E" || len(rep.Signatures) != 1 {
				t.Fatalf("%s/%s\n%s", rep.Indication, rep.SubIndication, rep.Text())
			}
			s := rep.Signatures[0]
			if s.Format != tc.format || s.Level != tc.level {
				t.Fatalf("format %s level %s\n%s", s.Format, s.Level, rep.Text())
			}
			var names []string
			for _, e := range rep.Entries {
				names = append(names, e.Name)
				if e.Kind == "data" && !slices.Equal(e.SignedBy, []string{"sig1"}) {
					t.Errorf("entry %s signed by %v", e.Name, e.SignedBy)
				}
			}
			if u := unzipNames(t, tc.container); !slices.Equal(u, names) {
				t.Fatalf("entries %v, unzip lists %v", names, u)
			}
			var targets []string
			for _, o := range s.SignedObjects {
				targets = append(targets, o.Target)
			}
			if !slices.Equal(targets, []string{"entry:decision.pdf", "entry:annexes/a.xml"}) {
				t.Fatalf("signed objects %v", targets)
			}

			added := rezip(t, tc.container, func(_ string, b []byte) []byte { return b }, zipEntry{"added-later.txt", []byte("pay mallory"), false})
			rep = validate(t, added, opts)
			if rep.Indication != validation.TotalFailed || rep.Signatures[0].Indication != validation.TotalPassed ||
				!strings.Contains(rep.Message, "added-later.txt") || !strings.Contains(rep.Text(), "entry added-later.txt (data, 11 bytes): not signed") {
				t.Fatalf("an entry added after signing:\n%s", rep.Text())
			}

			changed := rezip(t, tc.container, func(n string, b []byte) []byte {
				if n == "annexes/a.xml" {
					return []byte("<annex>x</annex>\n")
				}
				return b
			})
			if rep = validate(t, changed, opts); rep.Indication != validation.TotalFailed || rep.SubIndication != tc.changed {
				t.Fatalf("a changed entry: %s/%s\n%s", rep.Indication, rep.SubIndication, rep.Text())
			}

			removed := rezip(t, tc.container, func(n string, b []byte) []byte {
				if n == "decision.pdf" {
					return nil
				}
				return b
			})
			if rep = validate(t, removed, opts); rep.Indication == validation.TotalPassed || rep.Signatures[0].SubIndication != tc.removed {
				t.Fatalf("a removed entry: %s/%s\n%s", rep.Indication, rep.SubIndication, rep.Text())
			}
		})
	}
}

// TestASiCEHostile: what is not a safe ASiC-E container is refused before any signature is
// read: unsafe or clashing names, no mimetype first, too many entries, a declared size above
// the bound, an entry inflating past its declared size.
func TestASiCEHostile(t *testing.T) {
	env := signingtest.New(t, signingtest.Options{})
	opts := validation.Options{TrustAnchors: anchors(env)}
	good := asicCAdES(t, env, cades.Options{})
	mt := zipEntry{"mimetype", []byte("application/vnd.etsi.asic-e+zip"), true}
	withEntry := func(name string) []byte {
		return rezip(t, good, func(_ string, b []byte) []byte { return b }, zipEntry{name, []byte("x"), false})
	}
	many := []zipEntry{mt}
	for i := range 4100 {
		many = append(many, zipEntry{fmt.Sprintf("f%d", i), nil, true})
	}
	for _, tc := range []struct {
		name string
		doc  []byte
		want error
	}{
		{"parent directory", withEntry("../../etc/cron.d/x"), signing.ErrInvalid},
		{"inner parent directory", withEntry("a/../../x"), signing.ErrInvalid},
		{"absolute", withEntry("/etc/passwd"), signing.ErrInvalid},
		{"backslash", withEntry(`..\x`), signing.ErrInvalid},
		{"drive letter", withEntry("C:x"), signing.ErrInvalid},
		{"control character", withEntry("a\x00b"), signing.ErrInvalid},
		{"same name but case", withEntry("Decision.PDF"), signing.ErrInvalid},
		{"no mimetype", zipOf(t, []zipEntry{{"a.txt", []byte("a"), false}}), signing.ErrInvalid},
		{"mimetype not first", zipOf(t, []zipEntry{{"a.txt", []byte("a"), false}, mt}), signing.ErrInvalid},
		{"another mimetype", zipOf(t, []zipEntry{{"mimetype", []byte("application/zip"), true}}), signing.ErrInvalid},
		{"ASiC-S", zipOf(t, []zipEntry{{"mimetype", []byte("application/vnd.etsi.asic-s+zip"), true}}), signing.ErrUnsupported},
		{"no signature", zipOf(t, []zipEntry{mt, {"a.txt", []byte("a"), false}}), signing.ErrInvalid},
		{"too many entries", zipOf(t, many), signing.ErrTooLarge},
		{"declared size above the bound", rawZip(t, mt, 3<<30, 1<<10), signing.ErrTooLarge},
		{"inflates past its declared size", rawZip(t, mt, 100, 8<<20), signing.ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := validation.Validate(context.Background(), bytes.NewReader(tc.doc), int64(len(tc.doc)), opts)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
		})
	}
}

// rawZip is mimetype, then META-INF/signatures.xml whose header declares declared bytes while
// its deflated data inflates to actual zero bytes (a zip bomb either way).
func rawZip(t testing.TB, mt zipEntry, declared uint64, actual int) []byte {
	t.Helper()
	var b bytes.Buffer
	z := zip.NewWriter(&b)
	w, _ := z.CreateHeader(&zip.FileHeader{Name: mt.name, Method: zip.Store})
	w.Write(mt.data)
	var comp bytes.Buffer
	fw, _ := flate.NewWriter(&comp, flate.BestCompression)
	zeros := make([]byte, actual)
	fw.Write(zeros)
	fw.Close()
	w, err := z.CreateRaw(&zip.FileHeader{Name: "META-INF/signatures.xml", Method: zip.Deflate, CRC32: crc32.ChecksumIEEE(zeros[:min(len(zeros), int(declared))]),
		CompressedSize64: uint64(comp.Len()), UncompressedSize64: declared})
	if err != nil {
		t.Fatal(err)
	}
	w.Write(comp.Bytes())
	z.Close()
	return b.Bytes()
}
