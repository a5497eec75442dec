package cms

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"testing"
)

// MaxSignatureLen bounds every signature and is reached: ECDSA DER signatures vary in length
// with their integers' leading bits, and /Contents and token sizes are computed from the bound.
func TestMaxSignatureLen(t *testing.T) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	for _, c := range []struct {
		name string
		key  crypto.Signer
	}{{"P-256", ecKey(elliptic.P256())}, {"P-384", ecKey(elliptic.P384())}, {"P-521", ecKey(elliptic.P521())}, {"RSA-2048", rsaKey}} {
		t.Run(c.name, func(t *testing.T) {
			max, err := MaxSignatureLen(c.key.Public())
			if err != nil {
				t.Fatal(err)
			}
			d := sha256.Sum256([]byte("x"))
			longest := 0
			for range 400 {
				sig, err := Sign(context.Background(), c.key, d[:], crypto.SHA256)
				if err != nil {
					t.Fatal(err)
				}
				if len(sig) > max {
					t.Fatalf("a signature of %d bytes, bound %d", len(sig), max)
				}
				longest = maxInt(longest, len(sig))
			}
			if longest != max {
				t.Fatalf("the longest of 400 signatures is %d bytes, the bound %d", longest, max)
			}
		})
	}
	if _, err := MaxSignatureLen(struct{}{}); err == nil {
		t.Fatal("a bound for an unknown key type")
	}
}

func ecKey(c elliptic.Curve) crypto.Signer {
	k, _ := ecdsa.GenerateKey(c, rand.Reader)
	return k
}

func maxInt(a, b int) int {
	if a > b {
		return a
	}
	return b
}
