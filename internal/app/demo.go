package app

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/vula-eid/vula/internal/config"
	"github.com/vula-eid/vula/internal/idp"
	"github.com/vula-eid/vula/internal/store"
)

const demoClient = "demo"

// demoSetting names the demo's credentials in the durable store, sealed with the TOTP seed key
// (the database alone does not show them), so that `vula demo show` can print them again.
const demoSetting = "demo.credentials"

// ErrNoDemo is ReadDemo's answer when no serve in dev mode has made the demo yet.
var ErrNoDemo = errors.New("no demo")

// DemoCredentials is what a person needs to try the demo.
type DemoCredentials struct {
	URL            string `json:"url"`
	PersonalNumber string `json:"personal_number"`
	Password       string `json:"password"`
	OTPAuthURI     string `json:"otpauth_uri"`
	Client         string `json:"client_id"`
}

// ReadDemo reads the demo's credentials from the durable store, opening them with the key of
// idp.seed_key_file (which it never makes: a new one would open nothing).
func ReadDemo(ctx context.Context, cfg config.Config, db store.Settings) (DemoCredentials, error) {
	var dc DemoCredentials
	sealed, err := db.Setting(ctx, demoSetting)
	if errors.Is(err, store.ErrNotFound) {
		return dc, ErrNoDemo
	}
	if err != nil {
		return dc, err
	}
	if _, err := os.Stat(cfg.IdP.SeedKeyFile); err != nil {
		return dc, fmt.Errorf("idp.seed_key_file: %w", err)
	}
	sealer, err := SeedSealer(cfg)
	if err != nil {
		return dc, err
	}
	plain, err := sealer.Open(demoSetting, sealed)
	if err != nil {
		return dc, fmt.Errorf("the demo's credentials do not open with %s: %w", cfg.IdP.SeedKeyFile, err)
	}
	return dc, json.Unmarshal(plain, &dc)
}

