package examples_test

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"time"

	"github.com/digitorus/timestamp"

	"github.com/vula-eid/vula/hsm"
	"github.com/vula-eid/vula/hsm/software"
	"github.com/vula-eid/vula/pkg/tsclient"
)

// A timestamp authority whose key lives in Vula's key layer (the software backend here; the
// PKCS#11 backend is opened the same way with pkcs11.Open), checked with Vula's RFC 3161
// client.
func Example_timestampAuthority() {
	ctx := context.Background()
	quiet := slog.New(slog.DiscardHandler)
	dir, err := os.MkdirTemp("", "vula-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	// The key layer: a keystore sealed with a random master key kept in a 0600 file.
	keyFile := filepath.Join(dir, "master.key")
	if err := software.CreateKeyFile(keyFile); err != nil {
		log.Fatal(err)
	}
	keys, err := software.Open(ctx, software.Config{Dir: filepath.Join(dir, "keys"), KeyFile: keyFile}, quiet)
	if err != nil {
		log.Fatal(err)
	}
	defer keys.Close()
	k, err := keys.CreateKey(ctx, hsm.KeySpec{Label: "tsa-example", Algorithm: hsm.ECP256, Purpose: hsm.PurposeTSA, Owner: "example"})
	if err != nil {
		log.Fatal(err)
	}
	// A signer for the key's purpose only; the private key never leaves the layer.
	signer, err := keys.Signer(ctx, k.URI, hsm.PurposeTSA)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := keys.Signer(ctx, k.URI, hsm.PurposeCA); err != nil {
		fmt.Println("the TSA key refuses to act as a CA key")
	}

	// A self-signed timestamping certificate for the key, and a tiny RFC 3161 server.
	cert := selfSigned(signer)
	srv := httptest.NewServer(tsaHandler(cert, signer))
	defer srv.Close()

	// The client: a fresh nonce per query; the reply must be granted, over our digest and
	// nonce, signed, and chain to our roots with the timeStamping purpose.
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	c := &tsclient.Client{URL: srv.URL, Roots: roots}
	digest := sha256.Sum256([]byte("a document"))
	reply, ts, err := c.Timestamp(ctx, crypto.SHA256, digest[:])
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("timestamped, within a minute of now:", time.Since(ts.Time) < time.Minute)

	// The same reply does not vouch for another document.
	other := sha256.Sum256([]byte("another document"))
	if _, err := c.Verify(reply, crypto.SHA256, other[:], nil); err != nil {
		fmt.Println("refused for another digest")
	}
	// Output:
	// the TSA key refuses to act as a CA key
	// timestamped, within a minute of now: true
	// refused for another digest
}

func selfSigned(s crypto.Signer) *x509.Certificate {
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "Example TSA"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageTimeStamping},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, s.Public(), s)
	if err != nil {
		log.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		log.Fatal(err)
	}
	return cert
}

// tsaHandler answers RFC 3161 queries, signing with s (a real TSA also checks its clock,
// bounds the request and audits each token, as Vula's does).
func tsaHandler(cert *x509.Certificate, s crypto.Signer) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
		if err != nil {
			http.Error(w, "unreadable query", http.StatusBadRequest)
			return
		}
		q, err := timestamp.ParseRequest(body)
		if err != nil {
			http.Error(w, "not a timestamp query", http.StatusBadRequest)
			return
		}
		ts := timestamp.Timestamp{HashAlgorithm: q.HashAlgorithm, HashedMessage: q.HashedMessage, Time: time.Now(),
			Nonce: q.Nonce, Policy: []int{1, 3, 6, 1, 4, 1, 32473, 1, 2}, AddTSACertificate: true}
		reply, err := ts.CreateResponseWithOpts(cert, s, crypto.SHA256)
		if err != nil {
			http.Error(w, "could not sign", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/timestamp-reply")
		_, _ = w.Write(reply)
	})
}
