package hsm_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/vula-eid/vula/hsm"
	"github.com/vula-eid/vula/hsm/software"
)

// memHook is an AuditHook that keeps events in memory. If gate is set, RecordSignature reports on
// gate.entered and waits for gate.release before returning.
type memHook struct {
	mu     sync.Mutex
	events []hsm.SignEvent
	err    error
	gate   *gate
}

type gate struct{ entered, release chan struct{} }

func (h *memHook) RecordSignature(ctx context.Context, ev hsm.SignEvent) error {
	ev.Digest = bytes.Clone(ev.Digest)
	h.mu.Lock()
	h.events = append(h.events, ev)
	h.mu.Unlock()
	if h.gate != nil {
		h.gate.entered <- struct{}{}
		<-h.gate.release
	}
	return h.err
}

func (h *memHook) Events() []hsm.SignEvent {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slicesClone(h.events)
}

func slicesClone[T any](s []T) []T { return append([]T(nil), s...) }

// stepClock advances one millisecond each time it is read, so each signature takes exactly 1ms.
type stepClock struct{ n atomic.Int64 }

var epoch = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func (c *stepClock) Now() time.Time { return epoch.Add(time.Duration(c.n.Add(1)) * time.Millisecond) }

type fixture struct {
	backend *software.Manager
	m       hsm.Manager
	reg     *prometheus.Registry
	hook    *memHook
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	base := t.TempDir()
	kf := filepath.Join(base, "master.key")
	if err := software.CreateKeyFile(kf); err != nil {
		t.Fatal(err)
	}
	backend, err := software.Open(context.Background(), software.Config{Dir: filepath.Join(base, "ks"), KeyFile: kf}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { backend.Close() })
	f := &fixture{backend: backend, reg: prometheus.NewRegistry(), hook: &memHook{}}
	f.m = hsm.Instrument(backend, hsm.NewMetrics(f.reg), f.hook, (&stepClock{}).Now)
	return f
}

func (f *fixture) key(t *testing.T, label string, alg hsm.Algorithm, p hsm.Purpose) (hsm.KeyInfo, crypto.Signer) {
	t.Helper()
	info, err := f.m.CreateKey(context.Background(), hsm.KeySpec{Label: label, Algorithm: alg, Purpose: p})
	if err != nil {
		t.Fatal(err)
	}
	s, err := f.m.Signer(context.Background(), info.URI, p)
	if err != nil {
		t.Fatal(err)
	}
	return info, s
}

// histogram returns the sample count and sum of vula_hsm_sign_duration_seconds{purpose=class}.
func (f *fixture) histogram(t *testing.T, class string) (uint64, float64) {
	t.Helper()
	mfs, err := f.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "vula_hsm_sign_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if labelIs(m, "purpose", class) {
				return m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum()
			}
		}
	}
	return 0, 0
}

func labelIs(m *dto.Metric, name, value string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue() == value
		}
	}
	return false
}

