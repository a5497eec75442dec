package verifier

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"

	"github.com/vula-eid/vula/internal/auth"
	"github.com/vula-eid/vula/internal/problem"
	"github.com/vula-eid/vula/internal/server"
	"github.com/vula-eid/vula/internal/store"
	"github.com/vula-eid/vula/internal/web"
)

// Scope is the scope of a relying party's access token for the presentations API.
const Scope = auth.ScopeVerify

// Handler serves the verifier: the relying parties' API (POST and GET /api/v1/presentations),
// the wallet's request and response URIs, and the page with the QR code.
type Handler struct {
	S    *Service
	Auth auth.Authenticator
	// Pages renders /verify/{id}; without it the page is not served.
	Pages *web.Renderer
	Log   *slog.Logger
}

// Bounds of request bodies: a relying party's ask, and a wallet's response (a PID with every
// claim disclosed, encrypted, is some ten kilobytes).
const (
	maxAsk          = 64 << 10
	maxResponseBody = 256 << 10
)

// Register adds the verifier's routes to mux.
func (h Handler) Register(mux *http.ServeMux) {
	mux.HandleFunc("POST /api/v1/presentations", h.create)
	mux.HandleFunc("GET /api/v1/presentations/{id}", h.result)
	mux.HandleFunc("GET /openid4vp/request/{id}", h.request)
	mux.HandleFunc("POST /openid4vp/request/{id}", h.request)
	mux.HandleFunc("POST /openid4vp/response/{id}", h.response)
	if h.Pages != nil {
		mux.HandleFunc("GET /verify/{id}", h.page)
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v) // the client went away: nothing to do
}

// writeError answers err as a problem; a missing key or a store that is down is a 503.
func (h Handler) writeError(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, ErrNoVerifierKey) {
		err = problem.Mark(problem.Unavailable, err)
	}
	if server.Status(err) >= 500 && !errors.Is(err, store.ErrUnavailable) {
		h.Log.ErrorContext(r.Context(), "verifier", "err", err)
	}
	server.WriteError(w, r, err)
}

// askBody is the body of POST /api/v1/presentations.
type askBody struct {
	DCQLQuery    json.RawMessage `json:"dcql_query"`
	ResponseMode string          `json:"response_mode"`
	RedirectURI  string          `json:"redirect_uri"`
	State        string          `json:"state"`
}

func (h Handler) create(w http.ResponseWriter, r *http.Request) {
	c, err := h.Auth.Bearer(r, Scope)
	if err != nil {
		auth.WriteBearerError(w, r, "vula-verify", Scope, err)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxAsk))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		h.writeError(w, r, problem.Errorf(problem.TooLarge, "the body is larger than %d bytes", maxAsk))
		return
	}
	if err != nil {
		h.writeError(w, r, problem.Errorf(problem.InvalidRequest, "reading the body: %v", err))
		return
	}
	var ask askBody
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ask); err != nil {
		h.writeError(w, r, problem.Errorf(problem.InvalidRequest, "the body is not a JSON object with dcql_query, response_mode, redirect_uri, state: %v", err))
		return
	}
	if len(ask.DCQLQuery) == 0 || string(ask.DCQLQuery) == "null" {
		h.writeError(w, r, fmt.Errorf("%w: dcql_query is required", ErrQuery))
		return
	}
	q, err := ParseQuery(ask.DCQLQuery)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	out, err := h.S.Create(r.Context(), Ask{ClientID: c.ClientID, Query: q, ResponseMode: ask.ResponseMode, RedirectURI: ask.RedirectURI,
		State: ask.State, RequestID: server.RequestID(r.Context())})
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	w.Header().Set("Location", out.ResultURI)
	writeJSON(w, http.StatusCreated, out)
}

func (h Handler) result(w http.ResponseWriter, r *http.Request) {
	c, err := h.Auth.Bearer(r, Scope)
	if err != nil {
		auth.WriteBearerError(w, r, "vula-verify", Scope, err)
		return
	}
	res, err := h.S.Result(r.Context(), r.PathValue("id"), c.ClientID)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// Result is the result of transaction id for client; another client's transaction is
// ErrNotFound, as one that does not exist.
func (s *Service) Result(ctx context.Context, id, client string) (Result, error) {
	tx, _, err := s.load(ctx, id)
	if err != nil {
		return Result{}, err
	}
	if tx.ClientID != client {
		return Result{}, ErrNotFound
	}
	if tx.Result != nil {
		return *tx.Result, nil
	}
	if !s.now().Before(tx.Expires) {
		return Result{Status: Refused, Reason: "the wallet did not answer in time"}, nil
	}
	return Result{Status: Pending}, nil
}

// request serves the signed request object (OpenID4VP §5.7 request_uri; POST with
// wallet_metadata and wallet_nonce for request_uri_method=post).
func (h Handler) request(w http.ResponseWriter, r *http.Request) {
	nonce := ""
	if r.Method == http.MethodPost {
		r.Body = http.MaxBytesReader(w, r.Body, maxAsk)
		if err := r.ParseForm(); err != nil {
			h.oauthError(w, r, http.StatusBadRequest, "invalid_request", fmt.Errorf("the body is not a form: %w", err))
			return
		}
		nonce = r.PostForm.Get("wallet_nonce")
		if len(nonce) > 256 {
			h.oauthError(w, r, http.StatusBadRequest, "invalid_request", errors.New("wallet_nonce is longer than 256 characters"))
			return
		}
	}
	jwt, err := h.S.RequestObject(r.Context(), r.PathValue("id"), nonce)
	if errors.Is(err, ErrNotFound) {
		h.oauthError(w, r, http.StatusNotFound, "invalid_request_uri", err)
		return
	}
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/oauth-authz-req+jwt")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = io.WriteString(w, jwt) // the client went away: nothing to do
}

// oauthError answers the wallet in OAuth's error form (OpenID4VP §8.5).
func (h Handler) oauthError(w http.ResponseWriter, r *http.Request, status int, code string, err error) {
	writeJSON(w, status, map[string]string{"error": code, "error_description": err.Error()})
}

// response is the response URI: the wallet posts its authorization response here.
func (h Handler) response(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxResponseBody)
	if err := r.ParseForm(); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			h.writeError(w, r, problem.Errorf(problem.TooLarge, "the response is larger than %d bytes", maxResponseBody))
			return
		}
		h.oauthError(w, r, http.StatusBadRequest, "invalid_request", fmt.Errorf("the body is not a form: %w", err))
		return
	}
	ans, err := h.S.Respond(r.Context(), r.PathValue("id"), r.PostForm, server.RequestID(r.Context()))
	switch {
	case errors.Is(err, ErrNotFound):
		h.oauthError(w, r, http.StatusNotFound, "invalid_request", err)
	case errors.Is(err, ErrResponse):
		h.oauthError(w, r, http.StatusBadRequest, "invalid_request", err)
	case err != nil:
		h.writeError(w, r, err)
	default:
		writeJSON(w, http.StatusOK, ans)
	}
}

// hostRe is a host[:port] that may stand in a CSP source list as it is.
var hostRe = regexp.MustCompile(`^[A-Za-z0-9.-]+(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$`)

// frameAncestors is who may embed the page of tx: the origin of the relying party's redirect
// URI, the one origin this verifier knows the relying party by; nobody without one.
func frameAncestors(redirect string) []string {
	u, err := url.Parse(redirect)
	if redirect == "" || err != nil || !hostRe.MatchString(u.Host) {
		return nil
	}
	return []string{u.Scheme + "://" + u.Host}
}
