package pkcs11

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"testing"

	p11 "github.com/miekg/pkcs11"

	"github.com/vula-eid/vula/hsm"
	"github.com/vula-eid/vula/internal/testenv"
)

// BenchmarkSign compares signatures per second through the Manager's signer with raw
// miekg/pkcs11 calls (a session per goroutine, C_SignInit + C_Sign) on the same SoftHSM2 key.
func BenchmarkSign(b *testing.B) {
	tok := testenv.SoftHSM(b)
	// As many working sessions as the raw side's goroutines use at most.
	m, err := Open(context.Background(), Config{Module: tok.Module, TokenLabel: tok.Label, PIN: tok.PIN, PoolSize: 8}, quiet)
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	ctx := context.Background()
	for _, alg := range []hsm.Algorithm{hsm.ECP256, hsm.RSA3072} {
		k, err := m.CreateKey(ctx, hsm.KeySpec{Label: "bench-" + string(alg), Algorithm: alg, Purpose: hsm.PurposeTSA})
		if err != nil {
			b.Fatal(err)
		}
		s, err := m.Signer(ctx, k.URI, hsm.PurposeTSA)
		if err != nil {
			b.Fatal(err)
		}
		d := sha256.Sum256([]byte("bench"))
		mech, input := uint(p11.CKM_ECDSA), d[:]
		if alg.IsRSA() {
			mech, input = p11.CKM_RSA_PKCS, append(append([]byte{}, digestInfo[crypto.SHA256]...), d[:]...)
		}
		var priv p11.ObjectHandle
		m.do(func(sess p11.SessionHandle, gen uint64) error {
			e, err := m.load(sess, k.Label, gen)
			priv = e.priv
			return err
		})
		raw := func(sess p11.SessionHandle) error {
			if err := m.mod.ctx.SignInit(sess, []*p11.Mechanism{p11.NewMechanism(mech, nil)}, priv); err != nil {
				return err
			}
			_, err := m.mod.ctx.Sign(sess, input)
			return err
		}
		for _, g := range []int{1, 8} {
			b.Run(fmt.Sprintf("%s/raw/g%d", alg, g), func(b *testing.B) {
				sessions := make([]p11.SessionHandle, g)
				for i := range sessions {
					sessions[i], err = m.mod.ctx.OpenSession(m.slot, p11.CKF_SERIAL_SESSION)
					if err != nil {
						b.Fatal(err)
					}
					defer m.mod.ctx.CloseSession(sessions[i])
				}
				testenv.Parallel(b, g, "sig/s", func(w int) error { return raw(sessions[w]) })
			})
			b.Run(fmt.Sprintf("%s/manager/g%d", alg, g), func(b *testing.B) {
				testenv.Parallel(b, g, "sig/s", func(int) error { _, err := s.Sign(rand.Reader, d[:], crypto.SHA256); return err })
			})
		}
	}
}
