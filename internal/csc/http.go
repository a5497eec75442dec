package csc

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/vula-eid/vula/internal/auth"
	"github.com/vula-eid/vula/internal/server"
	"github.com/vula-eid/vula/internal/signing"
)

// Scope is the OAuth 2 scope of service authorization: a token from the official's own login
// (authorization-code flow), whose subject is the official.
const Scope = "service"

// Authenticator checks a request's bearer token (the identity provider, in process).
type Authenticator = auth.Authenticator

// maxBody bounds a request body: 100 hashes of SHA-512 in base64 fit many times over.
const maxBody = 256 << 10

// Handler is the CSC API v2 edge: POST /csc/v2/info, credentials/list, credentials/info,
// credentials/authorize and signatures/signHash, JSON in and out (CSC API v2 §11).
type Handler struct {
	S      *Service
	Auth   Authenticator
	Issuer string // Vula's OAuth 2 issuer (base URL), announced by info
	// TSA answers signatures/timestamp (the platform's own TSA, in process); without one the
	// method is neither mounted nor announced.
	TSA signing.Timestamper
	Log *slog.Logger
}

// Register mounts the API on mux.
func (h Handler) Register(mux *http.ServeMux) {
	mux.HandleFunc("POST /csc/v2/info", h.info)
	mux.HandleFunc("GET /csc/v2/logo.svg", logoSVG)
	mux.HandleFunc("POST /csc/v2/credentials/list", h.authed(h.list))
	mux.HandleFunc("POST /csc/v2/credentials/info", h.authed(h.credInfo))
	mux.HandleFunc("POST /csc/v2/credentials/authorize", h.authed(h.authorize))
	// A credential token (scope credential) stands in for the SAD (oauth.go).
	mux.HandleFunc("POST /csc/v2/signatures/signHash", h.credentialOr(h.signHash))
	mux.HandleFunc("POST /csc/v2/signatures/signDoc", h.credentialOr(h.signDoc))
	mux.HandleFunc("POST /csc/v2/credentials/extendTransaction", h.authed(h.extendTransaction))
	if h.TSA != nil {
		mux.HandleFunc("POST /csc/v2/signatures/timestamp", h.authed(h.timestamp))
	}
}

//go:embed logo.svg
var logo []byte

// logoSVG serves the image info names as the service's logo (CSC API v2 info: logo).
func logoSVG(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "image/svg+xml")
	w.Header().Set("Cache-Control", "public, max-age=86400")
	w.Write(logo)
}

// Methods lists what info announces: only what is mounted.
func (h Handler) Methods() []string {
	// sendOTP is absent: the OTP is a TOTP code from the official's app (offline), nothing to send.
	m := []string{"info", "credentials/list", "credentials/info", "credentials/authorize", "credentials/extendTransaction",
		"signatures/signHash", "signatures/signDoc"}
	if h.TSA != nil {
		m = append(m, "signatures/timestamp")
	}
	return m
}

func (h Handler) info(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Lang string `json:"lang"`
	}
	if err := decode(r, &req); err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"specs":        "2.0.0.2",
		"name":         "Vula remote signing",
		"logo":         h.Issuer + "/csc/v2/logo.svg",
		"region":       h.S.cfg.Country,
		"lang":         "en",
		"description":  "Remote signing for officials with sole control (SCAL2)",
		"authType":     []string{"oauth2code"},
		"oauth2":       h.Issuer,
		"oauth2Issuer": h.Issuer,
		"methods":      h.Methods(),
		"signAlgorithms": map[string]any{
			"algos": []string{"1.2.840.10045.4.3.2", "1.2.840.10045.4.3.3", "1.2.840.10045.4.3.4", "1.2.840.10045.2.1",
				"1.2.840.113549.1.1.11", "1.2.840.113549.1.1.12", "1.2.840.113549.1.1.13", "1.2.840.113549.1.1.1"},
		},
		// CSC API v2.0.0.2 §11.1 requires these when signatures/signDoc is offered.
		"signature_formats":  h.S.SignatureFormats(),
		"conformance_levels": h.S.ConformanceLevels(),
		"validationInfo":     true, // signDoc returns it on returnValidationInfo
	})
}

