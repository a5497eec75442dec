package upload

import (
	"errors"
	"fmt"
	"io"
	"math/bits"
	"os"
	"sync"
	"sync/atomic"
)

// BufferMax is the most memory one Buffer holds; MemoryBudget the most all of a spool's
// Buffers hold together. Past either, a Buffer writes to a spool file.
const (
	BufferMax    = 1 << maxClass
	MemoryBudget = 32 << 20
)

// minClass is the smallest buffer handed out (64 KiB): buffers come in powers of two from it to
// BufferMax, each size pooled, so that a steady stream of documents reuses the same memory
// instead of making garbage of it.
const minClass, maxClass = 16, 20

// pools holds freed buffers by size class (1<<class bytes).
type pools [maxClass + 1]sync.Pool

// Buffer holds what is written to it in memory, up to the room it got from the spool's memory
// budget, and in a spool file from the first write that does not fit: a document of a few
// hundred KiB and its seal never reach the disk (two files made, written, read back and freed
// were 15 % of a seal's server CPU), a large one costs a file, never memory. It is written once
// and then read (ReadAt, WriteTo); Close gives its memory back.
type Buffer struct {
	s    *Spool
	name string
	mem  []byte // len: what is held, cap: the room reserved
	f    *os.File
	size int64
}

var (
	_ io.ReaderAt   = (*Buffer)(nil)
	_ io.ReaderFrom = (*Buffer)(nil)
	_ io.WriterTo   = (*Buffer)(nil)
)

// Buffer makes an empty Buffer with room for about room bytes in memory when the budget allows
// it (none when room is over BufferMax); name says what it holds ("doc", "sealed").
func (s *Spool) Buffer(name string, room int64) *Buffer {
	b := &Buffer{s: s, name: name}
	if room <= 0 || room > BufferMax {
		return b
	}
	class := max(bits.Len64(uint64(room-1)), minClass)
	n := int64(1) << class
	if s.inMemory.Add(n) > MemoryBudget {
		s.inMemory.Add(-n)
		return b
	}
	if p, ok := s.pools[class].Get().(*[]byte); ok {
		b.mem = (*p)[:0]
	} else {
		b.mem = make([]byte, 0, n)
	}
	return b
}

// Write appends p.
func (b *Buffer) Write(p []byte) (int, error) {
	if b.f == nil && len(p) <= cap(b.mem)-len(b.mem) {
		b.mem = append(b.mem, p...)
		b.size += int64(len(p))
		return len(p), nil
	}
	if err := b.spill(); err != nil {
		return 0, err
	}
	n, err := b.f.Write(p)
	b.size += int64(n)
	if err != nil {
		return n, fmt.Errorf("%w: %w", ErrSpool, err)
	}
	return n, nil
}

// ReadFrom appends what r gives until io.EOF, reading straight into the memory while it lasts.
// Errors of r are returned as they are; the spool file's wrap ErrSpool.
func (b *Buffer) ReadFrom(r io.Reader) (int64, error) {
	var total int64
	for b.f == nil && len(b.mem) < cap(b.mem) {
		n, err := r.Read(b.mem[len(b.mem):cap(b.mem)])
		b.mem = b.mem[:len(b.mem)+n]
		b.size += int64(n)
		total += int64(n)
		if errors.Is(err, io.EOF) {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
	// Full: one byte more tells whether r is done before a file is made for nothing.
	var one [1]byte
	n, err := io.ReadFull(r, one[:])
	if n == 0 {
		if errors.Is(err, io.EOF) {
			err = nil
		}
		return total, err
	}
	if _, err := b.Write(one[:]); err != nil {
		return total, err
	}
	total++
	more, err := io.Copy(onlyWriter{b.f}, r)
	b.size += more
	total += more
	return total, err
}

// onlyWriter hides a file's ReadFrom, which would come back to Buffer.ReadFrom's reader through
// io.Copy's fallback; its errors are the file's.
type onlyWriter struct{ f *os.File }

func (w onlyWriter) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	if err != nil {
		err = fmt.Errorf("%w: %w", ErrSpool, err)
	}
	return n, err
}

// spill moves what is held in memory to a new spool file, once.
func (b *Buffer) spill() error {
	if b.f != nil {
		return nil
	}
	f, err := b.s.File(b.name)
	if err != nil {
		return err
	}
	if _, err := f.Write(b.mem); err != nil {
		_ = f.Close() // thrown away: the write's error is the one to report
		return fmt.Errorf("%w: %w", ErrSpool, err)
	}
	b.f = f
	b.free()
	return nil
}

// Size is the number of bytes written.
func (b *Buffer) Size() int64 { return b.size }

// ReadAt reads what was written, at off.
func (b *Buffer) ReadAt(p []byte, off int64) (int, error) {
	if b.f != nil {
		return b.f.ReadAt(p, off)
	}
	if off < 0 {
		return 0, errors.New("upload: negative offset")
	}
	if off >= int64(len(b.mem)) {
		return 0, io.EOF
	}
	n := copy(p, b.mem[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// WriteTo writes everything written to b, from its start, to w.
func (b *Buffer) WriteTo(w io.Writer) (int64, error) {
	if b.f == nil {
		n, err := w.Write(b.mem)
		return int64(n), err
	}
	return io.Copy(w, io.NewSectionReader(b.f, 0, b.size))
}

// Close frees the memory or the spool file; b is not used after.
func (b *Buffer) Close() error {
	b.free()
	if b.f != nil {
		return b.f.Close()
	}
	return nil
}

// free gives the memory back to its pool and the budget.
func (b *Buffer) free() {
	if cap(b.mem) == 0 {
		return
	}
	c := cap(b.mem)
	class := bits.Len(uint(c - 1))
	mem := b.mem[:0]
	b.mem = nil
	b.s.pools[class].Put(&mem)
	b.s.inMemory.Add(-int64(c))
}

// inMemory and pools are the Spool's; declared here beside their only user.
type memoryState struct {
	inMemory atomic.Int64
	pools    pools
}
