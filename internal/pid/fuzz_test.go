package pid

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v3"

	"github.com/vula-eid/vula/internal/store/memstore"
)

// FuzzParseProof feeds the proof parser what a wallet could send: it never panics, and what it
// accepts is signed by the key it names.
func FuzzParseProof(f *testing.F) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	jwk := jose.JSONWebKey{Key: k.Public()}
	f.Add(proof(f, k, jwk, "https://vula.example", "n", time.Now()))
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	f.Add("a.b.c")
	f.Add("")
	f.Fuzz(func(t *testing.T, p string) {
		got, c, err := parseProof(p)
		if err != nil {
			return
		}
		if !got.Valid() || !got.IsPublic() {
			t.Fatalf("accepted a proof without a valid public key: %q", p)
		}
		_ = c
	})
}

// FuzzCheckProofs runs whole batches through checkProofs: never a panic, never a key accepted
// without the one nonce handed out.
func FuzzCheckProofs(f *testing.F) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	jwk := jose.JSONWebKey{Key: k.Public()}
	now := time.Now()
	f.Add(proof(f, k, jwk, "https://vula.example", "fixed-nonce", now), "x")
	f.Fuzz(func(t *testing.T, a, b string) {
		s := &Service{cfg: Config{Issuer: "https://vula.example", BatchSize: 10}, eph: memstore.New(time.Now), now: func() time.Time { return now }}
		keys, err := s.checkProofs(context.Background(), []string{a, b})
		if err == nil && len(keys) != 2 {
			t.Fatalf("accepted %d keys for 2 proofs", len(keys))
		}
		if err == nil {
			t.Fatal("accepted proofs with a nonce nobody handed out")
		}
	})
}