// authed checks the service authorization and passes the official's subject on.
func (h Handler) authed(next func(w http.ResponseWriter, r *http.Request, subject string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, err := h.Auth.Bearer(r, Scope)
		if err != nil {
			code, status := "invalid_token", http.StatusUnauthorized
			challenge := `Bearer realm="vula-csc", error="invalid_token"`
			switch {
			case errors.Is(err, auth.ErrNoToken):
				challenge = `Bearer realm="vula-csc"`
			case errors.Is(err, auth.ErrInsufficientScope):
				code, status = "insufficient_scope", http.StatusForbidden
				challenge = fmt.Sprintf(`Bearer realm="vula-csc", error="insufficient_scope", scope=%q`, Scope)
			}
			w.Header().Set("WWW-Authenticate", challenge)
			writeJSON(w, status, map[string]string{"error": code, "error_description": err.Error()})
			return
		}
		if c.Subject == "" {
			// A client_credentials token speaks for no official.
			writeJSON(w, http.StatusForbidden, map[string]string{"error": "access_denied",
				"error_description": "service authorization must come from the official's own login"})
			return
		}
		if !auth.AtLeast(c.ACR, auth.LoASubstantial) {
			// RFC 9470 (step-up authentication): the token is good, its login too weak.
			desc := "the service authorization's login must be at level of assurance substantial or higher; log in again at substantial"
			w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="vula-csc", error="insufficient_user_authentication", error_description=%q, acr_values=%q`,
				desc, auth.LoASubstantial))
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "insufficient_user_authentication", "error_description": desc})
			return
		}
		r = r.WithContext(WithRequestID(r.Context(), server.RequestID(r.Context())))
		next(w, r, c.Subject)
	}
}

type credInfoView struct {
	CredentialID       string         `json:"credentialID,omitempty"`
	Description        string         `json:"description"`
	SignatureQualifier string         `json:"signatureQualifier,omitempty"`
	Key                map[string]any `json:"key"`
	Cert               map[string]any `json:"cert"`
	Auth               map[string]any `json:"auth"`
	OTP                map[string]any `json:"OTP,omitempty"`
	SCAL               string         `json:"SCAL"`
	Multisign          int            `json:"multisign"`
	Lang               string         `json:"lang"`
}

func (h Handler) view(c Credential, now time.Time, certificates string, certInfo bool) credInfoView {
	status := "enabled"
	certStatus := "valid"
	switch {
	case c.Revoked:
		status, certStatus = "disabled", "revoked"
	case !now.Before(c.Cert.NotAfter):
		status, certStatus = "disabled", "expired"
	case now.Before(c.Cert.NotBefore):
		status, certStatus = "disabled", "not_yet_valid"
	}
	key := map[string]any{"status": status}
	switch c.Cert.PublicKeyAlgorithm {
	case x509.ECDSA:
		key["algo"] = []string{"1.2.840.10045.4.3.2", "1.2.840.10045.4.3.3", "1.2.840.10045.4.3.4", "1.2.840.10045.2.1"}
	default:
		key["algo"] = []string{"1.2.840.113549.1.1.11", "1.2.840.113549.1.1.12", "1.2.840.113549.1.1.13", "1.2.840.113549.1.1.1"}
	}
	switch k := c.Cert.PublicKey.(type) {
	case *ecdsa.PublicKey:
		key["len"] = k.Curve.Params().BitSize
		key["curve"] = curveOIDs[k.Curve.Params().Name]
	case *rsa.PublicKey:
		key["len"] = k.N.BitLen()
	}
	cert := map[string]any{"status": certStatus}
	var chain []string
	switch certificates {
	case "none":
	case "chain":
		chain = append(chain, base64.StdEncoding.EncodeToString(c.Cert.Raw))
		for _, ca := range c.Chain {
			chain = append(chain, base64.StdEncoding.EncodeToString(ca.Raw))
		}
	default: // "single"
		chain = append(chain, base64.StdEncoding.EncodeToString(c.Cert.Raw))
	}
	if chain != nil {
		cert["certificates"] = chain
	}
	if certInfo {
		cert["issuerDN"] = c.Cert.Issuer.String()
		cert["serialNumber"] = c.Cert.SerialNumber.Text(16)
		cert["subjectDN"] = c.Cert.Subject.String()
		cert["validFrom"] = c.Cert.NotBefore.UTC().Format("20060102150405Z")
		cert["validTo"] = c.Cert.NotAfter.UTC().Format("20060102150405Z")
	}
	return credInfoView{
		CredentialID: c.ID, Description: "Signature of " + c.Cert.Subject.CommonName, Key: key, Cert: cert,
		// Explicit: the password as PIN and the TOTP code as OTP, both in authData.
		Auth: map[string]any{"mode": "explicit", "expression": "PIN AND OTP", "objects": []map[string]any{
			{"type": "Password", "id": "PIN", "format": "A", "label": "Password", "description": "Your Vula password"},
			{"type": "OTP", "id": "OTP", "format": "N", "label": "One-time code", "description": "The 6-digit code of your authenticator app",
				"generator": "TOTP (RFC 6238)"},
		}},
		// The OTP is offline: the official's app makes it, so there is no sendOTP.
		OTP: map[string]any{"presence": "true", "type": "offline", "ID": "OTP", "provider": "Vula TOTP", "format": "N",
			"label": "One-time code", "description": "The 6-digit code of your authenticator app"},
		SCAL: "2", Multisign: h.S.cfg.MaxSignatures, Lang: "en",
	}
}

func (h Handler) list(w http.ResponseWriter, r *http.Request, subject string) {
	var req struct {
		UserID         string `json:"userID"`
		CredentialInfo bool   `json:"credentialInfo"`
		Certificates   string `json:"certificates"`
		CertInfo       bool   `json:"certInfo"`
		AuthInfo       bool   `json:"authInfo"`
		OnlyValid      bool   `json:"onlyValid"`
		Lang           string `json:"lang"`
		ClientData     string `json:"clientData"`
	}
	if err := decode(r, &req); err != nil {
		h.fail(w, r, err)
		return
	}
	// §11.4: with a user-specific service authorization, userID may not name anyone else.
	if req.UserID != "" && req.UserID != subject {
		h.fail(w, r, invalidRequest("Invalid parameter userID"))
		return
	}
	if err := checkCertificates(req.Certificates); err != nil {
		h.fail(w, r, err)
		return
	}
	cs, err := h.S.Credentials(r.Context(), subject)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	now := h.S.now()
	ids := []string{}
	infos := []credInfoView{}
	for _, c := range cs {
		if req.OnlyValid && !c.Valid(now) {
			continue
		}
		ids = append(ids, c.ID)
		infos = append(infos, h.authModes(h.view(c, now, req.Certificates, req.CertInfo)))
	}
	out := map[string]any{"credentialIDs": ids, "onlyValid": req.OnlyValid}
	if req.CredentialInfo {
		out["credentialInfos"] = infos
	}
	writeJSON(w, http.StatusOK, out)
}

func checkCertificates(v string) error {
	switch v {
	case "", "none", "single", "chain":
		return nil
	}
	return invalidRequest("Invalid parameter certificates")
}

func (h Handler) credInfo(w http.ResponseWriter, r *http.Request, subject string) {
	var req struct {
		CredentialID string `json:"credentialID"`
		Certificates string `json:"certificates"`
		CertInfo     bool   `json:"certInfo"`
		AuthInfo     bool   `json:"authInfo"`
		Lang         string `json:"lang"`
		ClientData   string `json:"clientData"`
	}
	if err := decode(r, &req); err != nil {
		h.fail(w, r, err)
		return
	}
	if req.CredentialID == "" {
		h.fail(w, r, invalidRequest("Missing (or invalid type) string parameter credentialID"))
		return
	}
	if err := checkCertificates(req.Certificates); err != nil {
		h.fail(w, r, err)
		return
	}
	c, err := h.S.Credential(r.Context(), subject, req.CredentialID)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	v := h.authModes(h.view(c, h.S.now(), req.Certificates, req.CertInfo))
	v.CredentialID = ""
	writeJSON(w, http.StatusOK, v)
}

// curveOIDs name the curves in credentials/info (key/curve is an OID).
var curveOIDs = map[string]string{"P-256": "1.2.840.10045.3.1.7", "P-384": "1.3.132.0.34", "P-521": "1.3.132.0.35"}

type authDatum struct {
	ID    string `json:"id"`
	Value string `json:"value"`
}

func (h Handler) authorize(w http.ResponseWriter, r *http.Request, subject string) {
	var req struct {
		CredentialID     string      `json:"credentialID"`
		NumSignatures    int         `json:"numSignatures"`
		Hashes           []string    `json:"hashes"`
		HashAlgorithmOID string      `json:"hashAlgorithmOID"`
		AuthData         []authDatum `json:"authData"`
		Description      string      `json:"description"`
		ClientData       string      `json:"clientData"`
	}
	if err := decode(r, &req); err != nil {
		h.fail(w, r, err)
		return
	}
	if req.CredentialID == "" {
		h.fail(w, r, invalidRequest("Missing (or invalid type) string parameter credentialID"))
		return
	}
	hashes, err := decodeHashes(req.Hashes)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	a := Authorization{CredentialID: req.CredentialID, NumSignatures: req.NumSignatures, Hashes: hashes,
		HashOID: req.HashAlgorithmOID, IP: clientIP(r)}
	for _, d := range req.AuthData {
		switch d.ID {
		case "PIN":
			a.PIN = d.Value
		case "OTP":
			a.OTP = d.Value
		default:
			h.fail(w, r, invalidRequest("Invalid parameter authData: unknown id (want PIN and OTP)"))
			return
		}
	}
	res, err := h.S.Authorize(r.Context(), subject, a)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"SAD": res.SAD, "expiresIn": res.ExpiresIn})
}

func (h Handler) signHash(w http.ResponseWriter, r *http.Request, subject string) {
	var req struct {
		CredentialID     string   `json:"credentialID"`
		SAD              string   `json:"SAD"`
		Hashes           []string `json:"hashes"`
		HashAlgorithmOID string   `json:"hashAlgorithmOID"`
		SignAlgo         string   `json:"signAlgo"`
		SignAlgoParams   string   `json:"signAlgoParams"`
		OperationMode    string   `json:"operationMode"`
		ClientData       string   `json:"clientData"`
	}
	if err := decode(r, &req); err != nil {
		h.fail(w, r, err)
		return
	}
	if err := tokenSAD(r.Context(), &req.SAD); err != nil {
		h.fail(w, r, err)
		return
	}
	switch {
	case req.CredentialID == "" || req.SAD == "":
		h.fail(w, r, missingCredentialOrSAD(req.CredentialID))
		return
	case req.SignAlgo == "":
		h.fail(w, r, invalidRequest("Missing (or invalid type) string parameter signAlgo"))
		return
	case req.OperationMode != "" && req.OperationMode != "S":
		// Asynchronous mode (A) is not implemented.
		h.fail(w, r, invalidRequest("Invalid parameter operationMode: only S is supported"))
		return
	case req.SignAlgoParams != "":
		h.fail(w, r, invalidRequest("Invalid parameter signAlgoParams: none are supported"))
		return
	}
	hashes, err := decodeHashes(req.Hashes)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	sigs, err := h.S.SignHash(r.Context(), subject, SignRequest{CredentialID: req.CredentialID, SAD: req.SAD, Hashes: hashes,
		HashOID: req.HashAlgorithmOID, SignAlgo: req.SignAlgo})
	if err != nil {
		h.fail(w, r, err)
		return
	}
	out := make([]string, len(sigs))
	for i, s := range sigs {
		out[i] = base64.StdEncoding.EncodeToString(s)
	}
	writeJSON(w, http.StatusOK, map[string]any{"signatures": out})
}

// timestamp is signatures/timestamp (CSC API v2 §11.10): an RFC 3161 TimeStampToken over one
// hash from the platform's TSA.
func (h Handler) timestamp(w http.ResponseWriter, r *http.Request, _ string) {
	var req struct {
		Hash       string `json:"hash"`
		HashAlgo   string `json:"hashAlgorithmOID"`
		Nonce      string `json:"nonce"`
		ClientData string `json:"clientData"`
	}
	if err := decode(r, &req); err != nil {
		h.fail(w, r, err)
		return
	}
	alg, ok := hashOIDs[req.HashAlgo]
	switch {
	case req.Hash == "":
		h.fail(w, r, invalidRequest("Missing (or invalid type) string parameter hash"))
		return
	case !ok:
		h.fail(w, r, invalidRequest("Invalid parameter hashAlgorithmOID"))
		return
	case req.Nonce != "":
		// The in-process TSA takes no nonce; saying so beats ignoring it.
		h.fail(w, r, invalidRequest("Invalid parameter nonce: not supported"))
		return
	}
	hs, err := decodeHashes([]string{req.Hash})
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if len(hs[0]) != alg.Size() {
		h.fail(w, r, invalidRequest("Invalid digest value length"))
		return
	}
	tok, err := h.TSA.Timestamp(r.Context(), alg, hs[0])
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"timestamp": base64.StdEncoding.EncodeToString(tok)})
}

// decodeHashes reads base64 hashes (CSC uses standard base64; URL-safe is accepted too).
func decodeHashes(in []string) ([][]byte, error) {
	if len(in) == 0 {
		return nil, invalidRequest("Missing (or invalid type) array parameter hashes")
	}
	if len(in) > 1000 {
		return nil, invalidRequest("Invalid parameter hashes: more than 1000")
	}
	out := make([][]byte, len(in))
	for i, s := range in {
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			b, err = base64.RawURLEncoding.DecodeString(s)
		}
		if err != nil || len(b) == 0 {
			return nil, invalidRequest("Invalid Base64 hashes string parameter (hash %d)", i)
		}
		out[i] = b
	}
	return out, nil
}

// decode reads a JSON body of at most maxBody bytes into v; an empty body is an empty object.
func decode(r *http.Request, v any) error { return decodeAtMost(r, v, maxBody) }

func decodeAtMost(r *http.Request, v any, limit int64) error {
	body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return invalidRequest("Unreadable request body")
	}
	if int64(len(body)) > limit {
		return &Error{Status: http.StatusRequestEntityTooLarge, Code: "invalid_request", Description: "The request body is too large"}
	}
	return decodeBody(body, v)
}

// decodeBody parses a request body (separate from decode so that it can be fuzzed).
func decodeBody(body []byte, v any) error {
	if len(body) == 0 {
		return nil
	}
	if err := json.Unmarshal(body, v); err != nil {
		return invalidRequest("The request body is not a JSON object of the method's parameters")
	}
	return nil
}

func (h Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	var e *Error
	if errors.As(err, &e) {
		writeJSON(w, e.Status, map[string]string{"error": e.Code, "error_description": e.Description})
		return
	}
	status := server.Status(err)
	if status >= 500 {
		h.Log.ErrorContext(r.Context(), "csc", "path", r.URL.Path, "err", err)
		writeJSON(w, status, map[string]string{"error": "server_error", "error_description": "The service could not complete the request"})
		return
	}
	writeJSON(w, status, map[string]string{"error": "invalid_request", "error_description": err.Error()})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v) // the status is sent: a failed write means the client left
}

// clientIP is the peer's address (a proxy in front is not trusted to tell another).
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// missingCredentialOrSAD names the first of the two parameters every signing method needs that
// is missing.
func missingCredentialOrSAD(credentialID string) *Error {
	if credentialID == "" {
		return invalidRequest("Missing (or invalid type) string parameter credentialID")
	}
	return invalidRequest("Missing (or invalid type) string parameter SAD")
}
