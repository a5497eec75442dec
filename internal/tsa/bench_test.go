package tsa

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/digitorus/timestamp"

	"github.com/vula-eid/vula/certs"
	"github.com/vula-eid/vula/hsm"
	"github.com/vula-eid/vula/hsm/pkcs11"
	"github.com/vula-eid/vula/hsm/software"
	"github.com/vula-eid/vula/internal/store/sqlstore"
	"github.com/vula-eid/vula/internal/testenv"
)

// BenchmarkTSA compares tokens per second over HTTP on loopback (8 and 32 concurrent clients,
// with p50 and p99 latency) against raw signatures per second on the same key through the key
// layer, in the same run, for the software backend and SoftHSM2.
func BenchmarkTSA(b *testing.B) {
	ctx := context.Background()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, backend := range []string{"software", "softhsm"} {
		dir := b.TempDir()
		var m hsm.Manager
		var err error
		if backend == "software" {
			kf := filepath.Join(dir, "k")
			software.CreateKeyFile(kf)
			m, err = software.Open(ctx, software.Config{Dir: filepath.Join(dir, "keys"), KeyFile: kf}, quiet)
		} else {
			tok := testenv.SoftHSM(b)
			m, err = pkcs11.Open(ctx, pkcs11.Config{Module: tok.Module, TokenLabel: tok.Label, PIN: tok.PIN, PoolSize: 32}, quiet)
		}
		if err != nil {
			b.Fatal(err)
		}
		db, err := sqlstore.Open(ctx, "sqlite:"+filepath.Join(dir, "db"), quiet)
		if err != nil {
			b.Fatal(err)
		}
		a, err := certs.Open(ctx, m, db, certs.DefaultConfig(), time.Now)
		if err != nil {
			b.Fatal(err)
		}
		tsu := a.TSA()
		r := New(Config{Policy: policy, Chain: []*x509.Certificate{}}, tsu.Cert, tsu.Signer, &fakeClock{t: time.Now(), synced: true}, &countRecorder{}, quiet)
		srv := httptest.NewServer(r)
		d := sha256.Sum256([]byte("bench"))
		b.Run(backend+"/raw-sign/c8", func(b *testing.B) {
			testenv.Parallel(b, 8, "sig/s", func(int) error {
				_, err := tsu.Signer.Sign(rand.Reader, d[:], crypto.SHA256)
				return err
			})
		})
		q, _ := (&timestamp.Request{HashAlgorithm: crypto.SHA256, HashedMessage: d[:], Certificates: true}).Marshal()
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
		for _, c := range []int{8, 32} {
			b.Run(fmt.Sprintf("%s/http/c%d", backend, c), func(b *testing.B) {
				var mu sync.Mutex
				lat := make([]time.Duration, 0, b.N)
				testenv.Parallel(b, c, "tokens/s", func(int) error {
					start := time.Now()
					resp, err := client.Post(srv.URL, "application/timestamp-query", bytes.NewReader(q))
					if err != nil {
						return err
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						return fmt.Errorf("status %d", resp.StatusCode)
					}
					mu.Lock()
					lat = append(lat, time.Since(start))
					mu.Unlock()
					return nil
				})
				sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
				if len(lat) > 0 {
					b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
					b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
				}
			})
		}
		srv.Close()
		db.Close()
		m.Close()
	}
}

type countRecorder struct{}

func (*countRecorder) RecordToken(context.Context, Token) error { return nil }

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.Cleanup()
	os.Exit(code)
}
