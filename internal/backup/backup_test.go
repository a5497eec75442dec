package backup

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"database/sql"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// source makes the files of an embedded default under dir: a SQLite database in WAL mode with
// rows, a keystore with a whole key and a half-written one, a master key file and a seed key.
func source(t testing.TB, dir string) (Layout, *sql.DB) {
	l := Layout{SQLite: filepath.Join(dir, "vula.db"), KeystoreDir: filepath.Join(dir, "keys"),
		KeyFile: filepath.Join(dir, "keystore.key"), SeedKeyFile: filepath.Join(dir, "totp-seal.key")}
	db, err := sql.Open("sqlite", "file:"+l.SQLite+"?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.Exec("CREATE TABLE rec (seq INTEGER PRIMARY KEY, body TEXT NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		db.Exec("INSERT INTO rec (body) VALUES (?)", strings.Repeat("x", 100))
	}
	os.MkdirAll(filepath.Join(l.KeystoreDir, "keys"), 0o700)
	for name, body := range map[string]string{"keystore.json": "{}\n", "keystore.lock": "", "keys/tsa.json": "{\"label\":\"tsa\"}\n",
		"keys/tsa.key": "sealed", "keys/half.json": "{}\n"} {
		os.WriteFile(filepath.Join(l.KeystoreDir, name), []byte(body), 0o600)
	}
	os.WriteFile(l.KeyFile, bytes.Repeat([]byte{1}, 32), 0o600)
	os.WriteFile(l.SeedKeyFile, bytes.Repeat([]byte{2}, 32), 0o600)
	return l, db
}

func target(dir string) Layout {
	return Layout{SQLite: filepath.Join(dir, "vula.db"), KeystoreDir: filepath.Join(dir, "keys"),
		KeyFile: filepath.Join(dir, "keystore.key"), SeedKeyFile: filepath.Join(dir, "totp-seal.key")}
}

func count(t testing.TB, path string) int {
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow("SELECT count(*) FROM rec").Scan(&n); err != nil {
		t.Fatal(err)
	}
	var ok string
	if err := db.QueryRow("PRAGMA integrity_check").Scan(&ok); err != nil || ok != "ok" {
		t.Fatalf("integrity_check: %v %q", err, ok)
	}
	return n
}

// TestRoundTrip: an archive written while a writer goes on restores to a consistent database
// (as of some moment), the keystore's whole keys, and both key files, byte for byte.
func TestRoundTrip(t *testing.T) {
	src := t.TempDir()
	l, db := source(t, src)
	var written atomic.Int64
	written.Store(100)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // a server writing while the backup runs
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := db.Exec("INSERT INTO rec (body) VALUES ('y')"); err == nil {
				written.Add(1)
			}
		}
	}()
	before := written.Load()
	var buf bytes.Buffer
	m, err := Write(context.Background(), &buf, l, t.TempDir(), "test", time.Now(), []string{"a note"})
	after := written.Load()
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, f := range m.Files {
		names[f.Name] = true
	}
	for _, n := range []string{"vula.db", "keystore.key", "totp-seal.key", "keystore/keystore.json", "keystore/keys/tsa.json", "keystore/keys/tsa.key"} {
		if !names[n] {
			t.Errorf("%s not in the archive: %v", n, m.Files)
		}
	}
	if names["keystore/keystore.lock"] || names["keystore/keys/half.json"] {
		t.Errorf("the lock or a half key is in the archive: %v", m.Files)
	}

	dst := filepath.Join(t.TempDir(), "var")
	got, err := Restore(bytes.NewReader(buf.Bytes()), target(dst))
	if err != nil {
		t.Fatal(err)
	}
	if got.Version != "test" || len(got.Notes) != 1 {
		t.Fatalf("manifest: %+v", got)
	}
	if n := int64(count(t, filepath.Join(dst, "vula.db"))); n < before || n > after {
		t.Fatalf("restored %d rows, want between %d and %d", n, before, after)
	}
	for _, p := range []string{"keystore.key", "totp-seal.key", "keys/keys/tsa.key", "keys/keystore.json"} {
		a, _ := os.ReadFile(filepath.Join(src, p))
		b, err := os.ReadFile(filepath.Join(dst, p))
		if err != nil || !bytes.Equal(a, b) {
			t.Errorf("%s: %v, restored differs", p, err)
		}
		if fi, _ := os.Stat(filepath.Join(dst, p)); fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v", p, fi.Mode())
		}
	}

	t.Run("refuses to overwrite", func(t *testing.T) {
		if _, err := Restore(bytes.NewReader(buf.Bytes()), target(dst)); err == nil {
			t.Fatal("restored over an existing copy")
		}
		if n := count(t, filepath.Join(dst, "vula.db")); n == 0 {
			t.Fatal("the existing copy was damaged")
		}
	})
	t.Run("no place for the keystore", func(t *testing.T) {
		l := target(filepath.Join(t.TempDir(), "var"))
		l.KeystoreDir = ""
		if _, err := Restore(bytes.NewReader(buf.Bytes()), l); err == nil || !strings.Contains(err.Error(), "hsm.backend") {
			t.Fatalf("err = %v", err)
		}
	})
}

