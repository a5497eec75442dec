package verifier

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"testing"
	"time"
)

// BenchmarkPresentation measures the verification of one SD-JWT VC presentation (the PID's
// shape: the issuer's x5c chain to a trust anchor, its ES256 signature, the disclosures, the key
// binding's ES256 signature and claims, the status list's chain, signature and entry), beside
// the bare ES256 verification by the same issuer key that it contains three of:
//
//	go test ./internal/verifier/ -run '^$' -bench 'Presentation|ES256' -benchmem
func BenchmarkPresentation(b *testing.B) {
	is := newIssuer(b, "bench")
	// The list is signed once, as an issuer's cached token is: what is measured is the verifier.
	tok, terr := is.StatusList(context.Background(), is.listURI)
	if terr != nil {
		b.Fatal(terr)
	}
	s := newService(b, fixedList(tok), is.ca)
	holder, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	q, err := ParseQuery([]byte(pidQuery))
	if err != nil {
		b.Fatal(err)
	}
	tx := transaction{Verifier: "x509_hash:bench", Nonce: "n-bench"}
	p := present(b, is.credential(b, holder, 3, time.Now().Add(time.Hour)), holder, tx.Verifier, tx.Nonce, "family_name", "age_equal_or_over", "18")
	ctx := context.Background()
	if r := s.verifySDJWT(ctx, tx, q.Credentials[0], p, time.Now()); r.Refusal != "" {
		b.Fatal(r.Refusal)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if r := s.verifySDJWT(ctx, tx, q.Credentials[0], p, time.Now()); r.Refusal != "" {
			b.Fatal(r.Refusal)
		}
	}
}

// BenchmarkMdocPresentation measures the verification of one mso_mdoc presentation (the
// DeviceResponse read, the x5chain to a trust anchor, the MSO's ES256 signature, the items'
// digests, the device signature over the SessionTranscript, the status list's entry):
//
//	go test ./internal/verifier/ -run '^$' -bench 'Presentation|ES256' -benchmem
func BenchmarkMdocPresentation(b *testing.B) {
	is := newIssuer(b, "bench")
	tok, terr := is.StatusList(context.Background(), is.listURI)
	if terr != nil {
		b.Fatal(terr)
	}
	s := newService(b, fixedList(tok), is.ca)
	holder, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	q, err := ParseQuery([]byte(mdocQuery))
	if err != nil {
		b.Fatal(err)
	}
	tx := transaction{ID: "t-bench", Verifier: "x509_hash:bench", Nonce: "n-bench"}
	r := request{clientID: tx.Verifier, nonce: tx.Nonce, responseURI: s.responseURI(tx)}
	p := presentMdoc(b, is.mdoc(b, holder, 3, time.Now().Add(time.Hour)), holder, r, tx.Verifier, tx.Nonce, "family_name", "age_over_18")
	ctx := context.Background()
	if res := s.verifyMdoc(ctx, tx, q.Credentials[0], p, time.Now()); res.Refusal != "" {
		b.Fatal(res.Refusal)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if res := s.verifyMdoc(ctx, tx, q.Credentials[0], p, time.Now()); res.Refusal != "" {
			b.Fatal(res.Refusal)
		}
	}
}

// BenchmarkES256Verify is one bare ES256 verification by the issuer's key.
func BenchmarkES256Verify(b *testing.B) {
	is := newIssuer(b, "bench")
	h := sha256.Sum256([]byte("a JWS signing input"))
	sig, err := ecdsa.SignASN1(rand.Reader, is.key, h[:])
	if err != nil {
		b.Fatal(err)
	}
	pub := &is.key.PublicKey
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if !ecdsa.VerifyASN1(pub, h[:], sig) {
			b.Fatal("does not verify")
		}
	}
}

// fixedList serves one status list token.
type fixedList []byte

func (f fixedList) StatusList(context.Context, string) ([]byte, error) { return f, nil }
