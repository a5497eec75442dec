package csc

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/asn1"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/vula-eid/vula/internal/certs"

	"github.com/vula-eid/vula/internal/auth"
	"github.com/vula-eid/vula/internal/idp"
	"github.com/vula-eid/vula/internal/signing"
	"github.com/vula-eid/vula/internal/signing/pades"
	"github.com/vula-eid/vula/internal/signing/signingtest"
	"github.com/vula-eid/vula/internal/store"
	"github.com/vula-eid/vula/internal/store/memstore"
	"github.com/vula-eid/vula/internal/tsa"
)

const oidSHA256 = "2.16.840.1.101.3.4.2.1"

// tsaClock is the system time, taken as synchronised: the test machine's sync state is not
// what these tests are about.
type tsaClock struct{}

func (tsaClock) Now() time.Time               { return time.Now() }
func (tsaClock) Synced(context.Context) error { return nil }

// docReplica is a replica with the platform's TSA on the env's PKI, for B-T and above.
func (e *env) docReplica(t testing.TB) *Service {
	t.Helper()
	u := e.pki.TSA()
	ts, err := tsa.New(tsa.Config{Policy: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 2, 1}}, u.Cert, u.Signer, tsaClock{}, e.log)
	if err != nil {
		t.Fatal(err)
	}
	s := e.replica(memstore.New(e.now))
	s.cfg.Timestamper = ts
	return s
}

// authorizeDocs authorizes the documents' SHA-256 digests with the password and a TOTP code.
func (e *env) authorizeDocs(t testing.TB, s *Service, o official, docs ...[]byte) string {
	t.Helper()
	var hs [][]byte
	for _, d := range docs {
		hs = append(hs, DocumentDigest(crypto.SHA256, d))
	}
	a, err := s.Authorize(context.Background(), o.sub, Authorization{CredentialID: o.cred.ID, NumSignatures: len(hs), Hashes: hs,
		HashOID: oidSHA256, PIN: o.pw, OTP: e.code(t, o, 0)})
	if err != nil {
		t.Fatal(cscCode(err))
	}
	e.advance(30 * time.Second) // the next authorization needs the next TOTP code
	return a.SAD
}

// signatureKeys counts the key layer's signatures with the official's key made under signDoc.
func (e *env) signDocSignatures(t testing.TB, o official) int {
	t.Helper()
	recs, err := e.db.AuditRecords(context.Background(), 1, 10000)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range recs {
		if r.Action == "sign" && r.Key == o.cred.KeyURI && bytes.Contains(r.Detail, []byte(`signDoc`)) {
			n++
		}
	}
	return n
}

