package idp

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"html"
	"io"
	"math/big"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/crypto/ocsp"
	"golang.org/x/oauth2"

	"github.com/vula-eid/vula/hsm"
	"github.com/vula-eid/vula/internal/audit"
	"github.com/vula-eid/vula/internal/store"
)

// cardCA is a test card issuer with its OCSP responder (which answers for the serials it is
// told are revoked, and fails with 500 while down is set).
type cardCA struct {
	cert    *x509.Certificate
	key     crypto.Signer
	ocsp    *httptest.Server
	mu      sync.Mutex
	revoked map[string]bool
	down    bool
}

func newCardCA(t *testing.T, name string) *cardCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name, Country: []string{"XK"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	ca := &cardCA{cert: cert, key: key, revoked: map[string]bool{}}
	ca.ocsp = httptest.NewServer(http.HandlerFunc(ca.respond))
	t.Cleanup(ca.ocsp.Close)
	return ca
}

func (ca *cardCA) respond(w http.ResponseWriter, r *http.Request) {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	if ca.down {
		http.Error(w, "down", http.StatusInternalServerError)
		return
	}
	body, _ := io.ReadAll(r.Body)
	req, err := ocsp.ParseRequest(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	tmpl := ocsp.Response{Status: ocsp.Good, SerialNumber: req.SerialNumber, ThisUpdate: time.Now().Add(-time.Minute),
		NextUpdate: time.Now().Add(time.Hour)}
	if ca.revoked[req.SerialNumber.String()] {
		tmpl.Status, tmpl.RevokedAt, tmpl.RevocationReason = ocsp.Revoked, time.Now().Add(-time.Minute), ocsp.KeyCompromise
	}
	resp, err := ocsp.CreateResponse(ca.cert, ca.cert, tmpl, ca.key)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/ocsp-response")
	_, _ = w.Write(resp)
}

// issue makes a card certificate for serialNumber, valid from nb to na, its OCSP at ocspURL.
func (ca *cardCA) issue(t *testing.T, serialNumber string, nb, na time.Time, ocspURL string) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	sn, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: sn, Subject: pkix.Name{CommonName: "Arta Krasniqi", SerialNumber: serialNumber, Country: []string{"XK"}},
		NotBefore: nb, NotAfter: na, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if ocspURL != "" {
		tmpl.OCSPServer = []string{ocspURL}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// cardFixture is a provider with the card login on its own TLS listener.
type cardFixture struct {
	*fixture
	card    *httptest.Server
	ca      *cardCA
	log     *audit.Log
	conf    oauth2.Config
	prov    *oidc.Provider
	subject string
}

func newCardFixture(t *testing.T, crlFiles ...string) *cardFixture {
	t.Helper()
	f := newFixture(t)
	ctx := context.Background()
	l := f.auditLog(t)
	ca := newCardCA(t, "Vula Test Card CA")
	mux := http.NewServeMux()
	srv := httptest.NewUnstartedServer(mux)
	t.Cleanup(srv.Close)
	srv.TLS = &tls.Config{ClientAuth: tls.RequestClientCert}
	srv.StartTLS()
	card, err := NewCard(f.pages, CardConfig{URL: srv.URL, Issuers: []*x509.Certificate{ca.cert}, CRLFiles: crlFiles,
		SerialPrefix: "PNOXK-", OCSPTimeout: 2 * time.Second, Audit: l})
	if err != nil {
		t.Fatal(err)
	}
	card.Register(mux)
	secret := f.register(t, ClientSpec{ID: "tax", Name: "Tax Administration", RedirectURIs: []string{rpCallback},
		Scopes: []string{"openid", "profile"}})
	person, _ := f.citizen(t, false)
	if err := f.db.UpdatePerson(ctx, person.SubjectID, func(p store.Person) (store.Person, error) {
		p.Proofing = store.ProofingHigh // registered at a service centre
		return p, nil
	}); err != nil {
		t.Fatal(err)
	}
	prov, err := oidc.NewProvider(ctx, f.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	return &cardFixture{fixture: f, card: srv, ca: ca, log: l, prov: prov, subject: person.SubjectID,
		conf: oauth2.Config{ClientID: "tax", ClientSecret: secret, Endpoint: prov.Endpoint(), RedirectURL: rpCallback,
			Scopes: []string{oidc.ScopeOpenID, "profile"}}}
}

// browser is a cookie-keeping client that presents cert (when given) to the card listener and
// stops at the relying party.
func (cf *cardFixture) browser(cert *tls.Certificate) *http.Client {
	jar, _ := cookiejar.New(nil)
	tr := cf.card.Client().Transport.(*http.Transport).Clone()
	if cert != nil {
		tr.TLSClientConfig.Certificates = []tls.Certificate{*cert}
	}
	return &http.Client{Jar: jar, Transport: tr, CheckRedirect: func(req *http.Request, _ []*http.Request) error {
		if strings.HasPrefix(req.URL.String(), rpCallback) {
			return http.ErrUseLastResponse
		}
		return nil
	}}
}

var cardLink = regexp.MustCompile(`<a class="method" href="(/login/card/start\?flow=[^"]+)"`)
var hiddenField = regexp.MustCompile(`name="(flow|csrf)" value="([^"]*)"`)

type page struct {
	status int
	url    *url.URL
	body   string
}

func get(t *testing.T, c *http.Client, u string) page {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	p := page{status: resp.StatusCode, url: resp.Request.URL, body: string(b)}
	if l, err := resp.Location(); err == nil {
		p.url = l
	}
	return p
}

// start begins a login at acr high and returns the card link of the login page.
func (cf *cardFixture) start(t *testing.T, c *http.Client, opts []oauth2.AuthCodeOption) string {
	t.Helper()
	p := get(t, c, cf.conf.AuthCodeURL("state-12345678", append(opts, oidc.Nonce("nonce-12345678"),
		oauth2.SetAuthURLParam("acr_values", LoAHigh))...))
	m := cardLink.FindStringSubmatch(p.body)
	if p.status != 200 || m == nil {
		t.Fatalf("login page %d without the card link: %.300s", p.status, p.body)
	}
	// The login page's link goes to the main listener, which sends the browser on to the card's.
	resp, err := (&http.Client{Jar: c.Jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Get(cf.srv.URL + html.UnescapeString(m[1]))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.Header.Get("Location")
}

// consent allows on the consent page p and returns the redirect to the relying party.
func (cf *cardFixture) consent(t *testing.T, c *http.Client, p page) *url.URL {
	t.Helper()
	form := url.Values{"decision": {"allow"}}
	for _, m := range hiddenField.FindAllStringSubmatch(p.body, -1) {
		form.Set(m[1], m[2])
	}
	resp, err := c.PostForm(cf.srv.URL+"/consent", form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	l, err := resp.Location()
	if err != nil {
		t.Fatalf("consent answered %d without a redirect", resp.StatusCode)
	}
	return l
}

// The card logs in at high: the ID token says acr high, amr sc and hwk, and the login is in the
// audit log. The link is refused without its CSRF token, and the ticket is good once.
func TestCardLogin(t *testing.T) {
	cf := newCardFixture(t)
	ctx := context.Background()
	cert := cf.ca.issue(t, "PNOXK-1234567890", time.Now().Add(-time.Hour), time.Now().Add(time.Hour), cf.ca.ocsp.URL)
	c := cf.browser(&cert)
	verifier, opts := newPKCE()
	link := cf.start(t, c, opts)
	if !strings.HasPrefix(link, cf.card.URL+"/login/card?") {
		t.Fatalf("card link %s", link)
	}
	u, _ := url.Parse(link)
	q := u.Query()
	q.Set("csrf", "not-the-flow's")
	if p := get(t, c, cf.card.URL+"/login/card?"+q.Encode()); p.status != http.StatusBadRequest {
		t.Fatalf("a link with another CSRF token: %d", p.status)
	}
	// Stop at the return to the main listener, to use the ticket twice.
	var done *url.URL
	c.CheckRedirect = func(req *http.Request, _ []*http.Request) error {
		if req.URL.Path == "/login/card/done" {
			done = req.URL
			return http.ErrUseLastResponse
		}
		return nil
	}
	get(t, c, link)
	if done == nil {
		t.Fatal("the card listener did not send the browser back")
	}
	c.CheckRedirect = cf.browser(nil).CheckRedirect
	p := get(t, c, done.String())
	if p.status != 200 || !strings.Contains(p.body, `name="decision"`) {
		t.Fatalf("after the card: %d %.300s", p.status, p.body)
	}
	if again := get(t, cf.browser(nil), done.String()); again.status != http.StatusBadRequest {
		t.Fatalf("a ticket used twice: %d", again.status)
	}
	cb := cf.consent(t, c, p)
	tok, err := cf.conf.Exchange(ctx, cb.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := tok.Extra("id_token").(string)
	idt, err := cf.prov.Verifier(&oidc.Config{ClientID: "tax"}).Verify(ctx, raw)
	if err != nil {
		t.Fatal(err)
	}
	var claims struct {
		ACR string   `json:"acr"`
		AMR []string `json:"amr"`
	}
	if err := idt.Claims(&claims); err != nil {
		t.Fatal(err)
	}
	if idt.Subject != cf.subject || claims.ACR != LoAHigh || fmt.Sprint(claims.AMR) != "[sc hwk]" {
		t.Fatalf("ID token: sub %s %+v", idt.Subject, claims)
	}
	recs, err := cf.db.AuditRecords(ctx, 1, 100)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range recs {
		found = found || (r.Action == "idp.login.card" && r.Actor == cf.subject && strings.Contains(string(r.Detail), cert.Leaf.SerialNumber.Text(16)))
	}
	if !found {
		t.Fatal("the card login is not in the audit log")
	}
}

// A card login finished in another browser than the one that started the flow is refused: a
// card login cannot be grafted onto someone else's flow.
func TestCardLoginOtherBrowser(t *testing.T) {
	cf := newCardFixture(t)
	cert := cf.ca.issue(t, "PNOXK-1234567890", time.Now().Add(-time.Hour), time.Now().Add(time.Hour), cf.ca.ocsp.URL)
	_, opts := newPKCE()
	link := cf.start(t, cf.browser(nil), opts) // the attacker's flow
	victim := cf.browser(&cert)
	p := get(t, victim, link)
	if p.status != http.StatusForbidden || !strings.Contains(p.body, "started in another browser") {
		t.Fatalf("grafted card login: %d %.300s", p.status, p.body)
	}
}

// Refused cards get a page that says why, and nothing is logged in; a responder that is down
// is 503 with Retry-After.
func TestCardRefused(t *testing.T) {
	cf := newCardFixture(t)
	now := time.Now()
	good := cf.ca.issue(t, "PNOXK-1234567890", now.Add(-time.Hour), now.Add(time.Hour), cf.ca.ocsp.URL)
	revoked := cf.ca.issue(t, "PNOXK-1234567890", now.Add(-time.Hour), now.Add(time.Hour), cf.ca.ocsp.URL)
	cf.ca.revoked[revoked.Leaf.SerialNumber.String()] = true
	other := newCardCA(t, "Vula Test Card CA") // same name, another key
	downURL := httptest.NewServer(http.NotFoundHandler())
	downURL.Close()
	cases := []struct {
		name   string
		cert   *tls.Certificate
		down   bool
		status int
		text   string
	}{
		{"no card", nil, false, http.StatusUnauthorized, "No ID card was presented"},
		{"revoked", &revoked, false, http.StatusForbidden, "has been revoked"},
		{"unknown CA", ptr(other.issue(t, "PNOXK-1234567890", now.Add(-time.Hour), now.Add(time.Hour), other.ocsp.URL)), false,
			http.StatusForbidden, "not issued by an authority we accept"},
		{"expired", ptr(cf.ca.issue(t, "PNOXK-1234567890", now.Add(-48*time.Hour), now.Add(-time.Hour), cf.ca.ocsp.URL)), false,
			http.StatusForbidden, "has expired"},
		{"no person", ptr(cf.ca.issue(t, "PNOXK-9999999999", now.Add(-time.Hour), now.Add(time.Hour), cf.ca.ocsp.URL)), false,
			http.StatusForbidden, "No person is registered"},
		{"no prefix", ptr(cf.ca.issue(t, "1234567890", now.Add(-time.Hour), now.Add(time.Hour), cf.ca.ocsp.URL)), false,
			http.StatusForbidden, "No person is registered"},
		{"no OCSP", ptr(cf.ca.issue(t, "PNOXK-1234567890", now.Add(-time.Hour), now.Add(time.Hour), "")), false,
			http.StatusForbidden, "cannot be confirmed"},
		{"responder fails", &good, true, http.StatusServiceUnavailable, "busy"},
		{"responder unreachable", ptr(cf.ca.issue(t, "PNOXK-1234567890", now.Add(-time.Hour), now.Add(time.Hour), downURL.URL)), false,
			http.StatusServiceUnavailable, "busy"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cf.ca.mu.Lock()
			cf.ca.down = tc.down
			cf.ca.mu.Unlock()
			c := cf.browser(tc.cert)
			_, opts := newPKCE()
			p := get(t, c, cf.start(t, c, opts))
			if p.status != tc.status || !strings.Contains(p.body, tc.text) {
				t.Fatalf("%d %.400s", p.status, p.body)
			}
			if tc.status == http.StatusServiceUnavailable && p.url.Path != "/login/card" {
				t.Fatalf("ended at %s", p.url)
			}
		})
	}
}

// A CRL file of the card's issuer is used instead of OCSP; an out-of-date one is 503.
func TestCardCRL(t *testing.T) {
	dir := t.TempDir()
	crlFile := filepath.Join(dir, "card.crl")
	// The fixture reads the file at start: write an empty one first, signed by a CA made here.
	ca := newCardCA(t, "placeholder")
	writeCRL(t, crlFile, ca, nil, time.Now().Add(time.Hour))
	cf := newCardFixture(t, crlFile)
	now := time.Now()
	good := cf.ca.issue(t, "PNOXK-1234567890", now.Add(-time.Hour), now.Add(time.Hour), "")
	revoked := cf.ca.issue(t, "PNOXK-1234567890", now.Add(-time.Hour), now.Add(time.Hour), "")
	for _, tc := range []struct {
		name   string
		next   time.Time
		cert   tls.Certificate
		status int
	}{
		{"good", now.Add(time.Hour), good, http.StatusOK},
		{"revoked", now.Add(time.Hour), revoked, http.StatusForbidden},
		{"out of date", now.Add(-time.Minute), good, http.StatusServiceUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			writeCRL(t, crlFile, cf.ca, revoked.Leaf.SerialNumber, tc.next)
			c := cf.browser(&tc.cert)
			_, opts := newPKCE()
			p := get(t, c, cf.start(t, c, opts))
			if p.status != tc.status {
				t.Fatalf("%d %.300s", p.status, p.body)
			}
		})
	}
}

func writeCRL(t *testing.T, path string, ca *cardCA, revoked *big.Int, next time.Time) {
	t.Helper()
	tmpl := &x509.RevocationList{Number: big.NewInt(time.Now().UnixNano()), ThisUpdate: time.Now().Add(-2 * time.Hour), NextUpdate: next}
	if revoked != nil {
		tmpl.RevokedCertificateEntries = []x509.RevocationListEntry{{SerialNumber: revoked, RevocationTime: time.Now().Add(-time.Hour)}}
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, ca.cert, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, der, 0o600); err != nil {
		t.Fatal(err)
	}
	// The file is read again when its time changes; one write per subtest may share a tick.
	mt := time.Now().Add(time.Duration(time.Now().UnixNano() % 1e9))
	if err := os.Chtimes(path, mt, mt); err != nil {
		t.Fatal(err)
	}
}

func ptr[T any](v T) *T { return &v }

// A card cannot lift a login above the person's identity proofing: a person proofed remotely
// (substantial) who asks for high gets unmet_authentication_requirements, even with a card.
func TestCardProofingBelowHigh(t *testing.T) {
	cf := newCardFixture(t)
	ctx := context.Background()
	if err := cf.db.UpdatePerson(ctx, cf.subject, func(p store.Person) (store.Person, error) {
		p.Proofing = store.ProofingSubstantial
		return p, nil
	}); err != nil {
		t.Fatal(err)
	}
	cert := cf.ca.issue(t, "PNOXK-1234567890", time.Now().Add(-time.Hour), time.Now().Add(time.Hour), cf.ca.ocsp.URL)
	c := cf.browser(&cert)
	_, opts := newPKCE()
	p := get(t, c, cf.start(t, c, opts))
	if !strings.HasPrefix(p.url.String(), rpCallback) || p.url.Query().Get("error") != "unmet_authentication_requirements" {
		t.Fatalf("a card above the proofing: %d %s", p.status, p.url)
	}
}

// auditLog is an audit log on the fixture's store, its checkpoints signed by a key of its own.
func (f *fixture) auditLog(t *testing.T) *audit.Log {
	t.Helper()
	ctx := context.Background()
	ak, err := f.raw.CreateKey(ctx, hsm.KeySpec{Label: "audit", Algorithm: hsm.ECP256, Purpose: hsm.PurposeAudit})
	if err != nil {
		t.Fatal(err)
	}
	l, err := audit.New(ctx, f.db, f.raw, ak.URI, audit.Options{}, time.Now, quiet)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestLoginAudited: a provider given an audit log in Config.Audit records a completed login as
// idp.login, the person as actor, the login's level as result and its levels in the detail.
func TestLoginAudited(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	l := f.auditLog(t)
	p, err := New(ctx, Config{Issuer: f.srv.URL, Secrets: testSealer(), Audit: l}, f.keys, f.db, f.eph, quiet, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	fl := &flow{Client: "municipality", Subject: "sub-1", ACR: LoASubstantial, AMR: []string{"pwd", "otp"}, AuthLevel: LoAHigh}
	if err := p.recordLogin(ctx, fl, LoASubstantial); err != nil {
		t.Fatal(err)
	}
	recs, err := f.db.AuditRecords(ctx, 1, 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if r.Action == "idp.login" && r.Actor == "sub-1" && r.Result == LoASubstantial && strings.Contains(string(r.Detail), `"client":"municipality"`) {
			return
		}
	}
	t.Fatalf("the login is not in the audit log: %+v", recs)
}