func TestInstrumentCountsAndAudits(t *testing.T) {
	f := newFixture(t)
	seal, sealSigner := f.key(t, "seal-tax", hsm.ECP256, hsm.SealPurpose("tax-office"))
	tsaInfo, err := f.m.CreateKey(context.Background(), hsm.KeySpec{Label: "tsa-1", Algorithm: hsm.RSA3072, Purpose: hsm.PurposeTSA})
	if err != nil {
		t.Fatal(err)
	}
	// The plain Sign of a signer audits under the context the signer was obtained with.
	tsaCtx := hsm.WithRequestID(hsm.WithActor(context.Background(), "tsa-service"), "req-tsa")
	tsaSigner, err := f.m.Signer(tsaCtx, tsaInfo.URI, hsm.PurposeTSA)
	if err != nil {
		t.Fatal(err)
	}

	type call struct {
		s              crypto.Signer
		info           hsm.KeyInfo
		actor, request string
		digest         []byte
		opts           crypto.SignerOpts
		fail           bool
	}
	var calls []call
	for i, who := range []string{"official-1", "official-2", "clerk"} {
		d := sha256.Sum256([]byte{byte(i)})
		calls = append(calls, call{s: sealSigner, info: seal, actor: who, request: "req-" + who, digest: d[:], opts: crypto.SHA256})
	}
	d384 := sha512.Sum384([]byte("tsa"))
	calls = append(calls,
		call{s: tsaSigner, info: tsaInfo, actor: "tsa-service", request: "req-tsa", digest: d384[:], opts: crypto.SHA384},
		call{s: tsaSigner, info: tsaInfo, actor: "tsa-service", request: "req-tsa", digest: d384[:], opts: &rsa.PSSOptions{Hash: crypto.SHA384, SaltLength: rsa.PSSSaltLengthEqualsHash}},
		// A failed signature is audited and counted too.
		call{s: sealSigner, info: seal, actor: "mallory", request: "req-bad", digest: []byte("not a digest"), opts: crypto.SHA256, fail: true},
	)

	for i, c := range calls {
		var sig []byte
		var err error
		if c.s == sealSigner {
			ctx := hsm.WithRequestID(hsm.WithActor(context.Background(), c.actor), c.request)
			sig, err = c.s.(hsm.ContextSigner).SignContext(ctx, rand.Reader, c.digest, c.opts)
		} else {
			sig, err = c.s.Sign(rand.Reader, c.digest, c.opts)
		}
		if c.fail != (err != nil) {
			t.Fatalf("call %d: err = %v", i, err)
		}
		evs := f.hook.Events()
		if len(evs) != i+1 {
			t.Fatalf("call %d returned with %d events recorded", i, len(evs))
		}
		ev := evs[i]
		if ev.KeyURI != c.info.URI || ev.Purpose != c.info.Purpose || ev.Actor != c.actor || ev.RequestID != c.request ||
			!bytes.Equal(ev.Digest, c.digest) || ev.Hash != c.opts.HashFunc() || (ev.Err != nil) != c.fail {
			t.Fatalf("call %d: event %+v", i, ev)
		}
		if !ev.Time.After(epoch) || (i > 0 && !ev.Time.After(evs[i-1].Time)) {
			t.Fatalf("call %d: event time %v not from the injected clock", i, ev.Time)
		}
		if c.fail {
			continue
		}
		switch pub := c.s.Public().(type) {
		case *ecdsa.PublicKey:
			if !ecdsa.VerifyASN1(pub, ev.Digest, sig) {
				t.Fatalf("call %d: signature does not verify over the audited digest", i)
			}
		case *rsa.PublicKey:
			if pss, ok := c.opts.(*rsa.PSSOptions); ok {
				err = rsa.VerifyPSS(pub, crypto.SHA384, ev.Digest, sig, pss)
			} else {
				err = rsa.VerifyPKCS1v15(pub, crypto.SHA384, ev.Digest, sig)
			}
			if err != nil {
				t.Fatalf("call %d: %v", i, err)
			}
		}
	}

	want := `
# HELP vula_hsm_signatures_total Private-key signatures by key purpose class and result.
# TYPE vula_hsm_signatures_total counter
vula_hsm_signatures_total{purpose="seal",result="error"} 1
vula_hsm_signatures_total{purpose="seal",result="ok"} 3
vula_hsm_signatures_total{purpose="tsa",result="error"} 0
vula_hsm_signatures_total{purpose="tsa",result="ok"} 2
`
	if err := testutil.GatherAndCompare(f.reg, strings.NewReader(want), "vula_hsm_signatures_total"); err != nil {
		t.Fatal(err)
	}
	for class, n := range map[string]uint64{"seal": 4, "tsa": 2} {
		count, sum := f.histogram(t, class)
		// The step clock makes every signature last exactly 1ms.
		if count != n || sum < float64(n)*0.001*0.999 || sum > float64(n)*0.001*1.001 {
			t.Errorf("histogram %s: %d samples, sum %v; want %d samples of 1ms", class, count, sum, n)
		}
	}
	if n := testutil.CollectAndCount(f.reg, "vula_hsm_sign_duration_seconds"); n != 2 {
		t.Errorf("%d histogram series, want 2", n)
	}
}

