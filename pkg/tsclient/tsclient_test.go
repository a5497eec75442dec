package tsclient

import (
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"io"
	"log/slog"
	"math/big"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vula-eid/vula/hsm"
	"github.com/vula-eid/vula/hsm/software"
	"github.com/vula-eid/vula/internal/certs"
	"github.com/vula-eid/vula/internal/store/sqlstore"
	"github.com/vula-eid/vula/internal/tsa"
)

type syncedClock struct{}

func (syncedClock) Now() time.Time                   { return time.Now() }
func (syncedClock) Synced(ctx context.Context) error { return nil }

// tsaServer runs Vula's TSA over HTTP on a fresh PKI and returns its URL and root.
func tsaServer(t *testing.T) (string, *x509.Certificate) {
	ctx := context.Background()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	dir := t.TempDir()
	kf := filepath.Join(dir, "k")
	software.CreateKeyFile(kf)
	m, err := software.Open(ctx, software.Config{Dir: filepath.Join(dir, "keys"), KeyFile: kf}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	db, err := sqlstore.Open(ctx, "sqlite:"+filepath.Join(dir, "db"), quiet)
	if err != nil {
		t.Fatal(err)
	}
	// The TSA signs only through the audited key layer; the audit log itself is not under test.
	keys := hsm.Instrument(m, hsm.NewMetrics(prometheus.NewRegistry()), hsm.LogHook{Log: quiet}, time.Now)
	a, err := certs.Open(ctx, keys, db, certs.DefaultConfig(), time.Now)
	if err != nil {
		t.Fatal(err)
	}
	seal, _ := a.Certificate(certs.NameSealCA)
	root, _ := a.Certificate(certs.NameRoot)
	r, err := tsa.New(tsa.Config{Policy: []int{1, 3, 6, 1, 4, 1, 32473, 1, 2}, Chain: []*x509.Certificate{seal}}, a.TSA().Cert, a.TSA().Signer, syncedClock{}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(r)
	t.Cleanup(func() { srv.Close(); db.Close(); m.Close() })
	return srv.URL, root
}

func TestClient(t *testing.T) {
	url, root := tsaServer(t)
	roots := x509.NewCertPool()
	roots.AddCert(root)
	c := &Client{URL: url, Roots: roots}
	d := sha256.Sum256([]byte("document"))
	reply, ts, err := c.Timestamp(context.Background(), crypto.SHA256, d[:])
	if err != nil {
		t.Fatal(err)
	}
	if time.Since(ts.Time) > time.Minute {
		t.Fatalf("token time %v", ts.Time)
	}
	other := sha256.Sum256([]byte("another document"))
	if _, err := c.Verify(reply, crypto.SHA256, other[:], nil); err == nil {
		t.Error("a token over another digest was accepted")
	}
	if _, err := c.Verify(reply, crypto.SHA256, d[:], big.NewInt(42)); err == nil {
		t.Error("a token with another nonce was accepted")
	}
	_, foreignRoot := tsaServer(t)
	foreign := x509.NewCertPool()
	foreign.AddCert(foreignRoot)
	if _, err := (&Client{Roots: foreign}).Verify(reply, crypto.SHA256, d[:], nil); err == nil {
		t.Error("a token from a TSA outside the trust anchors was accepted")
	}
	tampered := append([]byte{}, reply...)
	tampered[len(tampered)-10] ^= 0xff
	if _, err := c.Verify(tampered, crypto.SHA256, d[:], nil); err == nil {
		t.Error("a tampered token was accepted")
	}
}