// demo makes, on first start, a demo relying party (a public client with PKCE, served by this
// binary under /demo/) and a demo citizen with a random password and an authenticator, and
// prints them as a block on stdout; later starts print where the demo is and how to see the
// credentials again (`vula demo show`).
func demo(ctx context.Context, mux *http.ServeMux, db store.Durable, accounts *idp.Accounts, sealer *store.SeedSealer, cfg config.Config, stdout io.Writer) error {
	base := cfg.BaseURL
	rp := &demoRP{base: base}
	mux.HandleFunc("GET /demo/", rp.start)
	mux.HandleFunc("GET /demo/callback", rp.callback)
	if _, err := db.Client(ctx, demoClient); err == nil {
		// For the console; the server runs without it.
		_, _ = fmt.Fprintf(stdout, "\n== Vula demo (dev mode) ==\n  Try a login: open %s/demo/\n  The demo citizen's login: vula demo show\n\n", base)
		return nil
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	rec, _, err := idp.NewClient(idp.ClientSpec{ID: demoClient, Name: "Vula demo portal", AuthMethod: idp.AuthNone,
		RedirectURIs: []string{base + "/demo/callback"}, PostLogoutRedirectURIs: []string{base + "/demo/"},
		Scopes: []string{"openid", "profile", "personal_number"}})
	if err != nil {
		return err
	}
	rec.Created = time.Now().UTC()
	if err := db.CreateClient(ctx, rec); err != nil {
		return err
	}
	pw := make([]byte, 12)
	rand.Read(pw)
	password := base64.RawURLEncoding.EncodeToString(pw)
	p, err := accounts.CreatePerson(ctx, store.Person{PersonalNumber: "1000000001", GivenName: "Arta", FamilyName: "Krasniqi",
		BirthDate: "1990-04-12", Email: "arta.krasniqi@example.org"}, password)
	if err != nil {
		return err
	}
	key, err := accounts.NewTOTP(p)
	if err != nil {
		return err
	}
	if err := accounts.EnrollTOTP(ctx, p.SubjectID, key); err != nil {
		return err
	}
	dc := DemoCredentials{URL: base + "/demo/", PersonalNumber: p.PersonalNumber, Password: password, OTPAuthURI: key.URL(), Client: demoClient}
	plain, _ := json.Marshal(dc)
	sealed, err := sealer.Seal(demoSetting, plain)
	if err != nil {
		return err
	}
	if err := db.PutSetting(ctx, demoSetting, sealed); err != nil {
		return err
	}
	_ = PrintDemo(stdout, dc, true) // for the console; the server runs without it, and demo show prints it again
	return nil
}

// PrintDemo prints the demo's credentials as a block that stands out from the log lines.
func PrintDemo(w io.Writer, dc DemoCredentials, first bool) error {
	made := ""
	if first {
		made = " — made on this first start; `vula demo show` prints this again"
	}
	_, err := fmt.Fprintf(w, `
== Vula demo (dev mode)%s ==
  Try a login:     open %s  (add ?acr=substantial for password + one-time code, ?acr=high for a high passkey)
  Demo citizen:    personal number %s
  Password:        %s
  Authenticator:   %s
                   (add it to an authenticator app; vula persons enroll-totp %s makes a new one)
  Relying party:   client id %q, a public client with PKCE, redirect %scallback
==

`, made, dc.URL, dc.PersonalNumber, dc.Password, dc.OTPAuthURI, dc.PersonalNumber, dc.Client, dc.URL)
	return err
}

// demoRP is a tiny relying party for trying a login: it starts the code flow with PKCE and
// shows the ID token's and userinfo's claims.
type demoRP struct{ base string }

func (d *demoRP) conf() oauth2.Config {
	return oauth2.Config{ClientID: demoClient, RedirectURL: d.base + "/demo/callback",
		Endpoint: oauth2.Endpoint{AuthURL: d.base + "/oauth2/auth", TokenURL: d.base + "/oauth2/token", AuthStyle: oauth2.AuthStyleInParams},
		Scopes:   []string{oidc.ScopeOpenID, "profile", "personal_number"}}
}

type demoState struct{ Verifier, Nonce string }

func (d *demoRP) start(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/demo/" {
		http.NotFound(w, r)
		return
	}
	st, verifier, nonce := oauth2.GenerateVerifier(), oauth2.GenerateVerifier(), oauth2.GenerateVerifier()
	b, _ := json.Marshal(demoState{verifier, nonce})
	http.SetCookie(w, &http.Cookie{Name: "vula_demo_" + st[:16], Value: base64.RawURLEncoding.EncodeToString(b), Path: "/demo/",
		MaxAge: 600, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(verifier), oidc.Nonce(nonce)}
	switch r.URL.Query().Get("acr") {
	case "substantial":
		opts = append(opts, oauth2.SetAuthURLParam("acr_values", idp.LoASubstantial))
	case "high":
		opts = append(opts, oauth2.SetAuthURLParam("acr_values", idp.LoAHigh))
	}
	conf := d.conf()
	http.Redirect(w, r, conf.AuthCodeURL(st, opts...), http.StatusSeeOther)
}

var demoPage = template.Must(template.New("demo").Parse(`<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Vula demo portal</title><style>body{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem}
dt{font-weight:600}dd{margin:0 0 .5rem}</style></head><body><h1>Vula demo portal</h1>
{{if .Error}}<p role="alert">The login did not work: {{.Error}}</p>{{end}}{{if .Claims}}<p>You are logged in. The ID token says:</p>
<dl>{{range $k, $v := .Claims}}<dt>{{$k}}</dt><dd>{{$v}}</dd>{{end}}</dl>{{end}}{{if .UserInfo}}<p>The userinfo endpoint says:</p>
<dl id="userinfo">{{range $k, $v := .UserInfo}}<dt>{{$k}}</dt><dd>{{$v}}</dd>{{end}}</dl>{{end}}
<p><a href="/demo/">Log in again</a> · <a href="{{.Logout}}">Log out</a></p></body></html>`))

func (d *demoRP) callback(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	q := r.URL.Query()
	data := struct {
		Claims, UserInfo map[string]any
		Error, Logout    string
	}{Logout: "/logout?client_id=" + demoClient + "&post_logout_redirect_uri=" + d.base + "/demo/"}
	render := func(status int) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(status)
		_ = demoPage.Execute(w, data) // the status is sent; the template is fixed and tested
	}
	if e := q.Get("error"); e != "" {
		data.Error = e + ": " + q.Get("error_description")
		render(http.StatusBadRequest)
		return
	}
	st := q.Get("state")
	var ds demoState
	c, err := r.Cookie("vula_demo_" + st[:min(16, len(st))])
	if err == nil {
		var b []byte
		if b, err = base64.RawURLEncoding.DecodeString(c.Value); err == nil {
			err = json.Unmarshal(b, &ds)
		}
	}
	if err != nil || len(st) < 16 {
		data.Error = "unknown or expired state"
		render(http.StatusBadRequest)
		return
	}
	conf := d.conf()
	tok, err := conf.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(ds.Verifier))
	if err != nil {
		data.Error = err.Error()
		render(http.StatusBadGateway)
		return
	}
	raw, _ := tok.Extra("id_token").(string)
	// Discovery, as a relying party would do it: it names the keys and the signing algorithm.
	var idt *oidc.IDToken
	provider, err := oidc.NewProvider(ctx, d.base)
	if err == nil {
		idt, err = provider.Verifier(&oidc.Config{ClientID: demoClient}).Verify(ctx, raw)
	}
	if err == nil && idt.Nonce != ds.Nonce {
		err = errors.New("nonce mismatch")
	}
	if err != nil {
		data.Error = err.Error()
		render(http.StatusBadGateway)
		return
	}
	if err := idt.Claims(&data.Claims); err != nil {
		data.Error = "ID token claims: " + err.Error()
	}
	if ui, err := provider.UserInfo(ctx, oauth2.StaticTokenSource(tok)); err != nil {
		data.Error = "userinfo: " + err.Error()
	} else if err := ui.Claims(&data.UserInfo); err != nil {
		data.Error = "userinfo claims: " + err.Error()
	}
	data.Logout += "&id_token_hint=" + raw
	render(http.StatusOK)
}
