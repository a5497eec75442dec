package certs

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"sort"
	"sync"
	"time"

	"github.com/vula-eid/vula/hsm"
	"github.com/vula-eid/vula/internal/store"
)

// Records is what the authority keeps in the durable store.
type Records interface {
	store.Certificates
	store.KeyRecords
}

// Names of the hierarchy's certificates; the URLs use them (/pki/<name>.crt).
const (
	NameRoot     = "root"
	NamePersonCA = "person-ca"
	NameSealCA   = "seal-ca"
	NameTSA      = "tsa"
	// NameTSLSigner signs the platform's trusted list (ETSI TS 119 612), under seal-ca.
	NameTSLSigner = "tsl-signer"
)

// ocspName is the name of the delegated OCSP responder of an issuing CA.
func ocspName(ca string) string { return "ocsp-" + ca }

// Config describes the hierarchy made on first start.
type Config struct {
	Country      string // ISO 3166 code, "XK" in the demo
	Organization string
	Policy       Policy
	// CAAlgorithm is the key type of the root and the issuing CAs; ServiceAlgorithm that of the
	// OCSP responders and the timestamping unit.
	CAAlgorithm, ServiceAlgorithm hsm.Algorithm
	// Lifetimes in years.
	RootYears, CAYears, ServiceYears int
}

// DefaultConfig is the demo hierarchy: P-384 CAs, P-256 services, 20/10/2 years.
func DefaultConfig() Config {
	return Config{Country: "XK", Organization: "Vula Demo", CAAlgorithm: hsm.ECP384, ServiceAlgorithm: hsm.ECP256,
		RootYears: 20, CAYears: 10, ServiceYears: 2}
}

// Authority is the platform's CA hierarchy: a root, an issuing CA for natural persons and one
// for legal persons' seals, the timestamping unit's certificate (under seal-ca) and one
// delegated OCSP responder per issuing CA. Keys are in the key layer; certificates and
// revocations in the durable store, so every replica serves the same PKI.
type Authority struct {
	keys   hsm.Manager
	recs   Records
	cfg    Config
	linter *Linter
	now    func() time.Time
	certs  map[string]*Issuer // by name: CAs, responders, the TSA

	// Signed answers are cached so that a flood of requests does not become a flood of CA or
	// responder signatures. Both caches are keyed by what the store says now (revocation count,
	// certificate status), so a revocation made by any replica or the CLI invalidates them.
	mu   sync.Mutex
	crls map[string]cachedCRL
	ocsp map[string]cachedOCSP
}

type cachedCRL struct {
	revoked int
	der     []byte
	until   time.Time
}

type cachedOCSP struct {
	der   []byte
	until time.Time
}

// Open loads the hierarchy, creating what is missing (first start). It refuses to start when a
// key does not match its certificate.
func Open(ctx context.Context, keys hsm.Manager, recs Records, cfg Config, now func() time.Time) (*Authority, error) {
	l, err := NewLinter()
	if err != nil {
		return nil, err
	}
	a := &Authority{keys: keys, recs: recs, cfg: cfg, linter: l, now: now, certs: map[string]*Issuer{},
		crls: map[string]cachedCRL{}, ocsp: map[string]cachedOCSP{}}
	name := func(cn string) pkix.Name {
		return pkix.Name{Country: []string{cfg.Country}, Organization: []string{cfg.Organization}, CommonName: cfg.Organization + " " + cn}
	}
	steps := []struct {
		name, parent string
		profile      Profile
		purpose      hsm.Purpose
		alg          hsm.Algorithm
		years        int
		subject      pkix.Name
	}{
		{NameRoot, "", Root, hsm.PurposeCA, cfg.CAAlgorithm, cfg.RootYears, name("Root CA")},
		{NamePersonCA, NameRoot, IssuingCA, hsm.PurposeCA, cfg.CAAlgorithm, cfg.CAYears, name("Qualified CA for Natural Persons")},
		{NameSealCA, NameRoot, IssuingCA, hsm.PurposeCA, cfg.CAAlgorithm, cfg.CAYears, name("Qualified CA for Legal Persons")},
		{ocspName(NamePersonCA), NamePersonCA, OCSPResponder, hsm.PurposeOCSP, cfg.ServiceAlgorithm, cfg.ServiceYears, name("OCSP Responder for Natural Persons")},
		{ocspName(NameSealCA), NameSealCA, OCSPResponder, hsm.PurposeOCSP, cfg.ServiceAlgorithm, cfg.ServiceYears, name("OCSP Responder for Legal Persons")},
		{NameTSA, NameSealCA, TSA, hsm.PurposeTSA, cfg.ServiceAlgorithm, cfg.ServiceYears, name("Timestamping Unit 1")},
		{NameTSLSigner, NameSealCA, TrustListSigner, PurposeTSLSigner, cfg.ServiceAlgorithm, cfg.ServiceYears, name("Trusted List Signer")},
	}
	for _, s := range steps {
		iss, err := a.load(ctx, s.name, s.parent, s.purpose)
		if errors.Is(err, store.ErrNotFound) {
			iss, err = a.create(ctx, s.name, s.parent, s.profile, s.purpose, s.alg, s.years, s.subject)
		}
		if err != nil {
			return nil, fmt.Errorf("pki: %s: %w", s.name, err)
		}
		a.certs[s.name] = iss
	}
	return a, nil
}

