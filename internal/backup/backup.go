// Package backup copies the state of an embedded-default Vula (the durable SQLite database, the
// software keystore, its master key file and the TOTP sealing key) into one archive while the
// server runs, and restores such an archive into an empty place.
//
// The archive is a gzip'd tar whose first entry, MANIFEST.json, names every other entry with its
// size and SHA-256; Restore refuses an archive whose entries are not exactly those, and removes
// what it wrote when it fails. The database is copied with SQLite's VACUUM INTO, a consistent
// snapshot taken in one read transaction beside the server's writers; the keystore after it, so
// that every key the snapshot names was complete on disk before the copy began. The ephemeral
// store (sessions, codes) is left out on purpose: a restore logs everyone out rather than bring
// back one-time codes. What lives elsewhere (a PostgreSQL database, an HSM's keys) is not in
// the archive: Manifest.Notes says so, and the operator backs those up with their own tools.
package backup

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	_ "modernc.org/sqlite" // VACUUM INTO on the durable SQLite file
)

// Format names this archive layout in its manifest.
const Format = "vula-backup/1"

// The names of the entries, fixed whatever the paths of the configuration that wrote them.
const (
	manifestName = "MANIFEST.json"
	dbName       = "vula.db"
	keyFileName  = "keystore.key"
	seedName     = "totp-seal.key"
	keystoreDir  = "keystore/"
)

// Layout says where the state is. An empty field is state that is not in files of this machine
// (a PostgreSQL database, a PKCS#11 token, a passphrase instead of a key file).
type Layout struct {
	SQLite      string // the durable store's SQLite file
	KeystoreDir string // the software keystore's directory
	KeyFile     string // the software keystore's master key file
	SeedKeyFile string // idp.seed_key_file
}

// File is one entry of the archive.
type File struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Manifest describes an archive; it is its first entry.
type Manifest struct {
	Format  string    `json:"format"`
	Created time.Time `json:"created"`
	Version string    `json:"version"` // of the vula that wrote it
	Files   []File    `json:"files"`
	// Notes name what the archive does not hold and must be backed up otherwise.
	Notes []string `json:"notes,omitempty"`
}

// maxManifest bounds the manifest Restore reads; maxKeystoreFile the keystore files Write reads
// into memory (the keystore's own bound is 64 KiB).
const (
	maxManifest     = 1 << 20
	maxKeystoreFile = 1 << 20
)

// entry is a file to archive: its bytes in memory, or the staged file at path.
type entry struct {
	name string
	data []byte
	path string
}

// Write writes an archive of l's state to w. work is a directory on the same machine for the
// database's snapshot (removed before Write returns); notes are added to the manifest.
func Write(ctx context.Context, w io.Writer, l Layout, work, version string, now time.Time, notes []string) (Manifest, error) {
	m := Manifest{Format: Format, Created: now.UTC(), Version: version, Notes: notes}
	var entries []entry
	if l.SQLite != "" {
		snap, err := os.MkdirTemp(work, ".vula-backup-")
		if err != nil {
			return m, err
		}
		defer func() { _ = os.RemoveAll(snap) }() // a leftover snapshot is only disk space; Write's error is what matters
		p := filepath.Join(snap, dbName)
		if err := vacuumInto(ctx, l.SQLite, p); err != nil {
			return m, err
		}
		entries = append(entries, entry{name: dbName, path: p})
	}
	// After the snapshot: a key it names was written before it was taken.
	if l.KeystoreDir != "" {
		ks, err := readKeystore(l.KeystoreDir)
		if err != nil {
			return m, err
		}
		entries = append(entries, ks...)
	}
	for _, f := range []struct{ name, path string }{{keyFileName, l.KeyFile}, {seedName, l.SeedKeyFile}} {
		if f.path == "" {
			continue
		}
		b, err := readSmall(f.path)
		if errors.Is(err, fs.ErrNotExist) && f.name == seedName {
			continue // made at the first start of the provider; nothing sealed with it yet
		}
		if err != nil {
			return m, err
		}
		entries = append(entries, entry{name: f.name, data: b})
	}
	for _, e := range entries {
		f, err := describe(e)
		if err != nil {
			return m, err
		}
		m.Files = append(m.Files, f)
	}
	zw := gzip.NewWriter(w)
	tw := tar.NewWriter(zw)
	mb, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return m, err
	}
	if err := writeEntry(tw, manifestName, int64(len(mb)), now, bytes.NewReader(mb)); err != nil {
		return m, err
	}
	for i, e := range entries {
		r, closeR, err := e.open()
		if err != nil {
			return m, err
		}
		err = writeEntry(tw, e.name, m.Files[i].Size, now, r)
		closeR()
		if err != nil {
			return m, err
		}
	}
	if err := tw.Close(); err != nil {
		return m, err
	}
	return m, zw.Close()
}

