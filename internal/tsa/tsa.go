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
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"strconv"
	"time"

	"github.com/digitorus/timestamp"

	"github.com/vula-eid/vula/hsm"
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

// Responder answers timestamp queries.
type Responder struct {
	cfg   Config
	enc   *encoder
	clock Clock
	log   *slog.Logger

	maxToken int // bound of a Timestamp token's length
}

// New makes a responder signing with signer under cert (the timestamping unit's). The key must
// be ECDSA or RSA (PKCS #1 v1.5) and match the certificate.
//
// The signer must come from an instrumented key manager (hsm.Instrument), whose audit hook makes
// a record of every signature durable before handing it back: each token is recorded that way,
// its serial, message imprint, time and requester in the same record as the signature (one
// durable write a token). New refuses any other signer.
func New(cfg Config, cert *x509.Certificate, signer crypto.Signer, clock Clock, log *slog.Logger) (*Responder, error) {
	if _, ok := signer.(hsm.ContextSigner); !ok {
		return nil, errors.New("tsa: the signer is not audited (want one from hsm.Instrument)")
	}
	if cfg.Accuracy <= 0 {
		cfg.Accuracy = time.Second
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = 64 << 10
	}
	if len(cfg.Policy) == 0 {
		return nil, errors.New("tsa: no policy OID")
	}
	enc, err := newEncoder(cfg, cert, signer)
	if err != nil {
		return nil, err
	}
	maxToken, err := enc.maxTokenSize()
	if err != nil {
		return nil, err
	}
	return &Responder{cfg: cfg, enc: enc, clock: clock, log: log, maxToken: maxToken}, nil
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
	if len(req.Extensions) > 0 {
		return reject(timestamp.UnacceptedExtension) // none is understood (RFC 3161 §2.4.2)
	}
	reply, err := r.issue(ctx, req.HashAlgorithm, req.HashedMessage, req.Nonce, req.Certificates, requester, (*encoder).encode)
	if err != nil {
		// A signature whose audit record could not be written is withheld by the key layer.
		r.log.ErrorContext(ctx, "timestamp not made", "err", err)
		return reject(timestamp.SystemFailure)
	}
	return reply, nil
}

// Timestamp makes a TimeStampToken (the DER ContentInfo, carrying the TSA certificate and the
// chain) over digest, for the services of this process that embed timestamps in signatures:
// the same token a query would get, without the HTTP hop. The actor in ctx is the requester.
func (r *Responder) Timestamp(ctx context.Context, hash crypto.Hash, digest []byte) ([]byte, error) {
	switch hash {
	case crypto.SHA256, crypto.SHA384, crypto.SHA512:
	default:
		return nil, fmt.Errorf("%w: digest algorithm %v", ErrRefused, hash)
	}
	if len(digest) != hash.Size() {
		return nil, fmt.Errorf("%w: a %v digest of %d bytes", ErrRefused, hash, len(digest))
	}
	if err := r.clock.Synced(ctx); err != nil {
		return nil, fmt.Errorf("%w: the clock is not synchronised: %w", ErrRefused, err)
	}
	return r.issue(ctx, hash, digest, nil, true, hsm.ActorOf(ctx), (*encoder).token)
}

// MaxTokenSize bounds the length of the tokens Timestamp makes, so that a signature that embeds
// one (a PDF's /Contents) can be sized before the token exists.
func (r *Responder) MaxTokenSize() int { return r.maxToken }

// ErrRefused is returned by Timestamp for what a query would get a rejection for.
var ErrRefused = errors.New("tsa: timestamp refused")

// issue draws the serial, takes the time and signs, with the audit detail of the token in ctx.
func (r *Responder) issue(ctx context.Context, hash crypto.Hash, digest []byte, nonce *big.Int, certs bool, requester string,
	enc func(*encoder, context.Context, token) ([]byte, error)) ([]byte, error) {
	serial, err := newSerial()
	if err != nil {
		return nil, fmt.Errorf("tsa: serial: %w", err)
	}
	// The time is taken last, just before signing; the token carries it to the microsecond.
	t := token{hash: hash, digest: digest, serial: serial, nonce: nonce, certs: certs,
		time: r.clock.Now().UTC().Truncate(time.Microsecond)}
	ctx = hsm.WithActor(ctx, requester)
	ctx = hsm.WithAuditDetail(ctx, map[string]string{"serial": serial.Text(16), "time": t.time.Format(time.RFC3339Nano),
		"imprint": hex.EncodeToString(t.digest), "imprint_hash": t.hash.String()})
	return enc(r.enc, ctx, t)
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
	// With the length given, net/http writes the reply as it is, not chunked (a reply with
	// certificates is larger than the 2 KiB it buffers to find the length itself).
	w.Header().Set("Content-Type", "application/timestamp-reply")
	w.Header().Set("Content-Length", strconv.Itoa(len(reply)))
	w.Write(reply)
}
