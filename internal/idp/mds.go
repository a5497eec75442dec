package idp

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-webauthn/webauthn/metadata"
	"github.com/google/uuid"
)

// A FIDO Metadata Service v3 BLOB (FIDO MDS 3.0 §3.1) as a passkey trust list: a JWS whose
// x5c chain must reach a root the operator configured (the FIDO Alliance's is GlobalSign Root
// CA R3), its payload the metadata statements of authenticator models by AAGUID. It is read
// from a file the operator keeps current; nothing is fetched, neither the BLOB nor revocation
// data for its chain (go-webauthn's own decoder asks the network about the chain, so the
// signature is checked here with go-jose and only the payload's types are go-webauthn's).

// MaxMDS3Size bounds a BLOB (the FIDO Alliance's is a few MiB).
const MaxMDS3Size = 64 << 20

// ErrMDS3 is a BLOB that is not a FIDO MDS3 BLOB signed under the configured roots.
var ErrMDS3 = errors.New("idp: not a FIDO MDS3 blob signed under the configured roots")

// mds3Algorithms are the JWS algorithms of MDS3 BLOBs (FIDO MDS 3.0 names RS256 and ES256;
// the others are the same families).
var mds3Algorithms = []jose.SignatureAlgorithm{jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512,
	jose.ES256, jose.ES384, jose.ES512}

// MDS3 is a verified BLOB's entries for FIDO2 authenticators, by AAGUID.
type MDS3 struct {
	// Number is the BLOB's serial number; NextUpdate the day by which a newer one is published:
	// from then on the BLOB is out of date and vouches for nothing.
	Number     int
	NextUpdate time.Time
	entries    map[uuid.UUID]metadata.Entry
}

// ParseMDS3 verifies blob's signature and certificate chain against roots at now and reads
// its entries. Entries that do not parse, or name no AAGUID (U2F and UAF authenticators), are
// left out: the BLOB lists thousands of models and one odd statement must not void the rest.
// An out-of-date BLOB is returned with its NextUpdate; Expired tells.
func ParseMDS3(blob []byte, roots []*x509.Certificate, now time.Time) (*MDS3, error) {
	if len(blob) > MaxMDS3Size {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrMDS3, len(blob), MaxMDS3Size)
	}
	if len(roots) == 0 {
		return nil, fmt.Errorf("%w: no root configured", ErrMDS3)
	}
	jws, err := jose.ParseSigned(string(bytes.TrimSpace(blob)), mds3Algorithms)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMDS3, err)
	}
	if len(jws.Signatures) != 1 {
		return nil, fmt.Errorf("%w: %d signatures", ErrMDS3, len(jws.Signatures))
	}
	pool := x509.NewCertPool()
	for _, r := range roots {
		pool.AddCert(r)
	}
	// The signer's chain from the x5c header (FIDO MDS 3.0 §3.2 step 3: no x5u), verified to
	// a configured root at now; the MDS signing certificates carry no particular key usage.
	chains, err := jws.Signatures[0].Protected.Certificates(x509.VerifyOptions{Roots: pool, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if err != nil {
		return nil, fmt.Errorf("%w: the signer's chain: %v", ErrMDS3, err)
	}
	payload, err := jws.Verify(chains[0][0].PublicKey)
	if err != nil {
		return nil, fmt.Errorf("%w: the signature: %v", ErrMDS3, err)
	}
	var p metadata.PayloadJSON
	if err := json.Unmarshal(payload, &p); err != nil {
		return nil, fmt.Errorf("%w: the payload: %v", ErrMDS3, err)
	}
	next, err := time.Parse(time.DateOnly, p.NextUpdate)
	if err != nil {
		return nil, fmt.Errorf("%w: nextUpdate %q", ErrMDS3, p.NextUpdate)
	}
	m := &MDS3{Number: p.Number, NextUpdate: next, entries: map[uuid.UUID]metadata.Entry{}}
	for _, ej := range p.Entries {
		e, err := ej.Parse()
		if err != nil || e.AaGUID == uuid.Nil {
			continue
		}
		m.entries[e.AaGUID] = e
	}
	return m, nil
}

// Len is the number of FIDO2 entries.
func (m *MDS3) Len() int { return len(m.entries) }

// Expired reports whether the BLOB is out of date at now (on or after its nextUpdate).
func (m *MDS3) Expired(now time.Time) bool { return !now.Before(m.NextUpdate) }

// compromised are the statuses that take an authenticator model's trust away (FIDO MDS 3.0
// §3.1.4): its keys or user verification are compromised, or its certification is revoked.
var compromised = []metadata.AuthenticatorStatus{metadata.AttestationKeyCompromise, metadata.UserVerificationBypass,
	metadata.UserKeyRemoteCompromise, metadata.UserKeyPhysicalCompromise, metadata.Revoked}

// vouch says whether the BLOB vouches at now for an attestation by the model aaguid with
// certificate chain chain (attestation certificate first): the model is listed, no status in
// effect says it is compromised or revoked, and the chain reaches one of its
// attestationRootCertificates. listed is false when the BLOB says nothing of the model.
func (m *MDS3) vouch(aaguid []byte, chain []*x509.Certificate, now time.Time) (listed, ok bool, why string) {
	id, err := uuid.FromBytes(aaguid)
	if err != nil {
		return false, false, "no AAGUID"
	}
	e, found := m.entries[id]
	if !found {
		return false, false, "AAGUID " + id.String() + " not in the MDS3 blob"
	}
	for _, r := range e.StatusReports {
		for _, bad := range compromised {
			if r.Status == bad && r.InEffectAt(now) {
				return true, false, "MDS3 status " + string(r.Status)
			}
		}
	}
	if !chainsTo(chain, e.MetadataStatement.AttestationRootCertificates, now) {
		return true, false, "attestation does not chain to the model's MDS3 attestation roots"
	}
	return true, true, "device-bound, attestation chains to its MDS3 statement"
}

// chainsTo says whether chain (attestation certificate first) is vouched for by anchors: its
// first certificate is one of them (name and key), or it chains to one at now.
func chainsTo(chain, anchors []*x509.Certificate, now time.Time) bool {
	if len(chain) == 0 || len(anchors) == 0 {
		return false
	}
	for _, a := range anchors {
		if bytes.Equal(a.RawSubject, chain[0].RawSubject) && bytes.Equal(a.RawSubjectPublicKeyInfo, chain[0].RawSubjectPublicKeyInfo) {
			return true
		}
	}
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	for _, a := range anchors {
		roots.AddCert(a)
	}
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	// Attestation certificates carry no particular extended key usage.
	_, err := chain[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	return err == nil
}
