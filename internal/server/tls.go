package server

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"syscall"
	"time"
)

// CertFiles serves the certificate and key of two PEM files and picks up a new pair written over
// them without a restart: at a handshake, at most once per interval, it compares the files' size,
// modification time and inode with those it loaded, and loads them again when they differ. A new
// pair that does not load (half written, a key that does not match) is logged and the old pair
// kept; it is tried again when the files change next.
type CertFiles struct {
	certFile, keyFile string
	interval          time.Duration
	now               func() time.Time
	log               *slog.Logger

	mu      sync.Mutex
	cert    *tls.Certificate
	stamp   [2]fileStamp
	checked time.Time
}

// fileStamp is what tells that a file was replaced or rewritten.
type fileStamp struct {
	size  int64
	mtime time.Time
	inode uint64
}

func stampOf(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	s := fileStamp{size: fi.Size(), mtime: fi.ModTime()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		s.inode = st.Ino
	}
	return s, nil
}

// CertCheckInterval is how often, at most, CertFiles looks at the files.
const CertCheckInterval = 2 * time.Second

// LoadCertFiles loads the pair once; an error here (a missing file, a key that does not match
// the certificate) stops the start.
func LoadCertFiles(certFile, keyFile string, interval time.Duration, now func() time.Time, log *slog.Logger) (*CertFiles, error) {
	c := &CertFiles{certFile: certFile, keyFile: keyFile, interval: interval, now: now, log: log}
	if err := c.load(); err != nil {
		return nil, err
	}
	c.checked = now()
	return c, nil
}

// load reads the pair; the stamps are taken first, so that a write racing with the read is seen
// as a change at the next check.
func (c *CertFiles) load() error {
	cs, err := stampOf(c.certFile)
	if err != nil {
		return err
	}
	ks, err := stampOf(c.keyFile)
	if err != nil {
		return err
	}
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("tls: %s and %s: %w", c.certFile, c.keyFile, err)
	}
	c.cert, c.stamp = &cert, [2]fileStamp{cs, ks}
	return nil
}

// GetCertificate is tls.Config.GetCertificate: the current pair, reloaded if the files changed.
func (c *CertFiles) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now := c.now(); now.Sub(c.checked) >= c.interval {
		c.checked = now
		c.reloadIfChanged()
	}
	return c.cert, nil
}

func (c *CertFiles) reloadIfChanged() {
	cs, err1 := stampOf(c.certFile)
	ks, err2 := stampOf(c.keyFile)
	if err := errors.Join(err1, err2); err != nil {
		c.log.Warn("tls: cannot read the certificate files; serving the pair loaded before", "err", err)
		return
	}
	if [2]fileStamp{cs, ks} == c.stamp {
		return
	}
	if err := c.load(); err != nil {
		// Not again at every handshake until the files change once more.
		c.stamp = [2]fileStamp{cs, ks}
		c.log.Error("tls: the new certificate pair does not load; serving the pair loaded before", "err", err)
		return
	}
	c.log.Info("tls: certificate reloaded", "cert_file", c.certFile, "serial", c.cert.Leaf.SerialNumber.String(),
		"not_after", c.cert.Leaf.NotAfter)
}

// TLSConfig is the listener's TLS: TLS 1.2 at least; for TLS 1.2 only the ECDHE suites with
// AEAD ciphers (forward secrecy, no CBC: Go's defaults still offer ECDHE with AES-CBC), TLS 1.3
// with Go's suites; HTTP/2 and HTTP/1.1 by ALPN; the certificate from c.
func TLSConfig(c *CertFiles) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		CipherSuites: []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		},
		GetCertificate: c.GetCertificate,
		NextProtos:     []string{"h2", "http/1.1"},
	}
}
