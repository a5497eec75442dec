package pkcs11

import (
	"errors"
	"testing"

	"github.com/vula-eid/vula/hsm"
)

func TestURIRoundTrip(t *testing.T) {
	for _, label := range []string{"tsa-2026", "seal.tax_office", "a"} {
		for _, token := range []string{"vula", "Vula HSM #1", "tok;en=x"} {
			got, err := parseURI(formatURI(token, label), token)
			if err != nil || got != label {
				t.Errorf("%q on %q: got %q, %v", label, token, got, err)
			}
		}
	}
}

// FuzzParseURI feeds key URIs, which reach the key layer from configuration and API requests.
func FuzzParseURI(f *testing.F) {
	for _, s := range []string{
		"pkcs11:token=vula;object=tsa-2026;type=private",
		"pkcs11:object=a%20b;id=%01%02",
		"pkcs11:token=other;object=x",
		"pkcs11:object=x?pin-value=1234",
		"pkcs11:", "software:object=x", "pkcs11:object=%zz", "pkcs11:;;;",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, uri string) {
		label, err := parseURI(uri, "vula")
		if err != nil {
			if !errors.Is(err, hsm.ErrInvalid) && !errors.Is(err, hsm.ErrNotFound) {
				t.Fatalf("error outside the contract: %v", err)
			}
			return
		}
		if label == "" {
			t.Fatal("accepted a URI without an object")
		}
	})
}

func TestParseURI(t *testing.T) {
	for _, tc := range []struct {
		uri, label string
		err        error
	}{
		{"pkcs11:token=vula;object=tsa-2026;type=private", "tsa-2026", nil},
		{"pkcs11:object=a%20b;id=%01%02", "a b", nil},
		{"pkcs11:object=x?pin-value=1234", "x", nil}, // the PIN comes from the configuration
		{"PKCS11:object=x", "x", nil},
		{"pkcs11:token=other;object=x", "", hsm.ErrNotFound},
		{"pkcs11:object=x;type=public", "", hsm.ErrInvalid},
		{"pkcs11:object=x;object=y", "", hsm.ErrInvalid},
		{"pkcs11:object=x;slot-id=1", "", hsm.ErrInvalid},
		{"pkcs11:object=%zz", "", hsm.ErrInvalid},
		{"pkcs11:;;;", "", hsm.ErrInvalid},
		{"pkcs11:", "", hsm.ErrInvalid},
		{"software:object=x", "", hsm.ErrInvalid},
	} {
		label, err := parseURI(tc.uri, "vula")
		if label != tc.label || !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
			t.Errorf("%s: got %q, %v; want %q, %v", tc.uri, label, err, tc.label, tc.err)
		}
	}
}
