// Package software is the key layer's software backend, the embedded default: keys live in a
// directory, encrypted at rest, and are used in this process's memory.
//
// The contract, beyond hsm.Manager's:
//
//   - Keys are named by URIs of the form "software:object=<label>", nothing before, after or
//     escaped; anything else is hsm.ErrInvalid.
//   - A master key unlocks the keystore: either derived from a passphrase with Argon2id (salt and
//     costs in Dir/keystore.json) or read from a key file holding 32 random bytes (raw, 64 hex
//     digits, or standard base64; CreateKeyFile writes hex). A key file readable or writable by
//     group or others is refused. A keystore stays bound to the kind of secret it was created
//     with. The wrong secret gives hsm.ErrLogin ("wrong passphrase or key file"); no passphrase or
//     key appears in any error or log line.
//   - Private keys are written only as PKCS#8 sealed with AES-256-GCM (random nonce), the
//     associated data binding each to its label, algorithm, purpose, owner, creation time and
//     public key; metadata carries an HMAC. So a file swapped, edited, truncated or flipped by a
//     bit is hsm.ErrKeystore with the file's name, never a wrong key. Files are 0600, directories
//     0700, and every write is atomic (temp file, fsync, rename, fsync of the directory).
//   - Open decrypts every active key once and keeps it in memory; a damaged file makes Open fail
//     rather than start with a key missing. Retire and Destroy drop the key from memory at once,
//     so signers handed out before stop signing; Destroy also overwrites and deletes the sealed
//     key file and keeps the metadata (state destroyed, public key dropped).
//   - A Manager is safe for concurrent use. One Manager per directory: a second Open of the same
//     directory, in this process or another, fails with hsm.ErrUnavailable while the first is
//     open (flock on Dir/keystore.lock).
//
// Go cannot reliably erase a private key from memory; dropped keys are left to the garbage
// collector. That, and keys sitting in process memory, is why production uses a PKCS#11 HSM.
package software

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/vula-eid/vula/hsm"
)

// Config says where a keystore is and how to unlock it. Exactly one of Passphrase and KeyFile is set.
type Config struct {
	// Dir is the keystore directory, created with mode 0700 if missing.
	Dir string
	// Passphrase unlocks a passphrase keystore (the master key is derived with Argon2id). Take it
	// from a secret store or the environment, never from a committed file.
	Passphrase string
	// KeyFile is the path of a file holding the 32-byte master key: raw, 64 hex digits or base64.
	// It must be mode 0600 or stricter.
	KeyFile string

	kdf kdfParams        // Argon2id costs for a new keystore; zero means defaultKDF (tests lower them)
	now func() time.Time // clock for creation times; nil means time.Now
}

// URIPrefix starts every key URI of this backend; the label follows.
const URIPrefix = "software:object="

// Manager is the software keystore. Create it with Open.
type Manager struct {
	dir     string
	keysDir string
	log     *slog.Logger
	now     func() time.Time
	sec     *secrets
	lock    *os.File

	closed atomic.Bool
	// writeMu orders Retire and Destroy (read, write file, update memory) so that two of them on
	// one key cannot interleave. CreateKey needs only mu: it reserves its label.
	writeMu sync.Mutex
	mu      sync.RWMutex
	keys    map[string]*entry // by label
	pending map[string]bool   // labels being created
}

var _ hsm.Manager = (*Manager)(nil)

// entry is one key in memory.
type entry struct {
	meta metaFile         // guarded by Manager.mu
	pub  crypto.PublicKey // nil once destroyed; guarded by Manager.mu
	// priv is the decrypted key while the key is active, nil otherwise. Signers load it on each
	// signature, which is how Retire, Destroy and Close reach signers already handed out.
	priv atomic.Pointer[privateKey]
}

type privateKey struct{ crypto.Signer }