// TestSignDoc: one authorization over three documents signs a PAdES B-T, a XAdES B-LT and a
// CAdES B-T, each with exactly one signature of the official's key; the validation info is the
// chain's, with a good OCSP answer and parseable CRLs; then every refusal signs nothing.
func TestSignDoc(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	s := e.docReplica(t)
	o := e.official(t, s, "1100000001")
	other := e.official(t, s, "1100000002")
	pdf := signingtest.PDF("A decision of the municipality")
	xml := []byte(`<decision id="7"><text>Approved</text></decision>`)
	bin := []byte("a registry extract, in any format")
	sad := e.authorizeDocs(t, s, o, pdf, xml, bin)

	res, err := s.SignDoc(ctx, o.sub, DocRequest{CredentialID: o.cred.ID, SAD: sad, HashOID: oidSHA256, ReturnValidationInfo: true,
		Documents: []Document{
			{Data: pdf, Format: FormatPAdES, Level: signing.LevelT, Packaging: Revision, Reason: "Approved", Location: "Prishtinë"},
			{Data: xml, Format: FormatXAdES, Level: signing.LevelLT},
			{Data: bin, Format: FormatCAdES, Level: signing.LevelLTA, Packaging: Detached},
		}})
	if err != nil {
		t.Fatal(cscCode(err))
	}
	if len(res.Documents) != 3 {
		t.Fatalf("%d outputs", len(res.Documents))
	}
	if !bytes.HasPrefix(res.Documents[0], pdf) || !bytes.Contains(res.Documents[0], []byte("/ETSI.CAdES.detached")) {
		t.Error("the PAdES output is not an incremental update of the input with a PAdES signature")
	}
	if !bytes.Contains(res.Documents[1], []byte("SignedProperties")) || !bytes.Contains(res.Documents[1], []byte("<text>Approved</text>")) ||
		!bytes.Contains(res.Documents[1], []byte("RevocationValues")) {
		t.Errorf("the XAdES output is not an enveloped XAdES signature: %.200s", res.Documents[1])
	}
	// CAdES B-LTA: revocation-values and an archive-time-stamp-v3 among the unsigned attributes.
	revocationValues := []byte{0x06, 0x0b, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x10, 0x02, 0x18} // 1.2.840.113549.1.9.16.2.24
	archiveV3 := []byte{0x06, 0x06, 0x04, 0x00, 0x8d, 0x45, 0x02, 0x04}                                      // 0.4.0.1733.2.4
	if !bytes.Contains(res.Documents[2], revocationValues) || !bytes.Contains(res.Documents[2], archiveV3) {
		t.Error("the CAdES output asked at B-LTA lacks its revocation values or archive timestamp")
	}
	if n := e.signDocSignatures(t, o); n != 3 {
		t.Fatalf("%d signatures of the official's key in the audit log, want 3", n)
	}
	vi := res.ValidationInfo
	if vi == nil || len(vi.Certs) < 3 || len(vi.OCSPs) != 1 || len(vi.CRLs) == 0 {
		t.Fatalf("validation info: %+v", vi)
	}
	if !vi.Certs[0].Equal(o.cred.Cert) {
		t.Error("the validation info does not start with the signer's certificate")
	}
	resp, err := ocsp.ParseResponse(vi.OCSPs[0], nil)
	if err != nil || resp.Status != ocsp.Good || resp.SerialNumber.Cmp(o.cred.Cert.SerialNumber) != 0 {
		t.Fatalf("OCSP: %v %+v", err, resp)
	}
	for _, der := range vi.CRLs {
		if _, err := x509.ParseRevocationList(der); err != nil {
			t.Fatal(err)
		}
	}

	// Refusals: each signs nothing.
	sad2 := e.authorizeDocs(t, s, o, pdf)
	for _, c := range []struct {
		name string
		sub  string
		r    DocRequest
		want string
	}{
		{"a document the SAD does not list", o.sub, DocRequest{CredentialID: o.cred.ID, SAD: sad2, HashOID: oidSHA256,
			Documents: []Document{{Data: signingtest.PDF("another"), Format: FormatPAdES}}},
			"invalid_request: Invalid parameter hashes: hash 0 is not authorized by the SAD"},
		{"a SAD used up", o.sub, DocRequest{CredentialID: o.cred.ID, SAD: sad, HashOID: oidSHA256,
			Documents: []Document{{Data: pdf, Format: FormatPAdES}}},
			"invalid_request: Invalid parameter SAD: it has been used for all its signatures"},
		// The SAD is bound to its credential: naming another one (the other official's) is a SAD
		// that does not fit.
		{"another official's credential", o.sub, DocRequest{CredentialID: other.cred.ID, SAD: sad2, HashOID: oidSHA256,
			Documents: []Document{{Data: pdf, Format: FormatPAdES}}}, "invalid_request: Invalid parameter SAD"},
		{"another official's SAD", other.sub, DocRequest{CredentialID: other.cred.ID, SAD: sad2, HashOID: oidSHA256,
			Documents: []Document{{Data: pdf, Format: FormatPAdES}}}, "invalid_request: Invalid parameter SAD"},
		{"another hash algorithm", o.sub, DocRequest{CredentialID: o.cred.ID, SAD: sad2, HashOID: "2.16.840.1.101.3.4.2.3",
			Documents: []Document{{Data: pdf, Format: FormatPAdES}}},
			"invalid_request: Invalid parameter hashAlgorithmOID: the SAD authorized " + oidSHA256},
		{"CAdES attached", o.sub, DocRequest{CredentialID: o.cred.ID, SAD: sad2, HashOID: oidSHA256,
			Documents: []Document{{Data: pdf, Format: FormatCAdES}}},
			`invalid_request: Invalid parameter signed_envelope_property of documents[0]: "Attached" for CAdES: only Detached is supported`},
		{"an unknown format", o.sub, DocRequest{CredentialID: o.cred.ID, SAD: sad2, HashOID: oidSHA256,
			Documents: []Document{{Data: pdf, Format: "J"}}}, `invalid_request: Invalid parameter signature_format of documents[0]: "J" (P, X or C)`},
		{"a seal text the font cannot draw", o.sub, DocRequest{CredentialID: o.cred.ID, SAD: sad2, HashOID: oidSHA256,
			Documents: []Document{{Data: pdf, Format: FormatPAdES, Visible: &pades.Appearance{Page: 1, Rect: [4]float64{36, 36, 286, 106}, Text: "Потписано 署名"}}}},
			`invalid_request: Invalid parameter documents[0]: signing: invalid input: pades: the signature's text has '署' (U+7F72), which its font (DejaVu Sans: Latin, Greek, Cyrillic) cannot draw`},
	} {
		if _, err := s.SignDoc(ctx, c.sub, c.r); cscCode(err) != c.want {
			t.Errorf("%s: %s, want %s", c.name, cscCode(err), c.want)
		}
	}
	if n := e.signDocSignatures(t, o); n != 3 {
		t.Fatalf("refusals signed: %d signatures", n)
	}
	// Not a PDF, under a SAD that lists it: the format refuses it as invalid, the key signs nothing.
	junk := []byte("%PDF-1.7 not really")
	sad3 := e.authorizeDocs(t, s, o, junk)
	_, err = s.SignDoc(ctx, o.sub, DocRequest{CredentialID: o.cred.ID, SAD: sad3, HashOID: oidSHA256, Documents: []Document{{Data: junk, Format: FormatPAdES}}})
	if got := cscCode(err); !strings.HasPrefix(got, "invalid_request: Invalid parameter documents[0]: ") {
		t.Errorf("not a PDF: %s", got)
	}
	// The SAD still redeems the listed PDF; then the credential is revoked and signs nothing.
	if _, err := s.SignDoc(ctx, o.sub, DocRequest{CredentialID: o.cred.ID, SAD: sad2, HashOID: oidSHA256,
		Documents: []Document{{Data: pdf, Format: FormatPAdES, Packaging: Revision}}}); err != nil {
		t.Fatal(cscCode(err))
	}
	sad4 := e.authorizeDocs(t, s, o, pdf)
	if err := e.pki.Revoke(ctx, certs.NamePersonCA, o.cred.Cert.SerialNumber, 1); err != nil {
		t.Fatal(err)
	}
	_, err = s.SignDoc(ctx, o.sub, DocRequest{CredentialID: o.cred.ID, SAD: sad4, HashOID: oidSHA256, Documents: []Document{{Data: pdf, Format: FormatPAdES}}})
	if got := cscCode(err); got != "invalid_request: The credential is disabled: its certificate is revoked or expired" {
		t.Fatalf("a revoked credential: %s", got)
	}
	if n := e.signDocSignatures(t, o); n != 4 {
		t.Fatalf("%d signatures, want 4", n)
	}
}

