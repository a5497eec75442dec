package software

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vula-eid/vula/hsm"
)

type nopHook struct{}

func (nopHook) RecordSignature(context.Context, hsm.SignEvent) error { return nil }

// BenchmarkSignP256 compares, with one P-256 key: crypto/ecdsa directly, the software Manager's
// signer, and that signer instrumented (metrics plus an audit hook that costs nothing), from 1 and
// 8 goroutines. The sigs/s metric is the figure to compare.
//
//	go test -run '^$' -bench SignP256 -benchtime 2s ./hsm/software/
func BenchmarkSignP256(b *testing.B) {
	m, err := Open(context.Background(), passphraseConfig(b.TempDir()), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	info, err := m.CreateKey(context.Background(), hsm.KeySpec{Label: "bench", Algorithm: hsm.ECP256, Purpose: hsm.PurposeTSA})
	if err != nil {
		b.Fatal(err)
	}
	plain, err := m.Signer(context.Background(), info.URI, hsm.PurposeTSA)
	if err != nil {
		b.Fatal(err)
	}
	im := hsm.Instrument(m, hsm.NewMetrics(prometheus.NewRegistry()), nopHook{}, time.Now)
	instrumented, err := im.Signer(context.Background(), info.URI, hsm.PurposeTSA)
	if err != nil {
		b.Fatal(err)
	}
	priv := m.keys["bench"].priv.Load().Signer.(*ecdsa.PrivateKey)
	digest := sha256.Sum256([]byte("benchmark"))

	for _, s := range []struct {
		name string
		sign func() error
	}{
		{"ecdsa", func() error { _, err := priv.Sign(rand.Reader, digest[:], crypto.SHA256); return err }},
		{"manager", func() error { _, err := plain.Sign(rand.Reader, digest[:], crypto.SHA256); return err }},
		{"instrumented", func() error { _, err := instrumented.Sign(rand.Reader, digest[:], crypto.SHA256); return err }},
	} {
		for _, g := range []int{1, 8} {
			b.Run(fmt.Sprintf("%s/goroutines=%d", s.name, g), func(b *testing.B) {
				var n atomic.Int64
				var wg sync.WaitGroup
				b.ResetTimer()
				for range g {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for n.Add(1) <= int64(b.N) {
							if err := s.sign(); err != nil {
								b.Error(err)
								return
							}
						}
					}()
				}
				wg.Wait()
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "sigs/s")
			})
		}
	}
}
