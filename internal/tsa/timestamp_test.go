package tsa

import (
	"context"
	"crypto"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/vula-eid/vula/hsm"
)

// Timestamp makes in process the tokens a query would get: openssl verifies them against the
// digest, their audit record names the actor, MaxTokenSize bounds them tightly, and what a
// query would be refused for is refused.
func TestTimestampInProcess(t *testing.T) {
	for _, alg := range []hsm.Algorithm{hsm.ECP256, hsm.ECP384, hsm.RSA3072} {
		t.Run(string(alg), func(t *testing.T) {
			f := newFixture(t, alg)
			ctx := hsm.WithActor(context.Background(), "seal-client")
			longest := 0
			for i := range 20 {
				for _, h := range []crypto.Hash{crypto.SHA256, crypto.SHA512} {
					digest := make([]byte, h.Size())
					rand.Read(digest)
					tok, err := f.r.Timestamp(ctx, h, digest)
					if err != nil {
						t.Fatal(err)
					}
					if len(tok) > f.r.MaxTokenSize() {
						t.Fatalf("a token of %d bytes, MaxTokenSize %d", len(tok), f.r.MaxTokenSize())
					}
					longest = max(longest, len(tok))
					if i == 0 {
						p := filepath.Join(f.dir, "token.der")
						os.WriteFile(p, tok, 0o600)
						openssl(t, "ts", "-verify", "-token_in", "-in", p, "-digest", fmt.Sprintf("%x", digest),
							"-CAfile", f.rootPEM, "-untrusted", f.chainAndTSA)
						if ev := f.hook.last(); ev.Actor != "seal-client" || ev.Detail["imprint"] != fmt.Sprintf("%x", digest) {
							t.Fatalf("audit record %+v", ev)
						}
					}
				}
			}
			// Tight: the bound exceeds the longest token by the few bytes a shorter time,
			// signature or serial saves.
			if slack := f.r.MaxTokenSize() - longest; slack > 24 {
				t.Fatalf("MaxTokenSize %d is %d bytes above the longest token", f.r.MaxTokenSize(), slack)
			}
		})
	}
	f := newFixture(t, hsm.ECP256)
	for _, c := range []struct {
		name   string
		hash   crypto.Hash
		digest []byte
	}{{"SHA-1", crypto.SHA1, make([]byte, 20)}, {"short digest", crypto.SHA256, make([]byte, 31)}} {
		if _, err := f.r.Timestamp(context.Background(), c.hash, c.digest); !errors.Is(err, ErrRefused) {
			t.Errorf("%s: %v, want ErrRefused", c.name, err)
		}
	}
	f.clock.synced = false
	if _, err := f.r.Timestamp(context.Background(), crypto.SHA256, make([]byte, 32)); !errors.Is(err, ErrRefused) {
		t.Errorf("unsynchronised clock: %v, want ErrRefused", err)
	}
}