// TestInstrumentHookBeforeReturn holds the hook and checks that Sign is still waiting for it.
func TestInstrumentHookBeforeReturn(t *testing.T) {
	f := newFixture(t)
	f.hook.gate = &gate{entered: make(chan struct{}), release: make(chan struct{})}
	info, s := f.key(t, "ocsp", hsm.ECP256, hsm.PurposeOCSP)
	d := sha256.Sum256([]byte("ocsp response"))
	type result struct {
		sig []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		sig, err := s.Sign(rand.Reader, d[:], crypto.SHA256)
		done <- result{sig, err}
	}()
	<-f.hook.gate.entered
	select {
	case <-done:
		t.Fatal("Sign returned while the audit hook was still recording")
	default:
	}
	if ev := f.hook.Events(); len(ev) != 1 || ev[0].KeyURI != info.URI || !bytes.Equal(ev[0].Digest, d[:]) || ev[0].Err != nil {
		t.Fatalf("hook saw %+v", ev)
	}
	// Whether a signature counts as ok or error depends on the hook: nothing is counted yet.
	if ok, bad := counterValue(t, f.reg, "ocsp", "ok"), counterValue(t, f.reg, "ocsp", "error"); ok != 0 || bad != 0 {
		t.Fatalf("counted %v ok, %v errors before the hook returned", ok, bad)
	}
	close(f.hook.gate.release)
	r := <-done
	if r.err != nil || !ecdsa.VerifyASN1(s.Public().(*ecdsa.PublicKey), d[:], r.sig) {
		t.Fatalf("after the hook returned: %v", r.err)
	}
}

func TestInstrumentHookErrorWithholds(t *testing.T) {
	f := newFixture(t)
	hookErr := errors.New("audit log unreachable")
	f.hook.err = hookErr
	_, s := f.key(t, "ca", hsm.ECP384, hsm.PurposeCA)
	d := sha512.Sum384([]byte("tbs certificate"))
	sig, err := s.Sign(rand.Reader, d[:], crypto.SHA384)
	if sig != nil || !errors.Is(err, hookErr) {
		t.Fatalf("Sign = %x, %v; want no signature and the hook's error", sig, err)
	}
	ev := f.hook.Events()
	if len(ev) != 1 || ev[0].Err != nil {
		t.Fatalf("hook saw %+v", ev)
	}
	want := `
# HELP vula_hsm_signatures_total Private-key signatures by key purpose class and result.
# TYPE vula_hsm_signatures_total counter
vula_hsm_signatures_total{purpose="ca",result="error"} 1
vula_hsm_signatures_total{purpose="ca",result="ok"} 0
`
	if err := testutil.GatherAndCompare(f.reg, strings.NewReader(want), "vula_hsm_signatures_total"); err != nil {
		t.Fatal(err)
	}
}

func TestInstrumentPassesErrorsThrough(t *testing.T) {
	f := newFixture(t)
	info, s := f.key(t, "oidc", hsm.ECP256, hsm.PurposeOIDCToken)
	ctx := context.Background()
	if _, err := f.m.Signer(ctx, info.URI, hsm.PurposeCA); !errors.Is(err, hsm.ErrWrongPurpose) {
		t.Fatalf("Signer for another purpose: err = %v", err)
	}
	if _, ok := s.(hsm.ContextSigner); !ok {
		t.Fatalf("instrumented signer %T is not a ContextSigner", s)
	}
	// Options a backend refuses must come back as errors, audited, without a panic; a typed nil
	// *rsa.PSSOptions is the nasty case, as its HashFunc dereferences it.
	d := sha256.Sum256([]byte("x"))
	var nilPSS *rsa.PSSOptions
	var nilEd *ed25519.Options
	for _, opts := range []crypto.SignerOpts{nil, nilPSS, nilEd, crypto.SHA1} {
		if _, err := s.Sign(rand.Reader, d[:], opts); err == nil {
			t.Fatalf("Sign with %#v succeeded", opts)
		}
	}
	if err := f.m.Retire(ctx, info.URI); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Sign(rand.Reader, d[:], crypto.SHA256); !errors.Is(err, hsm.ErrKeyNotActive) {
		t.Fatalf("signer of a retired key: err = %v", err)
	}
	evs := f.hook.Events()
	if len(evs) != 5 || !errors.Is(evs[4].Err, hsm.ErrKeyNotActive) || evs[0].Hash != 0 || evs[1].Hash != 0 || evs[2].Hash != 0 {
		t.Fatalf("hook saw %+v", evs)
	}
	if v := counterValue(t, f.reg, "oidc-token", "error"); v != 5 {
		t.Fatalf("%v errors counted, want 5", v)
	}
}

// counterValue reads vula_hsm_signatures_total{purpose,result} from reg; 0 if the series is absent.
func counterValue(t *testing.T, reg *prometheus.Registry, purpose, result string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "vula_hsm_signatures_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if labelIs(m, "purpose", purpose) && labelIs(m, "result", result) {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}
