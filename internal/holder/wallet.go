// Package holder is Vula's reference wallet: a client of the standard protocols only. It
// receives credentials over OpenID for Verifiable Credential Issuance 1.0 (pre-authorized code
// flow, DPoP when the authorization server asks for it, proofs.jwt with one key a credential),
// verifies them before it keeps them (the issuer's signature and x5c chain to the wallet's trust
// anchors, the SD-JWT disclosures' digests, the mdoc MSO's value digests), reads their Token
// Status List, and answers OpenID4VP 1.0 requests (signed request objects with x509_san_dns or
// x509_hash client identifiers, DCQL, direct_post and direct_post.jwt) with only the claims the
// person chose to disclose.
//
// The contract:
//   - it imports nothing of the server: everything it knows of an issuer or a verifier comes over
//     HTTP, bounded in size and time, and a credential that does not verify is never stored;
//   - the wallet file is versioned, written atomically with mode 0600, and refused when group or
//     world may read it; with a passphrase the private keys (and only they) are encrypted;
//   - a presentation discloses nothing the request did not ask for and the person did not agree to.
package holder

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/crypto/argon2"
)

// Version is the wallet file format this package writes and reads.
const Version = 1

// Errors of the wallet file.
var (
	ErrExists       = errors.New("the wallet file already exists")
	ErrPermissions  = errors.New("the wallet file may be read by group or others: chmod 600 it")
	ErrPassphrase   = errors.New("the wallet's keys are encrypted: set VULA_WALLET_PASSPHRASE to the wallet's passphrase")
	ErrWrongVersion = errors.New("the wallet file has a format this vula does not read")
)

// Wallet is the holder's state: keys, trust anchors and credentials, in one local file.
type Wallet struct {
	path string
	key  []byte // AES-256 key for the private keys; nil when the file is not encrypted
	file walletFile
}

// walletFile is the file's JSON form.
type walletFile struct {
	Version int `json:"version"`
	// Encryption is how the private keys are sealed; absent when they are stored in the clear.
	Encryption *encryption `json:"encryption,omitempty"`
	// Trust are the PEM certificates credentials' issuer chains must end at.
	Trust       []string     `json:"trust,omitempty"`
	Keys        []storedKey  `json:"keys"`
	Credentials []Credential `json:"credentials"`
}

// encryption says how a passphrase becomes the key that seals the private keys: Argon2id (RFC
// 9106's second recommended option) and AES-256-GCM with the key's id as additional data.
type encryption struct {
	KDF     string `json:"kdf"` // "argon2id"
	Salt    []byte `json:"salt"`
	Time    uint32 `json:"time"`
	Memory  uint32 `json:"memory_kib"`
	Threads uint8  `json:"threads"`
	Cipher  string `json:"cipher"` // "A256GCM"
	// Check is a sealed empty plaintext: a wrong passphrase is told from a damaged key.
	Check []byte `json:"check"`
}

// storedKey is one P-256 private key: PKCS#8 DER, sealed (nonce || ciphertext) when encrypted.
type storedKey struct {
	ID      string    `json:"id"`
	PKCS8   []byte    `json:"pkcs8"`
	Created time.Time `json:"created"`
}

// Credential is one credential the wallet holds, as the issuer sent it.
type Credential struct {
	ID            string    `json:"id"`
	Format        string    `json:"format"`        // dc+sd-jwt or mso_mdoc
	Configuration string    `json:"configuration"` // the issuer's credential configuration id
	Issuer        string    `json:"issuer"`        // the credential issuer identifier
	Type          string    `json:"type"`          // vct or doctype
	KeyID         string    `json:"key"`           // the holder key it is bound to
	Credential    string    `json:"credential"`    // the SD-JWT, or base64url IssuerSigned
	Received      time.Time `json:"received"`
	Expires       time.Time `json:"expires"`
}

// passphrase derivation cost: about a tenth of a second here, 64 MiB.
const (
	kdfTime    = 2
	kdfMemory  = 64 << 10
	kdfThreads = 2
)

// Create makes a new wallet file at path with one key; with a passphrase the private keys are
// encrypted under it. An existing file is never overwritten.
func Create(path, passphrase string, trust []*x509.Certificate) (*Wallet, error) {
	if _, err := os.Lstat(path); err == nil {
		return nil, fmt.Errorf("%w: %s", ErrExists, path)
	}
	w := &Wallet{path: path, file: walletFile{Version: Version, Keys: []storedKey{}, Credentials: []Credential{}}}
	if passphrase != "" {
		e := &encryption{KDF: "argon2id", Salt: make([]byte, 16), Time: kdfTime, Memory: kdfMemory, Threads: kdfThreads, Cipher: "A256GCM"}
		if _, err := rand.Read(e.Salt); err != nil {
			return nil, err
		}
		w.key = argon2.IDKey([]byte(passphrase), e.Salt, e.Time, e.Memory, e.Threads, 32)
		check, err := seal(w.key, "check", nil)
		if err != nil {
			return nil, err
		}
		e.Check = check
		w.file.Encryption = e
	}
	w.AddTrust(trust)
	if _, _, err := w.NewKey(); err != nil {
		return nil, err
	}
	return w, w.create()
}