// rewrite returns archive with its entries passed through edit (nil drops one).
func rewrite(t *testing.T, archive []byte, edit func(h *tar.Header, body []byte) (*tar.Header, []byte)) []byte {
	zr, err := gzip.NewReader(bytes.NewReader(archive))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	tw := tar.NewWriter(zw)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		body, _ := io.ReadAll(tr)
		h, body = edit(h, body)
		if h == nil {
			continue
		}
		h.Size = int64(len(body))
		tw.WriteHeader(h)
		tw.Write(body)
	}
	tw.Close()
	zw.Close()
	return out.Bytes()
}

// TestRestoreRefuses: a damaged or forged archive is refused, and nothing it began to write is
// left behind.
func TestRestoreRefuses(t *testing.T) {
	l, _ := source(t, t.TempDir())
	var buf bytes.Buffer
	if _, err := Write(context.Background(), &buf, l, t.TempDir(), "test", time.Now(), nil); err != nil {
		t.Fatal(err)
	}
	good := buf.Bytes()
	for name, archive := range map[string][]byte{
		"not gzip": []byte("hello"),
		"a flipped byte in the database": rewrite(t, good, func(h *tar.Header, b []byte) (*tar.Header, []byte) {
			if h.Name == "vula.db" {
				b[len(b)/2] ^= 1
			}
			return h, b
		}),
		"an entry missing": rewrite(t, good, func(h *tar.Header, b []byte) (*tar.Header, []byte) {
			if h.Name == "totp-seal.key" {
				return nil, nil
			}
			return h, b
		}),
		"an entry not in the manifest": rewrite(t, good, func(h *tar.Header, b []byte) (*tar.Header, []byte) {
			if h.Name == "totp-seal.key" {
				h.Name = "keystore/../../../etc/passwd"
			}
			return h, b
		}),
		"a traversing name in the manifest": rewrite(t, good, func(h *tar.Header, b []byte) (*tar.Header, []byte) {
			if h.Name == "MANIFEST.json" {
				b = bytes.Replace(b, []byte(`"keystore/keystore.json"`), []byte(`"keystore/../x.json"`), 1)
			}
			if h.Name == "keystore/keystore.json" {
				h.Name = "keystore/../x.json"
			}
			return h, b
		}),
		"a symlink": rewrite(t, good, func(h *tar.Header, b []byte) (*tar.Header, []byte) {
			if h.Name == "totp-seal.key" {
				h.Typeflag, h.Linkname = tar.TypeSymlink, "/etc/passwd"
				return h, nil
			}
			return h, b
		}),
	} {
		t.Run(name, func(t *testing.T) {
			dst := filepath.Join(t.TempDir(), "var")
			_, err := Restore(bytes.NewReader(archive), target(dst))
			if err == nil {
				t.Fatal("restored")
			}
			if !errors.Is(err, ErrArchive) {
				t.Errorf("err = %v, want ErrArchive", err)
			}
			if _, serr := os.Stat(dst); !errors.Is(serr, os.ErrNotExist) {
				entries, _ := os.ReadDir(dst)
				t.Errorf("left behind: %v", entries)
			}
		})
	}
}

// FuzzRestore: whatever the archive, Restore writes only under its layout and never panics.
func FuzzRestore(f *testing.F) {
	l, _ := source(f, f.TempDir())
	var buf bytes.Buffer
	if _, err := Write(context.Background(), &buf, l, f.TempDir(), "test", time.Now(), nil); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Add([]byte{0x1f, 0x8b})
	f.Fuzz(func(t *testing.T, b []byte) {
		root := t.TempDir()
		dst := filepath.Join(root, "var")
		if _, err := Restore(bytes.NewReader(b), target(dst)); err != nil {
			if entries, _ := os.ReadDir(root); len(entries) != 0 {
				t.Fatalf("a failed restore left %v", entries)
			}
		}
		entries, _ := os.ReadDir(root)
		for _, e := range entries {
			if e.Name() != "var" {
				t.Fatalf("wrote %s outside the data dir", e.Name())
			}
		}
	})
}