// Open opens the keystore in cfg.Dir, creating it if the directory holds none, and decrypts its
// active keys. log may be nil.
func Open(ctx context.Context, cfg Config, log *slog.Logger) (*Manager, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Dir == "" {
		return nil, fmt.Errorf("%w: keystore directory not set", hsm.ErrInvalid)
	}
	if (cfg.Passphrase == "") == (cfg.KeyFile == "") {
		return nil, fmt.Errorf("%w: set exactly one of passphrase and key file for keystore %s", hsm.ErrInvalid, cfg.Dir)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m := &Manager{
		dir: cfg.Dir, keysDir: filepath.Join(cfg.Dir, keysDir), log: log, now: cfg.now,
		keys: map[string]*entry{}, pending: map[string]bool{},
	}
	if m.now == nil {
		m.now = time.Now
	}
	for _, d := range []string{m.dir, m.keysDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("%w: keystore directory: %v", hsm.ErrUnavailable, err)
		}
		if st, err := os.Stat(d); err == nil && st.Mode().Perm()&0o077 != 0 {
			log.Warn("keystore directory is accessible to group or others; chmod 700 it",
				slog.String("dir", d), slog.String("mode", fmt.Sprintf("%04o", st.Mode().Perm())))
		}
	}
	lock, err := lockDir(filepath.Join(m.dir, lockName))
	if err != nil {
		return nil, err
	}
	m.lock = lock
	if err := m.load(ctx, cfg); err != nil {
		_ = lock.Close() // the load error is the one to report
		m.dropKeys()
		return nil, err
	}
	log.Info("keystore opened", slog.String("dir", m.dir), slog.Int("keys", len(m.keys)))
	return m, nil
}

// load unlocks the keystore and reads every key.
func (m *Manager) load(ctx context.Context, cfg Config) error {
	removeTemps(m.log, m.dir)
	removeTemps(m.log, m.keysDir)
	sec, err := m.unlock(cfg)
	if err != nil {
		return err
	}
	m.sec = sec

	names, err := os.ReadDir(m.keysDir)
	if err != nil {
		return fmt.Errorf("%w: %v", hsm.ErrUnavailable, err)
	}
	sealed := map[string]bool{}
	for _, de := range names {
		if label, ok := strings.CutSuffix(de.Name(), sealedExt); ok && de.Type().IsRegular() {
			sealed[label] = true
		}
	}
	for _, de := range names {
		if err := ctx.Err(); err != nil {
			return err
		}
		name := de.Name()
		label, isMeta := strings.CutSuffix(name, metaExt)
		switch {
		case isMeta && labelRe.MatchString(label) && de.Type().IsRegular():
			if err := m.loadKey(label, sealed[label]); err != nil {
				return err
			}
			delete(sealed, label)
		case strings.HasSuffix(name, sealedExt) && labelRe.MatchString(strings.TrimSuffix(name, sealedExt)):
			// matched with its metadata above
		default:
			m.log.Warn("keystore: ignoring a file this keystore did not write", slog.String("file", filepath.Join(m.keysDir, name)))
		}
	}
	for label := range sealed {
		if labelRe.MatchString(label) {
			// Left by a CreateKey that crashed between its two writes, or metadata deleted by
			// hand. Never deleted automatically: it may be somebody's only copy of a key.
			m.log.Warn("keystore: sealed key without metadata; CreateKey refuses this label until it is removed",
				slog.String("file", m.keyPath(label, sealedExt)))
		}
	}
	return nil
}

// unlock reads or creates the header and derives the working keys.
func (m *Manager) unlock(cfg Config) (*secrets, error) {
	path := filepath.Join(m.dir, headerName)
	data, err := readFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return m.create(cfg, path)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", hsm.ErrKeystore, path, err)
	}
	h, err := parseHeader(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", hsm.ErrKeystore, path, err)
	}
	var master []byte
	switch {
	case h.KDF == kdfArgon2id && cfg.Passphrase != "":
		master = argon2Key(cfg.Passphrase, h.Argon2)
	case h.KDF == kdfKeyFile && cfg.KeyFile != "":
		if master, err = readKeyFile(cfg.KeyFile); err != nil {
			return nil, err
		}
	case h.KDF == kdfArgon2id:
		return nil, fmt.Errorf("%w: keystore %s is unlocked by a passphrase, not a key file", hsm.ErrLogin, m.dir)
	default:
		return nil, fmt.Errorf("%w: keystore %s is unlocked by a key file, not a passphrase", hsm.ErrLogin, m.dir)
	}
	defer clear(master)
	sec, err := deriveSecrets(master)
	if err != nil {
		return nil, err
	}
	if !hmac.Equal(sec.check, h.Check) {
		return nil, fmt.Errorf("%w: keystore %s: wrong passphrase or key file", hsm.ErrLogin, m.dir)
	}
	return sec, nil
}

