package idp

import (
	"bytes"
	"crypto/x509"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"
	"github.com/google/uuid"

	"github.com/vula-eid/vula/internal/idp/idptest"
)

const testAAGUID = "01020304-0506-0708-0102-030405060708"

// attestor is an authenticator model: its attestation root, and one device's attestation
// certificate under it.
type attestor struct {
	root, cert *x509.Certificate
}

func newAttestor(t *testing.T, name string) attestor {
	root, key := idptest.CA(t, name+" Attestation Root")
	cert, _ := idptest.Leaf(t, name+" Attestation", root, key)
	return attestor{root: root, cert: cert}
}

// enrolment is what level sees of a device-bound passkey of model aaguid attested by a.
func (a attestor) enrolment(aaguid string) (*webauthn.Credential, *protocol.ParsedCredentialCreationData) {
	id := uuid.MustParse(aaguid)
	c := &webauthn.Credential{Authenticator: webauthn.Authenticator{AAGUID: id[:]}}
	p := &protocol.ParsedCredentialCreationData{}
	p.Response.AttestationObject.AttStatement = map[string]any{"alg": int64(-7), "x5c": []any{a.cert.Raw}}
	return c, p
}

// TestParseMDS3: a BLOB signed under the configured root is read; one signed under another
// root, altered, not a JWS at all, or too large is refused with ErrMDS3; an out-of-date one is
// read and says it is expired.
func TestParseMDS3(t *testing.T) {
	now := time.Now()
	mds := idptest.NewMDS3Signer(t)
	model := newAttestor(t, "Model")
	good := mds.Blob(t, now.AddDate(0, 1, 0), idptest.MDS3Entry{AAGUID: testAAGUID, Roots: []*x509.Certificate{model.root}},
		idptest.MDS3Entry{AAGUID: "not-a-uuid"})
	m, err := ParseMDS3(good, []*x509.Certificate{mds.Root}, now)
	if err != nil {
		t.Fatal(err)
	}
	if m.Len() != 1 || m.Number != 42 || m.Expired(now) {
		t.Errorf("parsed %d entries, number %d, expired %v; want 1, 42, false", m.Len(), m.Number, m.Expired(now))
	}
	if m, err := ParseMDS3(mds.Blob(t, now.AddDate(0, 0, -1)), []*x509.Certificate{mds.Root}, now); err != nil || !m.Expired(now) {
		t.Errorf("an out-of-date blob: %v, expired %v", err, err == nil && m.Expired(now))
	}
	other := idptest.NewMDS3Signer(t)
	parts := strings.Split(string(good), ".")
	altered := parts[0] + "." + strings.TrimRight(parts[1], "A") + "B." + parts[2]
	for name, c := range map[string]struct {
		blob  []byte
		roots []*x509.Certificate
	}{
		"another root":  {other.Blob(t, now.AddDate(0, 1, 0)), []*x509.Certificate{mds.Root}},
		"altered":       {[]byte(altered), []*x509.Certificate{mds.Root}},
		"no roots":      {good, nil},
		"not a JWS":     {[]byte(`{"entries":[]}`), []*x509.Certificate{mds.Root}},
		"too large":     {bytes.Repeat([]byte("a"), MaxMDS3Size+1), []*x509.Certificate{mds.Root}},
		"signer not CA": {good, []*x509.Certificate{model.cert}},
	} {
		if _, err := ParseMDS3(c.blob, c.roots, now); !errors.Is(err, ErrMDS3) {
			t.Errorf("%s: %v, want ErrMDS3", name, err)
		}
	}
}

