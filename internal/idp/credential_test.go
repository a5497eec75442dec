package idp

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/ory/fosite"
	"github.com/vula-eid/vula/internal/csc"
)

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
	a, err := credentialRequest(csc.CredentialRequests{}, req(c, "credential", scoped(nil)))
	if err != nil || len(a.DocumentDigests) != 2 || !bytes.Equal(a.DocumentDigests[1].Hash, d2[:]) {
		t.Fatalf("scope form: %v %+v", err, a)
	}
	if a, err := credentialRequest(csc.CredentialRequests{}, req(c, "openid", url.Values{"authorization_details": {details}})); err != nil || a.CredentialID != "c1" {
		t.Fatalf("details: %v %+v", err, a)
	}
	if a, err := credentialRequest(csc.CredentialRequests{}, req(c, "openid service", url.Values{})); a != nil || err != nil {
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
		_, err := credentialRequest(csc.CredentialRequests{}, req(tc.cl, tc.scope, tc.form))
		var rfc *fosite.RFC6749Error
		if !errors.As(err, &rfc) || rfc.ErrorField != tc.code {
			t.Errorf("%s: %v, want %s", tc.name, err, tc.code)
		}
	}
	// Without a signing service, credential authorization is not offered.
	for scope, form := range map[string]url.Values{"openid": {"authorization_details": {details}}, "credential": scoped(nil)} {
		_, err := credentialRequest(nil, req(c, scope, form))
		var rfc *fosite.RFC6749Error
		if !errors.As(err, &rfc) || rfc.ErrorField != "invalid_authorization_details" || !strings.Contains(rfc.HintField, "not offered") {
			t.Errorf("no signing service: %v", err)
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
