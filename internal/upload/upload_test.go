package upload

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestOpenCleans: what a killed process left in the spool directory (files and a working
// directory of the platform's) is removed at start; what is not the platform's stays.
func TestOpenCleans(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"vula-doc-1", "vula-sealed-2", "vula-preview-3/in.pdf", "keep.txt"} {
		os.MkdirAll(filepath.Dir(filepath.Join(dir, f)), 0o700)
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Open(dir, 1, time.Now); err != nil {
		t.Fatal(err)
	}
	left, _ := os.ReadDir(dir)
	if len(left) != 1 || left[0].Name() != "keep.txt" {
		t.Fatalf("left in the spool directory: %v", left)
	}
}

// TestFileUnlinked: a spool file is never visible in the directory, so a crash leaves nothing.
func TestFileUnlinked(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(filepath.Join(dir, "spool"), 1, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	f, err := s.File("doc")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString("body"); err != nil {
		t.Fatal(err)
	}
	if left, _ := os.ReadDir(s.Dir()); len(left) != 0 {
		t.Fatalf("a spool file is visible: %v", left)
	}
	b := make([]byte, 4)
	if _, err := f.ReadAt(b, 0); err != nil || string(b) != "body" {
		t.Fatalf("read back %q %v", b, err)
	}
	if fi, _ := os.Stat(s.Dir()); fi.Mode().Perm() != 0o700 {
		t.Fatalf("spool directory mode %v", fi.Mode())
	}
}

func TestReceive(t *testing.T) {
	s, err := Open(t.TempDir(), 1, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), MemoryLimit/8) // twice MemoryLimit
	for _, tc := range []struct {
		name     string
		body     []byte
		length   int64 // -1: unknown (chunked)
		max      int64
		wantErr  error
		wantFile bool
	}{
		{"small, in memory", []byte("%PDF-1.7"), -1, 1 << 20, nil, false},
		{"exactly the limit", []byte("12345"), 5, 5, nil, false},
		{"large, spooled", big, int64(len(big)), 1 << 20, nil, true},
		{"chunked over the limit", big, -1, MemoryLimit + 10, ErrTooLarge, false},
		{"Content-Length over the limit", []byte("x"), 1 << 40, 1 << 20, ErrTooLarge, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/", io.NopCloser(bytes.NewReader(tc.body)))
			r.ContentLength = tc.length
			b, err := s.Receive(httptest.NewRecorder(), r, tc.max)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err %v, want %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			defer b.Close()
			got, _ := io.ReadAll(b.Reader())
			if !bytes.Equal(got, tc.body) || b.Size() != int64(len(tc.body)) || (b.file != nil) != tc.wantFile {
				t.Fatalf("received %d bytes (size %d, in a file %v)", len(got), b.Size(), b.file != nil)
			}
		})
	}
}

// brokenBody fails after some bytes, as a client that drops the connection.
type brokenBody struct{ n int }

func (b *brokenBody) Read(p []byte) (int, error) {
	if b.n <= 0 {
		return 0, errors.New("connection reset by peer")
	}
	n := min(len(p), b.n)
	b.n -= n
	return n, nil
}

func TestReceiveBroken(t *testing.T) {
	s, _ := Open(t.TempDir(), 1, time.Now)
	for _, n := range []int{10, 3 * MemoryLimit} {
		r := httptest.NewRequest("POST", "/", io.NopCloser(&brokenBody{n: n}))
		r.ContentLength = -1
		_, err := s.Receive(httptest.NewRecorder(), r, 1<<20)
		if !errors.Is(err, ErrBroken) || !strings.Contains(err.Error(), "reset") {
			t.Fatalf("after %d bytes: %v", n, err)
		}
	}
	// A MaxBytesReader in front (another layer's bound) is a 413 too.
	r := httptest.NewRequest("POST", "/", strings.NewReader(strings.Repeat("x", 100)))
	w := httptest.NewRecorder()
	r.Body = http.MaxBytesReader(w, r.Body, 10)
	r.ContentLength = -1
	if _, err := s.Receive(w, r, 1<<20); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("behind a MaxBytesReader: %v", err)
	}
}
