package pid

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/vula-eid/vula/internal/auth"
	"github.com/vula-eid/vula/internal/problem"
	"github.com/vula-eid/vula/internal/rawsig"
	"github.com/vula-eid/vula/internal/server"
	"github.com/vula-eid/vula/internal/store"
	"github.com/vula-eid/vula/internal/web"
)

// Handler serves the issuer over HTTP: the OpenID4VCI metadata, the pre-authorized code's
// token endpoint, the nonce and credential endpoints, and the status lists.
type Handler struct {
	S *Service
	// Auth checks the identity provider's access tokens (authorization code flow, scope
	// auth.ScopePID); nil when the provider is not the issuer's authorization server.
	Auth auth.Authenticator
	// Pages renders the offer page; without it the page is not served.
	Pages *web.Renderer
	// Sessions names the person logged in at the provider, for their own credentials' page;
	// without it (or Pages) that page is not served.
	Sessions auth.Sessions
	Log      *slog.Logger
}

const maxBody = 64 << 10

// Register adds the issuer's routes to mux.
func (h Handler) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /.well-known/openid-credential-issuer", h.metadata)
	mux.HandleFunc("GET /.well-known/oauth-authorization-server/pid", h.asMetadata)
	mux.HandleFunc("POST /pid/token", h.token)
	mux.HandleFunc("POST /pid/nonce", h.nonce)
	mux.HandleFunc("POST /pid/credential", h.credential)
	mux.HandleFunc("GET /pid/status/{list}", h.status)
	mux.HandleFunc("GET /pid/credential-offer/{id}", h.credentialOffer)
	if h.Pages != nil {
		mux.HandleFunc("GET /pid/offer/{id}", h.offerPage)
	}
	if h.Pages != nil && h.Sessions != nil {
		mux.HandleFunc("GET "+minePath, h.minePage)
		mux.HandleFunc("POST "+minePath+"/revoke", h.mineRevoke)
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v) // the client went away: nothing to do
}

// oauthError answers an OAuth-style error (RFC 6749 §5.2, OpenID4VCI §8.3.1.2); a store that is
// down is a 503 with Retry-After, anything unknown a 500 whose detail stays in the log.
func (h Handler) oauthError(w http.ResponseWriter, r *http.Request, status int, code string, err error) {
	if errors.Is(err, store.ErrUnavailable) || errors.Is(err, ErrNoIssuerKey) {
		server.WriteError(w, r, problem.Mark(problem.Unavailable, err))
		return
	}
	if status >= 500 {
		h.Log.ErrorContext(r.Context(), "pid", "err", err)
		server.WriteError(w, r, problem.Mark(problem.Internal, err))
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, status, map[string]string{"error": code, "error_description": err.Error()})
}

func (h Handler) metadata(w http.ResponseWriter, r *http.Request) {
	s := h.S
	alg := "ES256"
	if k, err := s.issuer(r.Context()); err == nil {
		if a, err := rawsig.AlgOf(k.signer.Public()); err == nil {
			alg = a.JOSE
		}
	}
	claims := []map[string]any{}
	for _, c := range [][]any{{"family_name"}, {"given_name"}, {"birthdate"}, {"nationalities"}, {"personal_administrative_number"},
		{"issuing_authority"}, {"issuing_country"}, {"date_of_issuance"}, {"date_of_expiry"}, {"email"}, {"age_in_years"},
		{"age_birth_year"}, {"age_equal_or_over", "18"}} {
		claims = append(claims, map[string]any{"path": c})
	}
	display := []map[string]any{{"name": "Person identification data", "locale": "en"},
		{"name": "Të dhënat e identifikimit personal", "locale": "sq"}, {"name": "Lični identifikacioni podaci", "locale": "sr"}}
	w.Header().Set("Cache-Control", "public, max-age=300")
	writeJSON(w, http.StatusOK, map[string]any{
		"credential_issuer":         s.cfg.Issuer,
		"authorization_servers":     h.authServers(),
		"credential_endpoint":       s.cfg.Issuer + "/pid/credential",
		"nonce_endpoint":            s.cfg.Issuer + "/pid/nonce",
		"batch_credential_issuance": map[string]any{"batch_size": s.cfg.BatchSize},
		"display":                   []map[string]any{{"name": s.cfg.Authority, "locale": "en"}},
		"credential_configurations_supported": map[string]any{
			ConfigSDJWT: map[string]any{
				"format": FormatSDJWT,
				"vct":    VCT,
				"scope":  Scope,
				"cryptographic_binding_methods_supported": []string{"jwk"},
				"credential_signing_alg_values_supported": []string{alg},
				"proof_types_supported":                   map[string]any{"jwt": map[string]any{"proof_signing_alg_values_supported": ProofAlgs}},
				"credential_metadata":                     map[string]any{"display": display, "claims": claims},
			},
			ConfigMdoc: map[string]any{
				"format":  FormatMdoc,
				"doctype": DocType,
				"cryptographic_binding_methods_supported": []string{"cose_key"},
				"credential_signing_alg_values_supported": []int{coseAlgOf(alg)},
				"proof_types_supported":                   map[string]any{"jwt": map[string]any{"proof_signing_alg_values_supported": []string{"ES256"}}},
				"credential_metadata":                     map[string]any{"display": display, "claims": mdocClaims()},
			},
		},
	})
}

