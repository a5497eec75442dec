package seal_test

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/vula-eid/vula/internal/seal"
	"github.com/vula-eid/vula/internal/signing/signingtest"
)

// BenchmarkSeal seals the 100 KB PDF of BenchmarkHTTP's seal run at B-B in process: the
// service's own work (certificate status, PAdES, the transaction) without HTTP, the bearer check
// or the audit log (the fixture's hook counts signatures).
//
//	go test ./internal/seal -run '^$' -bench Seal -benchmem
func BenchmarkSeal(b *testing.B) {
	f := newFixture(b)
	f.onboard(b, "tax", "Tax Administration", "810000001")
	in := signingtest.PDF(strings.Repeat("Vendim / Rešenje / Decision. ", 3500))
	p, err := seal.ParseParams(params{"level": "B-B"}.get)
	if err != nil {
		b.Fatal(err)
	}
	var out bytes.Buffer
	ctx := context.Background()
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		out.Reset()
		if _, err := f.svc.Seal(ctx, "tax-batch", "tax", []seal.Document{doc("a.pdf", in)}, p, &out); err != nil {
			b.Fatal(err)
		}
	}
}
