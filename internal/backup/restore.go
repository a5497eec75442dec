package backup

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// ErrArchive is the error of an archive that is not one Write made, or was damaged since.
var ErrArchive = errors.New("backup: not a whole vula backup")

// Restore writes the archive read from r into the places l names and returns its manifest.
// Nothing is overwritten: a file that exists already stops it. On any error every file and
// directory it made is removed again.
func Restore(r io.Reader, l Layout) (m Manifest, err error) {
	var made []string // files and directories, in the order made
	defer func() {
		if err != nil {
			for i := len(made) - 1; i >= 0; i-- {
				_ = os.Remove(made[i]) // undoing: the restore's error is the one to report
			}
		}
	}()
	zr, err := gzip.NewReader(r)
	if err != nil {
		return m, fmt.Errorf("%w: %v", ErrArchive, err)
	}
	tr := tar.NewReader(zr)
	h, err := tr.Next()
	if err != nil || h.Name != manifestName || h.Size > maxManifest {
		return m, fmt.Errorf("%w: it does not begin with %s", ErrArchive, manifestName)
	}
	dec := json.NewDecoder(io.LimitReader(tr, maxManifest))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return m, fmt.Errorf("%w: %s: %v", ErrArchive, manifestName, err)
	}
	if m.Format != Format {
		return m, fmt.Errorf("%w: format %q, this vula reads %q", ErrArchive, m.Format, Format)
	}
	want := map[string]File{}
	for _, f := range m.Files {
		if _, dup := want[f.Name]; dup || f.Size < 0 {
			return m, fmt.Errorf("%w: %s listed twice", ErrArchive, f.Name)
		}
		if _, err := destination(l, f.Name); err != nil {
			return m, err
		}
		want[f.Name] = f
	}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return m, fmt.Errorf("%w: %v", ErrArchive, err)
		}
		f, ok := want[h.Name]
		if !ok || h.Typeflag != tar.TypeReg || h.Size != f.Size {
			return m, fmt.Errorf("%w: entry %q is not in the manifest as it is", ErrArchive, h.Name)
		}
		delete(want, h.Name)
		dst, _ := destination(l, h.Name) // checked with the manifest
		if err := mkdirs(filepath.Dir(dst), &made); err != nil {
			return m, err
		}
		if err := writeFile(dst, tr, f, &made); err != nil {
			return m, err
		}
	}
	if len(want) > 0 {
		var missing []string
		for name := range want {
			missing = append(missing, name)
		}
		sort.Strings(missing)
		return m, fmt.Errorf("%w: %s missing", ErrArchive, strings.Join(missing, ", "))
	}
	return m, nil
}

// destination is where the entry name goes under l; an error for a name that is not one of the
// archive's, or whose place l does not have (a keystore in the archive, an HSM configured).
func destination(l Layout, name string) (string, error) {
	place := func(p, what string) (string, error) {
		if p == "" {
			return "", fmt.Errorf("backup: the archive holds %s, but the configuration has none (%s)", name, what)
		}
		return p, nil
	}
	switch name {
	case dbName:
		return place(l.SQLite, "store.durable is not SQLite")
	case keyFileName:
		return place(l.KeyFile, "hsm.software.key_file")
	case seedName:
		return place(l.SeedKeyFile, "idp.seed_key_file")
	}
	rel, ok := strings.CutPrefix(name, keystoreDir)
	if !ok || rel == "" || path.Clean(rel) != rel || strings.HasPrefix(rel, "../") || rel == ".." || path.IsAbs(rel) ||
		strings.ContainsAny(rel, "\\\x00") {
		return "", fmt.Errorf("%w: unexpected entry %q", ErrArchive, name)
	}
	dir, err := place(l.KeystoreDir, "hsm.backend is not software")
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, filepath.FromSlash(rel)), nil
}

// mkdirs makes dir and its missing parents (0700: they hold keys), noting each it made.
func mkdirs(dir string, made *[]string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	if err := mkdirs(filepath.Dir(dir), made); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return err
	}
	*made = append(*made, dir)
	return nil
}

// writeFile writes the entry to dst, which must not exist, and checks its size and digest.
func writeFile(dst string, r io.Reader, f File, made *[]string) (err error) {
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	*made = append(*made, dst)
	defer func() { err = errors.Join(err, out.Close()) }()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(out, h), io.LimitReader(r, f.Size))
	if err != nil {
		return err
	}
	if n != f.Size || hex.EncodeToString(h.Sum(nil)) != f.SHA256 {
		return fmt.Errorf("%w: %s does not match its SHA-256 in the manifest", ErrArchive, f.Name)
	}
	return out.Sync()
}