// create writes the header of a new keystore.
func (m *Manager) create(cfg Config, path string) (*secrets, error) {
	// Without its header a keystore's keys cannot be read; never paper over a lost one.
	if names, _ := os.ReadDir(m.keysDir); len(names) > 0 {
		return nil, fmt.Errorf("%w: %s is missing but %s holds %d files", hsm.ErrKeystore, path, m.keysDir, len(names))
	}
	h := header{Version: formatV1}
	var master []byte
	if cfg.Passphrase != "" {
		p := cfg.kdf
		if p == (kdfParams{}) {
			p = defaultKDF()
		}
		h.KDF = kdfArgon2id
		h.Argon2 = &argon2Header{Salt: make([]byte, 16), Time: p.Time, MemoryKiB: p.MemoryKiB, Threads: p.Threads}
		rand.Read(h.Argon2.Salt)
		master = argon2Key(cfg.Passphrase, h.Argon2)
	} else {
		h.KDF = kdfKeyFile
		var err error
		if master, err = readKeyFile(cfg.KeyFile); err != nil {
			return nil, err
		}
	}
	defer clear(master)
	sec, err := deriveSecrets(master)
	if err != nil {
		return nil, err
	}
	h.Check = sec.check
	h.Sum = h.sum()
	data, err := encodeFile(&h)
	if err == nil {
		err = writeFileAtomic(m.dir, headerName, data)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: writing %s: %v", hsm.ErrUnavailable, path, err)
	}
	m.log.Info("keystore created", slog.String("dir", m.dir), slog.String("unlocked_by", h.KDF))
	return sec, nil
}

// removeTemps deletes temp files left by writes a crash interrupted: they were never renamed into
// place, so nothing refers to them.
func removeTemps(log *slog.Logger, dir string) {
	names, _ := os.ReadDir(dir)
	for _, de := range names {
		if n := de.Name(); strings.HasPrefix(n, ".") && strings.HasSuffix(n, ".tmp") && de.Type().IsRegular() {
			path := filepath.Join(dir, n)
			if err := wipeFile(path); err != nil {
				log.Warn("keystore: cannot remove a temp file", slog.String("file", path), slog.String("error", err.Error()))
			}
		}
	}
}

func (m *Manager) keyPath(label, ext string) string { return filepath.Join(m.keysDir, label+ext) }

// loadKey reads one key's metadata and, if it is active, its private key.
func (m *Manager) loadKey(label string, hasSealed bool) error {
	path := m.keyPath(label, metaExt)
	damaged := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", hsm.ErrKeystore, path, fmt.Sprintf(format, args...))
	}
	data, err := readFile(path)
	if err != nil {
		return damaged("%v", err)
	}
	meta, err := parseMeta(data)
	if err != nil {
		return damaged("%v", err)
	}
	if meta.Label != label {
		return damaged("holds key %q", meta.Label)
	}
	if !hmac.Equal(meta.MAC, m.sec.metaMAC(meta)) {
		return damaged("integrity check failed (altered, or from another keystore)")
	}
	e := &entry{meta: *meta}
	if meta.State != hsm.StateDestroyed {
		if e.pub, err = parsePublic(meta.Algorithm, meta.PublicKey); err != nil {
			return damaged("%v", err)
		}
	}
	switch meta.State {
	case hsm.StateActive:
		if !hasSealed {
			return fmt.Errorf("%w: %s: missing (the private key of active key %s)", hsm.ErrKeystore, m.keyPath(label, sealedExt), label)
		}
		priv, err := m.openSealed(meta, e.pub)
		if err != nil {
			return err
		}
		e.priv.Store(&privateKey{priv})
	case hsm.StateDestroyed:
		if hasSealed {
			// Destroy stopped between writing the metadata and wiping the key: finish it.
			sp := m.keyPath(label, sealedExt)
			if err := wipeFile(sp); err != nil {
				m.log.Error("keystore: cannot wipe the private key of a destroyed key", slog.String("file", sp), slog.String("error", err.Error()))
			} else {
				m.log.Warn("keystore: wiped the private key of a destroyed key left by an interrupted Destroy", slog.String("file", sp))
			}
		}
	}
	m.keys[label] = e
	return nil
}

