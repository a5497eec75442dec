package idp

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"html/template"
	"image/png"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/token/jwt"
	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"github.com/vula-eid/vula/internal/auth"
	"github.com/vula-eid/vula/internal/store"
	"github.com/vula-eid/vula/internal/web"
)

// The login: /oauth2/auth checks the request and parks it as a flow (in the ephemeral store,
// flowTTL), then the browser goes through /login (password), /login/totp (when the level asks
// for it), /consent (unless remembered), and back to the client with a code. A browser that has
// a single-sign-on session at a high enough level skips the login.

const (
	flowTTL     = 15 * time.Minute
	ssoTTL      = 8 * time.Hour
	consentTTL  = 180 * 24 * time.Hour
	ssoCookie   = "vula_sso"
	pairwiseSet = "idp.pairwise_salt"
)

// levels orders the eIDAS levels; what a login reached is the highest it satisfies.
var levels = auth.Levels

func levelOf(acr string) int { return auth.LevelOf(acr) }

// flow is one login in progress.
type flow struct {
	ID       string    `json:"id"`
	CSRF     string    `json:"csrf"`
	Client   string    `json:"client"`
	Required string    `json:"required"` // the acr the login must reach
	Subject  string    `json:"subject,omitempty"`
	AMR      []string  `json:"amr,omitempty"`
	AuthTime time.Time `json:"auth_time,omitempty"`
	// AuthLevel is the level the authenticators used reach, ACR the login's level: the lower of
	// AuthLevel and the person's identity proofing.
	AuthLevel string   `json:"auth_level,omitempty"`
	ACR       string   `json:"acr,omitempty"`
	Scopes    []string `json:"scopes"`
	// Lang is the page language ui_locales asked for ("" when none it named is offered), and
	// LoginHint the identifier login_hint suggested.
	Lang      string `json:"lang,omitempty"`
	LoginHint string `json:"login_hint,omitempty"`
	// Asked are the person claims the claims parameter asked for.
	Asked requestedClaims `json:"asked,omitempty"`
	// Reconsent is prompt=consent: ask again even when the consent is remembered; NoUI is
	// prompt=none: show nothing, answer consent_required instead of asking.
	Reconsent bool `json:"reconsent,omitempty"`
	NoUI      bool `json:"no_ui,omitempty"`
	// Credential is the credential authorization asked (checked syntax; the credential is
	// checked once the person is known).
	Credential *CredentialAuthorization `json:"credential,omitempty"`
	// Wallet are the credential configurations asked by authorization_details (openid_credential).
	Wallet []string `json:"wallet,omitempty"`
	// Binding is the secret of the browser that started the flow, for the ID card login.
	Binding string `json:"binding,omitempty"`
}

// ssoSession is a browser's single sign-on.
type ssoSession struct {
	ID       string    `json:"id"`
	Subject  string    `json:"subject"`
	AMR      []string  `json:"amr"`
	ACR      string    `json:"acr"`
	AuthTime time.Time `json:"auth_time"`
	CSRF     string    `json:"csrf"`
	// Activation marks the session of an activation (a letter handed over in person): it may
	// enrol authenticators, and is never used for a login at a client.
	Activation bool `json:"activation,omitempty"`
}

// Pages is the browser side of the provider.
type Pages struct {
	p        *Provider
	accounts *Accounts
	web      *web.Renderer
	secure   bool // cookies Secure (off only in development over http)
	methods  []LoginMethod
	passkeys *passkeys // nil until EnablePasskeys
	card     *Card     // the ID card login, when configured (NewCard)
}

// NewPages makes the login, consent, enrolment and logout pages.
func NewPages(p *Provider, accounts *Accounts, r *web.Renderer, secure bool) *Pages {
	// A password with a one-time code reaches substantial; a password alone low.
	return &Pages{p: p, accounts: accounts, web: r, secure: secure,
		methods: []LoginMethod{{ID: "password", Reaches: LoASubstantial}}}
}

// Register adds the authorization endpoint, PAR and the pages.
func (g *Pages) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /oauth2/auth", g.authorize)
	mux.HandleFunc("POST /oauth2/par", g.par)
	// CSC API v2 §8.4 names these paths under its oauth2 base URI.
	mux.HandleFunc("GET /oauth2/authorize", g.authorize)
	mux.HandleFunc("POST /oauth2/pushed_authorize", g.par)
	mux.HandleFunc("GET /login", g.loginPage)
	mux.HandleFunc("POST /login", g.login)
	mux.HandleFunc("GET /login/totp", g.totpPage)
	mux.HandleFunc("POST /login/totp", g.totp)
	mux.HandleFunc("GET /login/card/start", g.cardStart)
	mux.HandleFunc("GET /login/card/done", g.cardDone)
	mux.HandleFunc("GET /consent", g.consentPage)
	mux.HandleFunc("POST /consent", g.consent)
	mux.HandleFunc("GET /account/totp", g.enrollPage)
	mux.HandleFunc("POST /account/totp", g.enroll)
	if g.passkeys != nil {
		g.registerPasskeys(mux)
	}
	mux.HandleFunc("GET /activate", g.activatePage)
	mux.HandleFunc("POST /activate", g.activate)
	mux.HandleFunc("GET /logout", g.logoutPage)
	mux.HandleFunc("POST /logout", g.logout)
}

