package software

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/vula-eid/vula/hsm"
)

const masterKeySize = 32

// CreateKeyFile writes a new random 32-byte master key to path as 64 hex digits and a newline,
// mode 0600. It fails (with an error matching fs.ErrExist) if path exists, so that it can never
// replace the key of an existing keystore.
func CreateKeyFile(path string) (err error) {
	key := make([]byte, masterKeySize)
	rand.Read(key)
	defer clear(key)
	text := []byte(hex.EncodeToString(key) + "\n")
	defer clear(text)

	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("hsm/software: creating key file: %w", err)
	}
	defer func() {
		if err != nil {
			_ = os.Remove(path) // the write error is the one to report
		}
	}()
	if _, err = f.Write(text); err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = syncDir(filepath.Dir(path))
	}
	if err != nil {
		return fmt.Errorf("hsm/software: writing key file %s: %w", path, err)
	}
	return nil
}

// readKeyFile reads a master key file: exactly 32 raw bytes, or 64 hex digits, or the standard
// base64 of 32 bytes (text forms may end in white space). A file that group or others can read or
// write is refused, as ssh refuses such a private key: the key file is the one secret in clear.
// Errors never quote the file's content.
func readKeyFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: key file: %v", hsm.ErrInvalid, err)
	}
	defer func() { _ = f.Close() }() // read only
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%w: key file: %v", hsm.ErrInvalid, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: key file %s is not a regular file", hsm.ErrInvalid, path)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("%w: key file %s has mode %04o; it must not be accessible to group or others (chmod 600)",
			hsm.ErrInvalid, path, perm)
	}
	data, err := io.ReadAll(io.LimitReader(f, 1024))
	if err != nil {
		return nil, fmt.Errorf("%w: key file %s: %v", hsm.ErrInvalid, path, err)
	}
	defer clear(data)
	key, ok := decodeMasterKey(data)
	if !ok {
		return nil, fmt.Errorf("%w: key file %s holds no master key (want 32 raw bytes, 64 hex digits or base64 of 32 bytes)",
			hsm.ErrInvalid, path)
	}
	return key, nil
}

func decodeMasterKey(data []byte) ([]byte, bool) {
	if len(data) == masterKeySize {
		return bytes.Clone(data), true
	}
	text := bytes.TrimSpace(data)
	key := make([]byte, len(text)) // the larger of both decodings
	if n, err := hex.Decode(key, text); err == nil && n == masterKeySize {
		return key[:n], true
	}
	if n, err := base64.StdEncoding.Strict().Decode(key, text); err == nil && n == masterKeySize {
		return key[:n], true
	}
	clear(key)
	return nil, false
}
