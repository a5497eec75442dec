package store

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
)

// SeedSealer encrypts TOTP seeds before they reach the durable store (AES-256-GCM, the person's
// subject id as associated data, so a sealed seed copied to another person does not open).
type SeedSealer struct{ aead cipher.AEAD }

// NewSeedSealer takes a 32-byte key, which the caller keeps outside the database.
func NewSeedSealer(key []byte) (*SeedSealer, error) {
	if len(key) != 32 {
		return nil, errors.New("store: seed sealing key must be 32 bytes")
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	a, err := cipher.NewGCM(b)
	if err != nil {
		return nil, err
	}
	return &SeedSealer{aead: a}, nil
}

// Seal encrypts seed for subjectID: nonce || ciphertext.
func (s *SeedSealer) Seal(subjectID string, seed []byte) ([]byte, error) {
	nonce := make([]byte, s.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return s.aead.Seal(nonce, nonce, seed, []byte(subjectID)), nil
}

// Open decrypts what Seal made for subjectID.
func (s *SeedSealer) Open(subjectID string, sealed []byte) ([]byte, error) {
	n := s.aead.NonceSize()
	if len(sealed) < n+s.aead.Overhead() {
		return nil, fmt.Errorf("store: sealed seed too short")
	}
	seed, err := s.aead.Open(nil, sealed[:n], sealed[n:], []byte(subjectID))
	if err != nil {
		return nil, fmt.Errorf("store: sealed seed does not open for this person")
	}
	return seed, nil
}
