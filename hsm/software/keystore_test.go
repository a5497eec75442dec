package software

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/vula-eid/vula/hsm"
)

var ctx = context.Background()

func create(t *testing.T, m *Manager, label string, alg hsm.Algorithm) hsm.KeyInfo {
	t.Helper()
	info, err := m.CreateKey(ctx, hsm.KeySpec{Label: label, Algorithm: alg, Purpose: hsm.PurposeTSA, Owner: "vula"})
	if err != nil {
		t.Fatalf("CreateKey %s: %v", label, err)
	}
	return info
}

func TestOpenBadConfig(t *testing.T) {
	dir := t.TempDir()
	for name, cfg := range map[string]Config{
		"no dir":     {Passphrase: "x"},
		"no secret":  {Dir: dir},
		"both":       {Dir: dir, Passphrase: "x", KeyFile: filepath.Join(dir, "k")},
		"no keyfile": {Dir: dir, KeyFile: filepath.Join(dir, "missing")},
	} {
		if _, err := Open(ctx, cfg, nil); !errors.Is(err, hsm.ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", name, err)
		}
	}
}

// TestWrongSecret checks that every wrong way to unlock gives ErrLogin and that no secret shows
// in an error or a log line.
func TestWrongSecret(t *testing.T) {
	var logs lockedBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	base := t.TempDir()
	pdir, kdir := filepath.Join(base, "p"), filepath.Join(base, "k")
	pcfg := passphraseConfig(pdir)
	kcfg := keyFileConfig(t, kdir)
	for _, cfg := range []Config{pcfg, kcfg} {
		m, err := Open(ctx, cfg, log)
		if err != nil {
			t.Fatal(err)
		}
		create(t, m, "a", hsm.ECP256)
		m.Close()
	}
	other := keyFileConfig(t, filepath.Join(base, "other")).KeyFile
	const wrong = "incorrect horse battery staple 91b2"
	for name, cfg := range map[string]Config{
		"wrong passphrase":          {Dir: pdir, Passphrase: wrong, kdf: cheapKDF},
		"passphrase prefix":         {Dir: pdir, Passphrase: testPassphrase[:10], kdf: cheapKDF},
		"key file for passphrase":   {Dir: pdir, KeyFile: kcfg.KeyFile},
		"wrong key file":            {Dir: kdir, KeyFile: other},
		"passphrase for a key file": {Dir: kdir, Passphrase: testPassphrase},
	} {
		_, err := Open(ctx, cfg, log)
		if !errors.Is(err, hsm.ErrLogin) {
			t.Errorf("%s: err = %v, want ErrLogin", name, err)
			continue
		}
		if strings.HasPrefix(name, "wrong") && !strings.Contains(err.Error(), "wrong passphrase or key file") {
			t.Errorf("%s: error %q does not say so", name, err)
		}
		assertNoSecret(t, err.Error(), kcfg.KeyFile, other)
	}
	assertNoSecret(t, logs.String(), kcfg.KeyFile, other)
}

