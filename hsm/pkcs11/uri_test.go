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
