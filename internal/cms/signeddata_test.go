package cms_test

import (
	"bytes"
	"crypto"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/vula-eid/vula/internal/cms"
)

func readSeed(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// rebuild puts a SignedData together again from the cuts ParseSignedData gives: what
// signing/cades does when it appends a signature timestamp.
func rebuild(p *cms.SignedData) []byte {
	return cms.Build(func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(cms.OIDSignedData)
			b.AddASN1(cbasn1.Tag(0).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddBytes(p.BeforeSigners)
					b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) {
						b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
							b.AddBytes(p.SignerHead)
							if len(p.Unsigned) > 0 {
								b.AddASN1(cbasn1.Tag(1).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
									for _, a := range p.Unsigned {
										b.AddBytes(a)
									}
								})
							}
						})
					})
				})
			})
		})
	})
}

// TestParseSignedData reads Vula's CAdES at B-B and B-T and openssl's: the attributes, the
// signature timestamp among the unsigned ones, and cuts that give the input back byte for byte.
func TestParseSignedData(t *testing.T) {
	for _, c := range []struct {
		name       string
		timestamps int
	}{{"bb.p7s", 0}, {"bt.p7s", 1}, {"openssl-cades.der", 0}} {
		t.Run(c.name, func(t *testing.T) {
			der := readSeed(t, c.name)
			p, err := cms.ParseSignedData(der)
			if err != nil {
				t.Fatal(err)
			}
			if !p.ContentType.Equal(cms.OIDData) || p.Signers != 1 || p.Hash != crypto.SHA256 || !p.Exact {
				t.Fatalf("content type %v, %d signers, hash %v, exact %v", p.ContentType, p.Signers, p.Hash, p.Exact)
			}
			if len(p.Certs) == 0 || len(p.Signature) == 0 || len(p.SignedAttrs) == 0 || p.SignedAttrs[0] != 0x31 {
				t.Fatalf("%d certificates, a signature of %d bytes, signed attributes % x", len(p.Certs), len(p.Signature), p.SignedAttrs[:min(4, len(p.SignedAttrs))])
			}
			for _, oid := range []string{cms.OIDContentType.String(), cms.OIDMessageDigest.String(), cms.OIDSigningCertV2.String()} {
				if _, ok := p.Attrs[oid]; !ok {
					t.Errorf("signed attribute %s missing", oid)
				}
			}
			if n := len(p.UnsignedAttrs[cms.OIDSignatureTSToken.String()]); n != c.timestamps {
				t.Errorf("%d signature timestamps, want %d", n, c.timestamps)
			}
			if got := rebuild(p); !bytes.Equal(got, der) {
				t.Error("the cuts do not give the input back")
			}
		})
	}
}

// TestParseSignedDataInexact: bytes after the ContentInfo (a PDF's padded /Contents) are
// allowed but reported, and what is not SignedData is ErrNotSignedData.
func TestParseSignedDataInexact(t *testing.T) {
	der := readSeed(t, "bb.p7s")
	p, err := cms.ParseSignedData(append(bytes.Clone(der), 0, 0, 0))
	if err != nil || p.Exact {
		t.Fatalf("padded: %v, exact %v", err, p != nil && p.Exact)
	}
	for _, junk := range [][]byte{nil, {0x30, 0x00}, []byte("not a CMS"), der[:len(der)/2]} {
		if _, err := cms.ParseSignedData(junk); !errors.Is(err, cms.ErrNotSignedData) {
			t.Errorf("% x...: %v, want ErrNotSignedData", junk[:min(8, len(junk))], err)
		}
	}
}

// FuzzParseSignedData: the parser of others' CMS never panics, fails only with its two errors,
// and a SignedData it reads has a signer, a known digest and cuts that rebuild to DER.
func FuzzParseSignedData(f *testing.F) {
	for _, name := range []string{"bb.p7s", "bt.p7s", "openssl-cades.der"} {
		f.Add(readSeed(f, name))
	}
	f.Fuzz(func(t *testing.T, der []byte) {
		p, err := cms.ParseSignedData(der)
		if err != nil {
			if !errors.Is(err, cms.ErrNotSignedData) && !errors.Is(err, cms.ErrUnsupportedDigest) {
				t.Fatalf("unexpected error: %v", err)
			}
			return
		}
		if p.Signers < 1 || p.Hash == 0 || len(p.SignerHead) == 0 {
			t.Fatalf("parsed without a signer or a digest: %d signers, hash %v", p.Signers, p.Hash)
		}
		if p.Exact && p.Signers == 1 && len(p.Unsigned) > 0 && !bytes.Equal(rebuild(p), der) {
			t.Fatal("an exact SignedData with one signer does not rebuild to its input")
		}
	})
}
