package tsa_test

import (
	"bufio"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/digitorus/timestamp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/vula-eid/vula/hsm"
	"github.com/vula-eid/vula/hsm/pkcs11"
	"github.com/vula-eid/vula/hsm/software"
	"github.com/vula-eid/vula/internal/audit"
	"github.com/vula-eid/vula/internal/certs"
	"github.com/vula-eid/vula/internal/store/sqlstore"
	"github.com/vula-eid/vula/internal/testenv"
	"github.com/vula-eid/vula/internal/tsa"
)

type syncedClock struct{}

func (syncedClock) Now() time.Time               { return time.Now() }
func (syncedClock) Synced(context.Context) error { return nil }

// BenchmarkTSA measures, for the software backend and SoftHSM2, each with a P-256 and an
// RSA-3072 TSA key, in one run:
//
//   - raw: signatures per second on the TSA's key from the backend (no audit record);
//   - layer: the same through the key layer as the TSA uses it (hsm.Instrument), each signature
//     with its durable audit record in SQLite;
//   - respond: tokens per second from Responder.Respond in process, on the production path
//     (the instrumented key layer writing the token's audit record, durable in SQLite, before
//     the token is returned);
//   - http: the same over HTTP on loopback, with p50/p99 latency;
//   - http-floor: the same HTTP client against a handler that returns a fixed reply of a
//     token's size: what the HTTP exchange alone costs on this machine, the ceiling for http.
//
// Each row also gives the CPU time of the process per operation (cpu-µs/op) and, where tokens
// are audited, the mean records per group commit and the time a commit took. The load
// generator runs on the same cores as the server, so http and http-floor include its work.
func BenchmarkTSA(b *testing.B) {
	for _, backend := range []string{"software", "softhsm"} {
		for _, alg := range []hsm.Algorithm{hsm.ECP256, hsm.RSA3072} {
			benchTSA(b, backend, alg)
		}
	}
}

func benchTSA(b *testing.B, backend string, alg hsm.Algorithm) {
	ctx := context.Background()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
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
	defer raw.Close()
	db, err := sqlstore.Open(ctx, "sqlite:"+filepath.Join(dir, "db"), quiet)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	ak, err := raw.CreateKey(ctx, hsm.KeySpec{Label: "audit-" + backend, Algorithm: hsm.ECP256, Purpose: hsm.PurposeAudit})
	if err != nil {
		b.Fatal(err)
	}
	log, err := audit.New(ctx, db, raw, ak.URI, audit.Options{}, time.Now, quiet)
	if err != nil {
		b.Fatal(err)
	}
	keys := hsm.Instrument(raw, hsm.NewMetrics(prometheus.NewRegistry()), log, time.Now)
	pki := certs.DefaultConfig()
	pki.ServiceAlgorithm = alg // the TSA's key (and the OCSP responders', unused here)
	a, err := certs.Open(ctx, keys, db, pki, time.Now)
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
	if _, err := timestamp.ParseResponse(sample); err != nil {
		b.Fatalf("the sample token does not parse: %v", err)
	}
	srv := httptest.NewServer(r)
	defer srv.Close()
	floor := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		io.Copy(io.Discard, req.Body)
		w.Header().Set("Content-Type", "application/timestamp-reply")
		w.Write(sample)
	}))
	defer floor.Close()
	for _, c := range []int{8, 32} {
		name := func(row string) string { return fmt.Sprintf("%s/%s/%s/c%d", backend, alg, row, c) }
		b.Run(name("raw"), func(b *testing.B) {
			defer cpu(b)()
			testenv.Parallel(b, c, "sig/s", func(int) error {
				_, err := rawSigner.Sign(rand.Reader, d[:], crypto.SHA256)
				return err
			})
		})
		b.Run(name("layer"), func(b *testing.B) {
			defer batches(b, log)()
			defer cpu(b)()
			testenv.Parallel(b, c, "sig/s", func(int) error {
				_, err := tsu.Signer.Sign(rand.Reader, d[:], crypto.SHA256)
				return err
			})
		})
		b.Run(name("respond"), func(b *testing.B) {
			defer batches(b, log)()
			defer cpu(b)()
			testenv.Parallel(b, c, "tokens/s", func(int) error {
				_, err := r.Respond(ctx, q, "bench")
				return err
			})
		})
		for _, target := range []struct{ name, addr string }{{"http", srv.Listener.Addr().String()}, {"http-floor", floor.Listener.Addr().String()}} {
			b.Run(name(target.name), func(b *testing.B) {
				defer batches(b, log)()
				defer cpu(b)()
				post(b, target.addr, q, c)
			})
		}
	}
}

// post sends q to the server at addr from c clients, each on its own keep-alive connection,
// and reports tokens/s and p50/p99 latency.
//
// Why not http.Client: on two cores shared with the server, its Transport (a read and a write
// goroutine per connection, channels between them and the caller) cost more CPU a request than
// the server's whole HTTP side, so it measured mostly itself. Here each client writes the
// request bytes and reads the reply with net/http's own parser (http.ReadResponse): the server
// side is the real net/http server, and the client does only what any client must.
func post(b *testing.B, addr string, q []byte, c int) {
	req := fmt.Appendf(nil, "POST /tsa HTTP/1.1\r\nHost: %s\r\nContent-Type: application/timestamp-query\r\nContent-Length: %d\r\n\r\n", addr, len(q))
	req = append(req, q...)
	type client struct {
		conn net.Conn
		r    *bufio.Reader
	}
	clients := make([]client, c)
	for i := range clients {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		defer conn.Close()
		clients[i] = client{conn, bufio.NewReader(conn)}
	}
	lat := make([][]time.Duration, c) // per client: no lock on the hot path
	testenv.Parallel(b, c, "tokens/s", func(w int) error {
		cl := clients[w]
		start := time.Now()
		if _, err := cl.conn.Write(req); err != nil {
			return err
		}
		resp, err := http.ReadResponse(cl.r, nil)
		if err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/timestamp-reply" {
			return fmt.Errorf("status %d, %s", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		lat[w] = append(lat[w], time.Since(start))
		return nil
	})
	all := slices.Concat(lat...)
	slices.Sort(all)
	if len(all) > 0 {
		b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
	}
}

// cpu reports, when the returned function is called, the CPU time (user and system) this
// process spent per operation since cpu was called: the server's and the load generator's work
// together. Unlike the rate, it hardly moves when other programs share the cores, and the rate
// can never exceed the number of cores divided by it.
func cpu(b *testing.B) func() {
	before := cpuTime(b)
	return func() {
		b.ReportMetric(float64((cpuTime(b)-before).Microseconds())/float64(b.N), "cpu-µs/op")
	}
}

func cpuTime(b *testing.B) time.Duration {
	var u syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &u); err != nil {
		b.Fatal(err)
	}
	return time.Duration(u.Utime.Nano() + u.Stime.Nano())
}

// batches reports, when the returned function is called, the mean number of audit records a
// group commit carried since batches was called, and how long a commit took (nothing when
// nothing was audited).
func batches(b *testing.B, log *audit.Log) func() {
	before := log.Stats()
	return func() {
		after := log.Stats()
		if n := after.Commits - before.Commits; n > 0 {
			b.ReportMetric(float64(after.Records-before.Records)/float64(n), "recs/commit")
			b.ReportMetric(float64((after.Time-before.Time).Microseconds())/float64(n), "µs/commit")
		}
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
