// Package tsa is Vula's RFC 3161 timestamp authority, profiled by ETSI EN 319 422: tokens are
// signed through the key layer with the timestamping unit's key and certificate from the PKI,
// under one configured policy, with the configured accuracy, the nonce echoed, and the qualified
// statement when configured. A request is refused with the RFC 3161 failure info it earns
// (badAlg, badDataFormat, unacceptedPolicy, timeNotAvailable); it never gets an HTTP 500.
package tsa

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"time"

	"github.com/digitorus/timestamp"
)

// Config is the TSA's profile.
type Config struct {
	Policy    asn1.ObjectIdentifier // the only policy this TSA issues under
	Accuracy  time.Duration         // default one second
	Qualified bool                  // add the ETSI qualified-timestamp statement
	// Chain is sent after the TSA certificate when a request asks for certificates.
	Chain   []*x509.Certificate
	MaxBody int64 // default 64 KiB; larger bodies get 413
}

// Clock gives the time and says whether it can be trusted now.
type Clock interface {
	Now() time.Time
	// Synced returns an error when the time source is not synchronised.
	Synced(ctx context.Context) error
}

// Recorder writes every token to the audit log. RecordToken MUST be durable before it returns
// nil: the token is handed out only afterwards.
type Recorder interface {
	RecordToken(ctx context.Context, t Token) error
}

// Token is what the audit log keeps of a token.
type Token struct {
	Serial    *big.Int
	Hash      crypto.Hash
	Digest    []byte // the message imprint
	Time      time.Time
	Requester string // the client's address
}

// Responder answers timestamp queries.
type Responder struct {
	cfg    Config
	cert   *x509.Certificate
	signer crypto.Signer
	clock  Clock
	rec    Recorder
	log    *slog.Logger
}

// New makes a responder signing with signer under cert (the timestamping unit's).
func New(cfg Config, cert *x509.Certificate, signer crypto.Signer, clock Clock, rec Recorder, log *slog.Logger) *Responder {
	if cfg.Accuracy <= 0 {
		cfg.Accuracy = time.Second
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = 64 << 10
	}
	return &Responder{cfg: cfg, cert: cert, signer: signer, clock: clock, rec: rec, log: log}
}

// Respond turns a DER timestamp query into a DER timestamp reply: a token, or a rejection with
// its failure info. An error is returned only when not even a rejection could be made.
func (r *Responder) Respond(ctx context.Context, query []byte, requester string) ([]byte, error) {
	req, err := timestamp.ParseRequest(query)
	if err != nil {
		return reject(timestamp.BadRequest)
	}
	switch req.HashAlgorithm {
	case crypto.SHA256, crypto.SHA384, crypto.SHA512:
	default:
		return reject(timestamp.BadAlgorithm)
	}
	if len(req.HashedMessage) != req.HashAlgorithm.Size() {
		return reject(timestamp.BadDataFormat)
	}
	if len(req.TSAPolicyOID) > 0 && !req.TSAPolicyOID.Equal(r.cfg.Policy) {
		return reject(timestamp.UnacceptedPolicy)
	}
	if err := r.clock.Synced(ctx); err != nil {
		r.log.WarnContext(ctx, "timestamp refused: clock not synchronised", "err", err)
		return reject(timestamp.TimeNotAvailable)
	}
	ts := timestamp.Timestamp{
		HashAlgorithm:     req.HashAlgorithm,
		HashedMessage:     req.HashedMessage,
		Time:              r.clock.Now().UTC(),
		Accuracy:          r.cfg.Accuracy,
		Policy:            r.cfg.Policy,
		Nonce:             req.Nonce,
		Qualified:         r.cfg.Qualified,
		AddTSACertificate: req.Certificates,
	}
	if req.Certificates {
		ts.Certificates = r.cfg.Chain
	}
	reply, err := ts.CreateResponseWithOpts(r.cert, r.signer, crypto.SHA256)
	if err != nil {
		r.log.ErrorContext(ctx, "timestamp signing failed", "err", err)
		return reject(timestamp.SystemFailure)
	}
	// The library draws the serial (160 random bits: unique across replicas and restarts
	// without coordination); read it back from the token for the audit record.
	tok, err := timestamp.ParseResponse(reply)
	if err != nil {
		r.log.ErrorContext(ctx, "own timestamp token unreadable", "err", err)
		return reject(timestamp.SystemFailure)
	}
	if err := r.rec.RecordToken(ctx, Token{Serial: tok.SerialNumber, Hash: req.HashAlgorithm, Digest: req.HashedMessage,
		Time: tok.Time, Requester: requester}); err != nil {
		r.log.ErrorContext(ctx, "timestamp not recorded, withheld", "err", err)
		return reject(timestamp.SystemFailure)
	}
	return reply, nil
}

func reject(f timestamp.FailureInfo) ([]byte, error) {
	return timestamp.CreateErrorResponse(timestamp.Rejection, f)
}

// ServeHTTP is POST /tsa per RFC 3161 §3.4.
func (r *Responder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if ct := req.Header.Get("Content-Type"); ct != "application/timestamp-query" {
		http.Error(w, "want Content-Type: application/timestamp-query", http.StatusUnsupportedMediaType)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, r.cfg.MaxBody))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		http.Error(w, "timestamp query too large", http.StatusRequestEntityTooLarge)
		return
	}
	if err != nil {
		http.Error(w, "could not read the query", http.StatusBadRequest)
		return
	}
	reply, err := r.Respond(req.Context(), body, req.RemoteAddr)
	if err != nil {
		http.Error(w, "the TSA cannot answer now", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/timestamp-reply")
	w.Write(reply)
}