// openSealed decrypts a key's sealed file and checks the key against its metadata.
func (m *Manager) openSealed(meta *metaFile, pub crypto.PublicKey) (crypto.Signer, error) {
	path := m.keyPath(meta.Label, sealedExt)
	damaged := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", hsm.ErrKeystore, path, fmt.Sprintf(format, args...))
	}
	data, err := readFile(path)
	if err != nil {
		return nil, damaged("%v", err)
	}
	s, err := parseSealed(data)
	if err != nil {
		return nil, damaged("%v", err)
	}
	if s.Label != meta.Label {
		return nil, damaged("holds key %q", s.Label)
	}
	der, err := m.sec.aead.Open(nil, s.Nonce, s.Ciphertext, keyAD(meta, meta.PublicKey))
	if err != nil {
		return nil, damaged("does not decrypt (altered, or belongs to another key or keystore)")
	}
	defer clear(der)
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, damaged("not a PKCS#8 key")
	}
	signer, ok := k.(crypto.Signer)
	if !ok || !publicEqual(signer.Public(), pub) {
		return nil, damaged("private key does not match the public key in the metadata")
	}
	return signer, nil
}

// parsePublic parses an SPKI and checks it is of alg.
func parsePublic(alg hsm.Algorithm, spki []byte) (crypto.PublicKey, error) {
	pub, err := x509.ParsePKIXPublicKey(spki)
	if err != nil {
		return nil, errors.New("public key does not parse")
	}
	if algorithmOf(pub) != alg {
		return nil, fmt.Errorf("public key is not %s", alg)
	}
	return pub, nil
}

func algorithmOf(pub crypto.PublicKey) hsm.Algorithm {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case hsm.ECP256.Curve():
			return hsm.ECP256
		case hsm.ECP384.Curve():
			return hsm.ECP384
		}
	case *rsa.PublicKey:
		switch k.N.BitLen() {
		case 3072:
			return hsm.RSA3072
		case 4096:
			return hsm.RSA4096
		}
	}
	return ""
}

func publicEqual(a, b crypto.PublicKey) bool {
	e, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && e.Equal(b)
}

// parseURI returns the label of a "software:object=<label>" URI.
func parseURI(uri string) (string, error) {
	label, ok := strings.CutPrefix(uri, URIPrefix)
	if !ok || !labelRe.MatchString(label) {
		return "", fmt.Errorf("%w: key URI %.100q (want %s<label>)", hsm.ErrInvalid, uri, URIPrefix)
	}
	return label, nil
}

func (m *Manager) check(ctx context.Context) error {
	if m.closed.Load() {
		return hsm.ErrClosed
	}
	return ctx.Err()
}

// lookup finds the key at uri; the caller holds mu.
func (m *Manager) lookup(uri string) (*entry, error) {
	label, err := parseURI(uri)
	if err != nil {
		return nil, err
	}
	e, ok := m.keys[label]
	if !ok {
		return nil, fmt.Errorf("%w: %s", hsm.ErrNotFound, uri)
	}
	return e, nil
}

func (e *entry) info() hsm.KeyInfo {
	return hsm.KeyInfo{
		URI: URIPrefix + e.meta.Label, Label: e.meta.Label, Algorithm: e.meta.Algorithm,
		Purpose: e.meta.Purpose, Owner: e.meta.Owner, Created: e.meta.Created, State: e.meta.State,
	}
}

