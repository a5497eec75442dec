package server

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vula-eid/vula/internal/testenv"
)

// testCA issues localhost certificates under one self-signed root.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t testing.TB) *testCA {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test root"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// write writes a localhost certificate with serial and its key to certFile and keyFile, each
// replaced by a rename, as certbot and most tools do.
func (ca *testCA) write(t testing.TB, serial int64, certFile, keyFile string) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "localhost"},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	writeAtomic(t, certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	writeAtomic(t, keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}))
}

func writeAtomic(t testing.TB, path string, b []byte) {
	tmp := path + ".new"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// fakeClock is a clock a test moves by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// serveTLS serves s's handler with TLSConfig(c) on a loopback port, as `vula serve` does.
func serveTLS(t *testing.T, s *Server, c *CertFiles) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: s.Handler(), TLSConfig: TLSConfig(c), ReadHeaderTimeout: 5 * time.Second}
	go hs.ServeTLS(ln, "", "")
	t.Cleanup(func() { hs.Close() })
	return ln.Addr().String()
}

// TestTLS: the listener speaks HTTP/2 over TLS 1.2 or later, refuses TLS 1.1, serves a pair
// replaced on disk without a restart, and keeps the old pair when the new one does not load.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	ca := newTestCA(t)
	ca.write(t, 1001, certFile, keyFile)
	clock := &fakeClock{t: time.Now()}
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	c, err := LoadCertFiles(certFile, keyFile, CertCheckInterval, clock.now, log)
	if err != nil {
		t.Fatal(err)
	}
	s := New(log, prometheus.NewRegistry(), time.Now, Options{HSTS: true})
	addr := serveTLS(t, s, c)

	// A fresh transport each time: a kept connection would show the old certificate.
	fetch := func() *http.Response {
		t.Helper()
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.pool}, ForceAttemptHTTP2: true}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr}).Get("https://" + addr + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	resp := fetch()
	if resp.ProtoMajor != 2 || resp.TLS.Version < tls.VersionTLS12 || resp.TLS.PeerCertificates[0].SerialNumber.Int64() != 1001 {
		t.Fatalf("proto %s, TLS version %x, serial %v", resp.Proto, resp.TLS.Version, resp.TLS.PeerCertificates[0].SerialNumber)
	}
	if resp.Header.Get("Strict-Transport-Security") == "" {
		t.Fatal("no HSTS over TLS")
	}

	t.Run("TLS 1.1 refused", func(t *testing.T) {
		conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: ca.pool, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11})
		if err == nil {
			conn.Close()
			t.Fatal("a TLS 1.1 handshake succeeded")
		}
	})
	t.Run("TLS 1.2 with a CBC suite refused", func(t *testing.T) {
		conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: ca.pool, MaxVersion: tls.VersionTLS12,
			CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}})
		if err == nil {
			conn.Close()
			t.Fatal("a CBC suite was accepted")
		}
	})

	t.Run("replaced on disk", func(t *testing.T) {
		ca.write(t, 1002, certFile, keyFile)
		if got := fetch().TLS.PeerCertificates[0].SerialNumber.Int64(); got != 1001 {
			t.Fatalf("files looked at before the interval: serial %d", got)
		}
		clock.add(CertCheckInterval)
		if got := fetch().TLS.PeerCertificates[0].SerialNumber.Int64(); got != 1002 {
			t.Fatalf("after the interval: serial %d, want the new 1002", got)
		}
	})

	t.Run("a bad new pair keeps the old", func(t *testing.T) {
		other := filepath.Join(dir, "other.key")
		ca.write(t, 1003, certFile, other) // the certificate of a key that is not in keyFile
		clock.add(CertCheckInterval)
		if got := fetch().TLS.PeerCertificates[0].SerialNumber.Int64(); got != 1002 {
			t.Fatalf("serial %d, want the old 1002", got)
		}
		if !strings.Contains(logs.String(), "does not load") {
			t.Fatalf("not logged:\n%s", logs.String())
		}
		writeAtomic(t, keyFile, mustRead(t, other)) // the pair is whole again
		clock.add(CertCheckInterval)
		if got := fetch().TLS.PeerCertificates[0].SerialNumber.Int64(); got != 1003 {
			t.Fatalf("serial %d, want 1003 once the key came", got)
		}
	})

	t.Run("curl", func(t *testing.T) {
		testenv.Need(t, "curl")
		caFile := filepath.Join(dir, "ca.pem")
		os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw}), 0o600)
		out, err := exec.Command("curl", "-sS", "--http2", "--cacert", caFile, "-o", "/dev/null",
			"-w", "%{http_version} %{ssl_verify_result}", "https://"+addr+"/healthz").CombinedOutput()
		if err != nil || string(out) != "2 0" {
			t.Fatalf("curl --http2: %v %q", err, out)
		}
		out, err = exec.Command("curl", "-sS", "--cacert", caFile, "--tlsv1.1", "--tls-max", "1.1",
			"https://"+addr+"/healthz").CombinedOutput()
		if err == nil {
			t.Fatalf("curl with TLS 1.1 succeeded: %q", out)
		}
	})
}