// vacuumInto writes a consistent copy of the SQLite database at src to dst, which must not
// exist. It runs in one read transaction: writers go on, and the copy is the state at its start.
func vacuumInto(ctx context.Context, src, dst string) error {
	if _, err := os.Stat(src); err != nil {
		return fmt.Errorf("backup: the durable store: %w", err)
	}
	// Not mode=ro: a read-only handle cannot open a WAL database whose -shm file is gone (the
	// server stopped). The copy only reads.
	uriPath := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(src)
	db, err := sql.Open("sqlite", "file:"+uriPath+"?_pragma=busy_timeout(10000)")
	if err != nil {
		return err
	}
	defer func() { _ = db.Close() }() // it only read
	if _, err := db.ExecContext(ctx, "VACUUM INTO ?", dst); err != nil {
		return fmt.Errorf("backup: copying %s: %w", src, err)
	}
	return nil
}

// readKeystore reads the keystore's files (not its lock) into memory. A key's metadata without
// its sealed key, or the other way round, is a key being made or destroyed as the copy runs:
// no snapshot taken before names it, so it is left out.
func readKeystore(dir string) ([]entry, error) {
	var out []entry
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || d.Name() == "keystore.lock" {
			return nil
		}
		if !d.Type().IsRegular() {
			return fmt.Errorf("backup: %s is not a regular file", p)
		}
		b, err := readSmall(p)
		if errors.Is(err, fs.ErrNotExist) {
			return nil // removed while walking
		}
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out = append(out, entry{name: keystoreDir + filepath.ToSlash(rel), data: b})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("backup: the keystore: %w", err)
	}
	have := map[string]bool{}
	for _, e := range out {
		have[e.name] = true
	}
	var whole []entry
	for _, e := range out {
		base, ext := strings.TrimSuffix(e.name, path.Ext(e.name)), path.Ext(e.name)
		if strings.HasPrefix(e.name, keystoreDir+"keys/") && (ext == ".json" && !have[base+".key"] || ext == ".key" && !have[base+".json"]) {
			continue
		}
		whole = append(whole, e)
	}
	sort.Slice(whole, func(i, j int) bool { return whole[i].name < whole[j].name })
	return whole, nil
}

func readSmall(p string) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }() // read only
	b, err := io.ReadAll(io.LimitReader(f, maxKeystoreFile+1))
	if err == nil && len(b) > maxKeystoreFile {
		err = fmt.Errorf("backup: %s is larger than %d bytes", p, maxKeystoreFile)
	}
	return b, err
}

func (e entry) open() (io.Reader, func(), error) {
	if e.path == "" {
		return bytes.NewReader(e.data), func() {}, nil
	}
	f, err := os.Open(e.path)
	if err != nil {
		return nil, nil, err
	}
	return f, func() { _ = f.Close() }, nil // read only
}

func describe(e entry) (File, error) {
	r, closeR, err := e.open()
	if err != nil {
		return File{}, err
	}
	defer closeR()
	h := sha256.New()
	n, err := io.Copy(h, r)
	return File{Name: e.name, Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}, err
}

func writeEntry(tw *tar.Writer, name string, size int64, now time.Time, r io.Reader) error {
	if err := tw.WriteHeader(&tar.Header{Name: name, Size: size, Mode: 0o600, ModTime: now, Typeflag: tar.TypeReg,
		Format: tar.FormatPAX}); err != nil {
		return err
	}
	n, err := io.Copy(tw, r)
	if err == nil && n != size {
		err = fmt.Errorf("backup: %s changed while it was copied", name)
	}
	return err
}
