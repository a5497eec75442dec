// Package hsmtest is the conformance suite of the key layer: every hsm.Manager backend runs it
// against a real instance (the software keystore in a temp dir, a SoftHSM2 token).
package hsmtest

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vula-eid/vula/hsm"
)

// Harness opens managers over one backing store (a directory, a token).
type Harness struct {
	// Open returns a manager over the harness's backing store. Called again after Close, it
	// MUST see the keys made before (the suite checks persistence that way).
	Open func(t *testing.T) hsm.Manager
	// SkipRSA4096 skips the slowest key generation where a backend's tests must stay quick.
	SkipRSA4096 bool
}

var seq struct {
	sync.Mutex
	n int
}

// Label makes a label unique within one test run.
func Label(t *testing.T) string {
	seq.Lock()
	defer seq.Unlock()
	seq.n++
	name := strings.NewReplacer("/", "-", " ", "-", "_", "-").Replace(t.Name())
	if len(name) > 40 {
		name = name[len(name)-40:]
	}
	return fmt.Sprintf("%s-%d-%d", strings.Trim(name, "-."), time.Now().UnixNano()%1e6, seq.n)
}

// Run runs the whole suite.
func Run(t *testing.T, h Harness) {
	ctx := context.Background()
	m := h.Open(t)
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})

	t.Run("SignAndVerify", func(t *testing.T) {
		for _, alg := range hsm.Algorithms {
			if alg == hsm.RSA4096 && h.SkipRSA4096 {
				continue
			}
			t.Run(string(alg), func(t *testing.T) {
				info := mustCreate(t, m, hsm.KeySpec{Label: Label(t), Algorithm: alg, Purpose: hsm.PurposeTSA, Owner: "vula"})
				s, err := m.Signer(ctx, info.URI, hsm.PurposeTSA)
				if err != nil {
					t.Fatalf("Signer: %v", err)
				}
				pub, err := m.PublicKey(ctx, info.URI)
				if err != nil {
					t.Fatalf("PublicKey: %v", err)
				}
				if !publicEqual(pub, s.Public()) {
					t.Fatal("PublicKey and Signer.Public differ")
				}
				checkSignatures(t, s, alg)
			})
		}
	})

	t.Run("Metadata", func(t *testing.T) {
		before := time.Now().Add(-2 * time.Second)
		spec := hsm.KeySpec{Label: Label(t), Algorithm: hsm.ECP384, Purpose: hsm.SealPurpose("tax-office"), Owner: "tax-office"}
		info := mustCreate(t, m, spec)
		if info.Label != spec.Label || info.Algorithm != spec.Algorithm || info.Purpose != spec.Purpose ||
			info.Owner != spec.Owner || info.State != hsm.StateActive || info.URI == "" {
			t.Fatalf("CreateKey returned %+v for %+v", info, spec)
		}
		if info.Created.Before(before) || info.Created.After(time.Now().Add(2*time.Second)) {
			t.Fatalf("created %v, not now", info.Created)
		}
		got, err := m.Key(ctx, info.URI)
		if err != nil {
			t.Fatalf("Key: %v", err)
		}
		if got.URI != info.URI || got.Purpose != info.Purpose || got.Owner != info.Owner || !got.Created.Equal(info.Created) {
			t.Fatalf("Key = %+v, want %+v", got, info)
		}
		list, err := m.Keys(ctx)
		if err != nil {
			t.Fatalf("Keys: %v", err)
		}
		found := false
		for i, k := range list {
			if i > 0 && list[i-1].Label > k.Label {
				t.Fatalf("Keys not ordered by label: %q before %q", list[i-1].Label, k.Label)
			}
			found = found || k.URI == info.URI
		}
		if !found {
			t.Fatalf("Keys does not list %s", info.URI)
		}
	})

	t.Run("BadInput", func(t *testing.T) {
		good := hsm.KeySpec{Label: Label(t), Algorithm: hsm.ECP256, Purpose: hsm.PurposeCA}
		for name, spec := range map[string]hsm.KeySpec{
			"empty label":    {Algorithm: hsm.ECP256, Purpose: hsm.PurposeCA},
			"label with /":   {Label: "a/b", Algorithm: hsm.ECP256, Purpose: hsm.PurposeCA},
			"label with ;":   {Label: "a;object=b", Algorithm: hsm.ECP256, Purpose: hsm.PurposeCA},
			"bad algorithm":  {Label: good.Label, Algorithm: "EC-P224", Purpose: hsm.PurposeCA},
			"bad purpose":    {Label: good.Label, Algorithm: hsm.ECP256, Purpose: "anything"},
			"purpose no org": {Label: good.Label, Algorithm: hsm.ECP256, Purpose: "seal:"},
		} {
			if _, err := m.CreateKey(ctx, spec); !errors.Is(err, hsm.ErrInvalid) {
				t.Errorf("%s: err = %v, want ErrInvalid", name, err)
			}
		}
		info := mustCreate(t, m, good)
		if _, err := m.CreateKey(ctx, good); !errors.Is(err, hsm.ErrConflict) {
			t.Errorf("same label twice: err = %v, want ErrConflict", err)
		}
		if _, err := m.Signer(ctx, info.URI, hsm.PurposeTSA); !errors.Is(err, hsm.ErrWrongPurpose) {
			t.Errorf("wrong purpose: err = %v, want ErrWrongPurpose", err)
		}
		missing := strings.Replace(info.URI, good.Label, good.Label+"-missing", 1)
		if _, err := m.Signer(ctx, missing, hsm.PurposeCA); !errors.Is(err, hsm.ErrNotFound) {
			t.Errorf("unknown key: err = %v, want ErrNotFound", err)
		}
		if _, err := m.Key(ctx, missing); !errors.Is(err, hsm.ErrNotFound) {
			t.Errorf("Key of unknown key: err = %v, want ErrNotFound", err)
		}
		for _, uri := range []string{"", "nonsense", "pkcs11:", "software:", "http://example.org/key"} {
			if _, err := m.Key(ctx, uri); !errors.Is(err, hsm.ErrNotFound) && !errors.Is(err, hsm.ErrInvalid) {
				t.Errorf("Key(%q): err = %v, want ErrNotFound or ErrInvalid", uri, err)
			}
		}
		s, err := m.Signer(ctx, info.URI, hsm.PurposeCA)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Sign(rand.Reader, []byte("short"), crypto.SHA256); err == nil {
			t.Error("a digest of the wrong length was signed")
		}
	})

	t.Run("RetireAndDestroy", func(t *testing.T) {
		info := mustCreate(t, m, hsm.KeySpec{Label: Label(t), Algorithm: hsm.ECP256, Purpose: hsm.PurposeOCSP})
		early, err := m.Signer(ctx, info.URI, hsm.PurposeOCSP)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Retire(ctx, info.URI); err != nil {
			t.Fatalf("Retire: %v", err)
		}
		if _, err := m.Signer(ctx, info.URI, hsm.PurposeOCSP); !errors.Is(err, hsm.ErrKeyNotActive) {
			t.Errorf("Signer of retired key: err = %v, want ErrKeyNotActive", err)
		}
		if _, err := m.PublicKey(ctx, info.URI); err != nil {
			t.Errorf("PublicKey of retired key: %v", err)
		}
		if k, _ := m.Key(ctx, info.URI); k.State != hsm.StateRetired {
			t.Errorf("state %q after Retire", k.State)
		}
		if err := m.Destroy(ctx, info.URI); err != nil {
			t.Fatalf("Destroy: %v", err)
		}
		if k, _ := m.Key(ctx, info.URI); k.State != hsm.StateDestroyed {
			t.Errorf("state %q after Destroy", k.State)
		}
		if _, err := m.Signer(ctx, info.URI, hsm.PurposeOCSP); !errors.Is(err, hsm.ErrKeyNotActive) {
			t.Errorf("Signer of destroyed key: err = %v, want ErrKeyNotActive", err)
		}
		d := sha256.Sum256([]byte("after destroy"))
		if _, err := early.Sign(rand.Reader, d[:], crypto.SHA256); err == nil {
			t.Error("a signer handed out before Destroy still signs")
		}
		if err := m.Retire(ctx, info.URI); !errors.Is(err, hsm.ErrKeyNotActive) {
			t.Errorf("Retire of destroyed key: err = %v, want ErrKeyNotActive", err)
		}
	})

	t.Run("Concurrent", func(t *testing.T) {
		info := mustCreate(t, m, hsm.KeySpec{Label: Label(t), Algorithm: hsm.ECP256, Purpose: hsm.PurposeOIDCToken})
		s, err := m.Signer(ctx, info.URI, hsm.PurposeOIDCToken)
		if err != nil {
			t.Fatal(err)
		}
		pub := s.Public().(*ecdsa.PublicKey)
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for g := 0; g < 8; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 50; i++ {
					d := sha256.Sum256(fmt.Appendf(nil, "%d-%d", g, i))
					sig, err := s.Sign(rand.Reader, d[:], crypto.SHA256)
					if err != nil {
						errs <- err
						return
					}
					if !ecdsa.VerifyASN1(pub, d[:], sig) {
						errs <- errors.New("bad signature under concurrency")
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
	})

	t.Run("Persistence", func(t *testing.T) {
		info := mustCreate(t, m, hsm.KeySpec{Label: Label(t), Algorithm: hsm.ECP256, Purpose: hsm.PurposeAudit})
		pub, err := m.PublicKey(ctx, info.URI)
		if err != nil {
			t.Fatal(err)
		}
		retired := mustCreate(t, m, hsm.KeySpec{Label: Label(t), Algorithm: hsm.ECP256, Purpose: hsm.PurposeAudit})
		if err := m.Retire(ctx, retired.URI); err != nil {
			t.Fatal(err)
		}
		if err := m.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		m = h.Open(t)
		s, err := m.Signer(ctx, info.URI, hsm.PurposeAudit)
		if err != nil {
			t.Fatalf("Signer after reopen: %v", err)
		}
		if !publicEqual(pub, s.Public()) {
			t.Fatal("key changed across reopen")
		}
		checkSignatures(t, s, hsm.ECP256)
		if k, err := m.Key(ctx, retired.URI); err != nil || k.State != hsm.StateRetired {
			t.Fatalf("retired key after reopen: %+v, %v", k, err)
		}
	})

	t.Run("Ping", func(t *testing.T) {
		if err := m.Ping(ctx); err != nil {
			t.Fatalf("Ping: %v", err)
		}
	})
}

func mustCreate(t *testing.T, m hsm.Manager, spec hsm.KeySpec) hsm.KeyInfo {
	t.Helper()
	info, err := m.CreateKey(context.Background(), spec)
	if err != nil {
		t.Fatalf("CreateKey(%+v): %v", spec, err)
	}
	return info
}

// checkSignatures signs with every hash and scheme the algorithm supports and verifies with the
// standard library.
func checkSignatures(t *testing.T, s crypto.Signer, alg hsm.Algorithm) {
	t.Helper()
	msg := []byte("Vula conformance " + string(alg))
	digests := map[crypto.Hash][]byte{}
	d256 := sha256.Sum256(msg)
	d384 := sha512.Sum384(msg)
	d512 := sha512.Sum512(msg)
	digests[crypto.SHA256], digests[crypto.SHA384], digests[crypto.SHA512] = d256[:], d384[:], d512[:]
	for h, d := range digests {
		switch pub := s.Public().(type) {
		case *ecdsa.PublicKey:
			sig, err := s.Sign(rand.Reader, d, h)
			if err != nil {
				t.Fatalf("%v: Sign: %v", h, err)
			}
			if !ecdsa.VerifyASN1(pub, d, sig) {
				t.Fatalf("%v: ECDSA signature does not verify", h)
			}
			raw, err := hsm.ECDSARaw(sig, pub.Curve)
			if err != nil || len(raw) != 2*((pub.Curve.Params().BitSize+7)/8) {
				t.Fatalf("%v: ECDSARaw: %d bytes, %v", h, len(raw), err)
			}
		case *rsa.PublicKey:
			if pub.N.BitLen() != map[hsm.Algorithm]int{hsm.RSA3072: 3072, hsm.RSA4096: 4096}[alg] {
				t.Fatalf("RSA key of %d bits for %s", pub.N.BitLen(), alg)
			}
			sig, err := s.Sign(rand.Reader, d, h)
			if err != nil {
				t.Fatalf("%v: Sign PKCS#1 v1.5: %v", h, err)
			}
			if err := rsa.VerifyPKCS1v15(pub, h, d, sig); err != nil {
				t.Fatalf("%v: PKCS#1 v1.5 signature: %v", h, err)
			}
			opts := &rsa.PSSOptions{Hash: h, SaltLength: rsa.PSSSaltLengthEqualsHash}
			sig, err = s.Sign(rand.Reader, d, opts)
			if err != nil {
				t.Fatalf("%v: Sign PSS: %v", h, err)
			}
			if err := rsa.VerifyPSS(pub, h, d, sig, opts); err != nil {
				t.Fatalf("%v: PSS signature: %v", h, err)
			}
		default:
			t.Fatalf("public key of type %T", pub)
		}
	}
}

func publicEqual(a, b crypto.PublicKey) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	ea, ok := a.(equaler)
	return ok && ea.Equal(b)
}