// load finds name's key record and its certificate, and checks that they match.
func (a *Authority) load(ctx context.Context, name, parent string, purpose hsm.Purpose) (*Issuer, error) {
	keys, err := a.recs.KeyRecords(ctx)
	if err != nil {
		return nil, err
	}
	for _, k := range keys {
		if k.Owner != name || k.Purpose != string(purpose) || k.State != string(hsm.StateActive) {
			continue
		}
		issuedBy := parent
		if issuedBy == "" {
			issuedBy = name
		}
		certs, err := a.recs.CertificatesByCA(ctx, issuedBy)
		if err != nil {
			return nil, err
		}
		for _, c := range certs {
			if c.KeyURI != k.URI || c.Revoked {
				continue
			}
			cert, err := x509.ParseCertificate(c.DER)
			if err != nil {
				return nil, err
			}
			s, err := a.keys.Signer(ctx, k.URI, purpose)
			if err != nil {
				return nil, err
			}
			if !publicEqual(s.Public(), cert.PublicKey) {
				return nil, fmt.Errorf("the key %s does not match the certificate %s: refusing to start", k.URI, c.Serial)
			}
			return &Issuer{Name: name, Cert: cert, Signer: s}, nil
		}
	}
	return nil, store.ErrNotFound
}

func (a *Authority) create(ctx context.Context, name, parent string, p Profile, purpose hsm.Purpose, alg hsm.Algorithm, years int, subject pkix.Name) (*Issuer, error) {
	now := a.now()
	k, err := a.keys.CreateKey(ctx, hsm.KeySpec{Label: fmt.Sprintf("%s-%s", name, now.UTC().Format("20060102-150405")), Algorithm: alg, Purpose: purpose, Owner: name})
	if err != nil {
		return nil, err
	}
	s, err := a.keys.Signer(ctx, k.URI, purpose)
	if err != nil {
		return nil, err
	}
	req := Request{Profile: p, Subject: subject, PublicKey: s.Public(), NotBefore: now.Add(-time.Minute), NotAfter: now.AddDate(years, 0, 0)}
	var cert *x509.Certificate
	issuedBy := name
	if parent == "" {
		cert, err = Issue(req, nil, s, a.cfg.Policy, a.linter)
	} else {
		cert, err = Issue(req, a.certs[parent], nil, a.cfg.Policy, a.linter)
		issuedBy = parent
	}
	if err != nil {
		return nil, err
	}
	if err := a.record(ctx, issuedBy, string(p), k.URI, cert); err != nil {
		return nil, err
	}
	if err := a.recs.PutKeyRecord(ctx, store.KeyRecord{URI: k.URI, Purpose: string(purpose), Owner: name, Algorithm: string(alg), State: string(hsm.StateActive), Created: k.Created}); err != nil {
		return nil, err
	}
	return &Issuer{Name: name, Cert: cert, Signer: s}, nil
}

func (a *Authority) record(ctx context.Context, ca, profile, keyURI string, c *x509.Certificate) error {
	return a.recs.CreateCertificate(ctx, store.Certificate{CA: ca, Serial: serialHex(c.SerialNumber), Subject: c.Subject.String(),
		KeyURI: keyURI, Profile: profile, DER: c.Raw, NotBefore: c.NotBefore, NotAfter: c.NotAfter})
}

func serialHex(n *big.Int) string { return fmt.Sprintf("%x", n) }

func publicEqual(a, b crypto.PublicKey) bool {
	e, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && e.Equal(b)
}

// Certificate returns a certificate of the hierarchy by name (root, person-ca, seal-ca, tsa, ...).
func (a *Authority) Certificate(name string) (*x509.Certificate, bool) {
	iss, ok := a.certs[name]
	if !ok {
		return nil, false
	}
	return iss.Cert, true
}

// TSLSigner returns the certificate and signer of the platform's trusted list.
func (a *Authority) TSLSigner() *Issuer { return a.certs[NameTSLSigner] }

// PurposeTSLSigner is the purpose of the trusted list's key: the scheme operator's seal.
const PurposeTSLSigner = hsm.Purpose("seal:trusted-list")

// TSA returns the timestamping unit's certificate and signer.
func (a *Authority) TSA() *Issuer { return a.certs[NameTSA] }

