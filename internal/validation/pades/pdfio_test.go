package pades

import (
	"bytes"
	"math/rand/v2"
	"slices"
	"testing"
)

// revisionEndsInMemory is revisionEnds over a byte slice: the reference the windowed scan
// must agree with.
func revisionEndsInMemory(data []byte) []int64 {
	var ends []int64
	for off := 0; ; {
		i := bytes.Index(data[off:], []byte("%%EOF"))
		if i < 0 {
			return ends
		}
		e := off + i + 5
		if e < len(data) && data[e] == '\r' {
			e++
		}
		if e < len(data) && data[e] == '\n' {
			e++
		}
		ends = append(ends, int64(e))
		off = e
	}
}

// TestRevisionEndsWindows: markers and their line ends across the scan's window boundaries
// are found once each, where the in-memory scan finds them.
func TestRevisionEndsWindows(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for n := range 200 {
		size := window + rng.IntN(2*window)
		data := bytes.Repeat([]byte{'x'}, size)
		for range 1 + rng.IntN(6) {
			// Near a boundary most of the time.
			at := rng.IntN(size - 8)
			if rng.IntN(3) > 0 {
				at = max(0, min(size-8, window*(1+rng.IntN(2))-rng.IntN(10)))
			}
			copy(data[at:], []string{"%%EOF", "%%EOF\n", "%%EOF\r\n", "%%EOF\r"}[rng.IntN(4)])
		}
		if n == 0 {
			copy(data[size-7:], "%%EOF\r\n")
		}
		got, err := revisionEnds(bytes.NewReader(data), int64(len(data)))
		if want := revisionEndsInMemory(data); err != nil || !slices.Equal(got, want) {
			t.Fatalf("size %d: %v, %v; want %v", size, got, err, want)
		}
	}
}
