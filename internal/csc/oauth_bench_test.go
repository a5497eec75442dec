package csc

import (
	"context"
	"crypto/sha256"
	"fmt"
	"testing"

	"github.com/vula-eid/vula/internal/idp"
	"github.com/vula-eid/vula/internal/store/memstore"
)

// BenchmarkCredentialToken measures the signing service's side of an OAuth credential
// authorization (the IdP's login, mostly Argon2id, is not in it): the authorization event in
// the SQLite audit chain, the token's first use making its SAD record, and signHash over its
// digests (each signature audited), for one digest and for 100.
func BenchmarkCredentialToken(b *testing.B) {
	e := newEnv(b)
	ctx := context.Background()
	s := e.replica(memstore.New(e.now))
	o := e.official(b, s, "1100000001")
	n := 0
	for _, batch := range []int{1, 100} {
		b.Run(fmt.Sprintf("hashes=%d", batch), func(b *testing.B) {
			for b.Loop() {
				hs := make([][]byte, batch)
				for i := range hs {
					n++
					h := sha256.Sum256(fmt.Appendf(nil, "document %d", n))
					hs[i] = h[:]
				}
				c := callerFor(o, e.now().Add(idp.CredentialTokenTTL), 0, hs...)
				seq, err := s.RecordAuthorization(ctx, o.sub, "app", *c.Credential, "")
				if err != nil {
					b.Fatal(err)
				}
				c.AuthorizationSeq = seq
				sad, err := s.TokenSAD(ctx, c, fmt.Sprintf("token-%d", n))
				if err != nil {
					b.Fatal(err)
				}
				sigs, err := s.SignHash(ctx, o.sub, SignRequest{CredentialID: o.cred.ID, SAD: sad, Hashes: hs, SignAlgo: "1.2.840.10045.4.3.2"})
				if err != nil || len(sigs) != batch {
					b.Fatalf("%d signatures: %v", len(sigs), err)
				}
			}
			b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "signatures/s")
		})
	}
}
