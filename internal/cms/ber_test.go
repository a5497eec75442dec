package cms_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"golang.org/x/crypto/cryptobyte"

	"github.com/vula-eid/vula/internal/cms"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestDER: BER length forms and constructed OCTET STRINGs come out as DER; DER and the
// contents of primitives come out as they went in.
func TestDER(t *testing.T) {
	for _, c := range []struct{ name, in, want string }{
		{"DER stays", "30 06 02 01 05 04 01 aa", "30 06 02 01 05 04 01 aa"},
		{"indefinite", "30 80 02 01 05 00 00", "30 03 02 01 05"},
		{"nested indefinite", "30 80 a0 80 30 80 06 01 2a 00 00 00 00 00 00", "30 07 a0 05 30 03 06 01 2a"},
		{"long form not minimal", "04 82 00 02 aa bb", "04 02 aa bb"},
		{"constructed OCTET STRING", "24 80 04 02 aa bb 24 04 04 02 cc dd 00 00", "04 04 aa bb cc dd"},
		{"trailing padding ignored", "30 80 05 00 00 00 00 00 00 00", "30 02 05 00"},
		{"indefinite content of primitive is not parsed", "04 04 30 80 00 00", "04 04 30 80 00 00"},
	} {
		got, err := cms.DER(unhex(t, c.in))
		if err != nil || !bytes.Equal(got, unhex(t, c.want)) {
			t.Errorf("%s: DER(%s) = %x, %v; want %s", c.name, c.in, got, err, c.want)
		}
	}
	// A long element gets a long-form length.
	in := append(unhex(t, "30 80 04 82 01 00"), make([]byte, 256)...)
	in = append(in, 0, 0)
	got, err := cms.DER(in)
	if err != nil || !bytes.Equal(got[:6], unhex(t, "30 82 01 04 04 82")) || len(got) != 4+4+256 {
		t.Errorf("long: %x, %v", got[:min(len(got), 8)], err)
	}
	for _, bad := range []string{
		"", "30", "30 80 02 01 05", "04 80 00 00", "30 05 02 01", "1f 81 01 00",
		"30 03 02 05 01", "24 80 02 01 05 00 00", "30 85 00 00 00 00 01",
		strings.Repeat("30 80 ", 100) + strings.Repeat("00 00 ", 100),
	} {
		if got, err := cms.DER(unhex(t, bad)); !errors.Is(err, cms.ErrBER) {
			t.Errorf("DER(%s) = %x, %v; want ErrBER", bad, got, err)
		}
	}
}

// FuzzDER: whatever DER accepts comes out as one well-formed element that DER leaves as it is.
func FuzzDER(f *testing.F) {
	for _, s := range []string{"30 80 02 01 05 00 00", "24 80 04 02 aa bb 24 04 04 02 cc dd 00 00", "30 06 02 01 05 04 01 aa"} {
		f.Add(unhex(f, s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		der, err := cms.DER(b)
		if err != nil {
			return
		}
		s := cryptobyte.String(der)
		var e cryptobyte.String
		if !s.ReadAnyASN1Element(&e, nil) || !s.Empty() {
			t.Fatalf("DER(%x) = %x, not one element", b, der)
		}
		again, err := cms.DER(der)
		if err != nil || !bytes.Equal(again, der) {
			t.Fatalf("DER of DER(%x) = %x, %v; want %x", b, again, err, der)
		}
	})
}
