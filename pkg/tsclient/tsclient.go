// Package tsclient is a Go client for RFC 3161 timestamp authorities, Vula's or anyone's: it
// makes a query for a digest with a fresh nonce, sends it over HTTP, and accepts the reply only
// if it is granted, signed (the CMS signature checks), over the same digest and nonce, and issued
// by a certificate that chains to the caller's trust anchors with the timeStamping purpose.
package tsclient

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"

	"github.com/digitorus/timestamp"
)

// Client talks to one TSA.
type Client struct {
	URL   string
	HTTP  *http.Client        // nil means http.DefaultClient
	Roots *x509.CertPool      // trust anchors for the TSA certificate
	Extra []*x509.Certificate // intermediates, if the TSA does not send them
}

// Timestamp asks for a token over digest (made with h) and returns the verified reply (DER) and
// what it says.
func (c *Client) Timestamp(ctx context.Context, h crypto.Hash, digest []byte) ([]byte, *timestamp.Timestamp, error) {
	nonce, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		return nil, nil, err
	}
	q, err := (&timestamp.Request{HashAlgorithm: h, HashedMessage: digest, Certificates: true, Nonce: nonce}).Marshal()
	if err != nil {
		return nil, nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.URL, bytes.NewReader(q))
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Content-Type", "application/timestamp-query")
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer func() { _ = resp.Body.Close() }() // read only
	reply, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("tsclient: %s answered %s", c.URL, resp.Status)
	}
	ts, err := c.Verify(reply, h, digest, nonce)
	return reply, ts, err
}

// Verify checks a reply against the digest and nonce that were asked for (nonce nil: not
// checked) and the trust anchors.
func (c *Client) Verify(reply []byte, h crypto.Hash, digest []byte, nonce *big.Int) (*timestamp.Timestamp, error) {
	ts, err := timestamp.ParseResponse(reply) // checks the CMS signature
	if err != nil {
		return nil, fmt.Errorf("tsclient: %w", err)
	}
	if ts.HashAlgorithm != h || !bytes.Equal(ts.HashedMessage, digest) {
		return nil, errors.New("tsclient: the token is over another digest")
	}
	if nonce != nil && (ts.Nonce == nil || ts.Nonce.Cmp(nonce) != 0) {
		return nil, errors.New("tsclient: the token's nonce is not ours")
	}
	if len(ts.Certificates) == 0 {
		return nil, errors.New("tsclient: the reply carries no TSA certificate")
	}
	var tsu *x509.Certificate
	inter := x509.NewCertPool()
	for _, x := range append(ts.Certificates, c.Extra...) {
		inter.AddCert(x)
		for _, u := range x.ExtKeyUsage {
			if u == x509.ExtKeyUsageTimeStamping {
				tsu = x
			}
		}
	}
	if tsu == nil {
		return nil, errors.New("tsclient: no timestamping certificate in the reply")
	}
	if _, err := tsu.Verify(x509.VerifyOptions{Roots: c.Roots, Intermediates: inter, CurrentTime: ts.Time,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageTimeStamping}}); err != nil {
		return nil, fmt.Errorf("tsclient: TSA certificate: %w", err)
	}
	return ts, nil
}
