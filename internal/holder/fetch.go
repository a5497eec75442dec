package holder

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Bounds on what the network may hand the wallet.
const (
	maxJSON       = 256 << 10 // metadata, offers, token and nonce answers
	maxCredential = 1 << 20   // a credential response: a batch of credentials
	maxStatusList = 1 << 20   // a status list token
	maxRequest    = 256 << 10 // an OpenID4VP request object
	maxListBits   = 1 << 26   // a status list, decompressed (bytes)
	httpTimeout   = 30 * time.Second
)

// ErrInsecureURL is an http URL off the loopback: the protocols want TLS (HAIP).
var ErrInsecureURL = errors.New("the URL is not https (plain http is allowed on loopback only)")

// Client is how the wallet reaches issuers and verifiers.
type Client struct {
	HTTP *http.Client
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

func (c Client) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func (c Client) http() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return &http.Client{Timeout: httpTimeout, CheckRedirect: checkRedirect}
}

// checkRedirect follows at most five redirects, and none off https (or the loopback).
func checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 5 {
		return errors.New("more than 5 redirects")
	}
	_, err := checkURL(req.URL.String())
	return err
}

// checkURL accepts https URLs, and http ones on the loopback (tests and demos on one machine).
func checkURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("%q is not an absolute URL", raw)
	}
	switch u.Scheme {
	case "https":
		return u, nil
	case "http":
		host := u.Hostname()
		if host == "localhost" {
			return u, nil
		}
		if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
			return u, nil
		}
	}
	return nil, fmt.Errorf("%w: %s", ErrInsecureURL, raw)
}

// httpError is a refusal from the other side, with its OAuth error when it gave one.
type httpError struct {
	URL    string
	Status int
	Code   string // RFC 6749 error
	Desc   string // error_description
}

func (e *httpError) Error() string {
	if e.Code != "" {
		if e.Desc != "" {
			return fmt.Sprintf("%s answered %d %s: %s", e.URL, e.Status, e.Code, e.Desc)
		}
		return fmt.Sprintf("%s answered %d %s", e.URL, e.Status, e.Code)
	}
	return fmt.Sprintf("%s answered %d", e.URL, e.Status)
}

// do sends req and reads at most limit bytes of a 2xx answer; any other status becomes an
// *httpError carrying the OAuth error of a JSON body.
func (c Client) do(req *http.Request, limit int64) (*http.Response, []byte, error) {
	if _, err := checkURL(req.URL.String()); err != nil {
		return nil, nil, err
	}
	resp, err := c.http().Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer func() { _ = resp.Body.Close() }() // read whole or given up on
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", req.URL.Redacted(), err)
	}
	if int64(len(b)) > limit {
		return nil, nil, fmt.Errorf("%s: the answer is larger than %d bytes", req.URL.Redacted(), limit)
	}
	if resp.StatusCode/100 != 2 {
		e := &httpError{URL: req.URL.Redacted(), Status: resp.StatusCode}
		var oe struct {
			Error string `json:"error"`
			Desc  string `json:"error_description"`
			Title string `json:"title"`
			Det   string `json:"detail"`
		}
		if json.Unmarshal(b, &oe) == nil {
			e.Code, e.Desc = oe.Error, oe.Desc
			if e.Code == "" && oe.Title != "" { // an RFC 9457 problem
				e.Code, e.Desc = oe.Title, oe.Det
			}
		}
		return resp, b, e
	}
	return resp, b, nil
}

// getJSON fetches a JSON document into v.
func (c Client) getJSON(ctx context.Context, u string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	_, b, err := c.do(req, maxJSON)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: not the JSON expected: %w", u, err)
	}
	return nil
}

// postForm posts a form; header adds request headers.
func (c Client) postForm(ctx context.Context, u string, form url.Values, header http.Header, limit int64) (*http.Response, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return c.do(req, limit)
}

// wellKnown is the metadata URL of an identifier with a path, as RFC 8414 §3.1 and OpenID4VCI
// §12.2.2 place it: the well-known segment between the host and the path.
func wellKnown(id, name string) (string, error) {
	u, err := checkURL(id)
	if err != nil {
		return "", err
	}
	path := strings.TrimSuffix(u.EscapedPath(), "/")
	return u.Scheme + "://" + u.Host + "/.well-known/" + name + path, nil
}