// TestSignDocExpired: a SAD past its expiry on the service's clock redeems nothing.
func TestSignDocExpired(t *testing.T) {
	e := newEnv(t)
	s := e.replica(memstore.New(e.now))
	o := e.official(t, s, "1100000001")
	pdf := signingtest.PDF("late")
	sad := e.authorizeDocs(t, s, o, pdf)
	e.advance(5 * time.Minute)
	_, err := s.SignDoc(context.Background(), o.sub, DocRequest{CredentialID: o.cred.ID, SAD: sad, HashOID: oidSHA256,
		Documents: []Document{{Data: pdf, Format: FormatPAdES}}})
	if got := cscCode(err); got != "invalid_request: SAD expired" {
		t.Fatalf("an expired SAD: %s", got)
	}
	// B-T without a TSA is refused before the SAD is looked at.
	_, err = s.SignDoc(context.Background(), o.sub, DocRequest{CredentialID: o.cred.ID, SAD: sad, HashOID: oidSHA256,
		Documents: []Document{{Data: pdf, Format: FormatPAdES, Level: signing.LevelT}}})
	if got := cscCode(err); !strings.Contains(got, "no timestamp authority") {
		t.Fatalf("B-T without a TSA: %s", got)
	}
}

// TestExtendTransaction: an extension gives a new SAD for the hashes left, with a fresh expiry;
// the old SAD is spent; extensions stop at the overall limit.
func TestExtendTransaction(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	s := e.replica(memstore.New(e.now))
	o := e.official(t, s, "1100000001")
	d1, d2 := []byte("one"), []byte("two")
	sad := e.authorizeDocs(t, s, o, d1, d2) // the clock is now 30 s after the authorization
	if _, err := s.SignHash(ctx, o.sub, SignRequest{CredentialID: o.cred.ID, SAD: sad, Hashes: [][]byte{DocumentDigest(crypto.SHA256, d1)},
		SignAlgo: "1.2.840.10045.4.3.2"}); err != nil {
		t.Fatal(cscCode(err))
	}
	e.advance(4 * time.Minute)
	ext, err := s.ExtendTransaction(ctx, o.sub, o.cred.ID, sad)
	if err != nil || ext.ExpiresIn != 300 || ext.SAD == sad {
		t.Fatalf("extend: %s %+v", cscCode(err), ext)
	}
	if _, err := s.ExtendTransaction(ctx, o.sub, o.cred.ID, sad); cscCode(err) != "invalid_request: Invalid parameter SAD: it has been used for all its signatures" {
		t.Fatalf("the old SAD extended twice: %s", cscCode(err))
	}
	if _, err := s.ExtendTransaction(ctx, o.sub, "ff", ext.SAD); cscCode(err) != "invalid_request: Invalid parameter credentialID" {
		t.Fatalf("another credential: %s", cscCode(err))
	}
	e.advance(4 * time.Minute) // past the first SAD's expiry, within the new one's
	_, err = s.SignHash(ctx, o.sub, SignRequest{CredentialID: o.cred.ID, SAD: ext.SAD, Hashes: [][]byte{DocumentDigest(crypto.SHA256, d1)}, SignAlgo: "1.2.840.10045.4.3.2"})
	if got := cscCode(err); got != "invalid_request: Invalid parameter hashes: hash 0 has already been signed with this SAD" {
		t.Fatalf("a hash signed before the extension: %s", got)
	}
	// Extend every 4 minutes up to the 30-minute limit: the last extension ends at the limit.
	last := ext.SAD
	for range 5 {
		x, err := s.ExtendTransaction(ctx, o.sub, o.cred.ID, last)
		if err != nil {
			t.Fatal(cscCode(err))
		}
		last = x.SAD
		e.advance(4 * time.Minute)
	}
	// 28.5 minutes after the authorization.
	x, err := s.ExtendTransaction(ctx, o.sub, o.cred.ID, last)
	if err != nil || x.ExpiresIn != 90 {
		t.Fatalf("an extension near the limit: %s %+v", cscCode(err), x)
	}
	e.advance(80 * time.Second)
	y, err := s.ExtendTransaction(ctx, o.sub, o.cred.ID, x.SAD)
	if err != nil || y.ExpiresIn != 10 {
		t.Fatalf("an extension at the limit: %s %+v", cscCode(err), y)
	}
	if _, err := s.SignHash(ctx, o.sub, SignRequest{CredentialID: o.cred.ID, SAD: y.SAD, Hashes: [][]byte{DocumentDigest(crypto.SHA256, d2)},
		SignAlgo: "1.2.840.10045.4.3.2"}); err != nil {
		t.Fatal(cscCode(err))
	}
	if _, err := s.ExtendTransaction(ctx, o.sub, o.cred.ID, y.SAD); cscCode(err) != "invalid_request: Invalid parameter SAD: it has been used for all its signatures" {
		t.Fatalf("extending a spent SAD: %s", cscCode(err))
	}
	recs, _ := e.db.AuditRecords(ctx, 1, 1000)
	n := 0
	for _, r := range recs {
		if r.Action == "csc.extend" && r.Key == o.cred.KeyURI {
			n++
		}
	}
	if n != 8 {
		t.Fatalf("%d extensions in the audit log, want 8", n)
	}
}

