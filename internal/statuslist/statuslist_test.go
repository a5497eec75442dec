package statuslist

import (
	"bytes"
	"compress/zlib"
	"encoding/base64"
	"errors"
	"testing"
)

func encode(t testing.TB, l *List) string {
	t.Helper()
	z, err := l.Compress()
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(z)
}

// Entries set are read back at every width, and a neighbour is never touched.
func TestRoundTrip(t *testing.T) {
	for _, bits := range []int{1, 2, 4, 8} {
		l, err := New(1000, bits)
		if err != nil {
			t.Fatal(err)
		}
		top := 1<<bits - 1
		for _, e := range []struct {
			idx int64
			v   int
		}{{0, top}, {7, 1}, {8, top}, {999, top}, {500, 1}, {500, top}, {500, 0}} {
			if err := l.Set(e.idx, e.v); err != nil {
				t.Fatal(err)
			}
		}
		got, err := Decode(encode(t, l), bits, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		for idx, want := range map[int64]int{0: top, 1: 0, 6: 0, 7: 1, 8: top, 9: 0, 499: 0, 500: 0, 501: 0, 998: 0, 999: top} {
			if v, err := got.At(idx); err != nil || v != want {
				t.Errorf("bits %d: entry %d is %d (%v), want %d", bits, idx, v, err, want)
			}
		}
		if _, err := got.At(int64(len(got.Bytes) * 8 / bits)); !errors.Is(err, ErrInvalid) {
			t.Errorf("bits %d: an entry past the list: %v", bits, err)
		}
		if _, err := got.At(-1); !errors.Is(err, ErrInvalid) {
			t.Errorf("bits %d: entry -1: %v", bits, err)
		}
		if err := l.Set(1, top+1); !errors.Is(err, ErrInvalid) {
			t.Errorf("bits %d: a value wider than the entry: %v", bits, err)
		}
	}
}

// The layout is the specification's: entry i of one bit is bit i%8 of byte i/8, so that the
// list of its example (IETF Token Status List §4.1: entries 0, 3, 4, 5, 7, 8, 9, 13, 15 set)
// is the bytes B9 A3.
func TestLayout(t *testing.T) {
	l, _ := New(16, 1)
	for _, i := range []int64{0, 3, 4, 5, 7, 8, 9, 13, 15} {
		l.Set(i, 1)
	}
	if !bytes.Equal(l.Bytes, []byte{0xB9, 0xA3}) {
		t.Errorf("% X", l.Bytes)
	}
}

func TestDecodeRefuses(t *testing.T) {
	big, _ := New(1<<16, 1)
	var notZlib bytes.Buffer
	notZlib.WriteString("plain")
	for _, tc := range []struct {
		name, lst string
		bits, max int
	}{
		{"bits 3", encode(t, big), 3, 1 << 20},
		{"not base64url", "a+b/", 1, 1 << 20},
		{"not ZLIB", base64.RawURLEncoding.EncodeToString(notZlib.Bytes()), 1, 1 << 20},
		{"past the bound", encode(t, big), 1, 1<<13 - 1},
	} {
		if _, err := Decode(tc.lst, tc.bits, tc.max); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
	if l, err := Decode(encode(t, big), 1, 1<<13); err != nil || len(l.Bytes) != 1<<13 {
		t.Errorf("a list at the bound: %v", err)
	}
}

// FuzzInflate: no input decompresses past the bound, however it is made.
func FuzzInflate(f *testing.F) {
	var z bytes.Buffer
	w := zlib.NewWriter(&z)
	w.Write(make([]byte, 1024))
	w.Close()
	f.Add(z.Bytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		if out, err := Inflate(b, 512); err == nil && len(out) > 512 {
			t.Fatalf("%d bytes inflated", len(out))
		}
	})
}