// assertNoSecret fails if text holds a test passphrase or the content of a key file.
func assertNoSecret(t *testing.T, text string, keyFiles ...string) {
	t.Helper()
	secrets := []string{testPassphrase, "incorrect horse", testPassphrase[:10]}
	for _, kf := range keyFiles {
		data, err := os.ReadFile(kf)
		if err != nil {
			t.Fatal(err)
		}
		key, _ := decodeMasterKey(data)
		secrets = append(secrets, strings.TrimSpace(string(data)), hex.EncodeToString(key),
			base64.StdEncoding.EncodeToString(key), string(key))
	}
	for _, s := range secrets {
		if strings.Contains(text, s) {
			t.Fatalf("a secret appears in %q", text)
		}
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestKeyFile(t *testing.T) {
	base := t.TempDir()
	kf := filepath.Join(base, "master")
	if err := CreateKeyFile(kf); err != nil {
		t.Fatal(err)
	}
	if err := CreateKeyFile(kf); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("CreateKeyFile over an existing file: err = %v, want fs.ErrExist", err)
	}
	st, err := os.Stat(kf)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %04o, want 0600", st.Mode().Perm())
	}
	text, _ := os.ReadFile(kf)
	key, ok := decodeMasterKey(text)
	if !ok || len(text) != 65 || text[64] != '\n' {
		t.Fatalf("CreateKeyFile wrote %d bytes, not 64 hex digits and a newline", len(text))
	}

	dir := filepath.Join(base, "ks")
	m := mustOpen(t, Config{Dir: dir, KeyFile: kf})
	info := create(t, m, "k", hsm.ECP256)
	m.Close()

	// The same key in every accepted form opens the keystore.
	for name, content := range map[string][]byte{
		"raw":          key,
		"hex upper":    []byte(strings.ToUpper(hex.EncodeToString(key))),
		"base64":       []byte(base64.StdEncoding.EncodeToString(key) + "\r\n"),
		"hex, spacing": []byte("  " + hex.EncodeToString(key) + "\n\n"),
	} {
		p := filepath.Join(base, strings.ReplaceAll(name, " ", "_"))
		if err := os.WriteFile(p, content, 0o600); err != nil {
			t.Fatal(err)
		}
		m, err := Open(ctx, Config{Dir: dir, KeyFile: p}, nil)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if _, err := m.Signer(ctx, info.URI, hsm.PurposeTSA); err != nil {
			t.Errorf("%s: Signer: %v", name, err)
		}
		m.Close()
	}

	// Bad key files are refused before anything is read from the keystore, without quoting them.
	secretish := "s3cr3t-" + hex.EncodeToString(key[:8])
	for name, tc := range map[string]struct {
		content []byte
		mode    os.FileMode
	}{
		"group readable": {text, 0o640},
		"world readable": {text, 0o604},
		"short hex":      {[]byte(hex.EncodeToString(key[:31])), 0o600},
		"long":           {append(bytes.Clone(key), key...), 0o600},
		"text":           {[]byte(secretish), 0o600},
		"empty":          {nil, 0o600},
		"base64url":      {[]byte(base64.URLEncoding.EncodeToString(bytes.Repeat([]byte{0xfb}, 32))), 0o600},
	} {
		p := filepath.Join(base, "bad-"+strings.ReplaceAll(name, " ", "_"))
		if err := os.WriteFile(p, tc.content, tc.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, tc.mode); err != nil { // past the umask
			t.Fatal(err)
		}
		_, err := Open(ctx, Config{Dir: dir, KeyFile: p}, nil)
		if !errors.Is(err, hsm.ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", name, err)
			continue
		}
		if strings.Contains(err.Error(), secretish) || strings.Contains(err.Error(), hex.EncodeToString(key)) {
			t.Errorf("%s: error quotes the file: %v", name, err)
		}
	}
	if _, err := Open(ctx, Config{Dir: dir, KeyFile: base}, nil); !errors.Is(err, hsm.ErrInvalid) {
		t.Errorf("a directory as key file: err = %v, want ErrInvalid", err)
	}
}

func TestDefaultKDF(t *testing.T) {
	dir := t.TempDir()
	m := mustOpen(t, Config{Dir: dir, Passphrase: testPassphrase})
	m.Close()
	data, err := os.ReadFile(filepath.Join(dir, headerName))
	if err != nil {
		t.Fatal(err)
	}
	h, err := parseHeader(data)
	if err != nil {
		t.Fatal(err)
	}
	d := defaultKDF()
	if h.KDF != kdfArgon2id || h.Argon2.Time != d.Time || h.Argon2.MemoryKiB != d.MemoryKiB ||
		h.Argon2.Threads != d.Threads || len(h.Argon2.Salt) != 16 {
		t.Fatalf("header %+v, argon2 %+v", h, h.Argon2)
	}
	if bytes.Contains(data, []byte(testPassphrase)) {
		t.Fatal("the header holds the passphrase")
	}
}

