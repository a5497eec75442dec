package validation_test

import (
	"bytes"
	"context"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vula-eid/vula/internal/signing"
	"github.com/vula-eid/vula/internal/signing/signingtest"
	"github.com/vula-eid/vula/internal/validation"
)

// peakHeap runs f and returns the most heap in use (runtime.MemStats.HeapInuse, sampled each
// millisecond) above what was in use before, in bytes.
func peakHeap(f func()) uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	var peak atomic.Uint64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		var m runtime.MemStats
		for {
			runtime.ReadMemStats(&m)
			if m.HeapInuse > base && m.HeapInuse-base > peak.Load() {
				peak.Store(m.HeapInuse - base)
			}
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
	f()
	close(stop)
	<-done
	return peak.Load()
}

// BenchmarkValidateLargePDF: the memory one validation of a 50 MB PAdES PDF takes beyond the
// document itself (which the caller holds, here in memory; the HTTP handler spools it):
// peak-heap-MB is the most heap in use above what was in use before, sampled each
// millisecond; B/op is all that was allocated. At B-B the signature covers the whole file; at
// B-LT a later update (the DSS) makes the validator compare the revisions.
func BenchmarkValidateLargePDF(b *testing.B) {
	env := signingtest.New(b, signingtest.Options{})
	in := signingtest.PDF(strings.Repeat("x", 50<<20))
	for _, level := range []signing.Level{signing.LevelB, signing.LevelLT} {
		doc := signPDF(b, env, env.Seal, in, level)
		opts := validation.Options{TrustAnchors: anchors(env), Fetch: validation.RevocationFetcher{R: env.PKI}, MaxSize: 64 << 20}
		b.Run(string(level)+"-50MB", func(b *testing.B) {
			b.SetBytes(int64(len(doc)))
			b.ReportAllocs()
			var peak uint64
			for b.Loop() {
				peak = max(peak, peakHeap(func() {
					rep, err := validation.Validate(context.Background(), bytes.NewReader(doc), int64(len(doc)), opts)
					if err != nil || rep.Indication != validation.TotalPassed {
						b.Fatalf("%v %s", err, rep.Indication)
					}
				}))
			}
			b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MB")
		})
	}
}

// TestValidatePDFMemory: validating a PDF allocates far less than the file, signed range or
// not (the byte ranges are hashed as read, the revisions compared a chunk at a time); it
// allocated five times the file before.
func TestValidatePDFMemory(t *testing.T) {
	env := signingtest.New(t, signingtest.Options{})
	doc := signPDF(t, env, env.Seal, signingtest.PDF(strings.Repeat("x", 16<<20)), signing.LevelLT)
	opts := validation.Options{TrustAnchors: anchors(env)}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	rep, err := validation.Validate(context.Background(), bytes.NewReader(doc), int64(len(doc)), opts)
	runtime.ReadMemStats(&after)
	if err != nil || rep.Indication != validation.TotalPassed {
		t.Fatalf("%v %s", err, rep.Indication)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > uint64(len(doc))/4 {
		t.Errorf("validating a %d-byte PDF allocated %d bytes", len(doc), alloc)
	}
}
