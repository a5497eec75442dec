package cades_test

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"testing"

	"github.com/vula-eid/vula/internal/signing/cades"
	"github.com/vula-eid/vula/internal/signing/signingtest"
)

// BenchmarkCAdES compares a B-B signature (SignDigest: attributes, one signature, encoding)
// with the bare signature on the same P-256 software key from the key layer, in one run:
//
//	go test ./internal/signing/cades -run '^$' -bench CAdES -benchtime 2s -count 3
func BenchmarkCAdES(b *testing.B) {
	e := signingtest.New(b, signingtest.Options{})
	ctx := context.Background()
	digest := sha256.Sum256([]byte("content"))
	b.Run("bare", func(b *testing.B) {
		for b.Loop() {
			if _, err := e.Seal.Key.Sign(rand.Reader, digest[:], crypto.SHA256); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("SignDigest", func(b *testing.B) {
		for b.Loop() {
			if _, err := cades.SignDigest(ctx, e.Seal, digest[:], cades.Options{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("MaxSize", func(b *testing.B) {
		for b.Loop() {
			if _, err := cades.MaxSize(e.Seal, cades.Options{}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
