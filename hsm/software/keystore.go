package software

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"time"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"

	"github.com/vula-eid/vula/hsm"
)

// The files of a keystore directory:
//
//	keystore.json       header: how the master key is obtained, and a key check value
//	keystore.lock       flock(2)ed while a Manager has the keystore open
//	keys/<label>.json   metadata of one key, authenticated with HMAC-SHA256
//	keys/<label>.key    the key's PKCS#8 private key sealed with AES-256-GCM
//
// Every file is JSON in exactly the form this package writes it (indented, trailing newline): a
// file that decodes but is not byte-for-byte canonical is refused, so that no change to a file, not
// even one the JSON decoder would forgive (letter case of a field name, spacing), goes unnoticed.
const (
	headerName = "keystore.json"
	lockName   = "keystore.lock"
	keysDir    = "keys"
	metaExt    = ".json"
	sealedExt  = ".key"
	maxFile    = 64 << 10 // far above the largest file written (an RSA-4096 key, about 4 KiB)
	formatV1   = 1
)

const (
	kdfArgon2id = "argon2id"
	kdfKeyFile  = "keyfile"
)

// labelRe is the label rule of hsm.KeySpec, repeated because the URI parser needs it alone.
var labelRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// kdfParams are the Argon2id costs for a new keystore. An existing keystore uses those in its header.
type kdfParams struct {
	Time      uint32
	MemoryKiB uint32
	Threads   uint8
}

// defaultKDF follows RFC 9106's second recommended option (64 MiB), with three passes.
func defaultKDF() kdfParams { return kdfParams{Time: 3, MemoryKiB: 64 << 10, Threads: 2} }

// Bounds on header parameters: a damaged or hostile header must not make Open allocate gigabytes or
// spin for minutes, nor make argon2 panic (it does on zero time or threads).
const (
	maxKDFTime   = 64
	maxKDFMemory = 1 << 20 // KiB, 1 GiB
	minSalt      = 16
	maxSalt      = 64
)

// header is keystore.json.
type header struct {
	Version int           `json:"version"`
	KDF     string        `json:"kdf"` // "argon2id" (passphrase) or "keyfile"
	Argon2  *argon2Header `json:"argon2,omitempty"`
	// Check is derived one-way from the master key: it tells a wrong passphrase or key file
	// (ErrLogin) from a damaged key file (ErrKeystore).
	Check []byte `json:"check"`
	// Sum is SHA-256 over the fields above. A flipped bit in the salt would otherwise read as a
	// wrong passphrase.
	Sum []byte `json:"sum"`
}

type argon2Header struct {
	Salt      []byte `json:"salt"`
	Time      uint32 `json:"time"`
	MemoryKiB uint32 `json:"memory_kib"`
	Threads   uint8  `json:"threads"`
}

// metaFile is keys/<label>.json.
type metaFile struct {
	Version   int           `json:"version"`
	Label     string        `json:"label"`
	Algorithm hsm.Algorithm `json:"algorithm"`
	Purpose   hsm.Purpose   `json:"purpose"`
	Owner     string        `json:"owner,omitempty"`
	Created   time.Time     `json:"created"`
	State     hsm.State     `json:"state"`
	// PublicKey is the PKIX SubjectPublicKeyInfo, absent once the key is destroyed.
	PublicKey []byte `json:"public_key,omitempty"`
	// MAC is HMAC-SHA256 under a key derived from the master key over every field above, so that
	// nobody without the master key can turn a retired key active again or change its purpose.
	MAC []byte `json:"mac"`
}

// sealedFile is keys/<label>.key.
type sealedFile struct {
	Version int    `json:"version"`
	Label   string `json:"label"`
	Nonce   []byte `json:"nonce"`
	// Ciphertext is the PKCS#8 private key sealed with AES-256-GCM; the associated data binds it to
	// the key's label, algorithm, purpose, owner, creation time and public key (see keyAD).
	Ciphertext []byte `json:"ciphertext"`
}

