package upload

import (
	"bytes"
	"crypto/rand"
	"io"
	"path/filepath"
	"slices"
	"testing"
	"testing/iotest"
	"time"
)

// TestBuffer: what is written reads back the same (ReadAt, WriteTo) whether it stayed in
// memory, spilled to a file part-way (by Write or ReadFrom) or never had room; every byte of
// the memory budget is given back by Close.
func TestBuffer(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "spool"), 1, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 300<<10)
	rand.Read(data)
	for _, tc := range []struct {
		name      string
		room      int64
		size      int
		readFrom  bool
		wantSpill bool
	}{
		{"fits, written", 300 << 10, 300 << 10, false, false},
		{"fits, read from", 300 << 10, 300 << 10, true, false},
		{"exactly a class, read from", 256 << 10, 256 << 10, true, false},
		{"spills, written", 64 << 10, 300 << 10, false, true},
		{"spills, read from", 100 << 10, 300 << 10, true, true},
		{"no room", 0, 300 << 10, true, true},
		{"over BufferMax", BufferMax + 1, 300 << 10, true, true},
		{"empty", 1 << 10, 0, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := s.Buffer("doc", tc.room)
			want := data[:tc.size]
			if tc.readFrom {
				// One byte a read where it fits: the memory is filled to its last byte.
				r := io.Reader(struct{ io.Reader }{bytes.NewReader(want)})
				if !tc.wantSpill {
					r = iotest.OneByteReader(r)
				}
				n, err := b.ReadFrom(r)
				if err != nil || n != int64(tc.size) {
					t.Fatalf("ReadFrom: %d, %v", n, err)
				}
			} else {
				for chunk := range slices.Chunk(want, 7000) {
					if _, err := b.Write(chunk); err != nil {
						t.Fatal(err)
					}
				}
			}
			if b.Size() != int64(tc.size) {
				t.Fatalf("Size %d, want %d", b.Size(), tc.size)
			}
			if spilled := b.f != nil; spilled != tc.wantSpill {
				t.Fatalf("spilled to a file: %v, want %v", spilled, tc.wantSpill)
			}
			got, err := io.ReadAll(io.NewSectionReader(b, 0, b.Size()))
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("ReadAt gave %d bytes (%v), not what was written", len(got), err)
			}
			var out bytes.Buffer
			if n, err := b.WriteTo(&out); err != nil || n != int64(tc.size) || !bytes.Equal(out.Bytes(), want) {
				t.Fatalf("WriteTo: %d, %v", n, err)
			}
			if err := b.Close(); err != nil {
				t.Fatal(err)
			}
			if n := s.inMemory.Load(); n != 0 {
				t.Fatalf("%d bytes of the budget still held after Close", n)
			}
		})
	}
}

// TestBufferBudget: past MemoryBudget, buffers get no memory and go to files; closing one
// makes room again.
func TestBufferBudget(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "spool"), 1, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	var held []*Buffer
	for range MemoryBudget / BufferMax {
		b := s.Buffer("doc", BufferMax)
		if cap(b.mem) != BufferMax {
			t.Fatalf("buffer %d got %d bytes of memory within the budget", len(held), cap(b.mem))
		}
		held = append(held, b)
	}
	over := s.Buffer("doc", 1)
	if cap(over.mem) != 0 {
		t.Fatalf("a buffer past the budget got %d bytes of memory", cap(over.mem))
	}
	if _, err := over.Write([]byte("x")); err != nil || over.f == nil {
		t.Fatalf("a buffer past the budget: %v, file %v", err, over.f)
	}
	over.Close()
	held[0].Close()
	again := s.Buffer("doc", 1)
	if cap(again.mem) == 0 {
		t.Fatal("no memory after a buffer was closed")
	}
	again.Close()
	for _, b := range held[1:] {
		b.Close()
	}
	if n := s.inMemory.Load(); n != 0 {
		t.Fatalf("%d bytes of the budget still held", n)
	}
}
