package pdfsafe_test

import (
	"bytes"
	"compress/zlib"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/digitorus/pdf"

	"github.com/vula-eid/vula/internal/pdfsafe"
	"github.com/vula-eid/vula/internal/signing"
	"github.com/vula-eid/vula/internal/signing/signingtest"
)

func TestOpenRefusesHostile(t *testing.T) {
	for _, h := range hostile {
		t.Run(h.name, func(t *testing.T) {
			_, err := pdfsafe.Open(bytes.NewReader(h.pdf), int64(len(h.pdf)))
			want := signing.ErrInvalid
			if strings.Contains(h.says, "encrypted") {
				want = signing.ErrUnsupported
			}
			if !errors.Is(err, want) || !strings.Contains(err.Error(), h.says) {
				t.Errorf("got %v, want %v saying %q", err, want, h.says)
			}
		})
	}
	// Not a hang (a million empty reads take milliseconds), but no real file lists fewer
	// objects than its /N.
	b := buildPDF(map[int]string{2: pages, 3: page, 4: objStm("", 1000000, "9 0 ", "<< >>")}, map[int]stored{1: {4, 0}}, "")
	if _, err := pdfsafe.Open(bytes.NewReader(b), int64(len(b))); !errors.Is(err, signing.ErrInvalid) || !strings.Contains(err.Error(), "holds 1000000") {
		t.Errorf("an /N above the pairs listed: %v", err)
	}
}

// TestHostileInputsHang shows that each hostile input does make digitorus/pdf loop, recurse
// or spin when opened without the checks: each is read by a child process, which must still
// be running after a second or have died of a stack overflow or of running out of memory. It burns a core for a second
// per input, so it runs only when asked: VULA_PDFSAFE_PROVE=1.
func TestHostileInputsHang(t *testing.T) {
	if os.Getenv("VULA_PDFSAFE_CHILD") != "" {
		h := hostile[mustAtoi(os.Getenv("VULA_PDFSAFE_CHILD"))]
		func() {
			defer func() { recover() }()
			r, err := pdf.NewReader(bytes.NewReader(h.pdf), int64(len(h.pdf)))
			if err == nil {
				r.Trailer().Key("Root").Key("Pages").Key("Kids").Index(0).Key("MediaBox")
			}
		}()
		os.Exit(0) // it ended: the input is not hostile
	}
	if os.Getenv("VULA_PDFSAFE_PROVE") == "" {
		t.Skip("set VULA_PDFSAFE_PROVE=1 to run the hostile inputs through digitorus/pdf unchecked")
	}
	for i, h := range hostile {
		t.Run(h.name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestHostileInputsHang$")
			cmd.Env = append(os.Environ(), fmt.Sprintf("VULA_PDFSAFE_CHILD=%d", i), "GOMAXPROCS=1")
			var out bytes.Buffer
			cmd.Stderr = &out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case err := <-done:
				if s := out.String(); err == nil || !strings.Contains(s, "stack overflow") && !strings.Contains(s, "stack exceeds") && !strings.Contains(s, "out of memory") {
					t.Errorf("digitorus/pdf ended on it: %v %.300s", err, s)
				} else {
					t.Logf("digitorus/pdf crashed: %.80s", s)
				}
			case <-time.After(time.Second):
				cmd.Process.Kill()
				<-done
				t.Logf("digitorus/pdf still reading after 1 s")
			}
		})
	}
}

func mustAtoi(s string) int {
	var n int
	fmt.Sscan(s, &n)
	return n
}