// IssueLeaf issues a person's or an organization's certificate under the CA its profile needs.
func (a *Authority) IssueLeaf(ctx context.Context, req Request, keyURI string) (*x509.Certificate, error) {
	ca := NamePersonCA
	if req.Profile == LegalPerson || req.Profile == PIDIssuer || req.Profile == Verifier {
		ca = NameSealCA
	} else if req.Profile != NaturalPerson {
		return nil, fmt.Errorf("pki: leaf profile %q is not issued on request", req.Profile)
	}
	c, err := Issue(req, a.certs[ca], nil, a.cfg.Policy, a.linter)
	if err != nil {
		return nil, err
	}
	return c, a.record(ctx, ca, string(req.Profile), keyURI, c)
}

// Revoke revokes a certificate of ca with an RFC 5280 reason code.
func (a *Authority) Revoke(ctx context.Context, ca string, serial *big.Int, reason int) error {
	if _, ok := a.certs[ca]; !ok || ca == NameRoot {
		return fmt.Errorf("%w: no issuing CA %q", store.ErrNotFound, ca)
	}
	return a.recs.Revoke(ctx, ca, serialHex(serial), a.now(), reason)
}

// CRL makes a new CRL of ca, numbered after the last one, valid for a day.
func (a *Authority) CRL(ctx context.Context, ca string) ([]byte, error) {
	iss, ok := a.certs[ca]
	if !ok || (ca != NameRoot && ca != NamePersonCA && ca != NameSealCA) {
		return nil, fmt.Errorf("%w: no CA %q", store.ErrNotFound, ca)
	}
	revoked, err := a.recs.RevokedCertificates(ctx, ca)
	if err != nil {
		return nil, err
	}
	now := a.now()
	a.mu.Lock()
	c, ok := a.crls[ca]
	a.mu.Unlock()
	if ok && c.revoked == len(revoked) && now.Before(c.until) {
		return c.der, nil
	}
	n, err := a.recs.NextCRLNumber(ctx, ca)
	if err != nil {
		return nil, err
	}
	entries := make([]x509.RevocationListEntry, 0, len(revoked))
	for _, r := range revoked {
		sn, ok := new(big.Int).SetString(r.Serial, 16)
		if !ok {
			return nil, fmt.Errorf("pki: bad serial %q in the store", r.Serial)
		}
		entries = append(entries, x509.RevocationListEntry{SerialNumber: sn, RevocationTime: r.RevokedAt, ReasonCode: r.RevocationReason})
	}
	der, err := x509.CreateRevocationList(nil, &x509.RevocationList{
		Number: big.NewInt(n), ThisUpdate: now, NextUpdate: now.Add(24 * time.Hour), RevokedCertificateEntries: entries,
	}, iss.Cert, iss.Signer)
	if err != nil {
		return nil, err
	}
	// Revocations only accumulate, so their count tells whether this CRL is still current;
	// it is remade at half its validity in any case.
	a.mu.Lock()
	a.crls[ca] = cachedCRL{revoked: len(revoked), der: der, until: now.Add(12 * time.Hour)}
	a.mu.Unlock()
	return der, nil
}

// Names lists the hierarchy's certificate names.
func (a *Authority) Names() []string {
	names := make([]string, 0, len(a.certs))
	for n := range a.certs {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// issuerOf names the CA of the hierarchy that issued c (by its authority key identifier), ""
// when none did.
func (a *Authority) issuerOf(c *x509.Certificate) string {
	for _, name := range []string{NameRoot, NamePersonCA, NameSealCA} {
		iss := a.certs[name]
		if iss != nil && bytes.Equal(iss.Cert.SubjectKeyId, c.AuthorityKeyId) && bytes.Equal(iss.Cert.RawSubject, c.RawIssuer) {
			return name
		}
	}
	return ""
}

// OCSP returns a DER OCSP response on c, signed by the delegated responder of the issuing CA
// that issued it: what a signature at level LT embeds. c must be issued by person-ca or seal-ca.
func (a *Authority) OCSP(ctx context.Context, c *x509.Certificate) ([]byte, error) {
	ca := a.issuerOf(c)
	if ca != NamePersonCA && ca != NameSealCA {
		return nil, fmt.Errorf("%w: no OCSP responder for certificates issued by %s", store.ErrNotFound, c.Issuer)
	}
	return a.respond(ctx, ca, c.SerialNumber, crypto.SHA256, nil)
}

// CRLOf returns the current DER CRL of the CA of the hierarchy that issued c.
func (a *Authority) CRLOf(ctx context.Context, c *x509.Certificate) ([]byte, error) {
	ca := a.issuerOf(c)
	if ca == "" {
		return nil, fmt.Errorf("%w: no CA of this hierarchy issued %s", store.ErrNotFound, c.Subject)
	}
	return a.CRL(ctx, ca)
}

// Chain returns the certificates above c up to the root, the issuer first.
func (a *Authority) Chain(c *x509.Certificate) []*x509.Certificate {
	var chain []*x509.Certificate
	for range 3 {
		ca := a.issuerOf(c)
		if ca == "" {
			break
		}
		c = a.certs[ca].Cert
		chain = append(chain, c)
		if ca == NameRoot {
			break
		}
	}
	return chain
}
