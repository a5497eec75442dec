package validation_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/vula-eid/vula/internal/signing"
	"github.com/vula-eid/vula/internal/signing/cades"
	"github.com/vula-eid/vula/internal/signing/signingtest"
	"github.com/vula-eid/vula/internal/validation"
)

// TestVulaCAdES: Vula's own detached CAdES at B-B (with signing-time) and B-T.
func TestVulaCAdES(t *testing.T) {
	env := signingtest.New(t, signingtest.Options{})
	content := []byte("a decision of the tax administration\n")
	opts := validation.Options{TrustAnchors: anchors(env), Fetch: validation.RevocationFetcher{R: env.PKI},
		Content: bytes.NewReader(content), ContentSize: int64(len(content))}
	for _, tc := range []struct {
		level signing.Level
		copts cades.Options
	}{
		{signing.LevelB, cades.Options{SigningTime: time.Now()}},
		{signing.LevelT, cades.Options{Timestamper: env.TSA}},
	} {
		t.Run(string(tc.level), func(t *testing.T) {
			sig, err := cades.Sign(context.Background(), env.Official, bytes.NewReader(content), tc.copts)
			if err != nil {
				t.Fatal(err)
			}
			rep := validate(t, sig, opts)
			s := rep.Signatures[0]
			if rep.Indication != validation.TotalPassed || s.Format != "CAdES-BASELINE" || s.Level != tc.level || s.Qualification != "QESig" {
				t.Fatalf("%s %s %s %s\n%s", rep.Indication, s.Format, s.Level, s.Qualification, dump(t, rep))
			}
			if tc.level == signing.LevelT && (len(s.Timestamps) != 1 || !s.ProofOfExistence.Equal(*s.Timestamps[0].TimestampTime)) {
				t.Fatalf("the timestamp is not the proof of existence\n%s", dump(t, rep))
			}
		})
	}
}