// CreateKey generates a key pair and writes it, sealed, to the keystore.
func (m *Manager) CreateKey(ctx context.Context, spec hsm.KeySpec) (hsm.KeyInfo, error) {
	if err := m.check(ctx); err != nil {
		return hsm.KeyInfo{}, err
	}
	if err := spec.Validate(); err != nil {
		return hsm.KeyInfo{}, err
	}
	if !utf8.ValidString(spec.Owner) {
		// JSON would silently replace the bad bytes, and the metadata MAC would no longer match.
		return hsm.KeyInfo{}, fmt.Errorf("%w: owner is not valid UTF-8", hsm.ErrInvalid)
	}
	uri := URIPrefix + spec.Label
	if err := m.reserve(spec.Label, uri); err != nil {
		return hsm.KeyInfo{}, err
	}
	defer func() {
		m.mu.Lock()
		delete(m.pending, spec.Label)
		m.mu.Unlock()
	}()

	priv, err := generate(spec.Algorithm)
	if err != nil {
		return hsm.KeyInfo{}, fmt.Errorf("hsm/software: generating %s key: %w", spec.Algorithm, err)
	}
	if err := m.check(ctx); err != nil {
		return hsm.KeyInfo{}, err
	}
	spki, err := x509.MarshalPKIXPublicKey(priv.Public())
	if err != nil {
		return hsm.KeyInfo{}, err
	}
	meta := &metaFile{
		Version: formatV1, Label: spec.Label, Algorithm: spec.Algorithm, Purpose: spec.Purpose,
		Owner: spec.Owner, Created: m.now().UTC().Round(0), State: hsm.StateActive, PublicKey: spki,
	}
	if err := m.writeSealed(meta, priv); err != nil {
		return hsm.KeyInfo{}, err
	}
	if err := m.writeMeta(meta); err != nil {
		if werr := wipeFile(m.keyPath(spec.Label, sealedExt)); werr != nil {
			m.log.Warn("keystore: sealed key without metadata left behind; CreateKey refuses this label until it is removed",
				slog.String("label", spec.Label), slog.Any("error", werr))
		}
		return hsm.KeyInfo{}, err
	}
	e := &entry{meta: *meta, pub: priv.Public()}
	e.priv.Store(&privateKey{priv})
	m.mu.Lock()
	m.keys[spec.Label] = e
	info := e.info()
	m.mu.Unlock()
	m.log.Info("key created", slog.String("key", uri), slog.String("algorithm", string(spec.Algorithm)),
		slog.String("purpose", string(spec.Purpose)))
	return info, nil
}

// reserve claims a label for a CreateKey in progress.
func (m *Manager) reserve(label, uri string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.keys[label]; ok || m.pending[label] {
		return fmt.Errorf("%w: %s", hsm.ErrConflict, uri)
	}
	if _, err := os.Lstat(m.keyPath(label, sealedExt)); err == nil {
		return fmt.Errorf("%w: %s has a sealed key file without metadata (%s); remove it to reuse the label",
			hsm.ErrConflict, uri, m.keyPath(label, sealedExt))
	}
	m.pending[label] = true
	return nil
}

func generate(alg hsm.Algorithm) (crypto.Signer, error) {
	switch alg {
	case hsm.ECP256, hsm.ECP384:
		return ecdsa.GenerateKey(alg.Curve(), rand.Reader)
	case hsm.RSA3072:
		return rsa.GenerateKey(rand.Reader, 3072)
	case hsm.RSA4096:
		return rsa.GenerateKey(rand.Reader, 4096)
	}
	return nil, fmt.Errorf("%w: algorithm %q", hsm.ErrInvalid, alg)
}

func (m *Manager) writeSealed(meta *metaFile, priv crypto.Signer) error {
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return err
	}
	defer clear(der)
	nonce := make([]byte, m.sec.aead.NonceSize())
	rand.Read(nonce)
	s := &sealedFile{
		Version: formatV1, Label: meta.Label, Nonce: nonce,
		Ciphertext: m.sec.aead.Seal(nil, nonce, der, keyAD(meta, meta.PublicKey)),
	}
	data, err := encodeFile(s)
	if err == nil {
		err = writeFileAtomic(m.keysDir, meta.Label+sealedExt, data)
	}
	if err != nil {
		return fmt.Errorf("%w: writing %s: %v", hsm.ErrUnavailable, m.keyPath(meta.Label, sealedExt), err)
	}
	return nil
}

func (m *Manager) writeMeta(meta *metaFile) error {
	meta.MAC = m.sec.metaMAC(meta)
	data, err := encodeFile(meta)
	if err == nil {
		err = writeFileAtomic(m.keysDir, meta.Label+metaExt, data)
	}
	if err != nil {
		return fmt.Errorf("%w: writing %s: %v", hsm.ErrUnavailable, m.keyPath(meta.Label, metaExt), err)
	}
	return nil
}

