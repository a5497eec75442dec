package hsm

import (
	"context"
	"crypto"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// SignEvent describes one private-key operation, for the audit log.
type SignEvent struct {
	Time      time.Time
	KeyURI    string
	Purpose   Purpose
	Hash      crypto.Hash // hash the digest was made with; 0 for a prehashed/raw input
	Digest    []byte      // what was signed
	Actor     string      // who asked (from WithActor), "" if unknown
	RequestID string      // from WithRequestID
	// Detail is what the caller says the signature is for (WithAuditDetail): a timestamp's
	// serial, a document's digest. It goes into the same audit record, so one durable write
	// covers both the key's use and what it was used for.
	Detail map[string]string
	Err    error // nil when the signature was made
}

// AuditHook records every private-key operation. RecordSignature MUST make the event durable
// before returning nil: the signature is handed back only afterwards, and an error withholds it.
type AuditHook interface {
	RecordSignature(ctx context.Context, ev SignEvent) error
}

// LogHook is the AuditHook used until the audit log is wired: one structured log line a signature.
type LogHook struct{ Log *slog.Logger }

var _ AuditHook = LogHook{}

// RecordSignature writes ev as a log line.
func (h LogHook) RecordSignature(ctx context.Context, ev SignEvent) error {
	result := "ok"
	if ev.Err != nil {
		result = ev.Err.Error()
	}
	h.Log.LogAttrs(ctx, slog.LevelInfo, "key used",
		slog.String("key", ev.KeyURI), slog.String("purpose", string(ev.Purpose)),
		slog.String("digest", fmt.Sprintf("%x", ev.Digest)), slog.String("actor", ev.Actor),
		slog.String("request_id", ev.RequestID), slog.Any("detail", ev.Detail), slog.String("result", result))
	return nil
}

type ctxKey int

const (
	actorKey ctxKey = iota
	requestIDKey
	detailKey
)

// WithActor tells the audit hook who asked for the signatures made with ctx.
func WithActor(ctx context.Context, actor string) context.Context {
	return context.WithValue(ctx, actorKey, actor)
}

// ActorOf returns the actor ctx names (WithActor), "" if none.
func ActorOf(ctx context.Context) string { return fromCtx(ctx, actorKey) }

// WithRequestID ties the signatures made with ctx to a request.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey, id)
}

// WithAuditDetail adds what the signatures made with ctx are for to their audit records.
func WithAuditDetail(ctx context.Context, detail map[string]string) context.Context {
	return context.WithValue(ctx, detailKey, detail)
}

func fromCtx(ctx context.Context, k ctxKey) string {
	s, _ := ctx.Value(k).(string)
	return s
}

// ContextSigner is a crypto.Signer that also takes a context, so that the audit record names the
// actor and request. Signers from an instrumented Manager implement it; their plain Sign uses the
// context the signer was obtained with.
type ContextSigner interface {
	crypto.Signer
	SignContext(ctx context.Context, rand io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error)
}

// Metrics are the key layer's Prometheus collectors.
type Metrics struct {
	signatures *prometheus.CounterVec
	latency    *prometheus.HistogramVec
}

// NewMetrics registers the key layer's collectors on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		signatures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vula_hsm_signatures_total",
			Help: "Private-key signatures by key purpose class and result.",
		}, []string{"purpose", "result"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "vula_hsm_sign_duration_seconds",
			Help:    "Time to make one signature in the key backend, by key purpose class.",
			Buckets: prometheus.ExponentialBuckets(0.00005, 2, 16),
		}, []string{"purpose"}),
	}
	reg.MustRegister(m.signatures, m.latency)
	return m
}

// Instrument wraps m so that every signature is metered and recorded by hook before it is returned.
func Instrument(m Manager, metrics *Metrics, hook AuditHook, now func() time.Time) Manager {
	return &instrumented{Manager: m, metrics: metrics, hook: hook, now: now}
}

type instrumented struct {
	Manager
	metrics *Metrics
	hook    AuditHook
	now     func() time.Time
}

func (m *instrumented) Signer(ctx context.Context, uri string, purpose Purpose) (crypto.Signer, error) {
	s, err := m.Manager.Signer(ctx, uri, purpose)
	if err != nil {
		return nil, err
	}
	class := purpose.Class()
	return &meteredSigner{
		inner: s, uri: uri, purpose: purpose, m: m, ctx: context.WithoutCancel(ctx),
		ok:      m.metrics.signatures.WithLabelValues(class, "ok"),
		failed:  m.metrics.signatures.WithLabelValues(class, "error"),
		latency: m.metrics.latency.WithLabelValues(class),
	}, nil
}

type meteredSigner struct {
	inner      crypto.Signer
	uri        string
	purpose    Purpose
	m          *instrumented
	ctx        context.Context
	ok, failed prometheus.Counter
	latency    prometheus.Observer
}

var _ ContextSigner = (*meteredSigner)(nil)

func (s *meteredSigner) Public() crypto.PublicKey { return s.inner.Public() }

func (s *meteredSigner) Sign(rand io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	return s.SignContext(s.ctx, rand, digest, opts)
}

func (s *meteredSigner) SignContext(ctx context.Context, rand io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	start := s.m.now()
	sig, err := s.inner.Sign(rand, digest, opts)
	s.latency.Observe(s.m.now().Sub(start).Seconds())
	ev := SignEvent{
		Time: start, KeyURI: s.uri, Purpose: s.purpose, Digest: digest, Err: err,
		Actor: fromCtx(ctx, actorKey), RequestID: fromCtx(ctx, requestIDKey),
	}
	ev.Detail, _ = ctx.Value(detailKey).(map[string]string)
	ev.Hash = HashOf(opts)
	if herr := s.m.hook.RecordSignature(ctx, ev); herr != nil {
		s.failed.Inc()
		return nil, fmt.Errorf("hsm: audit record not written, signature withheld: %w", herr)
	}
	if err != nil {
		s.failed.Inc()
		return nil, err
	}
	s.ok.Inc()
	return sig, nil
}

// HashOf is opts.HashFunc(), or 0 when there is none. A typed nil such as (*rsa.PSSOptions)(nil)
// panics in HashFunc; backends refuse it, and the refusal must reach the audit
// hook and the caller rather than crash the process.
func HashOf(opts crypto.SignerOpts) (h crypto.Hash) {
	if opts == nil {
		return 0
	}
	defer func() {
		if recover() != nil {
			h = 0
		}
	}()
	return opts.HashFunc()
}
