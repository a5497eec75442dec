package tsa_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/digitorus/timestamp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/vula-eid/vula/certs"
	"github.com/vula-eid/vula/hsm"
	"github.com/vula-eid/vula/hsm/pkcs11"
	"github.com/vula-eid/vula/hsm/software"
	"github.com/vula-eid/vula/internal/audit"
	"github.com/vula-eid/vula/internal/store/sqlstore"
	"github.com/vula-eid/vula/internal/testenv"
	"github.com/vula-eid/vula/internal/tsa"
)

type syncedClock struct{}

func (syncedClock) Now() time.Time               { return time.Now() }
func (syncedClock) Synced(context.Context) error { return nil }

// BenchmarkTSA measures, for the software backend and SoftHSM2, in one run:
//
//   - raw: signatures per second on the TSA's key from the backend (no audit record);
//   - layer: the same through the key layer as the TSA uses it (hsm.Instrument), each signature
//     with its durable audit record in SQLite;
//   - respond: tokens per second from Responder.Respond in process, on the production path
//     (the instrumented key layer writing its audit record, the token's own audit record, both
//     durable in SQLite before the token is returned);
//   - http: the same over HTTP on loopback, with p50/p99 latency;
//   - http-floor: the same HTTP client against a handler that returns a fixed reply of a
//     token's size: what the HTTP exchange alone costs on this machine, the ceiling for http.
//
// The load generator runs on the same two cores as the server, so http and http-floor include
// the client's work.
func BenchmarkTSA(b *testing.B) {
	ctx := context.Background()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, backend := range []string{"software", "softhsm"} {
		dir := b.TempDir()
		var raw hsm.Manager
		var err error
		if backend == "software" {
			kf := filepath.Join(dir, "k")
			software.CreateKeyFile(kf)
			raw, err = software.Open(ctx, software.Config{Dir: filepath.Join(dir, "keys"), KeyFile: kf}, quiet)
		} else {
			tok := testenv.SoftHSM(b)
			raw, err = pkcs11.Open(ctx, pkcs11.Config{Module: tok.Module, TokenLabel: tok.Label, PIN: tok.PIN, PoolSize: 32}, quiet)
		}
		if err != nil {
			b.Fatal(err)
		}
		db, err := sqlstore.Open(ctx, "sqlite:"+filepath.Join(dir, "db"), quiet)
		if err != nil {
			b.Fatal(err)
		}
		ak, err := raw.CreateKey(ctx, hsm.KeySpec{Label: "audit-" + backend, Algorithm: hsm.ECP256, Purpose: hsm.PurposeAudit})
		if err != nil {
			b.Fatal(err)
		}
		log, err := audit.New(ctx, db, raw, ak.URI, audit.Options{}, time.Now, quiet)
		if err != nil {
			b.Fatal(err)
		}
		keys := hsm.Instrument(raw, hsm.NewMetrics(prometheus.NewRegistry()), log, time.Now)
		a, err := certs.Open(ctx, keys, db, certs.DefaultConfig(), time.Now)
		if err != nil {
			b.Fatal(err)
		}
		tsu := a.TSA()
		seal, _ := a.Certificate(certs.NameSealCA)
		r, err := tsa.New(tsa.Config{Policy: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 32473, 1, 2}, Chain: []*x509.Certificate{seal}},
			tsu.Cert, tsu.Signer, syncedClock{}, quiet)
		if err != nil {
			b.Fatal(err)
		}
		rawSigner := rawSignerOf(b, raw, tsu.Cert)
		d := sha256.Sum256([]byte("bench"))
		q, _ := (&timestamp.Request{HashAlgorithm: crypto.SHA256, HashedMessage: d[:], Certificates: true}).Marshal()
		sample, err := r.Respond(ctx, q, "bench")
		if err != nil {
			b.Fatal(err)
		}
		srv := httptest.NewServer(r)
		floor := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			io.Copy(io.Discard, req.Body)
			w.Header().Set("Content-Type", "application/timestamp-reply")
			w.Write(sample)
		}))
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
		for _, c := range []int{8, 32} {
			b.Run(fmt.Sprintf("%s/raw/c%d", backend, c), func(b *testing.B) {
				testenv.Parallel(b, c, "sig/s", func(int) error {
					_, err := rawSigner.Sign(rand.Reader, d[:], crypto.SHA256)
					return err
				})
			})
			b.Run(fmt.Sprintf("%s/layer/c%d", backend, c), func(b *testing.B) {
				testenv.Parallel(b, c, "sig/s", func(int) error {
					_, err := tsu.Signer.Sign(rand.Reader, d[:], crypto.SHA256)
					return err
				})
			})
			b.Run(fmt.Sprintf("%s/respond/c%d", backend, c), func(b *testing.B) {
				testenv.Parallel(b, c, "tokens/s", func(int) error {
					_, err := r.Respond(ctx, q, "bench")
					return err
				})
			})
			for _, target := range []struct{ name, url string }{{"http", srv.URL}, {"http-floor", floor.URL}} {
				b.Run(fmt.Sprintf("%s/%s/c%d", backend, target.name, c), func(b *testing.B) {
					post(b, client, target.url, q, c)
				})
			}
		}
		srv.Close()
		floor.Close()
		db.Close()
		raw.Close()
	}
}

// post sends q to url from c clients and reports tokens/s and p50/p99 latency.
func post(b *testing.B, client *http.Client, url string, q []byte, c int) {
	var mu sync.Mutex
	lat := make([]time.Duration, 0, b.N)
	testenv.Parallel(b, c, "tokens/s", func(int) error {
		start := time.Now()
		resp, err := client.Post(url, "application/timestamp-query", bytes.NewReader(q))
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
}

// rawSignerOf finds the un-instrumented signer of cert's key.
func rawSignerOf(b *testing.B, m hsm.Manager, cert *x509.Certificate) crypto.Signer {
	ctx := context.Background()
	keys, err := m.Keys(ctx)
	if err != nil {
		b.Fatal(err)
	}
	for _, k := range keys {
		if pub, err := m.PublicKey(ctx, k.URI); err == nil && pub.(interface{ Equal(crypto.PublicKey) bool }).Equal(cert.PublicKey) {
			s, err := m.Signer(ctx, k.URI, k.Purpose)
			if err != nil {
				b.Fatal(err)
			}
			return s
		}
	}
	b.Fatal("no key for the TSA certificate")
	return nil
}
