package cades_test

import (
	"bytes"
	"context"
	"crypto"
	"encoding/asn1"
	"errors"
	"flag"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vula-eid/vula/hsm"
	"github.com/vula-eid/vula/internal/signing"
	"github.com/vula-eid/vula/internal/signing/cades"
	"github.com/vula-eid/vula/internal/signing/signingtest"
	"github.com/vula-eid/vula/internal/testenv"
)

var update = flag.Bool("update", false, "rewrite the fuzz seeds in testdata/")

func needOpenSSL(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		testenv.Missing(t, "openssl not installed")
	}
}

// run runs a command and returns its combined output; it fails the test when the command fails.
func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// verify runs openssl cms -verify on a detached signature with openssl's default purpose check
// (S/MIME signing): no -purpose any is needed, since the seal and signing certificates carry
// digitalSignature/nonRepudiation and no extended key usage, which that check accepts; so the
// test keeps it, and -noverify or -no_attr_verify are not used either.
func verify(sig, content, root string) ([]byte, error) {
	return exec.Command("openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", sig,
		"-content", content, "-CAfile", root, "-out", os.DevNull).CombinedOutput()
}

// Detached B-B and B-T signatures for each key kind verify with openssl, carry the attributes
// EN 319 122-1 asks for, break when the content changes, and embed a token openssl accepts
// over the signature value.
func TestSignOpenSSL(t *testing.T) {
	needOpenSSL(t)
	for _, alg := range []hsm.Algorithm{hsm.ECP256, hsm.ECP384, hsm.RSA3072} {
		t.Run(string(alg), func(t *testing.T) {
			e := signingtest.New(t, signingtest.Options{Algorithm: alg})
			content := bytes.Repeat([]byte("Vendim nr. 42/2026 — çështja e tatimit.\n"), 1000)
			file := e.WriteFile(t, "content.txt", content)
			for _, level := range []signing.Level{signing.LevelB, signing.LevelT} {
				t.Run(string(level), func(t *testing.T) {
					opts := cades.Options{SigningTime: time.Now()}
					if level == signing.LevelT {
						opts.Timestamper = e.TSA
					}
					ctx := context.Background()
					sig, err := cades.Sign(ctx, e.Seal, bytes.NewReader(content), opts)
					if err != nil {
						t.Fatal(err)
					}
					max, err := cades.MaxSize(e.Seal, opts)
					if err != nil {
						t.Fatal(err)
					}
					if len(sig) > max {
						t.Fatalf("signature of %d bytes, MaxSize said %d", len(sig), max)
					}
					if level == signing.LevelB && max-len(sig) > 4 {
						t.Errorf("MaxSize %d is loose for a B-B signature of %d bytes", max, len(sig))
					}
					p := e.WriteFile(t, "sig-"+string(level)+".p7s", sig)
					if out, err := verify(p, file, e.RootPEM); err != nil {
						t.Fatalf("openssl cms -verify: %v\n%s", err, out)
					}
					printed := run(t, "openssl", "cms", "-cmsout", "-print", "-inform", "DER", "-in", p)
					want := []string{"id-smime-aa-signingCertificateV2", "signingTime", "contentType", "messageDigest"}
					if level == signing.LevelT {
						want = append(want, "id-smime-aa-timeStampToken")
					}
					for _, w := range want {
						if !strings.Contains(printed, w) {
							t.Errorf("openssl cms -print shows no %s:\n%s", w, printed)
						}
					}
					if level == signing.LevelB && strings.Contains(printed, "id-smime-aa-timeStampToken") {
						t.Error("a B-B signature carries a timestamp")
					}

					changed := bytes.Clone(content)
					changed[len(changed)/2] ^= 1
					if out, err := verify(p, e.WriteFile(t, "changed.txt", changed), e.RootPEM); err == nil {
						t.Fatalf("openssl accepted the signature over changed content:\n%s", out)
					}

					if level == signing.LevelT {
						tok, sigValue := cades.TimestampToken(t, sig)
						tp := e.WriteFile(t, "token.der", tok)
						dp := e.WriteFile(t, "sigvalue.bin", sigValue)
						run(t, "openssl", "ts", "-verify", "-token_in", "-in", tp, "-data", dp, "-CAfile", e.AllPEM)
						if *update && alg == hsm.ECP256 {
							writeSeed(t, "bt.p7s", sig)
							writeSeed(t, "token.der", tok)
						}
					} else if *update && alg == hsm.ECP256 {
						writeSeed(t, "bb.p7s", sig)
					}
				})
			}
		})
	}
}