// encodeFile gives the canonical form of a keystore file.
func encodeFile(v any) ([]byte, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// decodeFile decodes data into v and insists that data is the canonical encoding of v.
func decodeFile(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("not a valid keystore file: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("not a valid keystore file: data after the JSON object")
	}
	if canon, err := encodeFile(v); err != nil || !bytes.Equal(canon, data) {
		return errors.New("not in the form this keystore writes (edited or damaged)")
	}
	return nil
}

func (h *header) sum() []byte {
	c := *h
	c.Sum = nil
	b, _ := encodeFile(c) // cannot fail: no field has a custom encoding
	d := sha256.Sum256(b)
	return d[:]
}

// parseHeader parses and checks keystore.json. Its errors name no file: callers add the path.
func parseHeader(data []byte) (*header, error) {
	var h header
	if err := decodeFile(data, &h); err != nil {
		return nil, err
	}
	if h.Version != formatV1 {
		return nil, fmt.Errorf("unknown version %d", h.Version)
	}
	switch h.KDF {
	case kdfArgon2id:
		a := h.Argon2
		if a == nil {
			return nil, errors.New("argon2id without parameters")
		}
		if len(a.Salt) < minSalt || len(a.Salt) > maxSalt {
			return nil, fmt.Errorf("argon2 salt of %d bytes", len(a.Salt))
		}
		if a.Time < 1 || a.Time > maxKDFTime || a.Threads < 1 ||
			a.MemoryKiB < 8*uint32(a.Threads) || a.MemoryKiB > maxKDFMemory {
			return nil, fmt.Errorf("argon2 parameters out of range (time %d, memory %d KiB, threads %d)",
				a.Time, a.MemoryKiB, a.Threads)
		}
	case kdfKeyFile:
		if h.Argon2 != nil {
			return nil, errors.New("argon2 parameters for a key-file keystore")
		}
	default:
		return nil, fmt.Errorf("unknown kdf %q", h.KDF)
	}
	if len(h.Check) != sha256.Size || len(h.Sum) != sha256.Size {
		return nil, errors.New("check value or checksum of the wrong length")
	}
	if !hmac.Equal(h.Sum, h.sum()) {
		return nil, errors.New("checksum mismatch")
	}
	return &h, nil
}

// parseMeta parses and checks the form of a metadata file. The MAC is checked by the caller, which
// holds the key.
func parseMeta(data []byte) (*metaFile, error) {
	var m metaFile
	if err := decodeFile(data, &m); err != nil {
		return nil, err
	}
	if m.Version != formatV1 {
		return nil, fmt.Errorf("unknown version %d", m.Version)
	}
	spec := hsm.KeySpec{Label: m.Label, Algorithm: m.Algorithm, Purpose: m.Purpose, Owner: m.Owner}
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	if !utf8.ValidString(m.Owner) {
		return nil, errors.New("owner is not UTF-8")
	}
	if m.Created.IsZero() {
		return nil, errors.New("no creation time")
	}
	switch m.State {
	case hsm.StateActive, hsm.StateRetired:
		if len(m.PublicKey) == 0 {
			return nil, errors.New("no public key")
		}
	case hsm.StateDestroyed:
		if len(m.PublicKey) != 0 {
			return nil, errors.New("a destroyed key with a public key")
		}
	default:
		return nil, fmt.Errorf("unknown state %q", m.State)
	}
	if len(m.MAC) != sha256.Size {
		return nil, errors.New("MAC of the wrong length")
	}
	return &m, nil
}

// parseSealed parses and checks the form of a sealed private-key file.
func parseSealed(data []byte) (*sealedFile, error) {
	var s sealedFile
	if err := decodeFile(data, &s); err != nil {
		return nil, err
	}
	if s.Version != formatV1 {
		return nil, fmt.Errorf("unknown version %d", s.Version)
	}
	if !labelRe.MatchString(s.Label) {
		return nil, fmt.Errorf("bad label %q", s.Label)
	}
	if len(s.Nonce) != 12 || len(s.Ciphertext) < 16 {
		return nil, errors.New("nonce or ciphertext of the wrong length")
	}
	return &s, nil
}

// secrets are the working keys derived from the master key. The master key itself is not kept.
type secrets struct {
	check  []byte      // stored in the header
	aead   cipher.AEAD // seals private keys
	macKey []byte      // authenticates metadata
}

// deriveSecrets splits the master key into independent keys with HKDF-SHA256, one per use.
func deriveSecrets(master []byte) (*secrets, error) {
	derive := func(info string) ([]byte, error) {
		return hkdf.Key(sha256.New, master, nil, "vula keystore v1 "+info, 32)
	}
	check, err := derive("key check")
	if err != nil {
		return nil, err
	}
	enc, err := derive("private key sealing")
	if err != nil {
		return nil, err
	}
	mac, err := derive("metadata mac")
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(enc)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &secrets{check: check, aead: aead, macKey: mac}, nil
}

func argon2Key(passphrase string, a *argon2Header) []byte {
	return argon2.IDKey([]byte(passphrase), a.Salt, a.Time, a.MemoryKiB, a.Threads, 32)
}

// bind encodes fields unambiguously (each with a 4-byte length) for MACs and associated data.
func bind(fields ...string) []byte {
	var b []byte
	for _, f := range fields {
		b = binary.BigEndian.AppendUint32(b, uint32(len(f)))
		b = append(b, f...)
	}
	return b
}

// keyAD is the associated data of a sealed private key: the key's identity, which never changes.
func keyAD(m *metaFile, spki []byte) []byte {
	return bind("vula keystore v1 private key", m.Label, string(m.Algorithm), string(m.Purpose),
		m.Owner, m.Created.Format(time.RFC3339Nano), string(spki))
}

func (s *secrets) metaMAC(m *metaFile) []byte {
	h := hmac.New(sha256.New, s.macKey)
	h.Write(bind("vula keystore v1 metadata", m.Label, string(m.Algorithm), string(m.Purpose),
		m.Owner, m.Created.Format(time.RFC3339Nano), string(m.State), string(m.PublicKey)))
	return h.Sum(nil)
}

// readFile reads a keystore file of bounded size.
func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }() // read only
	data, err := io.ReadAll(io.LimitReader(f, maxFile+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxFile {
		return nil, fmt.Errorf("larger than %d bytes", maxFile)
	}
	return data, nil
}

// writeFileAtomic replaces dir/name with data so that a crash leaves either the old or the new
// file, never a mix: a temp file (0600) is written and synced, renamed over, and the directory
// synced so that the rename itself survives.
func writeFileAtomic(dir, name string, data []byte) (err error) {
	f, err := os.CreateTemp(dir, "."+name+".*.tmp")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = os.Remove(tmp) // the write error is the one to report; Open removes leftovers
		}
	}()
	if _, err = f.Write(data); err != nil {
		_ = f.Close()
		return err
	}
	if err = f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer func() { _ = d.Close() }() // read only: Sync's error is the one that matters
	return d.Sync()
}

// wipeFile overwrites a file with zeros in place, syncs, and removes it. On a journaling or
// copy-on-write file system or an SSD the old blocks may survive elsewhere: this is best effort,
// on top of the file holding only ciphertext in the first place.
func wipeFile(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	st, err := f.Stat()
	if err == nil {
		_, err = f.WriteAt(make([]byte, st.Size()), 0)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := os.Remove(path); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}
