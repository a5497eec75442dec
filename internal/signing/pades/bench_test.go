package pades_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/vula-eid/vula/internal/signing"
	"github.com/vula-eid/vula/internal/signing/pades"
	"github.com/vula-eid/vula/internal/signing/signingtest"
)

// BenchmarkPAdES signs 1 MB and 50 MB PDFs at B-B, beside a "limit" that does the least any
// signer must: SHA-256 over the file, one signature on the same key, the file written out.
// Compare the two ns/op of a size, measured in the same run.
//
// Both write into the same kind of sink, a bytes.Buffer kept at the output's size and reset
// each time, so that writing costs each one copy of the bytes. (Into io.Discard the limit's
// bytes.Reader.WriteTo copied nothing at all: its "write" was free, which no real output is.)
// The limit hashes the bytes in place, without the read into a buffer that Sign, given an
// io.ReaderAt, must do: the comparison leans against Sign.
func BenchmarkPAdES(b *testing.B) {
	env := signingtest.New(b, signingtest.Options{})
	for _, mb := range []int{1, 50} {
		in := pdfBytes(b, pdfOpts{big: mb << 20})
		var out bytes.Buffer
		out.Grow(len(in) + 64<<10)
		b.Run(fmt.Sprintf("%dMB/limit", mb), func(b *testing.B) {
			b.SetBytes(int64(len(in)))
			for b.Loop() {
				out.Reset()
				sum := sha256.Sum256(in)
				if _, err := env.Seal.Key.Sign(rand.Reader, sum[:], crypto.SHA256); err != nil {
					b.Fatal(err)
				}
				out.Write(in)
			}
		})
		b.Run(fmt.Sprintf("%dMB/pades-B-B", mb), func(b *testing.B) {
			b.SetBytes(int64(len(in)))
			for b.Loop() {
				out.Reset()
				if err := pades.Sign(context.Background(), bytes.NewReader(in), int64(len(in)), &out, env.Seal,
					pades.Options{Level: signing.LevelB}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestPeakMemory signs a 200 MB PDF in a child process (this test binary again) and asserts
// that its peak resident memory stays below the file's size plus 64 MB.
func TestPeakMemory(t *testing.T) {
	if f := os.Getenv("PADES_RSS_CHILD"); f != "" {
		rssChild(t, f)
		return
	}
	if testing.Short() {
		t.Skip("writes a 200 MB file")
	}
	dir := t.TempDir()
	in := filepath.Join(dir, "big.pdf")
	f, err := os.Create(in)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	if err := makePDF(w, pdfOpts{big: 200 << 20}); err != nil {
		t.Fatal(err)
	}
	w.Flush()
	f.Close()
	st, _ := os.Stat(in)
	cmd := exec.Command(os.Args[0], "-test.run=^TestPeakMemory$", "-test.v")
	cmd.Env = append(os.Environ(), "PADES_RSS_CHILD="+in)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	var hwm int64
	for _, l := range strings.Split(string(out), "\n") {
		if _, v, ok := strings.Cut(l, "VmHWM-kB="); ok {
			hwm, _ = strconv.ParseInt(strings.Fields(v)[0], 10, 64)
		}
	}
	if hwm == 0 {
		t.Fatalf("no VmHWM from the child:\n%s", out)
	}
	limit := st.Size() + 64<<20
	t.Logf("signed %d bytes; peak RSS %d MB (limit %d MB)", st.Size(), hwm>>10, limit>>20)
	if hwm<<10 > limit {
		t.Errorf("peak RSS %d bytes, above %d", hwm<<10, limit)
	}
}

func rssChild(t *testing.T, in string) {
	env := signingtest.New(t, signingtest.Options{})
	r, err := os.Open(in)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	st, _ := r.Stat()
	out, err := os.Create(in + ".signed.pdf")
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if err := pades.Sign(context.Background(), r, st.Size(), out, env.Seal, levelOpts(env, signing.LevelLTA)); err != nil {
		t.Fatal(err)
	}
	status, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			fmt.Printf("VmHWM-kB=%s\n", strings.Fields(v)[0])
		}
	}
}