// TestAuthorizeLogin: a recent login at LoA substantial with otp plus one fresh TOTP code
// authorizes; a low, password-only or old login, or a wrong code, does not.
func TestAuthorizeLogin(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	s := e.docReplica(t)
	o := e.official(t, s, "1100000001")
	pdf := signingtest.PDF("from the portal")
	a := Authorization{CredentialID: o.cred.ID, NumSignatures: 1, Hashes: [][]byte{DocumentDigest(crypto.SHA256, pdf)}, HashOID: oidSHA256}
	good := Login{ACR: auth.LoASubstantial, AMR: []string{"pwd", "otp", "mfa"}, AuthTime: e.now().Add(-10 * time.Minute)}
	weak := "access_denied: The login must be at level of assurance substantial or higher, with a one-time code, within the last 15 minutes: log in again"
	for _, c := range []struct {
		name  string
		login Login
		otp   string
		want  string
	}{
		{"a low login", Login{ACR: auth.LoALow, AMR: []string{"pwd"}, AuthTime: good.AuthTime}, e.code(t, o, 0), weak},
		{"no otp in amr", Login{ACR: auth.LoASubstantial, AMR: []string{"pwd"}, AuthTime: good.AuthTime}, e.code(t, o, 0), weak},
		{"an old login", Login{ACR: auth.LoAHigh, AMR: good.AMR, AuthTime: e.now().Add(-16 * time.Minute)}, e.code(t, o, 0), weak},
		{"no login time", Login{ACR: auth.LoAHigh, AMR: good.AMR}, e.code(t, o, 0), weak},
		{"no code", good, "", "invalid_otp: The OTP is invalid"},
		{"a wrong code", good, "000000", "invalid_otp: The OTP is invalid"},
	} {
		b := a
		b.OTP = c.otp
		if _, err := s.AuthorizeLogin(ctx, o.sub, c.login, b); cscCode(err) != c.want {
			t.Errorf("%s: %s, want %s", c.name, cscCode(err), c.want)
		}
	}
	b := a
	b.OTP, b.PIN = e.code(t, o, 0), "ignored"
	res, err := s.AuthorizeLogin(ctx, o.sub, good, b)
	if err != nil {
		t.Fatal(cscCode(err))
	}
	out, err := s.SignDoc(ctx, o.sub, DocRequest{CredentialID: o.cred.ID, SAD: res.SAD, HashOID: oidSHA256,
		Documents: []Document{{Data: pdf, Format: FormatPAdES, Level: signing.LevelT}}})
	if err != nil || !bytes.HasPrefix(out.Documents[0], pdf) {
		t.Fatalf("signDoc under a session authorization: %s", cscCode(err))
	}
	// The same code again: refused (a TOTP code is good once).
	if _, err := s.AuthorizeLogin(ctx, o.sub, good, b); cscCode(err) != "invalid_otp: The OTP is invalid" {
		t.Fatalf("a code used twice: %s", cscCode(err))
	}
	recs, _ := e.db.AuditRecords(ctx, 1, 1000)
	var session, refused int
	for _, r := range recs {
		if r.Action == "csc.authorize" && bytes.Contains(r.Detail, []byte(`"authorization":"session"`)) {
			if r.Result == "ok" {
				session++
			} else {
				refused++
			}
		}
	}
	if session != 1 || refused != 7 {
		t.Fatalf("audit: %d session authorizations, %d refused; want 1, 7", session, refused)
	}
}