// coseAlgOf is the COSE algorithm number of a JOSE one (RFC 9053), as mso_mdoc metadata names it.
func coseAlgOf(alg string) int {
	return map[string]int{"ES256": -7, "ES384": -35, "PS256": -37}[alg]
}

// mdocClaims are the mdoc's data elements as metadata paths: namespace, element.
func mdocClaims() []map[string]any {
	var out []map[string]any
	for _, e := range []string{"family_name", "given_name", "birth_date", "nationality", "personal_administrative_number",
		"issuing_authority", "issuing_country", "issuance_date", "expiry_date", "email_address", "age_in_years", "age_birth_year",
		"age_over_18"} {
		out = append(out, map[string]any{"path": []string{DocType, e}})
	}
	return out
}

// authServers are the issuer's authorization servers: Vula's identity provider (whose issuer is
// the credential issuer's identifier) for the authorization code flow, and the issuer's own
// for pre-authorized codes.
func (h Handler) authServers() []string {
	if h.Auth == nil {
		return []string{h.S.AuthServer()}
	}
	return []string{h.S.cfg.Issuer, h.S.AuthServer()}
}

// asMetadata is the RFC 8414 metadata of the issuer's own authorization server, which serves
// only the pre-authorized code grant.
func (h Handler) asMetadata(w http.ResponseWriter, r *http.Request) {
	s := h.S
	w.Header().Set("Cache-Control", "public, max-age=300")
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                          s.AuthServer(),
		"token_endpoint":                                  s.AuthServer() + "/token",
		"grant_types_supported":                           []string{GrantPreAuthorized},
		"response_types_supported":                        []string{},
		"token_endpoint_auth_methods_supported":           []string{"none"},
		"pre-authorized_grant_anonymous_access_supported": true,
		"dpop_signing_alg_values_supported":               auth.DPoPAlgs,
		"authorization_details_types_supported":           []string{auth.OpenIDCredentialType},
	})
}

// configs are the credential configurations the issuer offers.
var configs = []string{ConfigSDJWT, ConfigMdoc}

