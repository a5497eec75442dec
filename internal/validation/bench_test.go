package validation_test

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/vula-eid/vula/internal/signing"
	"github.com/vula-eid/vula/internal/signing/signingtest"
	"github.com/vula-eid/vula/internal/validation"
)

// BenchmarkValidatePAdES: validations per second of a 1 MB PAdES PDF, at B-LT with the
// revocation data embedded (the figure) and at B-LTA.
func BenchmarkValidatePAdES(b *testing.B) {
	env := signingtest.New(b, signingtest.Options{})
	for _, level := range []signing.Level{signing.LevelLT, signing.LevelLTA} {
		doc := signPDF(b, env, env.Seal, signingtest.PDF(strings.Repeat("x", 1<<20)), level)
		opts := validation.Options{TrustAnchors: anchors(env)}
		b.Run(string(level)+"-1MB", func(b *testing.B) {
			b.SetBytes(int64(len(doc)))
			for b.Loop() {
				rep, err := validation.Validate(context.Background(), bytes.NewReader(doc), int64(len(doc)), opts)
				if err != nil || rep.Indication != validation.TotalPassed {
					b.Fatalf("%v %s", err, rep.Indication)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "validations/s")
		})
	}
}