func randomID() string {
	b := make([]byte, 24)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func sameToken(a, b string) bool {
	return a != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// errUnmet is OpenID Connect's unmet_authentication_requirements.
func errUnmet(hint string) *fosite.RFC6749Error {
	return &fosite.RFC6749Error{ErrorField: "unmet_authentication_requirements", CodeField: http.StatusBadRequest,
		DescriptionField: "The authentication requirements of the request cannot be met.", HintField: hint}
}

// par is the pushed authorization request endpoint (RFC 9126). PKCE is checked here too, so a
// request without it is refused before the browser ever comes.
func (g *Pages) par(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	jarErr := g.p.requestObject(r, true)
	if err := g.p.parProof(w, r); err != nil {
		g.p.oauthError(ctx, "pushed authorization request refused", err)
		writeOAuthError(w, err)
		return
	}
	optionalState(r)
	ar, err := g.p.oauth.NewPushedAuthorizeRequest(ctx, r)
	if jarErr != nil && !errors.Is(err, fosite.ErrInvalidClient) {
		err = jarErr // a bad request object, unless the client did not even authenticate
	}
	if err == nil {
		err = checkPKCE(ar)
	}
	if err == nil {
		_, err = g.credentialRequest(ar)
	}
	if err == nil {
		_, err = g.p.walletRequest(ar)
	}
	if err == nil {
		_, err = maxAgeOf(ar)
	}
	if err == nil {
		err = checkDPoPJKT(ar)
	}
	if err != nil {
		g.p.oauthError(ctx, "pushed authorization request refused", err)
		g.writePARError(ctx, w, ar, err)
		return
	}
	resp, err := g.p.oauth.NewPushedAuthorizeResponse(ctx, ar, newSession())
	if err != nil {
		g.p.oauthError(ctx, "pushed authorization request not stored", err)
		g.writePARError(ctx, w, ar, err)
		return
	}
	g.p.oauth.WritePushedAuthorizeResponse(ctx, w, ar, resp)
}

// writePARError answers a refused pushed request; a store that is down is 503 with Retry-After.
func (g *Pages) writePARError(ctx context.Context, w http.ResponseWriter, ar fosite.AuthorizeRequester, err error) {
	var rfc *fosite.RFC6749Error
	if isUnavailable(err) || (errors.As(err, &rfc) && rfc.CodeField == http.StatusServiceUnavailable) {
		writeOAuthError(w, err)
		return
	}
	g.p.oauth.WritePushedAuthorizeError(ctx, w, ar, err)
}

// checkPKCE requires an S256 code challenge of every client (fosite would check it only when
// the code is redeemed).
func checkPKCE(ar fosite.AuthorizeRequester) error {
	f := ar.GetRequestForm()
	if f.Get("code_challenge") == "" || f.Get("code_challenge_method") != "S256" {
		return fosite.ErrInvalidRequest.WithHint("PKCE with code_challenge_method=S256 is required.")
	}
	return nil
}

// authorize is the authorization endpoint.
func (g *Pages) authorize(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	jarErr := g.p.requestObject(r, false)
	optionalState(r)
	ar, err := g.p.oauth.NewAuthorizeRequest(ctx, r)
	if isUnavailable(err) || isUnavailable(jarErr) {
		// The client could not be read: the redirect URI is unknown, so the page says so.
		g.unavailable(w, r, errors.Join(err, jarErr))
		return
	}
	if jarErr != nil && (err == nil || ar.IsRedirectURIValid()) {
		err = jarErr // sent back to the client when its redirect URI is known good
	}
	if err != nil {
		g.p.oauthError(ctx, "authorization request refused", err)
		g.p.oauth.WriteAuthorizeError(ctx, g.withIss(w), ar, err)
		return
	}
	c := ar.GetClient().(*client)
	asked, err := parseClaims(ar)
	required := ""
	if err == nil {
		required, err = requiredLevel(ar, c.rec, asked)
	}
	if err == nil {
		err = checkPKCE(ar)
	}
	if err == nil && c.rec.RequirePAR && r.URL.Query().Get("request_uri") == "" {
		err = fosite.ErrInvalidRequest.WithHint("This client must push its authorization requests (PAR).")
	}
	var cred *CredentialAuthorization
	if err == nil {
		cred, err = g.credentialRequest(ar)
	}
	var wallet []string
	if err == nil {
		wallet, err = g.p.walletRequest(ar)
	}
	if err == nil && (cred != nil || wallet != nil) && r.URL.Query().Get("request_uri") != "" &&
		slices.ContainsFunc(append([]string{"authorization_details"}, credentialParams...), r.URL.Query().Has) {
		// What is authorized must be what was pushed, not something added beside request_uri.
		err = fosite.ErrInvalidRequest.WithHint("A pushed credential authorization cannot be changed in the front channel.")
	}
	if err == nil && cred != nil {
		// The official's login for it is the authorization itself: two factors, now, at the
		// credential's own level when it asks for more.
		need := LoASubstantial
		if cl, ok := g.p.creds.(auth.CredentialLevels); ok {
			if need, err = cl.CredentialLevel(ctx, cred.CredentialID); err != nil {
				g.unavailable(w, r, err)
				return
			}
		}
		required = levels[max(levelOf(required), levelOf(need), levelOf(LoASubstantial))]
	}
	if err == nil && g.p.cfg.WalletLoA != "" && (wallet != nil || slices.Contains(ar.GetRequestedScopes(), auth.ScopePID)) {
		// The wallet issuer's level: asked for at the login, not found lacking at the credential.
		required = levels[max(levelOf(required), levelOf(g.p.cfg.WalletLoA))]
	}
	if err == nil && len(g.methodsFor(required)) == 0 {
		err = errUnmet("No means of login offered here reaches " + required + ".")
	}
	var maxAge time.Duration
	if err == nil {
		maxAge, err = maxAgeOf(ar)
	}
	if err == nil {
		err = checkDPoPJKT(ar)
	}
	if err != nil {
		g.p.oauthError(ctx, "authorization request refused", err)
		g.p.oauth.WriteAuthorizeError(ctx, g.withIss(w), ar, err)
		return
	}
	form := ar.GetRequestForm()
	f := &flow{ID: randomID(), CSRF: randomID(), Client: c.GetID(), Required: required, Scopes: ar.GetRequestedScopes(), Credential: cred,
		Wallet: wallet, Lang: uiLocale(form.Get("ui_locales")), LoginHint: loginHint(form.Get("login_hint")), Asked: asked.persons()}
	if wallet != nil && !slices.Contains(f.Scopes, auth.ScopePID) {
		f.Scopes = append(f.Scopes, auth.ScopePID) // the consent to the PID, as for its scope
	}
	for _, s := range f.Asked.consentScopes() {
		if !slices.Contains(f.Scopes, s) {
			f.Scopes = append(f.Scopes, s) // consent covers the claims asked as well as the scopes
		}
	}
	prompt := strings.Fields(form.Get("prompt"))
	f.Reconsent, f.NoUI = slices.Contains(prompt, "consent"), slices.Contains(prompt, "none")
	if s, ok := g.sso(r); ok && !s.Activation && cred == nil && !slices.Contains(prompt, "login") && levelOf(s.ACR) >= levelOf(required) && g.youngEnough(s, maxAge) {
		f.Subject, f.AMR, f.AuthTime, f.ACR = s.Subject, s.AMR, s.AuthTime, s.ACR
	} else if slices.Contains(prompt, "none") {
		g.p.oauth.WriteAuthorizeError(ctx, g.withIss(w), ar, fosite.ErrLoginRequired)
		return
	}
	if f.Subject == "" {
		g.bindCard(w, f)
	}
	if n, err := g.p.eph.Incr(ctx, "idp:flows:"+addressKey(r), time.Minute); err != nil {
		g.unavailable(w, r, err)
		return
	} else if n > int64(g.p.cfg.FlowsPerMinute) {
		// Each flow is stored for flowTTL: without a bound per address an anonymous client
		// could grow the ephemeral store at will.
		w.Header().Set("Retry-After", "60")
		g.fail(w, r, http.StatusTooManyRequests, "error.too_many_logins")
		return
	}
	if err := g.saveFlow(ctx, f, ar); err != nil {
		g.unavailable(w, r, err)
		return
	}
	next := "/login?flow=" + f.ID
	if f.Subject != "" {
		next = "/consent?flow=" + f.ID
	}
	if f.Lang != "" {
		next += "&lang=" + f.Lang // the pages' language switch, remembered in its cookie
	}
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// noMaxAge is maxAgeOf's answer for a request without max_age.
const noMaxAge = time.Duration(-1)

// maxAgeOf reads max_age (OpenID Connect Core §3.1.2.1): noMaxAge when absent.
func maxAgeOf(ar fosite.AuthorizeRequester) (time.Duration, error) {
	v := ar.GetRequestForm().Get("max_age")
	if v == "" {
		return noMaxAge, nil
	}
	n, err := strconv.ParseInt(v, 10, 32)
	if err != nil || n < 0 {
		return 0, fosite.ErrInvalidRequest.WithHint("max_age must be a whole number of seconds, 0 or more.")
	}
	return time.Duration(n) * time.Second, nil
}

// youngEnough reports whether a single sign-on login may stand for a request with maxAge:
// max_age 0 asks for a login now, like prompt=login; otherwise the login must be no older.
func (g *Pages) youngEnough(s ssoSession, maxAge time.Duration) bool {
	if maxAge == noMaxAge {
		return true
	}
	return maxAge > 0 && !g.p.now().After(s.AuthTime.Add(maxAge))
}

// noState stands in for the state of a request that sent none. state is optional (RFC 6749
// §4.1.1; PKCE protects a client that omits it), but fosite refuses a state shorter than
// MinParameterEntropy, absent included; so an absent one is given this value on the way in and
// taken out of the response on the way back (issRedirect). Its space makes it a value no client
// sends in practice.
const noState = "(no state)"

// optionalState gives a request without state the stand-in, before fosite reads it.
func optionalState(r *http.Request) {
	if r.ParseForm() != nil || r.Form.Has("state") || r.Form.Has("request_uri") {
		return
	}
	r.Form.Set("state", noState)
	if r.Method == http.MethodPost {
		r.PostForm.Set("state", noState)
	}
}

// uiLocale is the first language of ui_locales (OpenID Connect Core §3.1.2.1) that the pages
// offer, "" when none.
func uiLocale(v string) string {
	for _, tag := range strings.Fields(v) {
		base, _, _ := strings.Cut(strings.ToLower(tag), "-")
		if slices.Contains([]string{"sq", "sr", "en"}, base) {
			return base
		}
	}
	return ""
}

// loginHint keeps a login_hint that can be a personal number or an e-mail address to prefill
// the login form; anything else is ignored (it is only a hint).
func loginHint(v string) string {
	if len(v) > 128 || strings.ContainsAny(v, "\x00\r\n<>\"") {
		return ""
	}
	return v
}

// withIss adds iss to the authorization response or error the client is sent back with
// (RFC 9207), so that a client talking to several providers can tell which one answered.
func (g *Pages) withIss(w http.ResponseWriter) http.ResponseWriter {
	return issRedirect{ResponseWriter: w, iss: g.p.cfg.Issuer}
}

type issRedirect struct {
	http.ResponseWriter
	iss string
}

func (w issRedirect) WriteHeader(code int) {
	if code == http.StatusSeeOther || code == http.StatusFound {
		if u, err := url.Parse(w.Header().Get("Location")); err == nil && u.IsAbs() {
			q := u.Query()
			q.Set("iss", w.iss)
			if q.Get("state") == noState {
				q.Del("state")
			}
			u.RawQuery = q.Encode()
			w.Header().Set("Location", u.String())
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

// requiredLevel is the lowest level the request's acr_values accept (the person may reach any
// of them); low when it asks for none. Levels the client may not ask for are ignored; when
// nothing is left, the request cannot be met.
func requiredLevel(ar fosite.AuthorizeRequester, c store.Client, claims *claimsRequest) (string, error) {
	asked := strings.Fields(ar.GetRequestForm().Get("acr_values"))
	if len(asked) == 0 {
		asked = claims.acrValues() // acr asked through the claims parameter (§5.5.1.1)
	}
	if len(asked) == 0 {
		return LoALow, nil
	}
	best := -1
	for _, a := range asked {
		l := levelOf(a)
		if l < 0 || (len(c.AllowedACR) > 0 && !slices.Contains(c.AllowedACR, a)) {
			continue
		}
		if best < 0 || l < best {
			best = l
		}
	}
	if best < 0 {
		return "", errUnmet("None of the requested acr_values is offered to this client.")
	}
	return levels[best], nil
}

// saveFlow stores f, with the parked request ar when not nil, and the further entries more,
// in one write of the ephemeral store (one round trip on Redis).
func (g *Pages) saveFlow(ctx context.Context, f *flow, ar fosite.AuthorizeRequester, more ...store.Entry) error {
	var entries []store.Entry
	if ar != nil {
		req, err := encode(ar, nil)
		if err != nil {
			return err
		}
		entries = append(entries, store.Entry{Key: "idp:flow-req:" + f.ID, Value: req, TTL: flowTTL})
	}
	b, _ := json.Marshal(f)
	// The flow last: PutAll is not atomic, and a flow stored without its request or its
	// session would be found and fail further on.
	entries = append(append(entries, more...), store.Entry{Key: "idp:flow:" + f.ID, Value: b, TTL: flowTTL})
	return store.PutAll(ctx, g.p.eph, entries...)
}

// loadFlow reads the flow named in the request; ok false when it is absent or expired.
func (g *Pages) loadFlow(r *http.Request) (*flow, bool) {
	id := r.FormValue("flow")
	if id == "" {
		return nil, false
	}
	b, err := g.p.eph.Get(r.Context(), "idp:flow:"+id)
	if err != nil {
		return nil, false
	}
	var f flow
	if json.Unmarshal(b, &f) != nil {
		return nil, false
	}
	return &f, true
}

// formFlow reads the flow of a POST and checks its CSRF token.
func (g *Pages) formFlow(w http.ResponseWriter, r *http.Request) (*flow, bool) {
	f, ok := g.loadFlow(r)
	if !ok {
		g.fail(w, r, http.StatusBadRequest, "error.flow")
		return nil, false
	}
	if !sameToken(f.CSRF, r.PostFormValue("csrf")) {
		g.fail(w, r, http.StatusForbidden, "error.csrf")
		return nil, false
	}
	return f, true
}

func (g *Pages) clientName(ctx context.Context, id string) string {
	c, err := g.p.st.GetClient(ctx, id)
	if err != nil || c.(*client).rec.Name == "" {
		return id
	}
	return c.(*client).rec.Name
}

type loginData struct {
	Flow, CSRF, Client, Identifier, Error string
	// Password and Passkey: the page offers them (they can reach the level asked); Others are
	// further methods with pages of their own; High: the login asks for high.
	Password, Passkey, TOTP, High bool
	Others                        []LoginMethod
}

// newLoginData is the login page for f, offering only what can reach f.Required.
func (g *Pages) newLoginData(ctx context.Context, f *flow) loginData {
	d := loginData{Flow: f.ID, CSRF: f.CSRF, Client: g.clientName(ctx, f.Client), Identifier: f.LoginHint, High: f.Required == LoAHigh}
	for _, m := range g.methodsFor(f.Required) {
		switch m.ID {
		case "password":
			d.Password = true
		case "passkey":
			d.Passkey = true
		default:
			d.Others = append(d.Others, m)
		}
	}
	return d
}

func (g *Pages) loginPage(w http.ResponseWriter, r *http.Request) {
	f, ok := g.loadFlow(r)
	if !ok {
		g.fail(w, r, http.StatusBadRequest, "error.flow")
		return
	}
	g.web.Render(w, r, http.StatusOK, "login", g.newLoginData(r.Context(), f))
}

func (g *Pages) login(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	f, ok := g.formFlow(w, r)
	if !ok {
		return
	}
	if levelOf(f.Required) > levelOf(LoASubstantial) {
		// Step-up: a password with a one-time code cannot reach high; the page did not offer it.
		g.finishError(w, r, f, errUnmet("A password cannot reach "+f.Required+"."))
		return
	}
	identifier := r.PostFormValue("identifier")
	p, err := g.accounts.Password(ctx, identifier, r.PostFormValue("password"), clientIP(r))
	if err == nil && !active(p) {
		err = ErrInactive
	}
	if err != nil {
		data := g.newLoginData(ctx, f)
		data.Identifier = identifier
		switch {
		case errors.Is(err, ErrBadCredentials):
			data.Error = "login.bad"
			g.web.Render(w, r, http.StatusUnauthorized, "login", data)
		case errors.Is(err, ErrLockedOut):
			data.Error = "login.locked"
			g.web.Render(w, r, http.StatusTooManyRequests, "login", data)
		case errors.Is(err, ErrInactive):
			data.Error = "login.inactive"
			g.web.Render(w, r, http.StatusForbidden, "login", data)
		case errors.Is(err, ErrBusy): // a crowd, not a fault: no error line for each login
			w.Header().Set("Retry-After", "1")
			g.fail(w, r, http.StatusServiceUnavailable, "error.unavailable")
		default:
			g.unavailable(w, r, err)
		}
		return
	}
	f.Subject, f.AMR, f.AuthTime, f.AuthLevel = p.SubjectID, []string{"pwd"}, g.p.now().UTC().Truncate(time.Second), LoALow
	if levelOf(proofingLoA(p.Proofing)) < levelOf(f.Required) {
		g.finishError(w, r, f, errUnmet("This person's identity was proofed at a lower level than "+f.Required+"."))
		return
	}
	if levelOf(f.Required) >= levelOf(LoASubstantial) {
		hasKey, err := g.hasPasskey(ctx, p.SubjectID, f.Required)
		if err != nil {
			g.unavailable(w, r, err)
			return
		}
		if !hasKey && !g.accounts.HasTOTP(ctx, p.SubjectID) {
			g.finishError(w, r, f, errUnmet("This person cannot log in at "+f.Required+"."))
			return
		}
		if err := g.saveFlow(ctx, f, nil); err != nil {
			g.unavailable(w, r, err)
			return
		}
		http.Redirect(w, r, "/login/totp?flow="+f.ID, http.StatusSeeOther)
		return
	}
	g.authenticatedAs(w, r, f, p)
}

// secondFactor is the second-factor page's offer: a one-time code when the person has an
// authenticator app, a passkey when they have one reaching the level.
func (g *Pages) secondFactor(ctx context.Context, f *flow, msg string) (loginData, error) {
	hasKey, err := g.hasPasskey(ctx, f.Subject, f.Required)
	if err != nil {
		return loginData{}, err
	}
	return loginData{Flow: f.ID, CSRF: f.CSRF, Error: msg, Passkey: hasKey, TOTP: g.accounts.HasTOTP(ctx, f.Subject)}, nil
}

func (g *Pages) totpPage(w http.ResponseWriter, r *http.Request) {
	f, ok := g.loadFlow(r)
	if !ok || f.Subject == "" {
		g.fail(w, r, http.StatusBadRequest, "error.flow")
		return
	}
	d, err := g.secondFactor(r.Context(), f, "")
	if err != nil {
		g.unavailable(w, r, err)
		return
	}
	g.web.Render(w, r, http.StatusOK, "totp", d)
}

func (g *Pages) totp(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	f, ok := g.formFlow(w, r)
	if !ok {
		return
	}
	if f.Subject == "" || slices.Contains(f.AMR, "otp") {
		g.fail(w, r, http.StatusBadRequest, "error.flow")
		return
	}
	if err := g.accounts.TOTP(ctx, f.Subject, r.PostFormValue("code")); err != nil {
		data, derr := g.secondFactor(ctx, f, "totp.bad")
		if derr != nil {
			g.unavailable(w, r, derr)
			return
		}
		switch {
		case errors.Is(err, ErrBadCode), errors.Is(err, ErrNoTOTP):
			g.web.Render(w, r, http.StatusUnauthorized, "totp", data)
		case errors.Is(err, ErrLockedOut):
			data.Error = "login.locked"
			g.web.Render(w, r, http.StatusTooManyRequests, "totp", data)
		default:
			g.unavailable(w, r, err)
		}
		return
	}
	f.AMR = append(f.AMR, "otp", "mfa")
	f.AuthLevel = LoASubstantial
	g.authenticated(w, r, f)
}

// authenticated signs the person in (signIn) and goes on to consent.
func (g *Pages) authenticated(w http.ResponseWriter, r *http.Request, f *flow) {
	p, err := g.p.db.Person(r.Context(), f.Subject)
	if err != nil {
		g.unavailable(w, r, err)
		return
	}
	g.authenticatedAs(w, r, f, p)
}

// authenticatedAs is authenticated for the person p, read in this request.
func (g *Pages) authenticatedAs(w http.ResponseWriter, r *http.Request, f *flow, p store.Person) {
	cookie, err := g.signInAs(r.Context(), r, f, p)
	if errors.Is(err, ErrInactive) {
		g.fail(w, r, http.StatusForbidden, "login.inactive")
		return
	} else if err != nil {
		g.unavailable(w, r, err)
		return
	}
	http.SetCookie(w, cookie)
	http.Redirect(w, r, "/consent?flow="+f.ID, http.StatusSeeOther)
}

// signIn sets the login's level (the lower of the authenticators' and the identity proofing's),
// records the login in the audit log, and starts a new single sign-on session (a new id: no
// fixation), returning its cookie. ErrInactive for a suspended or revoked eID means.
func (g *Pages) signIn(ctx context.Context, r *http.Request, f *flow) (*http.Cookie, error) {
	p, err := g.p.db.Person(ctx, f.Subject)
	if err != nil {
		return nil, err
	}
	return g.signInAs(ctx, r, f, p)
}

// signInAs is signIn for the person p, read in this request (a password login has just read
// it: a second read would only cost a round trip to the durable store).
func (g *Pages) signInAs(ctx context.Context, r *http.Request, f *flow, p store.Person) (*http.Cookie, error) {
	if !active(p) {
		return nil, ErrInactive
	}
	f.ACR = minLoA(proofingLoA(p.Proofing), f.AuthLevel)
	if err := g.p.recordLogin(ctx, f, p.Proofing); err != nil {
		return nil, err
	}
	if old, ok := g.sso(r); ok {
		if err := g.p.eph.Delete(ctx, "idp:sso:"+old.ID); err != nil {
			return nil, err
		}
	}
	s := ssoSession{ID: randomID(), Subject: f.Subject, AMR: f.AMR, ACR: f.ACR, AuthTime: f.AuthTime, CSRF: randomID()}
	b, _ := json.Marshal(s)
	if err := g.saveFlow(ctx, f, nil, store.Entry{Key: "idp:sso:" + s.ID, Value: b, TTL: ssoTTL}); err != nil {
		return nil, err
	}
	return &http.Cookie{Name: ssoCookie, Value: s.ID, Path: "/", MaxAge: int(ssoTTL.Seconds()),
		HttpOnly: true, Secure: g.secure, SameSite: http.SameSiteLaxMode}, nil
}

// sso reads the browser's single sign-on session.
func (g *Pages) sso(r *http.Request) (ssoSession, bool) {
	c, err := r.Cookie(ssoCookie)
	if err != nil || c.Value == "" {
		return ssoSession{}, false
	}
	b, err := g.p.eph.Get(r.Context(), "idp:sso:"+c.Value)
	if err != nil {
		return ssoSession{}, false
	}
	var s ssoSession
	if json.Unmarshal(b, &s) != nil || s.ID != c.Value {
		return ssoSession{}, false
	}
	return s, true
}

// consentItems are the page's lines for the scopes asked.
func consentItems(scopes []string) []string {
	items := []string{"consent.sub"}
	for _, s := range []string{"profile", "personal_number", "offline_access"} {
		if slices.Contains(scopes, s) {
			items = append(items, "consent."+s)
		}
	}
	if slices.Contains(scopes, auth.ScopePID) {
		items = append(items, "consent.pid")
	}
	return items
}

func (g *Pages) consentKey(f *flow) string { return "idp:consent:" + f.Subject + ":" + f.Client }

// remembered reports whether the person already allowed every scope of f for its client.
func (g *Pages) remembered(ctx context.Context, f *flow) bool {
	b, err := g.p.eph.Get(ctx, g.consentKey(f))
	if err != nil {
		return false
	}
	var allowed []string
	if json.Unmarshal(b, &allowed) != nil {
		return false
	}
	for _, s := range f.Scopes {
		if !slices.Contains(allowed, s) {
			return false
		}
	}
	return true
}

type consentData struct {
	Flow, CSRF, Client string
	Items              []string
}

func (g *Pages) consentPage(w http.ResponseWriter, r *http.Request) {
	f, ok := g.loadFlow(r)
	if !ok || f.Subject == "" {
		g.fail(w, r, http.StatusBadRequest, "error.flow")
		return
	}
	if !g.reached(w, r, f) {
		return
	}
	if f.Credential != nil {
		if g.credentialRefused(w, r, f) {
			return
		}
		g.web.Render(w, r, http.StatusOK, "credential", credentialConsent(g.p.creds, f, g.clientName(r.Context(), f.Client)))
		return
	}
	if !f.Reconsent && g.remembered(r.Context(), f) {
		g.finish(w, r, f)
		return
	}
	if f.NoUI {
		g.finishError(w, r, f, fosite.ErrConsentRequired)
		return
	}
	g.web.Render(w, r, http.StatusOK, "consent", consentData{Flow: f.ID, CSRF: f.CSRF,
		Client: g.clientName(r.Context(), f.Client), Items: consentItems(f.Scopes)})
}

func (g *Pages) consent(w http.ResponseWriter, r *http.Request) {
	f, ok := g.formFlow(w, r)
	if !ok {
		return
	}
	if f.Subject == "" {
		g.fail(w, r, http.StatusBadRequest, "error.flow")
		return
	}
	if !g.reached(w, r, f) {
		return
	}
	if r.PostFormValue("decision") != "allow" {
		if f.Credential != nil && g.p.creds != nil {
			if _, err := g.p.creds.RecordAuthorization(r.Context(), f.Subject, f.Client, *f.Credential, "access_denied: the official did not allow it"); err != nil {
				g.p.log.ErrorContext(r.Context(), "audit of a refused credential authorization", "err", err)
			}
		}
		g.finishError(w, r, f, fosite.ErrAccessDenied.WithHint("The person did not allow it."))
		return
	}
	if f.Credential != nil {
		// A credential authorization is for these digests only: never remembered.
		g.finishCredential(w, r, f)
		return
	}
	if r.PostFormValue("remember") == "1" {
		b, _ := json.Marshal(f.Scopes)
		if err := g.p.eph.Put(r.Context(), g.consentKey(f), b, consentTTL); err != nil {
			g.unavailable(w, r, err)
			return
		}
	}
	g.finish(w, r, f)
}

// takeRequest reads the parked authorization request back, once.
// The flow is claimed with an atomic Take: of two submissions of one form racing, only one
// gets a code (two codes for one credential authorization would sign its digests twice).
func (g *Pages) takeRequest(ctx context.Context, f *flow) (fosite.AuthorizeRequester, error) {
	if _, err := g.p.eph.Take(ctx, "idp:flow:"+f.ID); err != nil {
		return nil, err
	}
	b, err := g.p.eph.Take(ctx, "idp:flow-req:"+f.ID)
	if err != nil {
		return nil, mapErr(err)
	}
	ar, _, err := g.p.st.decode(ctx, b, nil)
	return ar, err
}

// finish sends the browser back to the client with a code.
func (g *Pages) finish(w http.ResponseWriter, r *http.Request, f *flow) {
	ar, err := g.takeRequest(r.Context(), f)
	if err != nil {
		g.fail(w, r, http.StatusBadRequest, "error.flow")
		return
	}
	g.issue(w, r, f, ar, grantWallet(f.Wallet))
}

// issue sends the browser back to the client with a code for the taken request ar; edit
// completes the session.
func (g *Pages) issue(w http.ResponseWriter, r *http.Request, f *flow, ar fosite.AuthorizeRequester, edit func(*Session, fosite.AuthorizeRequester)) {
	ctx := r.Context()
	c := ar.GetClient().(*client)
	sub, err := g.p.subject(ctx, c.rec, f.Subject)
	if err != nil {
		g.unavailable(w, r, err)
		return
	}
	for _, s := range ar.GetRequestedScopes() {
		ar.GrantScope(s)
	}
	sess := newSession()
	sess.Person, sess.Subject = f.Subject, sub
	sess.CodeJKT = ar.GetRequestForm().Get("dpop_jkt")
	sess.Asked = f.Asked
	acr := f.ACR
	p, err := g.p.db.Person(ctx, f.Subject)
	if err != nil {
		g.unavailable(w, r, err)
		return
	} else if !active(p) {
		// Suspended or revoked since the single sign-on began.
		g.p.oauth.WriteAuthorizeError(ctx, g.withIss(w), ar, fosite.ErrAccessDenied.WithHint("The person's eID means is suspended or revoked."))
		return
	}
	// auth_time has whole seconds, so the request time fosite compares it with for prompt=login
	// must too: a login in the request's own second is fresh.
	sess.Claims = &jwt.IDTokenClaims{Subject: sub, AuthTime: f.AuthTime, RequestedAt: ar.GetRequestedAt().UTC().Truncate(time.Second),
		AuthenticationContextClassReference: acr, AuthenticationMethodsReferences: f.AMR, Extra: map[string]any{}}
	if len(f.Asked.IDToken) > 0 {
		addIDTokenClaims(sess.Claims, p, f.Asked.IDToken)
	}
	if c.rec.Policy.IDTokenAlg == "RS256" {
		sess.DefaultSession.Headers.Add(algHeader, "RS256") // tokenKeys.Generate signs it with an RSA key
	}
	sess.JWTClaims.Subject = sub
	sess.JWTClaims.Extra = map[string]any{"client_id": c.GetID(), "acr": acr, "auth_time": f.AuthTime.Unix()}
	sess.JWTHeader.Add("typ", "at+jwt")
	if edit != nil {
		edit(sess, ar)
	}
	// After edit, which may grant the credential scope.
	if err := g.p.grantAudience(ar, ar.GetRequestForm()["resource"]); err != nil {
		g.p.oauth.WriteAuthorizeError(ctx, g.withIss(w), ar, err)
		return
	}
	resp, err := g.p.oauth.NewAuthorizeResponse(ctx, ar, sess)
	if err != nil {
		g.p.oauthError(ctx, "authorization not granted", err)
		g.p.oauth.WriteAuthorizeError(ctx, g.withIss(w), ar, err)
		return
	}
	g.p.oauth.WriteAuthorizeResponse(ctx, g.withIss(w), ar, resp)
}

// finishError sends the browser back to the client with an error.
func (g *Pages) finishError(w http.ResponseWriter, r *http.Request, f *flow, e error) {
	ctx := r.Context()
	ar, err := g.takeRequest(ctx, f)
	if err != nil {
		g.fail(w, r, http.StatusBadRequest, "error.flow")
		return
	}
	g.p.oauthError(ctx, "authorization refused", e)
	g.p.oauth.WriteAuthorizeError(ctx, g.withIss(w), ar, e)
}

// subject is the sub a client sees: pairwise (a hash of its sector, the person and a
// platform secret) when the client has a sector identifier, the person's id otherwise.
func (p *Provider) subject(ctx context.Context, c store.Client, person string) (string, error) {
	if c.SectorIdentifier == "" {
		return person, nil
	}
	salt := make([]byte, 32)
	rand.Read(salt)
	salt, err := p.db.PutSettingIfAbsent(ctx, pairwiseSet, salt)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	h.Write([]byte(c.SectorIdentifier))
	h.Write([]byte{0})
	h.Write([]byte(person))
	h.Write([]byte{0})
	h.Write(salt)
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil)), nil
}

// --- authenticator enrolment

type enrollData struct {
	CSRF, Enrolment, Secret, Error string
	// QR is a data: URL the page shows as an image; html/template accepts it only as a URL it
	// is told is safe (a plain string in src becomes "#ZgotmplZ").
	QR   template.URL
	Done bool
}

func (g *Pages) enrollPage(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	s, ok := g.sso(r)
	if !ok {
		g.fail(w, r, http.StatusUnauthorized, "error.flow")
		return
	}
	p, err := g.p.db.Person(ctx, s.Subject)
	if err != nil {
		g.unavailable(w, r, err)
		return
	}
	key, err := g.accounts.NewTOTP(p)
	if err != nil {
		g.unavailable(w, r, err)
		return
	}
	id := randomID()
	if err := g.p.eph.Put(ctx, "idp:enrol:"+id, []byte(key.URL()), 10*time.Minute); err != nil {
		g.unavailable(w, r, err)
		return
	}
	g.renderEnrol(w, r, http.StatusOK, s, id, key, "")
}

func (g *Pages) renderEnrol(w http.ResponseWriter, r *http.Request, status int, s ssoSession, id string, key *otp.Key, msg string) {
	img, err := key.Image(200, 200)
	if err != nil {
		g.unavailable(w, r, err)
		return
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		g.unavailable(w, r, err)
		return
	}
	g.web.Render(w, r, status, "enroll", enrollData{CSRF: s.CSRF, Enrolment: id, Secret: key.Secret(), Error: msg,
		QR: template.URL("data:image/png;base64," + base64.StdEncoding.EncodeToString(buf.Bytes()))})
}

func (g *Pages) enroll(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	s, ok := g.sso(r)
	if !ok {
		g.fail(w, r, http.StatusUnauthorized, "error.flow")
		return
	}
	if !sameToken(s.CSRF, r.PostFormValue("csrf")) {
		g.fail(w, r, http.StatusForbidden, "error.csrf")
		return
	}
	id := r.PostFormValue("enrolment")
	raw, err := g.p.eph.Get(ctx, "idp:enrol:"+id)
	if err != nil || id == "" {
		g.fail(w, r, http.StatusBadRequest, "error.flow")
		return
	}
	key, err := otp.NewKeyFromURL(string(raw))
	if err != nil {
		g.unavailable(w, r, err)
		return
	}
	if !totp.Validate(strings.TrimSpace(r.PostFormValue("code")), key.Secret()) {
		g.renderEnrol(w, r, http.StatusUnauthorized, s, id, key, "totp.bad")
		return
	}
	if err := g.accounts.EnrollTOTP(ctx, s.Subject, key); err != nil {
		g.unavailable(w, r, err)
		return
	}
	if err := g.p.eph.Delete(ctx, "idp:enrol:"+id); err != nil {
		// The seed is stored; the pending enrolment expires with its TTL.
		g.p.log.WarnContext(ctx, "pending TOTP enrolment not deleted", "err", err)
	}
	g.web.Render(w, r, http.StatusOK, "enroll", enrollData{Done: true})
}

// --- RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0)

type logoutData struct {
	CSRF, Logout string
	Done         bool
}

// logoutRequest is a checked logout, waiting for the person's confirmation.
type logoutRequest struct {
	CSRF     string `json:"csrf"`
	Redirect string `json:"redirect,omitempty"`
}

// logoutPage checks id_token_hint and post_logout_redirect_uri (it must be one the client
// registered) and asks the person to confirm.
func (g *Pages) logoutPage(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	q := r.URL.Query()
	lr := logoutRequest{CSRF: randomID()}
	if target := q.Get("post_logout_redirect_uri"); target != "" {
		clientID := q.Get("client_id")
		if hint := q.Get("id_token_hint"); hint != "" {
			tok, err := g.p.keys.Decode(ctx, hint)
			if err != nil && !isExpiredOnly(err) {
				g.fail(w, r, http.StatusBadRequest, "error.request")
				return
			}
			if tok != nil {
				if aud, ok := tok.Claims["aud"].([]any); ok && len(aud) > 0 {
					clientID, _ = aud[0].(string)
				} else if aud, ok := tok.Claims["aud"].(string); ok {
					clientID = aud
				}
			}
		}
		c, err := g.p.db.Client(ctx, clientID)
		if err != nil || !slices.Contains(c.PostLogoutRedirectURIs, target) {
			g.fail(w, r, http.StatusBadRequest, "error.request")
			return
		}
		u, _ := url.Parse(target)
		if st := q.Get("state"); st != "" {
			v := u.Query()
			v.Set("state", st)
			u.RawQuery = v.Encode()
		}
		lr.Redirect = u.String()
	}
	id := randomID()
	b, _ := json.Marshal(lr)
	if err := g.p.eph.Put(ctx, "idp:logout:"+id, b, flowTTL); err != nil {
		g.unavailable(w, r, err)
		return
	}
	g.web.Render(w, r, http.StatusOK, "logout", logoutData{CSRF: lr.CSRF, Logout: id})
}

// isExpiredOnly: an expired ID token is still a fine hint of who is logging out.
func isExpiredOnly(err error) bool {
	var ve *jwt.ValidationError
	return errors.As(err, &ve) && ve.Errors == jwt.ValidationErrorExpired
}

func (g *Pages) logout(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	id := r.PostFormValue("logout")
	b, err := g.p.eph.Take(ctx, "idp:logout:"+id)
	var lr logoutRequest
	if err != nil || id == "" || json.Unmarshal(b, &lr) != nil {
		g.fail(w, r, http.StatusBadRequest, "error.flow")
		return
	}
	if !sameToken(lr.CSRF, r.PostFormValue("csrf")) {
		g.fail(w, r, http.StatusForbidden, "error.csrf")
		return
	}
	if s, ok := g.sso(r); ok {
		// Not logged out while the session lives on: say so rather than "logged out".
		if err := g.p.eph.Delete(ctx, "idp:sso:"+s.ID); err != nil {
			g.unavailable(w, r, err)
			return
		}
	}
	http.SetCookie(w, &http.Cookie{Name: ssoCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: g.secure, SameSite: http.SameSiteLaxMode})
	if lr.Redirect != "" {
		http.Redirect(w, r, lr.Redirect, http.StatusSeeOther)
		return
	}
	g.web.Render(w, r, http.StatusOK, "logout", logoutData{Done: true})
}

// --- errors

func (g *Pages) fail(w http.ResponseWriter, r *http.Request, status int, msg string) {
	g.web.Render(w, r, status, "error", struct{ Message string }{msg})
}

func (g *Pages) unavailable(w http.ResponseWriter, r *http.Request, err error) {
	g.p.log.ErrorContext(r.Context(), "login page", "err", err)
	w.Header().Set("Retry-After", "5")
	g.fail(w, r, http.StatusServiceUnavailable, "error.unavailable")
}

// addressKey is the client's address as a bound counts it: an IPv4 address, or an IPv6 /64 (one
// subscriber's prefix, whose addresses are free for the taking).
func addressKey(r *http.Request) string {
	ip, err := netip.ParseAddr(clientIP(r))
	if err != nil {
		return clientIP(r)
	}
	if ip = ip.Unmap(); ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}

// clientIP is the peer's address (a proxy in front is not trusted to tell another).
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