// credentialOffer serves an offer by reference (OpenID4VCI §4.1.3) until its code is redeemed
// or it expires.
func (h Handler) credentialOffer(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	b, err := h.S.CredentialOffer(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && len(id) > 64) {
		server.WriteError(w, r, problem.Errorf(problem.NotFound, "no such credential offer: it was used, withdrawn or has expired"))
		return
	}
	if err != nil {
		h.oauthError(w, r, http.StatusInternalServerError, "server_error", err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b) // the client went away: nothing to do
}

// dpopError answers a refused DPoP proof at the token endpoint (RFC 9449 §5, §8): 400
// invalid_dpop_proof, or use_dpop_nonce with a fresh nonce.
func (h Handler) dpopError(w http.ResponseWriter, r *http.Request, err error) {
	var bad *auth.DPoPError
	switch {
	case errors.As(err, &bad):
		h.oauthError(w, r, http.StatusBadRequest, "invalid_dpop_proof", errors.New(bad.Hint))
	case errors.Is(err, auth.ErrUseDPoPNonce):
		h.oauthError(w, r, http.StatusBadRequest, "use_dpop_nonce", errors.New("the DPoP proof must carry the nonce in DPoP-Nonce"))
	default:
		h.oauthError(w, r, http.StatusInternalServerError, "server_error", err)
	}
}

func (h Handler) token(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	if err := r.ParseForm(); err != nil {
		h.oauthError(w, r, http.StatusBadRequest, "invalid_request", fmt.Errorf("the body is not a form: %w", err))
		return
	}
	if g := r.PostForm.Get("grant_type"); g != GrantPreAuthorized {
		h.oauthError(w, r, http.StatusBadRequest, "unsupported_grant_type", fmt.Errorf("grant_type %q: only %s here", g, GrantPreAuthorized))
		return
	}
	code, tx := r.PostForm.Get("pre-authorized_code"), r.PostForm.Get("tx_code")
	if code == "" || tx == "" {
		h.oauthError(w, r, http.StatusBadRequest, "invalid_request", errors.New("pre-authorized_code and tx_code are required"))
		return
	}
	var g Grant
	if raw := r.PostForm.Get("authorization_details"); raw != "" {
		ids, err := auth.ParseOpenIDCredentialDetails(raw, configs, h.S.cfg.Issuer)
		if err != nil {
			h.oauthError(w, r, http.StatusBadRequest, "invalid_authorization_details", err)
			return
		}
		g.Configs = ids
	}
	// A DPoP proof binds the token to its key (RFC 9449 §5); the server nonce is required, so a
	// proof made before the request cannot be used later.
	if r.Header.Get("DPoP") != "" {
		n, err := h.S.DPoPNonce(r.Context())
		if err != nil {
			h.oauthError(w, r, http.StatusInternalServerError, "server_error", err)
			return
		}
		w.Header().Set("DPoP-Nonce", n)
	}
	jkt, err := auth.CheckDPoP(r.Context(), r, auth.DPoPWant{Method: http.MethodPost, URL: h.S.AuthServer() + "/token",
		Nonce: h.S.validDPoPNonce, ReplayPrefix: "pid:dpop:"}, h.S.eph, h.S.now())
	if err != nil {
		h.dpopError(w, r, err)
		return
	}
	g.JKT = jkt
	tok, err := h.S.Redeem(r.Context(), code, tx, g)
	switch {
	case errors.Is(err, ErrInvalidGrant), errors.Is(err, ErrWrongTxCode):
		h.oauthError(w, r, http.StatusBadRequest, "invalid_grant", err)
		return
	case err != nil:
		h.oauthError(w, r, http.StatusInternalServerError, "server_error", err)
		return
	}
	resp := map[string]any{"access_token": tok, "token_type": "Bearer", "expires_in": int(tokenTTL.Seconds())}
	if jkt != "" {
		resp["token_type"] = auth.DPoPScheme
	}
	if g.Configs != nil {
		resp["authorization_details"] = auth.OpenIDCredentialGrant(g.Configs)
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, resp)
}

func (h Handler) nonce(w http.ResponseWriter, r *http.Request) {
	n, err := h.S.Nonce(r.Context())
	if err != nil {
		h.oauthError(w, r, http.StatusInternalServerError, "server_error", err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, map[string]string{"c_nonce": n})
}

// credentialRequest is an OpenID4VCI 1.0 credential request.
type credentialRequest struct {
	ConfigurationID string `json:"credential_configuration_id"`
	Identifier      string `json:"credential_identifier"`
	Proofs          *struct {
		JWT []string `json:"jwt"`
	} `json:"proofs"`
	Proof json.RawMessage `json:"proof"`
}

func (h Handler) credential(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	scheme, tok := auth.Token(r)
	if tok == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="vula-pid"`)
		server.WriteError(w, r, problem.Mark(problem.Unauthorized, auth.ErrNoToken))
		return
	}
	at, err := h.S.accessToken(ctx, tok)
	switch {
	case errors.Is(err, store.ErrNotFound) && h.Auth != nil:
		// Not a pre-authorized code's token: one of the provider's, from the person's own login.
		c, err := h.Auth.Bearer(r, Scope)
		if err != nil {
			auth.WriteBearerError(w, r, "vula-pid", Scope, err)
			return
		}
		if c.Subject == "" {
			h.oauthError(w, r, http.StatusForbidden, "insufficient_scope", errors.New("the token speaks for no person"))
			return
		}
		if !auth.AtLeast(c.ACR, h.S.cfg.LoA) {
			w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="vula-pid", error="insufficient_user_authentication", acr_values=%q`, h.S.cfg.LoA))
			h.oauthError(w, r, http.StatusUnauthorized, "insufficient_user_authentication",
				fmt.Errorf("a PID needs a login at %s or higher, this one reached %q", h.S.cfg.LoA, c.ACR))
			return
		}
		at = tokenRecord{Subject: c.Subject, Actor: c.ClientID, Configs: c.WalletCredentials}
	case errors.Is(err, store.ErrNotFound):
		w.Header().Set("WWW-Authenticate", `Bearer realm="vula-pid", error="invalid_token"`)
		server.WriteError(w, r, problem.Mark(problem.Unauthorized, auth.ErrTokenInvalid))
		return
	case err != nil:
		h.oauthError(w, r, http.StatusInternalServerError, "server_error", err)
		return
	default:
		if err := h.checkBinding(r, scheme, tok, at.JKT); err != nil {
			auth.WriteBearerError(w, r, "vula-pid", Scope, err)
			return
		}
	}
	var req credentialRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	if err := dec.Decode(&req); err != nil {
		h.oauthError(w, r, http.StatusBadRequest, "invalid_credential_request", fmt.Errorf("the body is not a JSON credential request: %w", err))
		return
	}
	format, code, err := requestedFormat(req, at.Configs)
	if err != nil {
		h.oauthError(w, r, http.StatusBadRequest, code, err)
		return
	}
	if len(req.Proof) > 0 {
		h.oauthError(w, r, http.StatusBadRequest, "invalid_credential_request", errors.New("proof is not accepted: send proofs (OpenID4VCI 1.0)"))
		return
	}
	if req.Proofs == nil || len(req.Proofs.JWT) == 0 {
		h.oauthError(w, r, http.StatusBadRequest, "invalid_proof", errors.New("proofs.jwt is required"))
		return
	}
	keys, err := h.S.checkProofs(ctx, req.Proofs.JWT)
	switch {
	case errors.Is(err, ErrInvalidNonce):
		h.oauthError(w, r, http.StatusBadRequest, "invalid_nonce", err)
		return
	case errors.Is(err, ErrInvalidProof):
		h.oauthError(w, r, http.StatusBadRequest, "invalid_proof", err)
		return
	case err != nil:
		h.oauthError(w, r, http.StatusInternalServerError, "server_error", err)
		return
	}
	creds, err := h.S.Issue(ctx, Request{SubjectID: at.Subject, Actor: at.Actor, Format: format, Holders: keys,
		RequestID: server.RequestID(ctx)})
	switch {
	case errors.Is(err, ErrNotEligible):
		h.oauthError(w, r, http.StatusBadRequest, "invalid_credential_request", err)
		return
	case errors.Is(err, ErrInvalidKey):
		h.oauthError(w, r, http.StatusBadRequest, "invalid_proof", err)
		return
	case err != nil:
		h.oauthError(w, r, http.StatusInternalServerError, "server_error", err)
		return
	}
	out := make([]map[string]string, len(creds))
	for i, c := range creds {
		out[i] = map[string]string{"credential": c}
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, map[string]any{"credentials": out})
}