func mustRead(t *testing.T, path string) []byte {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestLoadCertFilesRefuses: a start with a missing file or a key that does not match stops.
func TestLoadCertFilesRefuses(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t)
	ca.write(t, 1, filepath.Join(dir, "a.crt"), filepath.Join(dir, "a.key"))
	ca.write(t, 2, filepath.Join(dir, "b.crt"), filepath.Join(dir, "b.key"))
	log := slog.New(slog.DiscardHandler)
	for name, files := range map[string][2]string{"missing": {"nope.crt", "a.key"}, "mismatch": {"a.crt", "b.key"}} {
		if _, err := LoadCertFiles(filepath.Join(dir, files[0]), filepath.Join(dir, files[1]), time.Second, time.Now, log); err == nil {
			t.Errorf("%s: loaded", name)
		}
	}
}

// TestForwardedProto: HSTS is withheld only when a trusted proxy says the client used plain
// http; an untrusted peer's X-Forwarded-Proto changes nothing.
func TestForwardedProto(t *testing.T) {
	_, logs, ts := newTestWith(t, Options{HSTS: true, TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})
	for proto, want := range map[string]bool{"https": true, "http": false, "": true, "gopher": true, "https, http": false} {
		h := map[string]string{}
		if proto != "" {
			h["X-Forwarded-Proto"] = proto
		}
		resp, _ := getWith(t, ts.URL+"/healthz", h)
		if got := resp.Header.Get("Strict-Transport-Security") != ""; got != want {
			t.Errorf("X-Forwarded-Proto %q: HSTS %v, want %v", proto, got, want)
		}
	}
	if !strings.Contains(logs.String(), `"scheme":"https"`) {
		t.Errorf("the forwarded scheme is not in the log line:\n%s", logs.String())
	}
	_, _, ts = newTestWith(t, Options{HSTS: true, TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.1/32")}})
	if resp, _ := getWith(t, ts.URL+"/healthz", map[string]string{"X-Forwarded-Proto": "http"}); resp.Header.Get("Strict-Transport-Security") == "" {
		t.Error("an untrusted peer's X-Forwarded-Proto withheld HSTS")
	}
}

// BenchmarkGetCertificate is what a handshake pays for the reload check: mostly nothing, and a
// stat of both files once per CertCheckInterval.
func BenchmarkGetCertificate(b *testing.B) {
	dir := b.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	newTestCA(b).write(b, 1, certFile, keyFile)
	for _, interval := range []time.Duration{CertCheckInterval, 0} {
		c, err := LoadCertFiles(certFile, keyFile, interval, time.Now, slog.New(slog.DiscardHandler))
		if err != nil {
			b.Fatal(err)
		}
		name := "checked every 2s"
		if interval == 0 {
			name = "stat every handshake"
		}
		b.Run(name, func(b *testing.B) {
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					c.GetCertificate(nil)
				}
			})
		})
	}
}