// TestRenew: a renewed credential is a new certificate for the same key; both are listed and
// both sign; a revoked one is not renewed.
func TestRenew(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	s := e.replica(memstore.New(e.now))
	o := e.official(t, s, "1100000001")
	n, err := s.Renew(ctx, o.sub, o.cred.ID)
	if err != nil {
		t.Fatal(err)
	}
	if n.ID == o.cred.ID || n.KeyURI != o.cred.KeyURI || !bytes.Equal(n.Cert.RawSubjectPublicKeyInfo, o.cred.Cert.RawSubjectPublicKeyInfo) ||
		n.Cert.Subject.String() != o.cred.Cert.Subject.String() {
		t.Fatalf("renewed: %+v", n)
	}
	cs, err := s.Credentials(ctx, o.sub)
	if err != nil || len(cs) != 2 {
		t.Fatalf("credentials after renewal: %d %v", len(cs), err)
	}
	if _, err := s.Renew(ctx, o.sub+"x", o.cred.ID); cscCode(err) != "invalid_request: Invalid parameter credentialID" {
		t.Fatalf("another official renews: %s", cscCode(err))
	}
	if err := e.pki.Revoke(ctx, certs.NamePersonCA, o.cred.Cert.SerialNumber, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Renew(ctx, o.sub, o.cred.ID); !errors.Is(err, ErrRenewRevoked) {
		t.Fatalf("renewal of a revoked credential: %v", err)
	}
	// The renewed one still signs.
	o.cred = n
	sad := e.authorizeDocs(t, s, o, []byte("after renewal"))
	if _, err := s.SignDoc(ctx, o.sub, DocRequest{CredentialID: n.ID, SAD: sad, HashOID: oidSHA256,
		Documents: []Document{{Data: []byte("after renewal"), Format: FormatCAdES, Packaging: Detached}}}); err != nil {
		t.Fatal(cscCode(err))
	}
}

// TestSignDocConcurrent: eight signDoc requests at once for one authorized document: exactly one
// signs, the key signs once.
func TestSignDocConcurrent(t *testing.T) {
	e := newEnv(t)
	s := e.docReplica(t)
	o := e.official(t, s, "1100000001")
	pdf := signingtest.PDF("once")
	sad := e.authorizeDocs(t, s, o, pdf)
	var wg sync.WaitGroup
	var ok atomic.Int32
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.SignDoc(context.Background(), o.sub, DocRequest{CredentialID: o.cred.ID, SAD: sad, HashOID: oidSHA256,
				Documents: []Document{{Data: pdf, Format: FormatPAdES, Level: signing.LevelLT}}}); err == nil {
				ok.Add(1)
			} else if !strings.HasPrefix(cscCode(err), "invalid_request: Invalid parameter SAD") {
				t.Errorf("a losing redemption: %s", cscCode(err))
			}
		}()
	}
	wg.Wait()
	if ok.Load() != 1 || e.signDocSignatures(t, o) != 1 {
		t.Fatalf("%d of 8 signed, %d key signatures; want 1, 1", ok.Load(), e.signDocSignatures(t, o))
	}
}