// TestOpenGood: the real-world fixtures, a PDF with an object stream, and one made here open as
// they do with digitorus/pdf alone.
func TestOpenGood(t *testing.T) {
	files := map[string][]byte{
		"seed": signingtest.PDF("seed"),
		"object stream": buildPDF(map[int]string{
			2: pages, 3: page,
			4: objStm("", 1, "1 0 ", catalog),
		}, map[int]stored{1: {4, 0}}, ""),
		"object stream extended": buildPDF(map[int]string{
			2: pages, 3: page,
			4: objStm("/Extends 5 0 R", 1, "9 0 ", "<< >>"),
			5: objStm("", 1, "1 0 ", catalog+" % a comment [ ( <\n"),
		}, map[int]stored{1: {4, 0}, 9: {4, 0}}, ""),
	}
	ents, _ := filepath.Glob("../signing/pades/testdata/realworld/*.pdf")
	for _, p := range ents {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		files[filepath.Base(p)] = b
	}
	if len(ents) < 5 {
		t.Fatalf("only %d real-world fixtures", len(ents))
	}
	for name, b := range files {
		t.Run(name, func(t *testing.T) {
			r, err := pdfsafe.Open(bytes.NewReader(b), int64(len(b)))
			if err != nil {
				t.Fatal(err)
			}
			plain, err := pdf.NewReader(bytes.NewReader(b), int64(len(b)))
			if err != nil {
				t.Fatal(err)
			}
			if len(r.Xref()) != len(plain.Xref()) {
				t.Errorf("%d cross-reference entries, digitorus/pdf alone %d", len(r.Xref()), len(plain.Xref()))
			}
			if k := r.Trailer().Key("Root").Key("Pages").Key("Type").Name(); k != "Pages" {
				t.Errorf("the page tree's /Type is %q", k)
			}
		})
	}
}

// FuzzOpen: Open answers every input with a reader or an error of the three kinds, and on a
// reader every object resolves without a hang.
func FuzzOpen(f *testing.F) {
	for _, h := range hostile {
		if len(h.pdf) < 64<<10 {
			f.Add(h.pdf)
		}
	}
	ents, _ := filepath.Glob("../signing/pades/testdata/*/*.pdf")
	for _, p := range ents {
		if b, err := os.ReadFile(p); err == nil && len(b) < 256<<10 {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := pdfsafe.Open(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			if !errors.Is(err, signing.ErrInvalid) && !errors.Is(err, signing.ErrUnsupported) && !errors.Is(err, signing.ErrTooLarge) {
				t.Fatalf("an error of no kind: %v", err)
			}
			return
		}
		// Open's promise: resolving any object ends. digitorus/pdf panics on bad objects;
		// hangs are what is looked for.
		xs, parent := r.Xref(), r.Trailer().GetPtr()
		for i := range min(len(xs), 10000) {
			func() {
				defer func() { recover() }()
				r.Resolve(parent, xs[i].Ptr())
			}()
		}
	})
}

// TestReaderRefusesHugeColumns: a stream whose PNG predictor claims 2^40 columns (digitorus/pdf
// would allocate that many bytes, and the process die) is refused; a normal one reads.
func TestReaderRefusesHugeColumns(t *testing.T) {
	var z bytes.Buffer
	w := zlib.NewWriter(&z)
	w.Write([]byte("\x02abcd\x02\x01\x01\x01\x01")) // two PNG Up rows of 4 columns
	w.Close()
	for cols, want := range map[string]string{"4": "abcdbcde", "1099511627776": "columns"} {
		b := buildPDF(map[int]string{1: catalog, 2: pages, 3: page,
			4: fmt.Sprintf("<< /Length %d /Filter /FlateDecode /DecodeParms << /Predictor 12 /Columns %s >> >>\nstream\n%s\nendstream", z.Len(), cols, z.String()),
		}, nil, "")
		r, err := pdfsafe.Open(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			t.Fatal(err)
		}
		xs := r.Xref()
		rc, err := pdfsafe.Reader(r.Resolve(r.Trailer().GetPtr(), xs[4].Ptr()))
		if err != nil {
			if !errors.Is(err, signing.ErrInvalid) || !strings.Contains(err.Error(), want) {
				t.Errorf("/Columns %s: %v", cols, err)
			}
			continue
		}
		got, err := io.ReadAll(rc)
		if err != nil || string(got) != want {
			t.Errorf("/Columns %s: %q %v, want %q", cols, got, err, want)
		}
	}
}
