package pades

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"regexp"

	"github.com/vula-eid/vula/internal/signing"
)

// A PDF is validated where it lies (an io.ReaderAt), never copied into memory: these read
// the few bytes the checks look at, and scan the rest a window at a time.

// window is how much of the file a scan holds at once.
const window = 1 << 20

// readAt is the n bytes at off.
func readAt(r io.ReaderAt, off, n int64) ([]byte, error) {
	b := make([]byte, n)
	if _, err := r.ReadAt(b, off); err != nil && !(err == io.EOF && n > 0) {
		return nil, fmt.Errorf("%w: validation: reading the PDF: %v", signing.ErrInvalid, err)
	}
	return b, nil
}

// revisionEnds lists where each revision ends: after each %%EOF marker and the end of line
// that follows it.
func revisionEnds(r io.ReaderAt, size int64) ([]int64, error) {
	const eof = "%%EOF"
	const overlap = len(eof) + 2 // a marker and its CR LF that begin in one window end in the next
	var ends []int64
	buf := make([]byte, window+overlap)
	skip := int64(0) // the next window begins inside the last marker's end of line
	for off := int64(0); off < size; off += window {
		n := min(int64(len(buf)), size-off)
		if _, err := r.ReadAt(buf[:n], off); err != nil && err != io.EOF {
			return nil, fmt.Errorf("%w: validation: reading the PDF: %v", signing.ErrInvalid, err)
		}
		b := buf[:n]
		for i := int(max(skip-off, 0)); ; {
			j := bytes.Index(b[i:], []byte(eof))
			if j < 0 || (i+j >= window && off+n < size) { // a marker in the overlap: the next window's
				break
			}
			e := i + j + len(eof)
			if e < len(b) && b[e] == '\r' {
				e++
			}
			if e < len(b) && b[e] == '\n' {
				e++
			}
			ends = append(ends, off+int64(e))
			skip = off + int64(e)
			i = e
		}
	}
	return ends, nil
}

// findFrom is where re first matches in [from, to), or -1.
func findFrom(r io.ReaderAt, from, to int64, re *regexp.Regexp) int64 {
	if from >= to {
		return -1
	}
	m := re.FindReaderIndex(bufio.NewReaderSize(io.NewSectionReader(r, from, to-from), 64<<10))
	if m == nil {
		return -1
	}
	return from + int64(m[0])
}

// blank tells whether every byte in [from, to) is in cutset.
func blank(r io.ReaderAt, from, to int64, cutset string) (bool, error) {
	buf := make([]byte, min(window, max(to-from, 0)))
	for off := from; off < to; {
		n := min(int64(len(buf)), to-off)
		if _, err := r.ReadAt(buf[:n], off); err != nil && err != io.EOF {
			return false, fmt.Errorf("%w: validation: reading the PDF: %v", signing.ErrInvalid, err)
		}
		if len(bytes.Trim(buf[:n], cutset)) > 0 {
			return false, nil
		}
		off += n
	}
	return true, nil
}
