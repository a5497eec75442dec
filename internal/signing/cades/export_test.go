package cades

import (
	"testing"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// TimestampToken returns the token in a signature's signature-time-stamp and the signature
// value it stamps, for the tests to hand to openssl ts -verify.
func TimestampToken(t testing.TB, cms []byte) (token, signature []byte) {
	t.Helper()
	p, err := parseCMS(cms)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range p.unsigned {
		s := cryptobyte.String(a)
		var attr, values, tok cryptobyte.String
		var tag cbasn1.Tag
		if oid, _ := attributeType(a); oid.Equal(oidSignatureTimeStamp) &&
			s.ReadASN1(&attr, cbasn1.SEQUENCE) && attr.SkipASN1(cbasn1.OBJECT_IDENTIFIER) &&
			attr.ReadASN1(&values, cbasn1.SET) && values.ReadAnyASN1Element(&tok, &tag) {
			return tok, p.signature
		}
	}
	t.Fatal("no signature-time-stamp")
	return nil, nil
}