func writeSeed(t *testing.T, name string, b []byte) {
	if err := os.WriteFile(filepath.Join("testdata", name), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// SignDigest as the PDF signer calls it: no signing time, B-B turned into B-T afterwards by
// AddTimestamp, which refuses a second timestamp.
func TestSignDigestAddTimestamp(t *testing.T) {
	needOpenSSL(t)
	e := signingtest.New(t, signingtest.Options{})
	ctx := context.Background()
	content := []byte("%PDF-1.7 byte ranges stand in here")
	d := crypto.SHA256.New()
	d.Write(content)
	sig, err := cades.SignDigest(ctx, e.Official, d.Sum(nil), cades.Options{})
	if err != nil {
		t.Fatal(err)
	}
	p := e.WriteFile(t, "bb.p7s", sig)
	file := e.WriteFile(t, "content.bin", content)
	if out, err := verify(p, file, e.RootPEM); err != nil {
		t.Fatalf("openssl cms -verify: %v\n%s", err, out)
	}
	if printed := run(t, "openssl", "cms", "-cmsout", "-print", "-inform", "DER", "-in", p); strings.Contains(printed, "signingTime") {
		t.Fatalf("signing-time without SigningTime:\n%s", printed)
	}
	bt, err := cades.AddTimestamp(ctx, sig, e.TSA)
	if err != nil {
		t.Fatal(err)
	}
	p = e.WriteFile(t, "bt.p7s", bt)
	if out, err := verify(p, file, e.RootPEM); err != nil {
		t.Fatalf("openssl cms -verify after AddTimestamp: %v\n%s", err, out)
	}
	tok, sigValue := cades.TimestampToken(t, bt)
	run(t, "openssl", "ts", "-verify", "-token_in", "-in", e.WriteFile(t, "tok.der", tok),
		"-data", e.WriteFile(t, "sv.bin", sigValue), "-CAfile", e.AllPEM)
	max, err := cades.MaxSize(e.Official, cades.Options{Timestamper: e.TSA})
	if err != nil {
		t.Fatal(err)
	}
	if len(bt) > max {
		t.Fatalf("B-T signature of %d bytes, MaxSize said %d", len(bt), max)
	}
	if _, err := cades.AddTimestamp(ctx, bt, e.TSA); !errors.Is(err, signing.ErrInvalid) {
		t.Fatalf("a second timestamp: %v, want ErrInvalid", err)
	}
}

// Bad input gets ErrInvalid (or ErrUnsupported), not a signature.
func TestInvalid(t *testing.T) {
	e := signingtest.New(t, signingtest.Options{})
	ctx := context.Background()
	other := signingtest.New(t, signingtest.Options{})
	mismatched := signing.Signer{Key: e.Seal.Key, Cert: other.Seal.Cert, Chain: other.Seal.Chain}
	cases := []struct {
		name   string
		s      signing.Signer
		digest []byte
		opts   cades.Options
	}{
		{"short digest", e.Seal, make([]byte, 20), cades.Options{}},
		{"key not of the certificate", mismatched, make([]byte, 32), cades.Options{}},
		{"no certificate", signing.Signer{Key: e.Seal.Key}, make([]byte, 32), cades.Options{}},
		{"extra attribute not DER", e.Seal, make([]byte, 32), cades.Options{ExtraSigned: [][]byte{{0x30, 0x05, 1}}}},
		{"extra attribute duplicates message-digest", e.Seal, make([]byte, 32), cades.Options{ExtraSigned: [][]byte{
			{0x30, 0x0f, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x04, 0x31, 0x02, 0x04, 0x00}}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := cades.SignDigest(ctx, c.s, c.digest, c.opts); !errors.Is(err, signing.ErrInvalid) {
				t.Fatalf("SignDigest: %v, want ErrInvalid", err)
			}
		})
	}
	for _, junk := range [][]byte{nil, {0x30, 0x00}, []byte("not a CMS"), bytes.Repeat([]byte{0x30, 0x80}, 10)} {
		if _, err := cades.AddTimestamp(ctx, junk, e.TSA); !errors.Is(err, signing.ErrInvalid) {
			t.Fatalf("AddTimestamp(%x): %v, want ErrInvalid", junk, err)
		}
	}
}

// Extra signed attributes (a commitment type) and another eContentType are signed and carried;
// openssl verifies the result and shows both.
func TestExtraSignedContentType(t *testing.T) {
	needOpenSSL(t)
	e := signingtest.New(t, signingtest.Options{})
	type commitmentTypeIndication struct{ ID asn1.ObjectIdentifier }
	value, err := asn1.Marshal(commitmentTypeIndication{ID: asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 6, 1}}) // proof of origin
	if err != nil {
		t.Fatal(err)
	}
	commitment, err := asn1.Marshal(struct {
		Type   asn1.ObjectIdentifier
		Values []asn1.RawValue `asn1:"set"`
	}{asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 2, 16}, []asn1.RawValue{{FullBytes: value}}})
	if err != nil {
		t.Fatal(err)
	}
	content := []byte("<doc/>")
	opts := cades.Options{ExtraSigned: [][]byte{commitment}, ContentType: asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 1, 28}} // id-ct-xml
	sig, err := cades.Sign(context.Background(), e.Seal, bytes.NewReader(content), opts)
	if err != nil {
		t.Fatal(err)
	}
	p := e.WriteFile(t, "extra.p7s", sig)
	if out, err := verify(p, e.WriteFile(t, "doc.xml", content), e.RootPEM); err != nil {
		t.Fatalf("openssl cms -verify: %v\n%s", err, out)
	}
	printed := run(t, "openssl", "cms", "-cmsout", "-print", "-inform", "DER", "-in", p)
	for _, w := range []string{"id-smime-aa-ets-commitmentType", "1.2.840.113549.1.9.16.1.28", "version: 3"} {
		if !strings.Contains(printed, w) {
			t.Errorf("openssl cms -print shows no %s:\n%s", w, printed)
		}
	}
	if max, err := cades.MaxSize(e.Seal, opts); err != nil || len(sig) > max {
		t.Fatalf("MaxSize %d (%v) for %d bytes", max, err, len(sig))
	}
}