// requestedFormat is the format a credential request asks for (OpenID4VCI §8.2): by
// credential_identifier when the token's authorization_details granted identifiers (granted),
// by credential_configuration_id otherwise; never both. On error, the OpenID4VCI error code.
func requestedFormat(req credentialRequest, granted []string) (format, code string, err error) {
	formats := map[string]string{ConfigSDJWT: FormatSDJWT, ConfigMdoc: FormatMdoc}
	switch {
	case req.Identifier != "" && req.ConfigurationID != "":
		return "", "invalid_credential_request", errors.New("give credential_identifier or credential_configuration_id, not both")
	case granted != nil && req.Identifier == "":
		return "", "invalid_credential_request", errors.New("the token's authorization_details returned credential_identifiers: name one in credential_identifier")
	case granted != nil:
		if !slices.Contains(granted, req.Identifier) {
			return "", "unknown_credential_identifier", fmt.Errorf("credential_identifier %q is not one this token was granted", req.Identifier)
		}
		return formats[req.Identifier], "", nil
	case req.Identifier != "":
		return "", "invalid_credential_request", errors.New("credential_identifier needs a token granted with authorization_details: name credential_configuration_id")
	case req.ConfigurationID == "":
		return "", "invalid_credential_request", errors.New("credential_configuration_id is required")
	case formats[req.ConfigurationID] == "":
		return "", "unknown_credential_configuration", fmt.Errorf("credential_configuration_id %q is not offered (want %s or %s)", req.ConfigurationID, ConfigSDJWT, ConfigMdoc)
	}
	return formats[req.ConfigurationID], "", nil
}

