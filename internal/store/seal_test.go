package store

import (
	"bytes"
	"crypto/rand"
	"testing"
)

func TestSeedSealer(t *testing.T) {
	key := make([]byte, 32)
	rand.Read(key)
	s, err := NewSeedSealer(key)
	if err != nil {
		t.Fatal(err)
	}
	seed := []byte("JBSWY3DPEHPK3PXP-seed-bytes")
	sealed, err := s.Seal("person-1", seed)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, seed) {
		t.Fatal("seed in clear")
	}
	if got, err := s.Open("person-1", sealed); err != nil || !bytes.Equal(got, seed) {
		t.Fatalf("Open: %q %v", got, err)
	}
	if _, err := s.Open("person-2", sealed); err == nil {
		t.Fatal("a seed opened for another person")
	}
	sealed[len(sealed)-1] ^= 1
	if _, err := s.Open("person-1", sealed); err == nil {
		t.Fatal("a tampered seed opened")
	}
	if _, err := s.Open("person-1", sealed[:5]); err == nil {
		t.Fatal("a truncated seed opened")
	}
	if _, err := NewSeedSealer(key[:16]); err == nil {
		t.Fatal("short key accepted")
	}
}
