package csc

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vula-eid/vula/internal/auth"
	"github.com/vula-eid/vula/internal/signing"
)

// Every file in testdata/authorization_details: good-* parse, bad-* are refused with
// signing.ErrInvalid and a hint that names the fault.
func TestParseAuthorizationDetailsFiles(t *testing.T) {
	want := map[string]string{
		"bad-oid.json": "hashAlgorithmOID", "bad-length.json": "bytes", "bad-duplicate.json": "same as digest 0",
		"bad-empty.json": "1 to 100", "bad-type.json": "not supported", "bad-two.json": "exactly one",
		"bad-unknown-member.json": "documentLocations", "bad-no-credential.json": "credentialID",
		"bad-label.json": "invisible", "bad-too-many.json": "1 to 100", "bad-not-array.json": "JSON array",
		"bad-hash-type.json": "wrong type",
	}
	files, _ := filepath.Glob("testdata/authorization_details/*.json")
	if len(files) < 10 {
		t.Fatalf("%d seed files", len(files))
	}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		name := filepath.Base(f)
		a, err := ParseAuthorizationDetails(raw)
		if strings.HasPrefix(name, "good") {
			if err != nil || a.Type != "credential" || len(a.DocumentDigests) == 0 {
				t.Errorf("%s: %v %+v", name, err, a)
			}
			continue
		}
		if err == nil || !errors.Is(err, signing.ErrInvalid) || !strings.Contains(err.Error(), want[name]) {
			t.Errorf("%s: %v, want ErrInvalid naming %q", name, err, want[name])
		}
	}
}

func TestParseAuthorizationDetailsValues(t *testing.T) {
	d1, d2 := sha256.Sum256([]byte("one")), sha256.Sum256([]byte("two"))
	raw, _ := json.Marshal([]map[string]any{{"type": "credential", "credentialID": "abc123", "hashAlgorithmOID": "2.16.840.1.101.3.4.2.1",
		"documentDigests": []map[string]string{{"hash": base64.StdEncoding.EncodeToString(d1[:]), "label": "Vendim"},
			{"hash": base64.RawURLEncoding.EncodeToString(d2[:])}}}})
	a, err := ParseAuthorizationDetails(raw)
	if err != nil {
		t.Fatal(err)
	}
	if a.CredentialID != "abc123" || !bytes.Equal(a.DocumentDigests[0].Hash, d1[:]) || a.DocumentDigests[0].Label != "Vendim" ||
		!bytes.Equal(a.Hashes()[1], d2[:]) {
		t.Fatalf("%+v", a)
	}
	// What the session and token response carry reads back the same.
	out, _ := json.Marshal([]*auth.CredentialAuthorization{a})
	b, err := ParseAuthorizationDetails(out)
	if err != nil || !bytes.Equal(b.Hashes()[0], d1[:]) || !bytes.Equal(b.Hashes()[1], d2[:]) {
		t.Fatalf("round trip: %v %s", err, out)
	}
	// A long value is not echoed whole.
	_, err = ParseAuthorizationDetails([]byte(`[{"type":"` + strings.Repeat("x", 500) + `"}]`))
	if err == nil || len(err.Error()) > 200 {
		t.Fatalf("%v", err)
	}
	if _, err := ParseAuthorizationDetails(bytes.Repeat([]byte(" "), maxDetails+1)); err == nil {
		t.Fatal("an oversized parameter was read")
	}
}

// FuzzParseAuthorizationDetails: no input makes the parser panic, and what it accepts holds to
// the rules (1..100 distinct digests of the algorithm's length, a credential id).
func FuzzParseAuthorizationDetails(f *testing.F) {
	files, _ := filepath.Glob("testdata/authorization_details/*.json")
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		a, err := ParseAuthorizationDetails(raw)
		if err != nil {
			if !errors.Is(err, signing.ErrInvalid) {
				t.Fatalf("error without ErrInvalid: %v", err)
			}
			return
		}
		alg, ok := credentialHashes[a.HashAlgorithmOID]
		if !ok || a.CredentialID == "" || len(a.DocumentDigests) < 1 || len(a.DocumentDigests) > MaxDocumentDigests {
			t.Fatalf("accepted %+v", a)
		}
		seen := map[string]bool{}
		for _, d := range a.DocumentDigests {
			if len(d.Hash) != alg.size || seen[string(d.Hash)] {
				t.Fatalf("accepted digest %x", d.Hash)
			}
			seen[string(d.Hash)] = true
		}
	})
}
