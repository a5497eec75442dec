package core

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"golang.org/x/crypto/ocsp"
)

// HTTPFetcher gets revocation data from the URLs a certificate names: OCSP at its AIA
// responder, CRLs at its distribution points (http only, answers bounded in size). It is for
// the command line: a server must not fetch URLs that a submitted document chooses.
type HTTPFetcher struct {
	Client *http.Client // http.DefaultClient when nil
}

var _ Fetcher = HTTPFetcher{}

const maxFetched = 16 << 20

func (f HTTPFetcher) client() *http.Client {
	if f.Client != nil {
		return f.Client
	}
	return http.DefaultClient
}

func (f HTTPFetcher) OCSP(ctx context.Context, cert, issuer *x509.Certificate) ([]byte, error) {
	req, err := ocsp.CreateRequest(cert, issuer, nil)
	if err != nil {
		return nil, err
	}
	for _, u := range cert.OCSPServer {
		if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
			continue
		}
		r, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(req))
		if err != nil {
			continue
		}
		r.Header.Set("Content-Type", "application/ocsp-request")
		if b, err := f.do(r); err == nil {
			return b, nil
		}
	}
	return nil, errors.New("no OCSP responder answered")
}

func (f HTTPFetcher) CRL(ctx context.Context, cert *x509.Certificate) ([]byte, error) {
	for _, u := range cert.CRLDistributionPoints {
		if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
			continue
		}
		r, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			continue
		}
		if b, err := f.do(r); err == nil {
			return b, nil
		}
	}
	return nil, errors.New("no CRL distribution point answered")
}

func (f HTTPFetcher) do(r *http.Request) ([]byte, error) {
	resp, err := f.client().Do(r)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }() // read only
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", r.URL, resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxFetched+1))
	if err != nil || len(b) > maxFetched {
		return nil, fmt.Errorf("%s: unreadable or too large", r.URL)
	}
	return b, nil
}