func TestPermissions(t *testing.T) {
	old := setUmask(0)
	defer setUmask(old)
	nested := filepath.Join(t.TempDir(), "a", "ks")
	for name, cfg := range map[string]Config{
		"passphrase": passphraseConfig(nested),
		"key file":   keyFileConfig(t, filepath.Join(t.TempDir(), "ks")),
	} {
		m := mustOpen(t, cfg)
		create(t, m, "active", hsm.ECP256)
		r := create(t, m, "retired", hsm.ECP256)
		d := create(t, m, "destroyed", hsm.ECP256)
		if err := m.Retire(ctx, r.URI); err != nil {
			t.Fatal(err)
		}
		if err := m.Destroy(ctx, d.URI); err != nil {
			t.Fatal(err)
		}
		n := 0
		err := filepath.WalkDir(cfg.Dir, func(path string, de fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			st, err := de.Info()
			if err != nil {
				return err
			}
			want := fs.FileMode(0o600)
			if de.IsDir() {
				want = 0o700
			}
			if st.Mode().Perm() != want {
				t.Errorf("%s: %s has mode %04o, want %04o", name, path, st.Mode().Perm(), want)
			}
			n++
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		// dir, keys/, header, lock, 3 metadata files, 2 sealed keys
		if n != 9 {
			t.Errorf("%s: %d entries in the keystore, want 9", name, n)
		}
		m.Close()
	}
	if st, err := os.Stat(filepath.Dir(nested)); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("missing parent created: %v, %v; want mode 0700", st, err)
	}
}

// TestNoClearPrivateKey looks for every secret part of each private key, raw, hex and base64, in
// every file the keystore wrote.
func TestNoClearPrivateKey(t *testing.T) {
	dir := t.TempDir()
	m := mustOpen(t, passphraseConfig(dir))
	defer m.Close()
	// The PKCS#8 encoding is looked for whole (it shares its public parts with the public key in
	// the metadata); the secret numbers by any 16-byte window.
	var pkcs8, needles [][]byte
	for _, alg := range []hsm.Algorithm{hsm.ECP256, hsm.ECP384, hsm.RSA3072} {
		label := strings.ToLower(string(alg))
		create(t, m, label, alg)
		priv := m.keys[label].priv.Load().Signer
		der, err := x509.MarshalPKCS8PrivateKey(priv)
		if err != nil {
			t.Fatal(err)
		}
		pkcs8 = append(pkcs8, der)
		switch k := priv.(type) {
		case *ecdsa.PrivateKey:
			d, err := k.Bytes()
			if err != nil {
				t.Fatal(err)
			}
			needles = append(needles, d)
		case *rsa.PrivateKey:
			needles = append(needles, k.D.Bytes(), k.Primes[0].Bytes(), k.Primes[1].Bytes())
		}
	}
	files := 0
	err := filepath.WalkDir(dir, func(path string, de fs.DirEntry, err error) error {
		if err != nil || de.IsDir() {
			return err
		}
		files++
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, blob := range expand(data) {
			for _, der := range pkcs8 {
				if bytes.Contains(blob, der) {
					t.Errorf("%s holds a PKCS#8 private key in clear", path)
				}
			}
			for _, n := range needles {
				// Any 16-byte window of a secret is already too much.
				for i := 0; i+16 <= len(n); i += 8 {
					if bytes.Contains(blob, n[i:i+16]) {
						t.Errorf("%s holds private key material in clear", path)
						return nil
					}
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files != 8 {
		t.Fatalf("searched %d files, want 8", files)
	}
}

// expand returns a file and every JSON string in it, decoded as hex and base64 where it decodes.
func expand(data []byte) [][]byte {
	out := [][]byte{data}
	var v any
	if json.Unmarshal(data, &v) != nil {
		return out
	}
	var walk func(any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for _, x := range v {
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		case string:
			out = append(out, []byte(v))
			if b, err := base64.StdEncoding.DecodeString(v); err == nil {
				out = append(out, b)
			}
			if b, err := hex.DecodeString(v); err == nil {
				out = append(out, b)
			}
		}
	}
	walk(v)
	return out
}

// TestCorruptFiles damages each kind of keystore file in many ways; each must make Open fail with
// ErrKeystore naming the file, never panic, never open with a wrong key.
func TestCorruptFiles(t *testing.T) {
	dir := t.TempDir()
	cfg := passphraseConfig(dir)
	m := mustOpen(t, cfg)
	create(t, m, "alpha", hsm.ECP256)
	create(t, m, "beta", hsm.ECP256)
	m.Close()

	header := filepath.Join(dir, headerName)
	alphaMeta, alphaKey := filepath.Join(dir, keysDir, "alpha.json"), filepath.Join(dir, keysDir, "alpha.key")
	betaMeta, betaKey := filepath.Join(dir, keysDir, "beta.json"), filepath.Join(dir, keysDir, "beta.key")
	read := func(p string) []byte {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	opens := 0
	expectDamage := func(what, file string, content []byte) {
		t.Helper()
		orig := read(file)
		if err := os.WriteFile(file, content, 0o600); err != nil {
			t.Fatal(err)
		}
		defer os.WriteFile(file, orig, 0o600)
		opens++
		m, err := Open(ctx, cfg, nil)
		if err == nil {
			m.Close()
			t.Fatalf("%s: %s: Open succeeded", filepath.Base(file), what)
		}
		if !errors.Is(err, hsm.ErrKeystore) || !strings.Contains(err.Error(), file) {
			t.Fatalf("%s: %s: err = %v, want ErrKeystore naming the file", filepath.Base(file), what, err)
		}
		assertNoSecret(t, err.Error())
	}

	for _, file := range []string{header, alphaMeta, alphaKey} {
		orig := read(file)
		for _, n := range []int{0, 1, len(orig) / 2, len(orig) - 2, len(orig) - 1} {
			expectDamage("truncated", file, orig[:n])
		}
		for i := range orig {
			// One bit rotating through the byte, and the ASCII case bit, which the JSON
			// decoder alone would forgive in field names.
			for _, bit := range []byte{1 << (i % 8), 0x20} {
				b := bytes.Clone(orig)
				b[i] ^= bit
				expectDamage("bit flip", file, b)
			}
		}
		for _, junk := range []string{"", "null", "[]", "{}", `{"version":1}`, "\x00\x01garbage", string(orig) + string(orig)} {
			expectDamage("wrong JSON", file, []byte(junk))
		}
		expectDamage("too large", file, bytes.Repeat([]byte(" "), maxFile+1))
		// Same content, reformatted: decodes, but not as written.
		var v any
		if err := json.Unmarshal(orig, &v); err != nil {
			t.Fatal(err)
		}
		compact, _ := json.Marshal(v)
		expectDamage("reformatted", file, compact)
	}
	// Files of one key put in the place of the other's.
	expectDamage("swapped metadata", alphaMeta, read(betaMeta))
	expectDamage("swapped sealed key", alphaKey, read(betaKey))
	// A file from another keystore with the same labels and secret.
	dir2 := t.TempDir()
	m2 := mustOpen(t, passphraseConfig(dir2))
	create(t, m2, "alpha", hsm.ECP256)
	m2.Close()
	expectDamage("metadata of another keystore", alphaMeta, read(filepath.Join(dir2, keysDir, "alpha.json")))
	expectDamage("sealed key of another keystore", alphaKey, read(filepath.Join(dir2, keysDir, "alpha.key")))
	t.Logf("%d damaged keystores refused", opens)

	// An active key without its private key, a keystore without its header.
	for _, file := range []string{alphaKey, header} {
		orig := read(file)
		if err := os.Remove(file); err != nil {
			t.Fatal(err)
		}
		if _, err := Open(ctx, cfg, nil); !errors.Is(err, hsm.ErrKeystore) {
			t.Errorf("%s missing: err = %v, want ErrKeystore", file, err)
		}
		os.WriteFile(file, orig, 0o600)
	}

	// Undamaged again, it opens.
	m = mustOpen(t, cfg)
	defer m.Close()
	if list, _ := m.Keys(ctx); len(list) != 2 {
		t.Fatalf("%d keys after the damage was undone", len(list))
	}
}

func TestRetireAndCloseStopSigners(t *testing.T) {
	m := mustOpen(t, passphraseConfig(t.TempDir()))
	a := create(t, m, "a", hsm.ECP256)
	b := create(t, m, "b", hsm.ECP256)
	sa, err := m.Signer(ctx, a.URI, hsm.PurposeTSA)
	if err != nil {
		t.Fatal(err)
	}
	sb, err := m.Signer(ctx, b.URI, hsm.PurposeTSA)
	if err != nil {
		t.Fatal(err)
	}
	d := sha256.Sum256([]byte("x"))
	if err := m.Retire(ctx, a.URI); err != nil {
		t.Fatal(err)
	}
	if err := m.Retire(ctx, a.URI); err != nil {
		t.Fatalf("Retire twice: %v", err)
	}
	if _, err := sa.Sign(rand.Reader, d[:], crypto.SHA256); !errors.Is(err, hsm.ErrKeyNotActive) {
		t.Fatalf("signer of a retired key: err = %v, want ErrKeyNotActive", err)
	}
	if _, err := sb.Sign(rand.Reader, d[:], crypto.SHA256); err != nil {
		t.Fatal(err)
	}
	m.Close()
	if _, err := sb.Sign(rand.Reader, d[:], crypto.SHA256); !errors.Is(err, hsm.ErrClosed) {
		t.Fatalf("signer after Close: err = %v, want ErrClosed", err)
	}
	if _, err := m.Keys(ctx); !errors.Is(err, hsm.ErrClosed) {
		t.Fatalf("Keys after Close: err = %v, want ErrClosed", err)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("Close twice: %v", err)
	}
}

func TestDestroy(t *testing.T) {
	dir := t.TempDir()
	cfg := passphraseConfig(dir)
	m := mustOpen(t, cfg)
	info := create(t, m, "gone", hsm.RSA3072)
	sealedPath := filepath.Join(dir, keysDir, "gone.key")
	sealed, err := os.ReadFile(sealedPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Destroy(ctx, info.URI); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(sealedPath); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("sealed key still there after Destroy: %v", err)
	}
	if _, err := m.PublicKey(ctx, info.URI); !errors.Is(err, hsm.ErrKeyNotActive) {
		t.Fatalf("PublicKey of a destroyed key: err = %v", err)
	}
	if err := m.Destroy(ctx, info.URI); !errors.Is(err, hsm.ErrKeyNotActive) {
		t.Fatalf("Destroy twice: err = %v, want ErrKeyNotActive", err)
	}
	meta, err := os.ReadFile(filepath.Join(dir, keysDir, "gone.json"))
	if err != nil {
		t.Fatal(err)
	}
	if mf, err := parseMeta(meta); err != nil || mf.State != hsm.StateDestroyed || mf.PublicKey != nil {
		t.Fatalf("metadata after Destroy: %+v, %v", mf, err)
	}
	m.Close()

	// A Destroy that stopped after writing the metadata: Open finishes the wipe.
	if err := os.WriteFile(sealedPath, sealed, 0o600); err != nil {
		t.Fatal(err)
	}
	m = mustOpen(t, cfg)
	defer m.Close()
	if _, err := os.Stat(sealedPath); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Open left the sealed key of a destroyed key: %v", err)
	}
	if k, err := m.Key(ctx, info.URI); err != nil || k.State != hsm.StateDestroyed || k.Algorithm != hsm.RSA3072 {
		t.Fatalf("destroyed key after reopen: %+v, %v", k, err)
	}
}

func TestOneManagerPerDir(t *testing.T) {
	cfg := passphraseConfig(t.TempDir())
	m := mustOpen(t, cfg)
	if _, err := Open(ctx, cfg, nil); !errors.Is(err, hsm.ErrUnavailable) {
		t.Fatalf("second Open: err = %v, want ErrUnavailable", err)
	}
	m.Close()
	m = mustOpen(t, cfg)
	m.Close()
}

func TestLeftovers(t *testing.T) {
	dir := t.TempDir()
	cfg := passphraseConfig(dir)
	m := mustOpen(t, cfg)
	create(t, m, "orphan", hsm.ECP256)
	m.Close()
	tmp := filepath.Join(dir, keysDir, ".x.json.12345.tmp")
	if err := os.WriteFile(tmp, []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Metadata lost: the sealed key stays, and its label is not reused.
	if err := os.Remove(filepath.Join(dir, keysDir, "orphan.json")); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, keysDir, "README"), []byte("hello"), 0o600)
	m = mustOpen(t, cfg)
	defer m.Close()
	if _, err := os.Stat(tmp); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("temp file left: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, keysDir, "orphan.key")); err != nil {
		t.Errorf("orphan sealed key removed: %v", err)
	}
	if _, err := m.CreateKey(ctx, hsm.KeySpec{Label: "orphan", Algorithm: hsm.ECP256, Purpose: hsm.PurposeCA}); !errors.Is(err, hsm.ErrConflict) {
		t.Errorf("CreateKey over an orphan: err = %v, want ErrConflict", err)
	}
}

func TestURIs(t *testing.T) {
	m := mustOpen(t, passphraseConfig(t.TempDir()))
	defer m.Close()
	info := create(t, m, "k.1_x-y", hsm.ECP256)
	if info.URI != "software:object=k.1_x-y" {
		t.Fatalf("URI %q", info.URI)
	}
	if _, err := m.Key(ctx, info.URI); err != nil {
		t.Fatal(err)
	}
	for _, uri := range []string{
		"", "software:", "software:object=", "software:object=k.1_x-y;", "software:object=k.1_x-y ",
		"software:object=k.1_x-y;id=1", "software:id=1;object=k.1_x-y", "SOFTWARE:object=k.1_x-y",
		"software:Object=k.1_x-y", "software:object=k%2E1_x-y", "pkcs11:object=k.1_x-y",
		"software:object=../keystore", "software:object=.hidden", " software:object=k.1_x-y",
		"software:object=" + strings.Repeat("a", 65),
	} {
		if _, err := m.Key(ctx, uri); !errors.Is(err, hsm.ErrInvalid) {
			t.Errorf("Key(%q): err = %v, want ErrInvalid", uri, err)
		}
	}
	if _, err := m.Key(ctx, "software:object=nothere"); !errors.Is(err, hsm.ErrNotFound) {
		t.Errorf("unknown key: err = %v, want ErrNotFound", err)
	}
}

func TestSignOptions(t *testing.T) {
	m := mustOpen(t, passphraseConfig(t.TempDir()))
	defer m.Close()
	ec := create(t, m, "ec", hsm.ECP256)
	s, err := m.Signer(ctx, ec.URI, hsm.PurposeTSA)
	if err != nil {
		t.Fatal(err)
	}
	d := sha256.Sum256([]byte("x"))
	var nilPSS *rsa.PSSOptions
	var nilEd *ed25519.Options
	for name, opts := range map[string]crypto.SignerOpts{
		"nil Ed25519": nilEd,
		"nil":         nil,
		"no hash":     crypto.Hash(0),
		"SHA-1":       crypto.SHA1,
		"MD5":         crypto.MD5,
		"unknown":     crypto.Hash(200),
		"PSS on EC":   &rsa.PSSOptions{Hash: crypto.SHA256},
		"nil PSS ptr": nilPSS,
	} {
		if _, err := s.Sign(rand.Reader, d[:], opts); !errors.Is(err, hsm.ErrUnsupportedOp) {
			t.Errorf("%s: err = %v, want ErrUnsupportedOp", name, err)
		}
	}
	if _, err := s.Sign(rand.Reader, d[:], crypto.SHA384); !errors.Is(err, hsm.ErrInvalid) {
		t.Errorf("SHA-256 digest as SHA-384: err = %v, want ErrInvalid", err)
	}
	// A nil rand means crypto/rand.
	sig, err := s.Sign(nil, d[:], crypto.SHA256)
	if err != nil || !ecdsa.VerifyASN1(s.Public().(*ecdsa.PublicKey), d[:], sig) {
		t.Fatalf("Sign with nil rand: %v", err)
	}
}

func TestCreateKeyChecks(t *testing.T) {
	m := mustOpen(t, passphraseConfig(t.TempDir()))
	defer m.Close()
	if _, err := m.CreateKey(ctx, hsm.KeySpec{Label: "u", Algorithm: hsm.ECP256, Purpose: hsm.PurposeCA, Owner: "bad \xff"}); !errors.Is(err, hsm.ErrInvalid) {
		t.Errorf("owner not UTF-8: err = %v, want ErrInvalid", err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := m.CreateKey(cancelled, hsm.KeySpec{Label: "c", Algorithm: hsm.ECP256, Purpose: hsm.PurposeCA}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled context: err = %v", err)
	}
	// Concurrent creation of one label: exactly one wins.
	var wg sync.WaitGroup
	errs := make([]error, 6)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = m.CreateKey(ctx, hsm.KeySpec{Label: "same", Algorithm: hsm.ECP256, Purpose: hsm.PurposeCA})
		}()
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, hsm.ErrConflict):
			t.Errorf("concurrent CreateKey: %v", err)
		}
	}
	if won != 1 {
		t.Fatalf("%d concurrent CreateKey of one label succeeded", won)
	}
}