// checkBinding checks that an issuer access token comes as it was issued: a DPoP-bound one with
// the DPoP scheme and a proof by its key over this request, its ath the token's hash (RFC 9449
// §7); a bearer one as Bearer.
func (h Handler) checkBinding(r *http.Request, scheme, tok, jkt string) error {
	if jkt == "" {
		if scheme != "Bearer" {
			return auth.ErrTokenInvalid
		}
		return nil
	}
	if scheme != auth.DPoPScheme {
		return auth.ErrDPoPProof // a bound token sent as a bearer token
	}
	got, err := auth.CheckDPoP(r.Context(), r, auth.DPoPWant{Method: r.Method, URL: h.S.cfg.Issuer + r.URL.Path, Token: tok,
		ReplayPrefix: "pid:dpop:"}, h.S.eph, h.S.now())
	if errors.Is(err, store.ErrUnavailable) {
		return err
	}
	if err != nil || got != jkt {
		return auth.ErrDPoPProof
	}
	return nil
}

// status serves a status list token: a CWT when the client asks for one, a JWT otherwise, with
// caching headers so that verifiers and caches in between fetch it once per ttl.
func (h Handler) status(w http.ResponseWriter, r *http.Request) {
	list, err := strconv.Atoi(r.PathValue("list"))
	if err != nil || list < 1 {
		server.WriteError(w, r, problem.Errorf(problem.NotFound, "%w: %q", ErrNoList, r.PathValue("list")))
		return
	}
	cwt := strings.Contains(r.Header.Get("Accept"), MediaStatusCWT)
	t, err := h.S.StatusList(r.Context(), list, cwt)
	if errors.Is(err, ErrNoList) {
		server.WriteError(w, r, problem.Mark(problem.NotFound, err))
		return
	}
	if err != nil {
		h.oauthError(w, r, http.StatusInternalServerError, "server_error", err)
		return
	}
	ct := MediaStatusJWT
	if cwt {
		ct = MediaStatusCWT
	}
	etag := `"` + sdDigest(string(t.Token))[:22] + `"`
	w.Header().Set("Vary", "Accept")
	w.Header().Set("ETag", etag)
	w.Header().Set("Last-Modified", t.Issued.UTC().Format(http.TimeFormat))
	maxAge := int(t.Expires.Sub(h.S.now()).Seconds())
	w.Header().Set("Cache-Control", "public, max-age="+strconv.Itoa(max(maxAge, 0)))
	if r.Header.Get("If-None-Match") == etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Header().Set("Content-Type", ct)
	_, _ = w.Write(t.Token) // the client went away: nothing to do
}
