package idp

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ory/fosite"

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
	out, _ := json.Marshal([]*CredentialAuthorization{a})
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

// The scope form: CSC's credentialID, numSignatures, hashes (base64url, comma-separated),
// hashAlgorithmOID; each fault is an OAuth error of the right kind.
func TestCredentialRequestForms(t *testing.T) {
	d1, d2 := sha256.Sum256([]byte("one")), sha256.Sum256([]byte("two"))
	h1, h2 := base64.RawURLEncoding.EncodeToString(d1[:]), base64.RawURLEncoding.EncodeToString(d2[:])
	details := `[{"type":"credential","credentialID":"c1","hashAlgorithmOID":"2.16.840.1.101.3.4.2.1","documentDigests":[{"hash":"` + h1 + `","label":"a"}]}]`
	c := &client{DefaultOpenIDConnectClient: &fosite.DefaultOpenIDConnectClient{DefaultClient: &fosite.DefaultClient{ID: "app", Scopes: []string{"openid", "service", "credential"}}}}
	plain := &client{DefaultOpenIDConnectClient: &fosite.DefaultOpenIDConnectClient{DefaultClient: &fosite.DefaultClient{ID: "rp", Scopes: []string{"openid", "service"}}}}
	req := func(cl fosite.Client, scope string, form url.Values) fosite.AuthorizeRequester {
		ar := fosite.NewAuthorizeRequest()
		ar.Client, ar.Form = cl, form
		for _, s := range strings.Fields(scope) {
			ar.AppendRequestedScope(s)
		}
		return ar
	}
	scoped := func(edit func(url.Values)) url.Values {
		v := url.Values{"credentialID": {"c1"}, "numSignatures": {"2"}, "hashes": {h1 + "," + h2}, "hashAlgorithmOID": {"2.16.840.1.101.3.4.2.1"}}
		if edit != nil {
			edit(v)
		}
		return v
	}
	a, err := credentialRequest(req(c, "credential", scoped(nil)))
	if err != nil || len(a.DocumentDigests) != 2 || !bytes.Equal(a.DocumentDigests[1].Hash, d2[:]) {
		t.Fatalf("scope form: %v %+v", err, a)
	}
	if a, err := credentialRequest(req(c, "openid", url.Values{"authorization_details": {details}})); err != nil || a.CredentialID != "c1" {
		t.Fatalf("details: %v %+v", err, a)
	}
	if a, err := credentialRequest(req(c, "openid service", url.Values{})); a != nil || err != nil {
		t.Fatalf("a service request: %v %+v", err, a)
	}
	for _, tc := range []struct {
		name, scope string
		cl          fosite.Client
		form        url.Values
		code        string
	}{
		{"numSignatures off", "credential", c, scoped(func(v url.Values) { v.Set("numSignatures", "1") }), "invalid_request"},
		{"bad hash OID", "credential", c, scoped(func(v url.Values) { v.Set("hashAlgorithmOID", "1.3.14.3.2.26") }), "invalid_request"},
		{"short digest", "credential", c, scoped(func(v url.Values) { v.Set("hashes", h1+","+h2[:20]) }), "invalid_request"},
		{"no hashes", "credential", c, scoped(func(v url.Values) { v.Del("hashes") }), "invalid_request"},
		{"parameters twice", "credential", c, scoped(func(v url.Values) { v.Add("credentialID", "c2") }), "invalid_request"},
		{"with service", "credential service", c, scoped(nil), "invalid_request"},
		{"params without scope", "openid", c, scoped(nil), "invalid_request"},
		{"both forms", "credential", c, scoped(func(v url.Values) { v.Set("authorization_details", details) }), "invalid_request"},
		{"client without the scope", "openid", plain, url.Values{"authorization_details": {details}}, "invalid_scope"},
		{"bad details", "openid", c, url.Values{"authorization_details": {`[{"type":"credential"}]`}}, "invalid_authorization_details"},
	} {
		_, err := credentialRequest(req(tc.cl, tc.scope, tc.form))
		var rfc *fosite.RFC6749Error
		if !errors.As(err, &rfc) || rfc.ErrorField != tc.code {
			t.Errorf("%s: %v, want %s", tc.name, err, tc.code)
		}
	}
}

// The session keeps the authorization through its JSON form, and bounds the access token.
func TestCredentialSession(t *testing.T) {
	d := sha256.Sum256([]byte("x"))
	s := newSession()
	s.Credential = &CredentialAuthorization{Type: "credential", CredentialID: "c", HashAlgorithmOID: "2.16.840.1.101.3.4.2.1",
		DocumentDigests: []DocumentDigest{{Hash: d[:], Label: "x"}}}
	s.AuthorizationSeq = 42
	c := s.Clone().(*Session)
	if c.Credential == nil || !bytes.Equal(c.Credential.DocumentDigests[0].Hash, d[:]) || c.AuthorizationSeq != 42 {
		t.Fatalf("clone: %+v", c.Credential)
	}
	far := time.Now().AddDate(1, 0, 0)
	c.SetExpiresAt(fosite.AccessToken, far)
	if got := c.GetExpiresAt(fosite.AccessToken); got.Before(time.Now()) || got.After(time.Now().Add(CredentialTokenTTL+2*time.Second)) {
		t.Fatalf("a credential token expires at %v", got)
	}
	c.SetExpiresAt(fosite.RefreshToken, far)
	if !c.GetExpiresAt(fosite.RefreshToken).Equal(far) {
		t.Fatal("only the access token is bounded")
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
