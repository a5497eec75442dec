// Package upload receives the request bodies of the services that take documents from the
// network. A body is bounded (a Content-Length above the bound is refused before a byte is read),
// kept in memory only up to MemoryLimit and spooled to a file past it, and cut off when the
// client sends more slowly than a minimum rate, so that a slow or huge upload costs the server a
// file and a goroutine, not memory.
//
// Spool files live in one directory of the platform's own (under the data directory, not
// TMPDIR) and are unlinked as soon as they are made: they are reached only through their open
// descriptor, so a process that dies leaves nothing behind. Open also empties the directory of
// files an older process left.
//
// A Buffer holds a document or an output in memory, at most BufferMax bytes each and
// MemoryBudget all together, and in a spool file past that.
package upload

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/vula-eid/vula/internal/problem"
)

// MemoryLimit is the most of a body kept in memory; a larger one goes to a spool file.
const MemoryLimit = 64 << 10

// Grace is how long a client may send slower than the minimum rate at the start (TCP slow start,
// a TLS handshake's worth of latency, a phone waking its radio).
const Grace = 5 * time.Second

// Prefix begins the name of every spool file (and of the working directories other parts of the
// platform make in the spool directory); Open removes only such entries.
const Prefix = "vula-"

// Errors of Receive, each of a problem type (413, 408, 400, 503).
var (
	ErrTooLarge = problem.New(problem.TooLarge, "upload: body over the limit")
	ErrTooSlow  = problem.New(problem.TooSlow, "upload: body sent more slowly than the minimum rate")
	ErrBroken   = problem.New(problem.InvalidRequest, "upload: body could not be read")
	// ErrSpool is the server's side failing (a full disk): the client may try again later.
	ErrSpool = problem.New(problem.Unavailable, "upload: spool unavailable")
)

// Spool makes spool files in one directory and receives bodies into them.
type Spool struct {
	dir     string
	minRate int64 // bytes per second
	now     func() time.Time
	memoryState
}

// Open makes dir (0700) if needed and removes the spool files left in it, and receives bodies
// at no less than minRate bytes per second (after Grace).
func Open(dir string, minRate int64, now func() time.Time) (*Spool, error) {
	if minRate <= 0 {
		return nil, errors.New("upload: minimum rate must be positive")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("upload: spool directory: %w", err)
	}
	left, err := filepath.Glob(filepath.Join(dir, Prefix+"*"))
	if err != nil {
		return nil, err
	}
	for _, f := range left {
		if err := os.RemoveAll(f); err != nil {
			return nil, fmt.Errorf("upload: cleaning the spool directory: %w", err)
		}
	}
	return &Spool{dir: dir, minRate: minRate, now: now}, nil
}

// Dir is the spool directory.
func (s *Spool) Dir() string { return s.dir }

// File makes an empty spool file, already unlinked; closing it frees its space. name says what
// it holds ("doc", "sealed").
func (s *Spool) File(name string) (*os.File, error) {
	// An anonymous file (O_TMPFILE) where the system has them: one system call, and no
	// directory entry made and removed, which cost about 190 µs a file here (two files a seal).
	if f, err := anonymousFile(s.dir); err == nil {
		return f, nil
	}
	f, err := os.CreateTemp(s.dir, Prefix+strings.Trim(name, "*/")+"-*")
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSpool, err)
	}
	if err := os.Remove(f.Name()); err != nil {
		_ = f.Close() // the error returned says what went wrong
		return nil, fmt.Errorf("%w: %w", ErrSpool, err)
	}
	return f, nil
}

// Body is a received request body, in memory or in a spool file.
type Body struct {
	mem  []byte
	file *os.File
	size int64
}

// Size is the body's length in bytes.
func (b *Body) Size() int64 { return b.size }

// ReadAt reads the body at off.
func (b *Body) ReadAt(p []byte, off int64) (int, error) {
	if b.file != nil {
		return b.file.ReadAt(p, off)
	}
	return bytes.NewReader(b.mem).ReadAt(p, off)
}

// Reader reads the body from its start.
func (b *Body) Reader() io.Reader { return io.NewSectionReader(b, 0, b.size) }

// Close frees the body's memory or spool file.
func (b *Body) Close() error {
	b.mem = nil
	if b.file != nil {
		return b.file.Close()
	}
	return nil
}

// Receive reads r's body, at most max bytes, before the caller spends anything else on the
// request. w is the request's writer, through which the connection's read deadline is moved
// so that a client falling below the minimum rate is cut off (ErrTooSlow).
func (s *Spool) Receive(w http.ResponseWriter, r *http.Request, max int64) (*Body, error) {
	if r.ContentLength > max {
		return nil, fmt.Errorf("%w: Content-Length %d, the limit is %d bytes", ErrTooLarge, r.ContentLength, max)
	}
	rc := http.NewResponseController(w)
	// Once the body is read, the connection waits without a deadline for the answer (the
	// server sets its own again for the next request); a deadline passing while the request is
	// handled would cancel its context.
	// Not supported (a test's recorder): then no deadline was set either.
	defer func() { _ = rc.SetReadDeadline(time.Time{}) }()
	in := &paced{r: r.Body, rc: rc, start: s.now(), now: s.now, minRate: s.minRate}
	lim := io.LimitReader(in, max+1)
	n := int64(MemoryLimit)
	if r.ContentLength >= 0 && r.ContentLength < n {
		n = r.ContentLength + 1 // a small body announced: no more memory than it needs
	}
	head := make([]byte, n)
	got, err := io.ReadFull(lim, head)
	switch {
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return &Body{mem: head[:got], size: int64(got)}, nil
	case err != nil:
		return nil, in.fail(err)
	}
	f, err := s.File("upload")
	if err != nil {
		return nil, err
	}
	// On every failure below the spool file is thrown away (it is unlinked): its Close error
	// does not matter.
	if _, err := f.Write(head); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("%w: %w", ErrSpool, err)
	}
	more, err := io.Copy(f, lim)
	if err != nil {
		_ = f.Close()
		if in.err != nil { // the client's side failed, not the disk
			return nil, in.fail(in.err)
		}
		return nil, fmt.Errorf("%w: %w", ErrSpool, err)
	}
	size := int64(got) + more
	if size > max {
		_ = f.Close()
		return nil, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, max)
	}
	return &Body{file: f, size: size}, nil
}

// paced reads a body and moves the read deadline so that the bytes come at minRate or faster,
// on average since start, after Grace.
type paced struct {
	r       io.Reader
	rc      *http.ResponseController
	start   time.Time
	now     func() time.Time
	minRate int64
	n       int64
	err     error // the body's own read error, to tell it from the spool file's
}

func (p *paced) Read(b []byte) (int, error) {
	due := p.start.Add(Grace + time.Duration(float64(p.n)/float64(p.minRate)*float64(time.Second)))
	// Not supported (a test's recorder): no pacing, and the server's own timeouts hold.
	_ = p.rc.SetReadDeadline(due)
	n, err := p.r.Read(b)
	p.n += int64(n)
	if err != nil && err != io.EOF {
		p.err = err
	}
	return n, err
}

// fail names why reading the body stopped.
func (p *paced) fail(err error) error {
	var tooBig *http.MaxBytesError
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Errorf("%w (%d bytes/s after the first %v)", ErrTooSlow, p.minRate, Grace)
	case errors.As(err, &tooBig):
		return fmt.Errorf("%w: %v", ErrTooLarge, err)
	}
	return fmt.Errorf("%w: %v", ErrBroken, err)
}
