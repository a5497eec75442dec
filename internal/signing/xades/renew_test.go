package xades_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vula-eid/vula/internal/signing"
	"github.com/vula-eid/vula/internal/signing/signingtest"
	"github.com/vula-eid/vula/internal/signing/xades"
)

// Renewing a B-LT or B-LTA signature of each packaging appends an ArchiveTimeStamp (and, when
// there was one already, the TimeStampValidationData of its TSA) and changes nothing else;
// xmlsec1 still verifies the signature. A B-T signature, or a detached one without its data
// file, is refused.
func TestRenew(t *testing.T) {
	need(t, "xmlsec1")
	input, err := os.ReadFile(filepath.Join("testdata", "invoice.xml"))
	if err != nil {
		t.Fatal(err)
	}
	env := signingtest.New(t, signingtest.Options{})
	ctx := context.Background()
	const name = "invoice file.xml"
	open := func(n string) (io.ReadCloser, error) {
		if n != name {
			return nil, os.ErrNotExist
		}
		return io.NopCloser(bytes.NewReader(input)), nil
	}
	for _, p := range []xades.Packaging{xades.Enveloped, xades.Enveloping, xades.Detached} {
		for _, l := range []signing.Level{signing.LevelLT, signing.LevelLTA} {
			t.Run(string(p)+"/"+string(l), func(t *testing.T) {
				dir := t.TempDir()
				opts := xades.Options{Level: l, Packaging: p, Timestamper: env.TSA, Revocation: env.PKI, Time: signTime, MimeType: "application/xml"}
				if p == xades.Enveloped {
					opts.MimeType = ""
				}
				if p == xades.Detached {
					opts.FileName = name
					write(t, filepath.Join(dir, name), input)
				}
				signed, err := xades.Sign(ctx, bytes.NewReader(input), env.Seal, opts)
				if err != nil {
					t.Fatal(err)
				}
				cur := signed
				for round := 1; round <= 2; round++ {
					renewed, err := xades.Renew(ctx, cur, env.TSA, env.PKI, open)
					if err != nil {
						t.Fatal(err)
					}
					// Only appended inside UnsignedSignatureProperties.
					const end = "</xades:UnsignedSignatureProperties>"
					i := bytes.Index(cur, []byte(end))
					j := bytes.Index(renewed, []byte(end))
					if i < 0 || j < i || !bytes.Equal(renewed[:i], cur[:i]) || !bytes.Equal(renewed[j:], cur[i:]) {
						t.Fatalf("round %d changed more than the unsigned properties' end:\n%s", round, renewed)
					}
					added := string(renewed[i:j])
					if !strings.HasPrefix(added, "<xadesv141:") || strings.Count(added, "<xadesv141:ArchiveTimeStamp") != 1 {
						t.Fatalf("round %d added %s", round, added)
					}
					hadATS := bytes.Contains(cur, []byte("ArchiveTimeStamp"))
					if hadATS != strings.Contains(added, "TimeStampValidationData") {
						t.Fatalf("round %d: TimeStampValidationData added %v, an archive timestamp before %v", round, !hadATS, hadATS)
					}
					file := filepath.Join(dir, "renewed.xml")
					write(t, file, renewed)
					if msg, ok := xmlsec(t, env, file); !ok {
						t.Fatalf("xmlsec1 --verify of the renewed signature failed:\n%s", msg)
					}
					cur = renewed
				}
			})
		}
	}

	bt, err := xades.Sign(ctx, bytes.NewReader(input), env.Seal, xades.Options{Level: signing.LevelT, Packaging: xades.Enveloped, Timestamper: env.TSA, Time: signTime})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := xades.Renew(ctx, bt, env.TSA, env.PKI, nil); !errors.Is(err, signing.ErrInvalid) {
		t.Fatalf("renewing B-T: %v, want ErrInvalid", err)
	}
	det, err := xades.Sign(ctx, bytes.NewReader(input), env.Seal, xades.Options{Level: signing.LevelLT, Packaging: xades.Detached, FileName: name,
		Timestamper: env.TSA, Revocation: env.PKI, Time: signTime})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := xades.Renew(ctx, det, env.TSA, env.PKI, nil); !errors.Is(err, signing.ErrInvalid) {
		t.Fatalf("renewing a detached signature without its file: %v, want ErrInvalid", err)
	}
	for _, junk := range []string{"", "<a/>", "not xml", `<!DOCTYPE a><a/>`} {
		if _, err := xades.Renew(ctx, []byte(junk), env.TSA, env.PKI, nil); !errors.Is(err, signing.ErrInvalid) {
			t.Fatalf("Renew(%q): %v, want ErrInvalid", junk, err)
		}
	}
}

// Renew parses XML from outside (the renewal API's body): whatever it is given, it returns a
// document with one more archive timestamp or ErrInvalid / ErrUnsupported / ErrTooLarge, and
// never panics.
func FuzzRenew(f *testing.F) {
	env := sharedEnv(f)
	seeds, _ := filepath.Glob(filepath.Join("testdata", "*.xml"))
	for _, s := range seeds {
		b, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, p := range []xades.Packaging{xades.Enveloped, xades.Enveloping} {
		signed, err := xades.Sign(context.Background(), strings.NewReader("<a>b</a>"), env.Seal,
			xades.Options{Level: signing.LevelLT, Packaging: p, Timestamper: env.TSA, Revocation: env.PKI, MimeType: "text/xml"})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(signed)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		out, err := xades.Renew(context.Background(), in, env.TSA, env.PKI, nil)
		if err != nil {
			if !errors.Is(err, signing.ErrInvalid) && !errors.Is(err, signing.ErrUnsupported) && !errors.Is(err, signing.ErrTooLarge) {
				t.Fatalf("error that is not ErrInvalid/ErrUnsupported: %v", err)
			}
			return
		}
		if bytes.Count(out, []byte("<xadesv141:ArchiveTimeStamp")) <= bytes.Count(in, []byte("<xadesv141:ArchiveTimeStamp")) {
			t.Fatal("renewed without a new ArchiveTimeStamp")
		}
	})
}
