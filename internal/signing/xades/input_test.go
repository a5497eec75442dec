package xades_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/vula-eid/vula/internal/signing"
	"github.com/vula-eid/vula/internal/signing/signingtest"
	"github.com/vula-eid/vula/internal/signing/xades"
)

// sharedEnv is one P-256 PKI for the tests that only need a signer.
func sharedEnv(t testing.TB) *signingtest.Env {
	t.Helper()
	return signingtest.New(t, signingtest.Options{})
}

const billionLaughs = `<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<lolz>&lol9;</lolz>`

func TestHostileXML(t *testing.T) {
	env := sharedEnv(t)
	// An external entity naming a FIFO: opening it for reading would block until a writer
	// came, so the test would hang if anything tried to resolve it.
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	cases := map[string]string{
		"billion laughs":   billionLaughs,
		"XXE passwd":       `<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>`,
		"XXE fifo":         fmt.Sprintf(`<!DOCTYPE r [<!ENTITY x SYSTEM "file://%s">]><r>&x;</r>`, fifo),
		"parameter entity": fmt.Sprintf(`<!DOCTYPE r [<!ENTITY %% p SYSTEM "file://%s"> %%p;]><r/>`, fifo),
		"external DTD":     fmt.Sprintf(`<!DOCTYPE r SYSTEM "file://%s"><r/>`, fifo),
		"doctype late":     `<?xml version="1.0"?><!-- hi --><!DOCTYPE r><r/>`,
	}
	for name, in := range cases {
		t.Run(name, func(t *testing.T) {
			out, err := xades.Sign(context.Background(), strings.NewReader(in), env.Seal, xades.Options{Packaging: xades.Enveloped})
			if !errors.Is(err, signing.ErrInvalid) || !strings.Contains(err.Error(), "DTD") {
				t.Fatalf("got %v, want ErrInvalid naming the DTD", err)
			}
			if out != nil || strings.Contains(err.Error(), "root:") {
				t.Fatal("output or file content leaked")
			}
		})
	}
	// Detached and enveloping take any bytes: a DTD there is data, signed unread.
	if _, err := xades.Sign(context.Background(), strings.NewReader(billionLaughs), env.Seal,
		xades.Options{Packaging: xades.Detached, FileName: "lol.xml"}); err != nil {
		t.Fatal(err)
	}
}

