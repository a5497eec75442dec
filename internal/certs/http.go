package certs

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/vula-eid/vula/internal/store"
)

// maxOCSPRequest bounds an OCSP request body; real ones are a few hundred bytes.
const maxOCSPRequest = 16 << 10

var oidOCSPNonce = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 2}

// Handlers serves the PKI over HTTP: GET /pki (the CAs as JSON), /pki/{name}.crt (DER),
// /pki/{name}.crl (DER, made fresh), and OCSP (RFC 6960) over GET and POST at /pki/ocsp.
type Handlers struct {
	A   *Authority
	Log *slog.Logger
}

// Register mounts the handlers on mux.
func (h Handlers) Register(mux interface {
	Handle(pattern string, handler http.Handler)
}) {
	mux.Handle("GET /pki", http.HandlerFunc(h.list))
	mux.Handle("GET /pki/{file}", http.HandlerFunc(h.file))
	mux.Handle("POST /pki/ocsp", http.HandlerFunc(h.ocspPost))
	mux.Handle("GET /pki/ocsp/{req...}", http.HandlerFunc(h.ocspGet))
}

type caInfo struct {
	Name     string    `json:"name"`
	Subject  string    `json:"subject"`
	Serial   string    `json:"serial"`
	NotAfter time.Time `json:"not_after"`
	CertURL  string    `json:"certificate"`
	CRLURL   string    `json:"crl,omitempty"`
}

func (h Handlers) list(w http.ResponseWriter, r *http.Request) {
	var out []caInfo
	base := strings.TrimRight(h.A.cfg.Policy.BaseURL, "/")
	for name, iss := range h.A.certs {
		ci := caInfo{Name: name, Subject: iss.Cert.Subject.String(), Serial: serialHex(iss.Cert.SerialNumber),
			NotAfter: iss.Cert.NotAfter, CertURL: base + "/pki/" + name + ".crt"}
		if iss.Cert.IsCA {
			ci.CRLURL = base + "/pki/" + name + ".crl"
		}
		out = append(out, ci)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out) // headers are sent: a failed write means the client left
}

func (h Handlers) file(w http.ResponseWriter, r *http.Request) {
	f := r.PathValue("file")
	switch {
	case strings.HasSuffix(f, ".crt"):
		c, ok := h.A.Certificate(strings.TrimSuffix(f, ".crt"))
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/pkix-cert")
		w.Write(c.Raw)
	case strings.HasSuffix(f, ".crl"):
		crl, err := h.A.CRL(r.Context(), strings.TrimSuffix(f, ".crl"))
		if errors.Is(err, store.ErrNotFound) {
			http.NotFound(w, r)
			return
		}
		if err != nil {
			h.Log.Error("CRL", "err", err)
			http.Error(w, "CRL not available", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/pkix-crl")
		w.Write(crl)
	default:
		http.NotFound(w, r)
	}
}

func (h Handlers) ocspPost(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxOCSPRequest))
	if err != nil {
		http.Error(w, "OCSP request too large", http.StatusRequestEntityTooLarge)
		return
	}
	h.answer(w, r.Context(), body)
}

func (h Handlers) ocspGet(w http.ResponseWriter, r *http.Request) {
	// RFC 6960 A.1: the request is base64 and then URL-encoded in the path.
	raw, err := url.PathUnescape(r.PathValue("req"))
	var der []byte
	if err == nil && len(raw) <= maxOCSPRequest {
		der, err = base64.StdEncoding.DecodeString(raw)
	}
	if err != nil || len(raw) > maxOCSPRequest {
		writeOCSP(w, ocsp.MalformedRequestErrorResponse)
		return
	}
	h.answer(w, r.Context(), der)
}

func writeOCSP(w http.ResponseWriter, b []byte) {
	w.Header().Set("Content-Type", "application/ocsp-response")
	w.Write(b)
}

// answer responds to one OCSP request: malformedRequest for garbage, unauthorized for a CA this
// responder does not serve, good / revoked / unknown otherwise, the nonce echoed.
func (h Handlers) answer(w http.ResponseWriter, ctx context.Context, der []byte) {
	req, err := ocsp.ParseRequest(der)
	if err != nil {
		writeOCSP(w, ocsp.MalformedRequestErrorResponse)
		return
	}
	ca := h.A.caByKeyHash(req.HashAlgorithm, req.IssuerKeyHash)
	if ca == "" {
		writeOCSP(w, ocsp.UnauthorizedErrorResponse)
		return
	}
	resp, err := h.A.respond(ctx, ca, req.SerialNumber, req.HashAlgorithm, requestNonce(der))
	if err != nil {
		h.Log.Error("OCSP", "err", err)
		if errors.Is(err, errLookup) {
			writeOCSP(w, ocsp.TryLaterErrorResponse)
		} else {
			writeOCSP(w, ocsp.InternalErrorErrorResponse)
		}
		return
	}
	writeOCSP(w, resp)
}

