package rawsig

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"io"
	"log/slog"
	"math/big"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/vula-eid/vula/hsm"
	"github.com/vula-eid/vula/hsm/software"
)

// actors records who each signature of the key layer was made for.
type actors struct {
	mu  sync.Mutex
	got []string
}

func (a *actors) RecordSignature(ctx context.Context, ev hsm.SignEvent) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.got = append(a.got, ev.Actor)
	return nil
}

// keyLayer is the software key layer, instrumented with hook.
func keyLayer(t *testing.T, hook hsm.AuditHook) hsm.Manager {
	t.Helper()
	dir := t.TempDir()
	kf := filepath.Join(dir, "k")
	if err := software.CreateKeyFile(kf); err != nil {
		t.Fatal(err)
	}
	raw, err := software.Open(context.Background(), software.Config{Dir: filepath.Join(dir, "keys"), KeyFile: kf}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = raw.Close() })
	return hsm.Instrument(raw, hsm.NewMetrics(prometheus.NewRegistry()), hook, time.Now)
}

// Every algorithm of the key layer signs a JWS that go-jose verifies, under the caller's
// context (the audit hook sees the actor of the call, not of the one that got the signer).
func TestJWSThroughTheKeyLayer(t *testing.T) {
	hook := &actors{}
	keys := keyLayer(t, hook)
	for _, tc := range []struct {
		alg  hsm.Algorithm
		jose string
	}{{hsm.ECP256, "ES256"}, {hsm.ECP384, "ES384"}, {hsm.RSA3072, "PS256"}} {
		t.Run(string(tc.alg), func(t *testing.T) {
			ctx := hsm.WithActor(context.Background(), "setup")
			k, err := keys.CreateKey(ctx, hsm.KeySpec{Label: "k-" + string(tc.alg), Algorithm: tc.alg, Purpose: hsm.PurposeVerifier})
			if err != nil {
				t.Fatal(err)
			}
			s, err := keys.Signer(ctx, k.URI, hsm.PurposeVerifier)
			if err != nil {
				t.Fatal(err)
			}
			hook.got = nil
			compact, err := JWS(hsm.WithActor(context.Background(), "request-7"), s, map[string]any{"typ": "test+jwt"}, map[string]any{"n": 1})
			if err != nil {
				t.Fatal(err)
			}
			jws, err := jose.ParseSigned(compact)
			if err != nil {
				t.Fatal(err)
			}
			if got := jws.Signatures[0].Protected.Algorithm; got != tc.jose {
				t.Errorf("alg %s, want %s", got, tc.jose)
			}
			payload, err := jws.Verify(s.Public())
			if err != nil || string(payload) != `{"n":1}` {
				t.Fatalf("verified %s: %v", payload, err)
			}
			if len(hook.got) != 1 || hook.got[0] != "request-7" {
				t.Errorf("audited for %v", hook.got)
			}
		})
	}
}

// Sign's ECDSA is COSE's and JOSE's fixed-size r||s.
func TestSignECDSARaw(t *testing.T) {
	k, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	msg := []byte("Signature1")
	sig, err := Sign(context.Background(), k, msg)
	if err != nil || len(sig) != 96 {
		t.Fatalf("%d bytes: %v", len(sig), err)
	}
	d := crypto.SHA384.New()
	d.Write(msg)
	if !ecdsa.Verify(&k.PublicKey, d.Sum(nil), new(big.Int).SetBytes(sig[:48]), new(big.Int).SetBytes(sig[48:])) {
		t.Error("does not verify as r||s")
	}
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	sig, err = Sign(context.Background(), rk, msg)
	h := sha256.Sum256(msg)
	if err != nil || rsa.VerifyPSS(&rk.PublicKey, crypto.SHA256, h[:], sig, nil) != nil {
		t.Errorf("RSA is not PSS over SHA-256: %v", err)
	}
	if a, err := AlgOf(&rk.PublicKey); err != nil || a.COSE != -37 {
		t.Errorf("RSA: %+v %v", a, err)
	}
}

func TestOtherKeysRefused(t *testing.T) {
	_, k, _ := ed25519.GenerateKey(rand.Reader)
	if _, err := JWS(context.Background(), k, map[string]any{}, nil); err == nil {
		t.Error("an Ed25519 key signed")
	}
}