func TestBadInput(t *testing.T) {
	env := sharedEnv(t)
	ctx := context.Background()
	doc := []byte(`<r>some data here</r>`)
	cases := []struct {
		name string
		in   []byte
		opts xades.Options
		want error
		says string
	}{
		{"unknown packaging", doc, xades.Options{Packaging: "wrapped"}, signing.ErrInvalid, `packaging "wrapped"`},
		{"no packaging", doc, xades.Options{}, signing.ErrInvalid, "packaging"},
		{"unknown level", doc, xades.Options{Packaging: xades.Enveloped, Level: "B-XL"}, signing.ErrInvalid, `level "B-XL"`},
		{"T without TSA", doc, xades.Options{Packaging: xades.Enveloped, Level: signing.LevelT}, signing.ErrInvalid, "timestamp authority"},
		{"LT without revocation", doc, xades.Options{Packaging: xades.Enveloped, Level: signing.LevelLT, Timestamper: env.TSA}, signing.ErrInvalid, "revocation"},
		{"not XML", []byte("%PDF-1.7 not xml"), xades.Options{Packaging: xades.Enveloped}, signing.ErrInvalid, "not well-formed"},
		{"empty", nil, xades.Options{Packaging: xades.Enveloped}, signing.ErrInvalid, "root"},
		{"two roots", []byte("<a/><b/>"), xades.Options{Packaging: xades.Enveloped}, signing.ErrInvalid, "not well-formed"},
		{"undeclared prefix", []byte("<p:a/>"), xades.Options{Packaging: xades.Enveloped}, signing.ErrInvalid, ""},
		{"unknown entity", []byte("<a>&nbsp;</a>"), xades.Options{Packaging: xades.Enveloped}, signing.ErrInvalid, "not well-formed"},
		{"too deep", []byte(strings.Repeat("<a>", 300) + strings.Repeat("</a>", 300)), xades.Options{Packaging: xades.Enveloped}, signing.ErrInvalid, "deeper"},
		{"too large enveloped", doc, xades.Options{Packaging: xades.Enveloped, MaxSize: 5}, signing.ErrTooLarge, ""},
		{"too large enveloping", doc, xades.Options{Packaging: xades.Enveloping, MaxSize: 5}, signing.ErrTooLarge, ""},
		{"too large detached", doc, xades.Options{Packaging: xades.Detached, FileName: "a", MaxSize: 5}, signing.ErrTooLarge, ""},
		{"absolute file name", doc, xades.Options{Packaging: xades.Detached, FileName: "/etc/passwd"}, signing.ErrInvalid, "relative"},
		{"parent file name", doc, xades.Options{Packaging: xades.Detached, FileName: "../a"}, signing.ErrInvalid, "relative"},
		{"URL file name", doc, xades.Options{Packaging: xades.Detached, FileName: "http://x/a"}, signing.ErrInvalid, "relative"},
		{"no file name", doc, xades.Options{Packaging: xades.Detached}, signing.ErrInvalid, "relative"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, err := xades.Sign(ctx, bytes.NewReader(c.in), env.Seal, c.opts)
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.says) || out != nil {
				t.Fatalf("got %v, want %v saying %q", err, c.want, c.says)
			}
		})
	}
	if _, err := xades.Sign(ctx, bytes.NewReader(doc), signing.Signer{Key: env.Seal.Key, Cert: env.Official.Cert},
		xades.Options{Packaging: xades.Enveloped}); !errors.Is(err, signing.ErrInvalid) {
		t.Errorf("a key that does not match its certificate: %v", err)
	}
	if _, err := xades.SignFiles(ctx, nil, env.Seal, xades.Options{}); !errors.Is(err, signing.ErrInvalid) {
		t.Errorf("no files: %v", err)
	}
	// Exactly MaxSize bytes is fine.
	if _, err := xades.Sign(ctx, bytes.NewReader(doc), env.Seal, xades.Options{Packaging: xades.Enveloped, MaxSize: int64(len(doc))}); err != nil {
		t.Errorf("at MaxSize: %v", err)
	}
}

func TestRevokedSigner(t *testing.T) {
	env := sharedEnv(t)
	env.Revoke(t, env.Official)
	_, err := xades.Sign(context.Background(), strings.NewReader("<r/>"), env.Official, xades.Options{
		Packaging: xades.Enveloped, Level: signing.LevelLT, Timestamper: env.TSA, Revocation: env.PKI})
	if !errors.Is(err, signing.ErrRevoked) {
		t.Fatalf("got %v, want ErrRevoked", err)
	}
}