// actorSigner records the actor of the context its key layer signer was given.
type actorSigner struct {
	hsm.ContextSigner
	actors []string
}

func (a *actorSigner) SignContext(ctx context.Context, r io.Reader, d []byte, o crypto.SignerOpts) ([]byte, error) {
	a.actors = append(a.actors, hsm.ActorOf(ctx))
	return a.ContextSigner.SignContext(ctx, r, d, o)
}

// The key signs once per signature, with the caller's context, so that the audit record names
// the actor (the key layer's Sign without a context would use the one the signer was made with).
func TestContextReachesKey(t *testing.T) {
	e := signingtest.New(t, signingtest.Options{})
	cs, ok := e.Seal.Key.(hsm.ContextSigner)
	if !ok {
		t.Fatal("the key layer's signer takes no context")
	}
	rec := &actorSigner{ContextSigner: cs}
	s := e.Seal
	s.Key = rec
	ctx := hsm.WithActor(context.Background(), "client:tax-portal")
	if _, err := cades.Sign(ctx, s, strings.NewReader("x"), cades.Options{Timestamper: e.TSA}); err != nil {
		t.Fatal(err)
	}
	if len(rec.actors) != 1 || rec.actors[0] != "client:tax-portal" {
		t.Fatalf("key signed %d times with actors %q", len(rec.actors), rec.actors)
	}
}
