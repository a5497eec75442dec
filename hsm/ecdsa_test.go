package hsm_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"math/big"
	"testing"

	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/cryptobyte/asn1"

	"github.com/vula-eid/vula/hsm"
)

// derSig builds a DER ECDSA signature from r and s as the standard library would.
func derSig(t testing.TB, r, s *big.Int) []byte {
	t.Helper()
	var b cryptobyte.Builder
	b.AddASN1(asn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1BigInt(r)
		b.AddASN1BigInt(s)
	})
	out, err := b.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestECDSARawRoundTrip(t *testing.T) {
	for _, curve := range []elliptic.Curve{elliptic.P256(), elliptic.P384(), elliptic.P521()} {
		size := (curve.Params().BitSize + 7) / 8
		key, err := ecdsa.GenerateKey(curve, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 32 {
			d := sha256.Sum256([]byte{byte(i)})
			der, err := ecdsa.SignASN1(rand.Reader, key, d[:])
			if err != nil {
				t.Fatal(err)
			}
			raw, err := hsm.ECDSARaw(der, curve)
			if err != nil {
				t.Fatalf("%s: ECDSARaw: %v", curve.Params().Name, err)
			}
			if len(raw) != 2*size {
				t.Fatalf("%s: raw signature of %d bytes, want %d", curve.Params().Name, len(raw), 2*size)
			}
			r, s := new(big.Int).SetBytes(raw[:size]), new(big.Int).SetBytes(raw[size:])
			if !ecdsa.Verify(&key.PublicKey, d[:], r, s) {
				t.Fatalf("%s: r||s does not verify", curve.Params().Name)
			}
			back, err := hsm.ECDSADER(raw)
			if err != nil || !bytes.Equal(back, der) {
				t.Fatalf("%s: ECDSADER(ECDSARaw(sig)) = %x, %v; want %x", curve.Params().Name, back, err, der)
			}
		}
	}
}

// TestECDSAEdges covers the paddings a random signature seldom hits: short r and s (zero-padded in
// r||s) and a top bit set (a leading zero byte in DER).
func TestECDSAEdges(t *testing.T) {
	p256 := elliptic.P256()
	n := p256.Params().N
	top := new(big.Int).Lsh(big.NewInt(1), 255)
	for name, tc := range map[string]struct{ r, s *big.Int }{
		"one and n-1":   {big.NewInt(1), new(big.Int).Sub(n, big.NewInt(1))},
		"top bit set":   {top, big.NewInt(0x80)},
		"short both":    {big.NewInt(0x1234), big.NewInt(0xff)},
		"full-size max": {new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 256), big.NewInt(1)), big.NewInt(2)},
	} {
		der := derSig(t, tc.r, tc.s)
		raw, err := hsm.ECDSARaw(der, p256)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		want := make([]byte, 64)
		tc.r.FillBytes(want[:32])
		tc.s.FillBytes(want[32:])
		if !bytes.Equal(raw, want) {
			t.Fatalf("%s: raw %x, want %x", name, raw, want)
		}
		back, err := hsm.ECDSADER(raw)
		if err != nil || !bytes.Equal(back, der) {
			t.Fatalf("%s: back to DER %x, %v; want %x", name, back, err, der)
		}
	}
}

func badDER(t testing.TB) map[string][]byte {
	t.Helper()
	one := big.NewInt(1)
	h := func(s string) []byte {
		b, err := hex.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	good := derSig(t, big.NewInt(5), big.NewInt(7)) // 3006 020105 020107
	return map[string][]byte{
		"empty":               nil,
		"not a sequence":      h("3106020105020107"),
		"trailing data":       append(bytes.Clone(good), 0),
		"truncated":           good[:len(good)-1],
		"one integer":         h("3003020105"),
		"three integers":      h("3009020105020107020109"),
		"negative r":          derSig(t, big.NewInt(-5), one),
		"zero s":              derSig(t, one, big.NewInt(0)),
		"r too large":         derSig(t, new(big.Int).Lsh(one, 256), one),
		"non-minimal integer": h("300702020005020107"),
		"long-form length":    h("308106020105020107"),
		"octet string":        h("3006040105020107"),
		"indefinite length":   h("3080020105020107" + "0000"),
	}
}

func TestECDSARawRejects(t *testing.T) {
	for name, der := range badDER(t) {
		if raw, err := hsm.ECDSARaw(der, elliptic.P256()); !errors.Is(err, hsm.ErrInvalid) {
			t.Errorf("%s: ECDSARaw = %x, %v; want ErrInvalid", name, raw, err)
		}
	}
	good := derSig(t, big.NewInt(5), big.NewInt(7))
	if _, err := hsm.ECDSARaw(good, hsm.RSA3072.Curve()); !errors.Is(err, hsm.ErrInvalid) {
		t.Errorf("ECDSARaw with no curve: err = %v, want ErrInvalid", err)
	}
	for _, raw := range [][]byte{nil, {}, {1, 2, 3}} {
		if _, err := hsm.ECDSADER(raw); !errors.Is(err, hsm.ErrInvalid) {
			t.Errorf("ECDSADER(%x): err = %v, want ErrInvalid", raw, err)
		}
	}
}

func TestAlgorithmCurve(t *testing.T) {
	for alg, want := range map[hsm.Algorithm]elliptic.Curve{
		hsm.ECP256: elliptic.P256(), hsm.ECP384: elliptic.P384(), hsm.RSA3072: nil, hsm.RSA4096: nil, "EC-P224": nil,
	} {
		if got := alg.Curve(); got != want {
			t.Errorf("%s.Curve() = %v, want %v", alg, got, want)
		}
	}
}

// FuzzECDSARaw: whatever DER ECDSARaw accepts comes back byte for byte through ECDSADER, and
// nothing makes either panic.
func FuzzECDSARaw(f *testing.F) {
	for _, curve := range []elliptic.Curve{elliptic.P256(), elliptic.P384()} {
		key, err := ecdsa.GenerateKey(curve, rand.Reader)
		if err != nil {
			f.Fatal(err)
		}
		d := sha256.Sum256([]byte("seed"))
		der, err := ecdsa.SignASN1(rand.Reader, key, d[:])
		if err != nil {
			f.Fatal(err)
		}
		f.Add(der, curve == elliptic.P384())
	}
	for _, der := range badDER(f) {
		f.Add(der, false)
	}
	f.Fuzz(func(t *testing.T, der []byte, p384 bool) {
		curve := elliptic.P256()
		if p384 {
			curve = elliptic.P384()
		}
		hsm.ECDSADER(der) // any bytes as raw input
		raw, err := hsm.ECDSARaw(der, curve)
		if err != nil {
			return
		}
		back, err := hsm.ECDSADER(raw)
		if err != nil || !bytes.Equal(back, der) {
			t.Fatalf("DER %x -> raw %x -> DER %x, %v", der, raw, back, err)
		}
	})
}