// lowLogin authenticates every request as an official whose login reached acr.
type lowLogin struct{ sub, acr string }

func (l lowLogin) Bearer(*http.Request, string) (auth.Caller, error) {
	return auth.Caller{ClientID: "app", Subject: l.sub, Scopes: []string{Scope}, ACR: l.acr, AMR: []string{"pwd"}}, nil
}

// TestServiceTokenLoA: a service token from a login below substantial (or of no known level)
// is refused with 401 insufficient_user_authentication and the acr to reach (RFC 9470).
func TestServiceTokenLoA(t *testing.T) {
	e := newEnv(t)
	s := e.replica(memstore.New(e.now))
	o := e.official(t, s, "1100000001")
	for _, c := range []struct {
		acr  string
		want int
	}{{auth.LoALow, 401}, {"", 401}, {"urn:something:else", 401}, {auth.LoASubstantial, 200}, {auth.LoAHigh, 200}} {
		mux := http.NewServeMux()
		Handler{S: s, Auth: lowLogin{o.sub, c.acr}, Issuer: "http://vula.test", Log: e.log}.Register(mux)
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/csc/v2/credentials/list", strings.NewReader("{}")))
		if w.Code != c.want {
			t.Errorf("acr %q: %d %s, want %d", c.acr, w.Code, w.Body, c.want)
		}
		if c.want == 401 && (!strings.Contains(w.Header().Get("WWW-Authenticate"), `error="insufficient_user_authentication"`) ||
			!strings.Contains(w.Header().Get("WWW-Authenticate"), `acr_values="`+auth.LoASubstantial+`"`) ||
			!strings.Contains(w.Body.String(), `"error":"insufficient_user_authentication"`)) {
			t.Errorf("acr %q: %q %s", c.acr, w.Header().Get("WWW-Authenticate"), w.Body)
		}
	}
}

// TestSignDocBodyLimit: a signDoc body above 64 MiB is refused with 413 before it is parsed.
func TestSignDocBodyLimit(t *testing.T) {
	e := newEnv(t)
	s := e.replica(memstore.New(e.now))
	mux := http.NewServeMux()
	Handler{S: s, Auth: anOfficial("someone"), Issuer: "http://vula.test", Log: e.log}.Register(mux)
	body := append([]byte(`{"documents":[{"document":"`), bytes.Repeat([]byte("A"), maxDocBody)...)
	w := httptest.NewRecorder()
	mux.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/csc/v2/signatures/signDoc", bytes.NewReader(body)))
	if w.Code != 413 || !strings.Contains(w.Body.String(), `"error":"invalid_request"`) {
		t.Fatalf("a body over the limit: %d %.200s", w.Code, w.Body)
	}
}

