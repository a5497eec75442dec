package pid

import (
	"bytes"
	"compress/zlib"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v3"

	"github.com/vula-eid/vula/internal/auth"
	"github.com/vula-eid/vula/internal/store"
	"github.com/vula-eid/vula/internal/web"
)

// headerSessions stands in for the provider's single sign-on: the test names the person (and
// the login's level) in a header. The real one is driven in test/wallet_browser_test.go.
type headerSessions struct{}

var _ auth.Sessions = headerSessions{}

func (headerSessions) Session(r *http.Request) (auth.Session, bool) {
	sub := r.Header.Get("X-Test-Person")
	if sub == "" {
		return auth.Session{}, false
	}
	acr := auth.LoASubstantial
	if r.Header.Get("X-Test-Low") != "" {
		acr = auth.LoALow
	}
	return auth.Session{Subject: sub, ACR: acr, CSRF: "csrf-" + sub}, true
}

// The person's page lists their own credentials (format, dates, status; no claim value, no key)
// and revokes one or all after a confirmation, with the CSRF token; another person's credential
// cannot be revoked, and the status list shows a revocation at once.
func TestMinePage(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if err := e.db.CreatePerson(ctx, store.Person{SubjectID: "sub-other", PersonalNumber: "9999999999", GivenName: "Other",
		FamilyName: "Person", BirthDate: "1980-01-01", Created: e.clock}); err != nil {
		t.Fatal(err)
	}
	issue := func(sub, format string) {
		_, jwk := holderKey(t)
		if _, err := e.svc.Issue(ctx, Request{SubjectID: sub, Format: format, Holders: []jose.JSONWebKey{jwk}, Actor: "test"}); err != nil {
			t.Fatal(err)
		}
	}
	issue(e.sub, FormatSDJWT)
	issue(e.sub, FormatMdoc)
	issue("sub-other", FormatSDJWT)
	mine, _ := e.db.PIDsOf(ctx, e.sub)
	theirs, _ := e.db.PIDsOf(ctx, "sub-other")

	pages, err := web.New(slog.New(slog.NewTextHandler(io.Discard, nil)), false)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	Handler{S: e.svc, Pages: pages, Sessions: headerSessions{}, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	do := func(method, path, person string, form url.Values, low bool) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if person != "" {
			req.Header.Set("X-Test-Person", person)
		}
		if low {
			req.Header.Set("X-Test-Low", "1")
		}
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode == http.StatusSeeOther {
			return resp.StatusCode, resp.Header.Get("Location")
		}
		return resp.StatusCode, html.UnescapeString(string(b))
	}
	if st, _ := do("GET", "/pid/credentials", "", nil, false); st != 401 {
		t.Fatalf("without a login: %d", st)
	}
	if st, _ := do("GET", "/pid/credentials", e.sub, nil, true); st != 401 {
		t.Fatalf("a login at low: %d", st)
	}
	st, page := do("GET", "/pid/credentials?lang=en", e.sub, nil, false)
	if st != 200 || strings.Count(page, `data-status="valid"`) != 2 || !strings.Contains(page, "SD-JWT VC") || !strings.Contains(page, "mdoc") ||
		!strings.Contains(page, mine[0].Issued.Format("2006-01-02")) || !strings.Contains(page, mine[0].Expires.Format("2006-01-02")) {
		t.Fatalf("the page: %d\n%s", st, page)
	}
	for _, secret := range []string{"Krasniqi", "1990-04-12", "1234567890", mine[0].KeyURI, theirs[0].ID} {
		if strings.Contains(page, secret) {
			t.Fatalf("the page shows %q", secret)
		}
	}
	form := func(csrf, cred, confirm string) url.Values {
		return url.Values{"csrf": {csrf}, "credential": {cred}, "confirm": {confirm}}
	}
	own := "csrf-" + e.sub
	for _, tc := range []struct {
		name   string
		person string
		form   url.Values
		status int
	}{
		{"no login", "", form(own, mine[0].ID, "yes"), 401},
		{"bad CSRF", e.sub, form("csrf-forged", mine[0].ID, "yes"), 403},
		{"no CSRF", e.sub, form("", mine[0].ID, "yes"), 403},
		{"another person's credential", e.sub, form(own, theirs[0].ID, "yes"), 404},
		{"another person's credential, unconfirmed", e.sub, form(own, theirs[0].ID, ""), 404},
		{"an unknown credential", e.sub, form(own, "nope", "yes"), 404},
		{"no credential named", e.sub, form(own, "", "yes"), 400},
	} {
		if st, body := do("POST", "/pid/credentials/revoke", tc.person, tc.form, false); st != tc.status {
			t.Errorf("%s: %d, want %d\n%s", tc.name, st, tc.status, body)
		}
	}
	if got, _ := e.db.PIDsOf(ctx, "sub-other"); got[0].Revoked {
		t.Fatal("another person's credential was revoked")
	}
	// First the confirmation, which changes nothing.
	st, page = do("POST", "/pid/credentials/revoke?lang=en", e.sub, form(own, mine[0].ID, ""), false)
	if st != 200 || !strings.Contains(page, `id="revoke-yes"`) || !strings.Contains(page, mine[0].ID) {
		t.Fatalf("confirmation: %d\n%s", st, page)
	}
	if got, _ := e.db.PIDsOf(ctx, e.sub); got[0].Revoked {
		t.Fatal("revoked before the confirmation")
	}
	if st, loc := do("POST", "/pid/credentials/revoke", e.sub, form(own, mine[0].ID, "yes"), false); st != 303 || loc != "/pid/credentials?done=1" {
		t.Fatalf("revoke one: %d %s", st, loc)
	}
	got, _ := e.db.PIDsOf(ctx, e.sub)
	if !got[0].Revoked || got[1].Revoked {
		t.Fatalf("after revoking one: %+v", got)
	}
	// The status list shows it at once (its token is signed again when the revoked set changes).
	tok, err := e.svc.StatusList(ctx, mine[0].List, false)
	if err != nil {
		t.Fatal(err)
	}
	if bit := statusBit(t, tok.Token, mine[0].Index); bit != 1 {
		t.Fatalf("the status list shows the revoked credential as %d", bit)
	}
	if bit := statusBit(t, tok.Token, mine[1].Index); bit != 0 {
		t.Fatalf("the status list shows the other credential as %d", bit)
	}
	st, page = do("GET", "/pid/credentials?done=1", e.sub, nil, false)
	if st != 200 || !strings.Contains(page, `id="cred-`+mine[0].ID+`" data-status="revoked"`) || !strings.Contains(page, `id="done"`) {
		t.Fatalf("the page after revoking: %d\n%s", st, page)
	}
	// Revoking it again changes nothing and is no error.
	if st, _ := do("POST", "/pid/credentials/revoke", e.sub, form(own, mine[0].ID, "yes"), false); st != 303 {
		t.Fatalf("revoke again: %d", st)
	}
	if st, loc := do("POST", "/pid/credentials/revoke", e.sub, form(own, "all", "yes"), false); st != 303 || loc != "/pid/credentials?done=1" {
		t.Fatalf("revoke all: %d %s", st, loc)
	}
	got, _ = e.db.PIDsOf(ctx, e.sub)
	if !got[0].Revoked || !got[1].Revoked {
		t.Fatalf("after revoking all: %+v", got)
	}
	if got, _ := e.db.PIDsOf(ctx, "sub-other"); got[0].Revoked {
		t.Fatal("revoking all revoked another person's credential")
	}
	if err := e.svc.RevokeOne(ctx, e.sub, theirs[0].ID, "person:"+e.sub, "test"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("RevokeOne of another's credential: %v", err)
	}
}

// statusBit reads entry idx of a status list JWT (its signature is checked elsewhere).
func statusBit(t *testing.T, token []byte, idx int) int {
	t.Helper()
	jws, err := jose.ParseSigned(string(token))
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		StatusList struct {
			Lst string `json:"lst"`
		} `json:"status_list"`
	}
	if err := json.Unmarshal(jws.UnsafePayloadWithoutVerification(), &c); err != nil {
		t.Fatal(err)
	}
	z, _ := base64.RawURLEncoding.DecodeString(c.StatusList.Lst)
	r, err := zlib.NewReader(bytes.NewReader(z))
	if err != nil {
		t.Fatal(err)
	}
	bits, _ := io.ReadAll(r)
	return int(bits[idx/8]>>(idx%8)) & 1
}
