package upload

import (
	"bytes"
	"io"
	"net/http/httptest"
	"testing"
	"time"
)

// BenchmarkReceive measures receiving a body in memory (a timestamp query, an OCSP request's
// size) and one spooled to disk (a 1 MiB document).
func BenchmarkReceive(b *testing.B) {
	s, err := Open(b.TempDir(), 1, time.Now)
	if err != nil {
		b.Fatal(err)
	}
	for _, size := range []int{4 << 10, 1 << 20} {
		body := bytes.Repeat([]byte{'x'}, size)
		b.Run(byteSize(size), func(b *testing.B) {
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				r := httptest.NewRequest("POST", "/", io.NopCloser(bytes.NewReader(body)))
				r.ContentLength = int64(size)
				got, err := s.Receive(httptest.NewRecorder(), r, 2<<20)
				if err != nil || got.Size() != int64(size) {
					b.Fatal(err)
				}
				got.Close()
			}
		})
	}
}

func byteSize(n int) string {
	if n >= 1<<20 {
		return "1MiB"
	}
	return "4KiB"
}