// Signer returns a signer for an active key of purpose. The signer signs only while the key stays
// active and the Manager open.
func (m *Manager) Signer(ctx context.Context, uri string, purpose hsm.Purpose) (crypto.Signer, error) {
	if err := m.check(ctx); err != nil {
		return nil, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	e, err := m.lookup(uri)
	if err != nil {
		return nil, err
	}
	if err := e.info().Usable(purpose); err != nil {
		return nil, err
	}
	return &signer{m: m, e: e, uri: uri, pub: e.pub}, nil
}

// PublicKey returns the public key of an active or retired key.
func (m *Manager) PublicKey(ctx context.Context, uri string) (crypto.PublicKey, error) {
	if err := m.check(ctx); err != nil {
		return nil, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	e, err := m.lookup(uri)
	if err != nil {
		return nil, err
	}
	if e.pub == nil {
		return nil, fmt.Errorf("%w: key %s is destroyed", hsm.ErrKeyNotActive, uri)
	}
	return e.pub, nil
}

// Key returns the metadata of the key at uri.
func (m *Manager) Key(ctx context.Context, uri string) (hsm.KeyInfo, error) {
	if err := m.check(ctx); err != nil {
		return hsm.KeyInfo{}, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	e, err := m.lookup(uri)
	if err != nil {
		return hsm.KeyInfo{}, err
	}
	return e.info(), nil
}

// Keys lists every key, destroyed ones included, ordered by label.
func (m *Manager) Keys(ctx context.Context) ([]hsm.KeyInfo, error) {
	if err := m.check(ctx); err != nil {
		return nil, err
	}
	m.mu.RLock()
	list := make([]hsm.KeyInfo, 0, len(m.keys))
	for _, e := range m.keys {
		list = append(list, e.info())
	}
	m.mu.RUnlock()
	slices.SortFunc(list, func(a, b hsm.KeyInfo) int { return strings.Compare(a.Label, b.Label) })
	return list, nil
}

// Retire stops an active key from signing for good; its public key stays. Retiring a retired key
// does nothing; a destroyed key gives hsm.ErrKeyNotActive.
func (m *Manager) Retire(ctx context.Context, uri string) error {
	return m.transition(ctx, uri, hsm.StateRetired)
}

// Destroy deletes a key's private key (overwrite, then delete) and its public key; the metadata
// stays, in state destroyed. Destroying a destroyed key gives hsm.ErrKeyNotActive.
func (m *Manager) Destroy(ctx context.Context, uri string) error {
	return m.transition(ctx, uri, hsm.StateDestroyed)
}

func (m *Manager) transition(ctx context.Context, uri string, to hsm.State) error {
	if err := m.check(ctx); err != nil {
		return err
	}
	m.writeMu.Lock()
	defer m.writeMu.Unlock()
	m.mu.RLock()
	e, err := m.lookup(uri)
	var meta metaFile
	if err == nil {
		meta = e.meta
	}
	m.mu.RUnlock()
	if err != nil {
		return err
	}
	switch {
	case meta.State == hsm.StateDestroyed:
		return fmt.Errorf("%w: key %s is destroyed", hsm.ErrKeyNotActive, uri)
	case meta.State == to:
		return nil
	}
	meta.State = to
	if to == hsm.StateDestroyed {
		meta.PublicKey = nil
	}
	// The metadata is the record of the state: write it first, then act on it. A crash between
	// the two leaves a destroyed key whose sealed file Open wipes.
	if err := m.writeMeta(&meta); err != nil {
		return err
	}
	m.mu.Lock()
	e.meta = meta
	e.priv.Store(nil)
	if to == hsm.StateDestroyed {
		e.pub = nil
	}
	m.mu.Unlock()
	m.log.Info("key state changed", slog.String("key", uri), slog.String("state", string(to)))
	if to == hsm.StateDestroyed {
		if err := wipeFile(m.keyPath(meta.Label, sealedExt)); err != nil {
			return fmt.Errorf("%w: key %s is destroyed but its sealed file was not wiped (Open retries): %v",
				hsm.ErrUnavailable, uri, err)
		}
	}
	return nil
}

// Ping reports whether the keystore directory is still there.
func (m *Manager) Ping(ctx context.Context) error {
	if err := m.check(ctx); err != nil {
		return err
	}
	if _, err := os.Stat(m.keysDir); err != nil {
		return fmt.Errorf("%w: %v", hsm.ErrUnavailable, err)
	}
	return nil
}

// Close drops every key from memory and releases the keystore. Signers handed out before fail
// with hsm.ErrClosed. Closing twice is harmless.
func (m *Manager) Close() error {
	if m.closed.Swap(true) {
		return nil
	}
	m.mu.Lock()
	m.dropKeys()
	m.mu.Unlock()
	return m.lock.Close()
}

func (m *Manager) dropKeys() {
	for _, e := range m.keys {
		e.priv.Store(nil)
	}
}