// Open reads the wallet file at path; passphrase opens its keys when they are encrypted.
func Open(path, passphrase string) (*Wallet, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("the wallet file: %w (vula wallet init makes one)", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%w (%s is %v)", ErrPermissions, path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	w := &Wallet{path: path}
	if err := json.Unmarshal(b, &w.file); err != nil {
		return nil, fmt.Errorf("the wallet file %s: %w", path, err)
	}
	if w.file.Version != Version {
		return nil, fmt.Errorf("%w: version %d (this vula reads %d)", ErrWrongVersion, w.file.Version, Version)
	}
	if e := w.file.Encryption; e != nil {
		if passphrase == "" {
			return nil, ErrPassphrase
		}
		if e.KDF != "argon2id" || e.Cipher != "A256GCM" || e.Memory > 1<<22 || e.Time > 64 {
			return nil, fmt.Errorf("%w: encryption %s/%s", ErrWrongVersion, e.KDF, e.Cipher)
		}
		w.key = argon2.IDKey([]byte(passphrase), e.Salt, e.Time, e.Memory, e.Threads, 32)
		if _, err := unseal(w.key, "check", e.Check); err != nil {
			return nil, errors.New("the passphrase does not open this wallet")
		}
	}
	return w, nil
}

// Path is where the wallet is kept.
func (w *Wallet) Path() string { return w.path }

// Encrypted reports whether the private keys are sealed under a passphrase.
func (w *Wallet) Encrypted() bool { return w.file.Encryption != nil }

// Credentials are the credentials held, oldest first.
func (w *Wallet) Credentials() []Credential { return w.file.Credentials }

// AddTrust adds certificates to the wallet's trust anchors (those already there are skipped).
func (w *Wallet) AddTrust(certs []*x509.Certificate) {
	have := map[string]bool{}
	for _, p := range w.file.Trust {
		have[p] = true
	}
	for _, c := range certs {
		p := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
		if !have[p] {
			w.file.Trust = append(w.file.Trust, p)
			have[p] = true
		}
	}
}

// Trust is the wallet's trust anchors.
func (w *Wallet) Trust() []*x509.Certificate {
	var out []*x509.Certificate
	for _, p := range w.file.Trust {
		if c, err := ParseCertificates([]byte(p)); err == nil {
			out = append(out, c...)
		}
	}
	return out
}

// NewKey makes a new P-256 holder key and keeps it (the caller saves the wallet).
func (w *Wallet) NewKey() (string, *ecdsa.PrivateKey, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return "", nil, err
	}
	id, err := thumbprint(&k.PublicKey)
	if err != nil {
		return "", nil, err
	}
	if w.key != nil {
		if der, err = seal(w.key, id, der); err != nil {
			return "", nil, err
		}
	}
	w.file.Keys = append(w.file.Keys, storedKey{ID: id, PKCS8: der, Created: time.Now().UTC()})
	return id, k, nil
}

// Key is the private key id.
func (w *Wallet) Key(id string) (*ecdsa.PrivateKey, error) {
	for _, k := range w.file.Keys {
		if k.ID != id {
			continue
		}
		der := k.PKCS8
		if w.key != nil {
			var err error
			if der, err = unseal(w.key, id, der); err != nil {
				return nil, fmt.Errorf("key %s does not open: %w", id, err)
			}
		}
		p, err := x509.ParsePKCS8PrivateKey(der)
		if err != nil {
			return nil, err
		}
		ec, ok := p.(*ecdsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("key %s is not an EC key", id)
		}
		return ec, nil
	}
	return nil, fmt.Errorf("no key %s in the wallet", id)
}

// KeyIDs are the ids of the wallet's keys, oldest first.
func (w *Wallet) KeyIDs() []string {
	out := make([]string, len(w.file.Keys))
	for i, k := range w.file.Keys {
		out[i] = k.ID
	}
	return out
}

// add keeps verified credentials (the caller saves the wallet).
func (w *Wallet) add(cs ...Credential) { w.file.Credentials = append(w.file.Credentials, cs...) }

// Save writes the wallet back: a new file beside it, then a rename, so a crash leaves the old or
// the new wallet and never half of one.
func (w *Wallet) Save() error {
	b, err := json.MarshalIndent(w.file, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(w.path), ".wallet-*")
	if err != nil {
		return err
	}
	defer func() { _ = os.Remove(f.Name()) }() // gone after the rename; removes a failed write
	if err := f.Chmod(0o600); err != nil {
		_ = f.Close() // the chmod error is the one to report
		return err
	}
	if _, err := f.Write(b); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), w.path)
}

// create writes a new wallet file, failing if one appeared meanwhile.
func (w *Wallet) create() error {
	b, err := json.MarshalIndent(w.file, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.OpenFile(w.path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

func seal(key []byte, id string, plain []byte) ([]byte, error) {
	gcm, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, gcm.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return gcm.Seal(nonce, nonce, plain, []byte(id)), nil
}

func unseal(key []byte, id string, sealed []byte) ([]byte, error) {
	gcm, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	if len(sealed) < gcm.NonceSize() {
		return nil, errors.New("sealed key too short")
	}
	return gcm.Open(nil, sealed[:gcm.NonceSize()], sealed[gcm.NonceSize():], []byte(id))
}

func newGCM(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// ParseCertificates reads PEM certificates, or one DER certificate.
func ParseCertificates(b []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	rest := b
	for {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if len(out) > 0 {
		return out, nil
	}
	c, err := x509.ParseCertificate(b)
	if err != nil {
		return nil, errors.New("neither PEM certificates nor a DER certificate")
	}
	return []*x509.Certificate{c}, nil
}