// TestPasskeyLevelMDS3: a device-bound passkey of a model the BLOB lists, attested under the
// model's roots, is high; the same model with a REVOKED status, attested under roots that are
// not the model's, or listed in an out-of-date BLOB, is substantial — and a PEM anchor does
// not raise a model the BLOB refuses. A model the BLOB does not list falls back to the anchors.
func TestPasskeyLevelMDS3(t *testing.T) {
	now := time.Now()
	mds := idptest.NewMDS3Signer(t)
	model, stranger := newAttestor(t, "Model"), newAttestor(t, "Stranger")
	parse := func(next time.Time, e ...idptest.MDS3Entry) *MDS3 {
		m, err := ParseMDS3(mds.Blob(t, next, e...), []*x509.Certificate{mds.Root}, now)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	month := now.AddDate(0, 1, 0)
	listed := parse(month, idptest.MDS3Entry{AAGUID: testAAGUID, Roots: []*x509.Certificate{model.root}})
	revoked := parse(month, idptest.MDS3Entry{AAGUID: testAAGUID, Roots: []*x509.Certificate{model.root}, Status: "REVOKED"})
	compromised := parse(month, idptest.MDS3Entry{AAGUID: testAAGUID, Roots: []*x509.Certificate{model.root}, Status: "ATTESTATION_KEY_COMPROMISE"})
	expired := parse(now.AddDate(0, 0, -1), idptest.MDS3Entry{AAGUID: testAAGUID, Roots: []*x509.Certificate{model.root}})
	for _, c := range []struct {
		name  string
		trust PasskeyTrust
		by    attestor
		want  string
	}{
		{"listed", PasskeyTrust{MDS3: listed}, model, LoAHigh},
		{"revoked", PasskeyTrust{MDS3: revoked}, model, LoASubstantial},
		{"compromised", PasskeyTrust{MDS3: compromised}, model, LoASubstantial},
		{"revoked, though a PEM anchor", PasskeyTrust{MDS3: revoked, Anchors: []*x509.Certificate{model.root}}, model, LoASubstantial},
		{"not the model's roots", PasskeyTrust{MDS3: listed, Anchors: []*x509.Certificate{stranger.root}}, stranger, LoASubstantial},
		{"out of date", PasskeyTrust{MDS3: expired}, model, LoASubstantial},
		{"not listed, a PEM anchor", PasskeyTrust{MDS3: parse(month), Anchors: []*x509.Certificate{model.root}}, model, LoAHigh},
		{"not listed, no anchor", PasskeyTrust{MDS3: parse(month)}, model, LoASubstantial},
	} {
		t.Run(c.name, func(t *testing.T) {
			cred, parsed := c.by.enrolment(testAAGUID)
			pk := &passkeys{trust: c.trust}
			got, why := pk.level(cred, parsed, now)
			if got != c.want {
				t.Errorf("level %s (%s), want %s", got, why, c.want)
			}
			t.Log(why)
		})
	}
	// A synced passkey is substantial whatever the BLOB says.
	cred, parsed := model.enrolment(testAAGUID)
	cred.Flags.BackupEligible = true
	if got, _ := (&passkeys{trust: PasskeyTrust{MDS3: listed}}).level(cred, parsed, now); got != LoASubstantial {
		t.Errorf("a synced passkey of a listed model: %s", got)
	}
}

// FuzzParseMDS3: any file given as the BLOB is refused or read, never a panic.
func FuzzParseMDS3(f *testing.F) {
	mds := idptest.NewMDS3Signer(f)
	model, _ := idptest.CA(f, "Model")
	f.Add(mds.Blob(f, time.Now().AddDate(0, 1, 0), idptest.MDS3Entry{AAGUID: testAAGUID, Roots: []*x509.Certificate{model}}))
	f.Add(mds.Blob(f, time.Now().AddDate(0, 1, 0), idptest.MDS3Entry{AAGUID: testAAGUID, Status: "REVOKED"}))
	f.Add([]byte("eyJhbGciOiJFUzI1NiJ9.e30.AAAA"))
	f.Add([]byte{})
	roots := []*x509.Certificate{mds.Root}
	f.Fuzz(func(t *testing.T, blob []byte) {
		m, err := ParseMDS3(blob, roots, time.Now())
		if err == nil && m == nil {
			t.Fatal("no error and no BLOB")
		}
	})
}