// TestSignFiles makes one detached B-LTA signature over three files (as ASiC-E does), checks it
// with xmlsec1 and xadesjs, and that each file is opened once.
func TestSignFiles(t *testing.T) {
	need(t, "xmlsec1")
	env := sharedEnv(t)
	dir := t.TempDir()
	contents := map[string][]byte{
		"contract.pdf":        bytes.Repeat([]byte("%PDF-1.7 binary \x00\x01\xff"), 5000),
		"annex/annex 1.xml":   []byte("<annex>one</annex>"),
		"annex/përshkrim.txt": []byte("tekst në shqip"),
	}
	opened := map[string]int{}
	var files []xades.File
	for _, name := range []string{"contract.pdf", "annex/annex 1.xml", "annex/përshkrim.txt"} {
		p := filepath.Join(dir, filepath.FromSlash(name))
		os.MkdirAll(filepath.Dir(p), 0o700)
		write(t, p, contents[name])
		files = append(files, xades.File{Name: name, MimeType: map[bool]string{true: "application/pdf"}[strings.HasSuffix(name, ".pdf")],
			Open: func() (io.ReadCloser, error) { opened[name]++; return os.Open(p) }})
	}
	out, err := xades.SignFiles(context.Background(), files, env.Seal, xades.Options{Level: signing.LevelLTA,
		Timestamper: env.TSA, Revocation: env.PKI, Time: signTime})
	if err != nil {
		t.Fatal(err)
	}
	for name, n := range opened {
		if n != 1 {
			t.Errorf("%s opened %d times", name, n)
		}
	}
	file := filepath.Join(dir, "signatures.xml")
	write(t, file, out)
	if msg, ok := xmlsec(t, env, file); !ok {
		t.Fatalf("xmlsec1:\n%s\n%s", msg, out)
	}
	if res, stderr := xadesjs(t, file); !res[0] {
		t.Fatalf("xadesjs:\n%s", stderr)
	}
	need(t, "openssl")
	tokenVerifies(t, env, dir, file, "ArchiveTimeStamp", "archive")
	for _, want := range []string{`URI="contract.pdf"`, `URI="annex/annex%201.xml"`, `URI="annex/p%C3%ABrshkrim.txt"`, "<xades:MimeType>application/pdf</xades:MimeType>"} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("no %s", want)
		}
	}
	// Too large in all: the limit counts every file.
	_, err = xades.SignFiles(context.Background(), files, env.Seal, xades.Options{MaxSize: int64(len(contents["contract.pdf"])) + 5})
	if !errors.Is(err, signing.ErrTooLarge) {
		t.Errorf("files above MaxSize together: %v", err)
	}
	bad := []xades.File{{Name: "a", Open: func() (io.ReadCloser, error) { return nil, os.ErrNotExist }}}
	if _, err := xades.SignFiles(context.Background(), bad, env.Seal, xades.Options{}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a file that does not open: %v", err)
	}
}

func FuzzSign(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join("testdata", "*.xml"))
	for _, s := range seeds {
		b, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(billionLaughs))
	env := sharedEnv(f)
	f.Fuzz(func(t *testing.T, in []byte) {
		out, err := xades.Sign(context.Background(), bytes.NewReader(in), env.Seal, xades.Options{Packaging: xades.Enveloped, MaxSize: 1 << 20})
		if err != nil {
			if !errors.Is(err, signing.ErrInvalid) && !errors.Is(err, signing.ErrTooLarge) {
				t.Fatalf("error that is not ErrInvalid: %v", err)
			}
			return
		}
		if !bytes.Contains(out, []byte("<ds:SignatureValue")) {
			t.Fatal("signed output without a SignatureValue")
		}
		// The output must itself be acceptable XML for another signature.
		if _, err := xades.Sign(context.Background(), bytes.NewReader(out), env.Seal, xades.Options{Packaging: xades.Enveloped}); err != nil {
			t.Fatalf("the signed output does not parse again: %v", err)
		}
	})
}

func BenchmarkSign(b *testing.B) {
	env := sharedEnv(b)
	doc, err := os.ReadFile(filepath.Join("testdata", "invoice.xml"))
	if err != nil {
		b.Fatal(err)
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	for _, c := range []struct {
		name string
		in   []byte
		opts xades.Options
	}{
		{"enveloped-B-B", doc, xades.Options{Packaging: xades.Enveloped}},
		{"detached-1MiB-B-B", big, xades.Options{Packaging: xades.Detached, FileName: "big.bin"}},
		{"enveloped-B-T", doc, xades.Options{Packaging: xades.Enveloped, Level: signing.LevelT, Timestamper: env.TSA}},
		{"enveloped-B-LTA", doc, xades.Options{Packaging: xades.Enveloped, Level: signing.LevelLTA, Timestamper: env.TSA, Revocation: env.PKI}},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(c.in)))
			for b.Loop() {
				if _, err := xades.Sign(context.Background(), bytes.NewReader(c.in), env.Seal, c.opts); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
