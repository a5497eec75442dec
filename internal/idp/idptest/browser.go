// Package idptest drives the identity provider's pages as a browser would, without a browser:
// cookies kept, redirects followed on the provider's host and stopped at the relying party's,
// forms filled from their hidden fields. For tests of the provider and end-to-end tests.
package idptest

import (
	"bytes"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"
)

// Browser is a cookie-keeping HTTP client on one provider.
type Browser struct {
	t    testing.TB
	c    *http.Client
	base string // the provider's origin, as the browser reaches it
}

// New makes a browser for the provider at base (scheme://host:port).
func New(t testing.TB, base string) *Browser {
	jar, _ := cookiejar.New(nil)
	b := &Browser{t: t, base: strings.TrimSuffix(base, "/")}
	b.c = &http.Client{Jar: jar, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if !strings.HasPrefix(req.URL.String(), b.base) {
			return http.ErrUseLastResponse
		}
		return nil
	}}
	return b
}

// WithTransport makes the browser reach the provider through rt (a provider behind TLS whose
// certificate a test made).
func (b *Browser) WithTransport(rt http.RoundTripper) *Browser {
	b.c.Transport = rt
	return b
}

// Response is what a request came back with.
type Response struct {
	Status int
	URL    *url.URL // where it ended: the last page, or the redirect left unfollowed
	Body   string
	Form   url.Values // the page's hidden fields (flow, csrf, ...)
	Header http.Header
}

var hidden = regexp.MustCompile(`name="(flow|csrf|enrolment|logout)" value="([^"]*)"`)

func (b *Browser) do(req *http.Request) Response {
	b.t.Helper()
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(resp.Body)
	r := Response{Status: resp.StatusCode, URL: resp.Request.URL, Body: string(body), Form: url.Values{}, Header: resp.Header}
	if l, err := resp.Location(); err == nil {
		r.URL = l
	}
	for _, m := range hidden.FindAllStringSubmatch(r.Body, -1) {
		r.Form.Set(m[1], m[2])
	}
	return r
}

// Get fetches u (absolute, or a path on the provider).
func (b *Browser) Get(u string) Response {
	if strings.HasPrefix(u, "/") {
		u = b.base + u
	}
	req, _ := http.NewRequest("GET", u, nil)
	return b.do(req)
}

// Post submits form to a path on the provider.
func (b *Browser) Post(path string, form url.Values) Response {
	req, _ := http.NewRequest("POST", b.base+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

// PostJSON posts body as JSON to a path on the provider with the headers given (a page's
// script's request).
func (b *Browser) PostJSON(path string, header map[string]string, body []byte) Response {
	req, _ := http.NewRequest("POST", b.base+path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	return b.do(req)
}

// Login goes from an authorization URL through login, the one-time code (when totpSecret is
// given) and consent, and returns the redirect to the relying party (which starts with rp).
func (b *Browser) Login(authURL, rp, identifier, password, totpSecret string) *url.URL {
	b.t.Helper()
	code := ""
	if totpSecret != "" {
		code, _ = totp.GenerateCode(totpSecret, time.Now())
	}
	return b.LoginWithCode(authURL, rp, identifier, password, code)
}

// LoginWithCode is Login with the one-time code given ("" when the login asks for none): for
// tests that must not spend a code twice.
func (b *Browser) LoginWithCode(authURL, rp, identifier, password, code string) *url.URL {
	b.t.Helper()
	r := b.Get(authURL)
	if r.Status != 200 || !strings.Contains(r.Body, `name="password"`) {
		b.t.Fatalf("login page: %d %s\n%s", r.Status, r.URL, r.Body)
	}
	r.Form.Set("identifier", identifier)
	r.Form.Set("password", password)
	r = b.Post("/login", r.Form)
	if code != "" {
		if !strings.Contains(r.Body, `autocomplete="one-time-code"`) {
			b.t.Fatalf("no one-time code page: %d %s\n%s", r.Status, r.URL, r.Body)
		}
		r.Form.Set("code", code)
		r = b.Post("/login/totp", r.Form)
	}
	if strings.Contains(r.Body, `name="decision"`) {
		r.Form.Set("decision", "allow")
		r.Form.Set("remember", "1")
		r = b.Post("/consent", r.Form)
	}
	if r.Status != http.StatusSeeOther && r.Status != http.StatusFound || !strings.HasPrefix(r.URL.String(), rp) {
		b.t.Fatalf("no redirect to the client: %d %s\n%s", r.Status, r.URL, r.Body)
	}
	return r.URL
}