var errLookup = errors.New("pki: certificate status lookup failed")

// respond makes the signed OCSP answer on serial of ca as the store gives it now. An answer
// without a nonce may come from the cache: its key holds the status the store gives now, so a
// revocation is never answered from the cache as good.
func (a *Authority) respond(ctx context.Context, ca string, serial *big.Int, issuerHash crypto.Hash, nonce []byte) ([]byte, error) {
	iss, responder := a.certs[ca], a.certs[ocspName(ca)]
	now := a.now()
	// x/crypto/ocsp writes producedAt as the current minute; a thisUpdate after it (now, to the
	// second) is refused by NSS as SEC_ERROR_OCSP_FUTURE_RESPONSE, so thisUpdate is the minute too.
	this := now.Truncate(time.Minute)
	tmpl := ocsp.Response{SerialNumber: serial, ThisUpdate: this, NextUpdate: this.Add(time.Hour),
		Certificate: responder.Cert, IssuerHash: issuerHash, Status: ocsp.Unknown}
	c, err := a.recs.Certificate(ctx, ca, serialHex(serial))
	switch {
	case err == nil && c.Revoked:
		tmpl.Status, tmpl.RevokedAt, tmpl.RevocationReason = ocsp.Revoked, c.RevokedAt, c.RevocationReason
	case err == nil:
		tmpl.Status = ocsp.Good
	case !errors.Is(err, store.ErrNotFound):
		return nil, fmt.Errorf("%w: %w", errLookup, err)
	}
	key := fmt.Sprintf("%s/%x/%d/%d", ca, serial, tmpl.Status, issuerHash)
	if nonce == nil {
		a.mu.Lock()
		c, ok := a.ocsp[key]
		a.mu.Unlock()
		if ok && now.Before(c.until) {
			return c.der, nil
		}
	} else {
		tmpl.ExtraExtensions = []pkix.Extension{{Id: oidOCSPNonce, Value: nonce}}
	}
	resp, err := ocsp.CreateResponse(iss.Cert, responder.Cert, tmpl, responder.Signer)
	if err != nil {
		return nil, fmt.Errorf("pki: OCSP signing: %w", err)
	}
	if nonce == nil {
		a.mu.Lock()
		if len(a.ocsp) > 100000 { // bounded: forget everything rather than grow without end
			clear(a.ocsp)
		}
		a.ocsp[key] = cachedOCSP{der: resp, until: now.Add(30 * time.Minute)}
		a.mu.Unlock()
	}
	return resp, nil
}

// caByKeyHash finds the issuing CA whose key hashes (SHA-1 or SHA-256 of the
// subjectPublicKey bits, RFC 6960 CertID) to keyHash.
func (a *Authority) caByKeyHash(h crypto.Hash, keyHash []byte) string {
	if !h.Available() {
		return ""
	}
	for _, name := range []string{NamePersonCA, NameSealCA} {
		var spki struct {
			Algorithm pkix.AlgorithmIdentifier
			PublicKey asn1.BitString
		}
		if _, err := asn1.Unmarshal(a.certs[name].Cert.RawSubjectPublicKeyInfo, &spki); err != nil {
			continue
		}
		d := h.New()
		d.Write(spki.PublicKey.RightAlign())
		if bytes.Equal(d.Sum(nil), keyHash) {
			return name
		}
	}
	return ""
}

// requestNonce returns the value of the nonce extension of an OCSP request, which
// x/crypto/ocsp does not parse.
func requestNonce(der []byte) []byte {
	var req struct {
		TBS struct {
			Version    int           `asn1:"explicit,tag:0,default:0,optional"`
			Requestor  asn1.RawValue `asn1:"explicit,tag:1,optional"`
			List       []asn1.RawValue
			Extensions []pkix.Extension `asn1:"explicit,tag:2,optional"`
		}
		Signature asn1.RawValue `asn1:"explicit,tag:0,optional"`
	}
	if _, err := asn1.Unmarshal(der, &req); err != nil {
		return nil
	}
	for _, e := range req.TBS.Extensions {
		if e.Id.Equal(oidOCSPNonce) && len(e.Value) <= 128 {
			return e.Value
		}
	}
	return nil
}