// TestLoginMaxAge: Config.LoginMaxAge is 15 minutes when 0 and an hour at most; a service
// configured for 10 seconds refuses a login 11 seconds old and accepts one 9 seconds old.
func TestLoginMaxAge(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	eph := memstore.New(e.now)
	seeds, _ := store.NewSeedSealer(bytes.Repeat([]byte{7}, 32))
	acc := idp.NewAccounts(e.db, eph, seeds, "Vula", e.now)
	for _, c := range []struct{ set, want time.Duration }{{0, 15 * time.Minute}, {-time.Second, 15 * time.Minute},
		{10 * time.Second, 10 * time.Second}, {2 * time.Hour, time.Hour}} {
		if got := New(Config{LoginMaxAge: c.set}, e.keys, e.pki, e.db, eph, acc, e.audit, e.log, e.now).LoginMaxAge(); got != c.want {
			t.Errorf("LoginMaxAge %v: %v, want %v", c.set, got, c.want)
		}
	}
	s := New(Config{Country: "XK", LoginMaxAge: 10 * time.Second}, e.keys, e.pki, e.db, eph, acc, e.audit, e.log, e.now)
	o := e.official(t, s, "1100000002")
	a := Authorization{CredentialID: o.cred.ID, NumSignatures: 1, Hashes: [][]byte{DocumentDigest(crypto.SHA256, signingtest.PDF("x"))},
		HashOID: oidSHA256, OTP: e.code(t, o, 0)}
	old := Login{ACR: auth.LoASubstantial, AMR: []string{"pwd", "otp"}, AuthTime: e.now().Add(-11 * time.Second)}
	want := "access_denied: The login must be at level of assurance substantial or higher, with a one-time code, within the last 10s: log in again"
	if _, err := s.AuthorizeLogin(ctx, o.sub, old, a); cscCode(err) != want {
		t.Fatalf("a login 11s old: %s", cscCode(err))
	}
	fresh := old
	fresh.AuthTime = e.now().Add(-9 * time.Second)
	if _, err := s.AuthorizeLogin(ctx, o.sub, fresh, a); err != nil {
		t.Fatalf("a login 9s old: %s", cscCode(err))
	}
}

// TestInfoSignatureFormats: info announces signature_formats and conformance_levels (CSC API
// v2.0.0.2 §11.1 requires them with signatures/signDoc) and validationInfo, and SignDoc takes
// every format with each envelope property and level announced (CAdES up to B-T).
func TestInfoSignatureFormats(t *testing.T) {
	e := newEnv(t)
	for name, s := range map[string]*Service{"with a TSA": e.docReplica(t), "without": e.replica(memstore.New(e.now))} {
		t.Run(name, func(t *testing.T) {
			mux := http.NewServeMux()
			Handler{S: s, Auth: anOfficial("nobody"), Issuer: "http://vula.test", Log: e.log}.Register(mux)
			w := httptest.NewRecorder()
			mux.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/csc/v2/info", strings.NewReader("{}")))
			var info struct {
				Methods          []string `json:"methods"`
				SignatureFormats struct {
					Formats            []string   `json:"formats"`
					EnvelopeProperties [][]string `json:"envelope_properties"`
				} `json:"signature_formats"`
				ConformanceLevels []string `json:"conformance_levels"`
				ValidationInfo    *bool    `json:"validationInfo"`
			}
			if err := json.Unmarshal(w.Body.Bytes(), &info); err != nil || w.Code != 200 {
				t.Fatalf("info: %d %s", w.Code, w.Body)
			}
			if !slices.Contains(info.Methods, "signatures/signDoc") {
				t.Fatal("info does not offer signDoc")
			}
			f := info.SignatureFormats
			if len(f.Formats) == 0 || len(f.Formats) != len(f.EnvelopeProperties) || len(info.ConformanceLevels) == 0 || info.ValidationInfo == nil || !*info.ValidationInfo {
				t.Fatalf("info: %s", w.Body)
			}
			if want := name == "with a TSA"; slices.Contains(info.ConformanceLevels, "Ades-B-T") != want {
				t.Errorf("conformance_levels %v with a TSA: %v", info.ConformanceLevels, want)
			}
			for i, format := range f.Formats {
				for _, env := range f.EnvelopeProperties[i] {
					for _, cl := range info.ConformanceLevels {
						level, err := ParseConformanceLevel(cl)
						if err != nil {
							t.Fatal(err)
						}
						if _, err := s.packaging(0, Document{Format: format, Packaging: env, Level: level}); err != nil {
							t.Errorf("%s %s %s announced but refused: %v", format, env, cl, err)
						}
					}
				}
			}
		})
	}
}
