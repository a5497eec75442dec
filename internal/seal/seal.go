// Package seal is the sealing service for institutions. Onboarding gives an organization a seal
// key in the key layer (purpose seal:<org>, so no other service can use it) and a legal-person
// seal certificate from the platform's CA. Sealing signs a document with the key of the
// organization the caller acts for, and only that one: the caller is an OAuth 2 client bound to
// the organization (store.Client.OrganizationID) with a token carrying the seal scope.
//
// A seal is made only from a certificate that is valid and not revoked at that moment (the
// store is asked at every seal, so a revocation by any replica stops sealing at once). Every
// seal is a Transaction in the durable store, with the digest of the input; a refused input
// leaves neither a transaction nor a signature.
package seal

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"log/slog"
	"regexp"
	"sync"
	"time"

	"github.com/vula-eid/vula/hsm"
	"github.com/vula-eid/vula/internal/certs"
	"github.com/vula-eid/vula/internal/problem"
	"github.com/vula-eid/vula/internal/signing"
	"github.com/vula-eid/vula/internal/store"
)

// Records is what the service keeps in the durable store.
type Records interface {
	store.Organizations
	store.KeyRecords
	store.Certificates
	store.Transactions
	store.Clients
}

// PKI is the part of the platform's CA the service uses.
type PKI interface {
	IssueLeaf(ctx context.Context, req certs.Request, keyURI string) (*x509.Certificate, error)
	Chain(c *x509.Certificate) []*x509.Certificate
	signing.Revocation
}

var _ PKI = (*certs.Authority)(nil)

// Config is the service's setup.
type Config struct {
	Country   string        // of the seal certificates' subjects (pki.country)
	Algorithm hsm.Algorithm // of new seal keys; EC-P256 when empty
	Years     int           // validity of seal certificates; 3 when 0
	MaxSize   int64         // documents above it are refused; 256 MiB when 0
}

// Service onboards organizations and seals their documents.
type Service struct {
	cfg  Config
	keys hsm.Manager // instrumented: every seal is in the audit log
	pki  PKI
	recs Records
	tsa  signing.Timestamper
	log  *slog.Logger
	now  func() time.Time

	mu      sync.Mutex
	sealers map[string]sealer   // by organization id
	orgs    map[string]boundOrg // by client id, see OrganizationOf
}

type sealer struct {
	signing.Signer
	keyURI string
	serial string // the certificate's, as the store keys it
}

// New makes the service.
func New(cfg Config, keys hsm.Manager, pki PKI, recs Records, tsa signing.Timestamper, log *slog.Logger, now func() time.Time) *Service {
	if cfg.Algorithm == "" {
		cfg.Algorithm = hsm.ECP256
	}
	if cfg.Years <= 0 {
		cfg.Years = 3
	}
	if cfg.MaxSize <= 0 {
		cfg.MaxSize = 256 << 20
	}
	return &Service{cfg: cfg, keys: keys, pki: pki, recs: recs, tsa: tsa, log: log, now: now, sealers: map[string]sealer{}, orgs: map[string]boundOrg{}}
}

// Errors of the service, each of a problem type.
var (
	ErrInvalidOrg = problem.New(problem.InvalidRequest, "seal: invalid organization")
	// ErrNoSeal: the organization has no usable seal (no key, or its certificate is revoked or
	// expired).
	ErrNoSeal = problem.New(problem.NoSeal, "seal: no usable seal")
	// ErrNotBound: the caller acts for no organization.
	ErrNotBound = problem.New(problem.Forbidden, "seal: the client is not bound to an organization")
)

var (
	orgIDRe    = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)
	registryRe = regexp.MustCompile(`^[A-Za-z0-9-]{1,32}$`)
)

// Organization is what onboarding asks for.
type Organization struct {
	ID             string // short name, [a-z0-9._-], the key purpose is seal:<ID>
	Name           string // legal name, in the certificate
	RegistryNumber string // national trade register number: organizationIdentifier NTR<country>-<number>
}

// Onboarded is an organization ready to seal.
type Onboarded struct {
	Organization store.Organization
	KeyURI       string
	Certificate  *x509.Certificate
}

// Onboard creates the organization, its seal key and its seal certificate. If a step fails the
// organization is removed again and the key retired, so that the same request can be retried.
func (s *Service) Onboard(ctx context.Context, o Organization) (Onboarded, error) {
	if !orgIDRe.MatchString(o.ID) {
		return Onboarded{}, fmt.Errorf("%w: id %q (want 1-64 of a-z 0-9 . _ -)", ErrInvalidOrg, o.ID)
	}
	if o.Name == "" || len(o.Name) > 64 {
		return Onboarded{}, fmt.Errorf("%w: name must be 1-64 characters", ErrInvalidOrg)
	}
	if !registryRe.MatchString(o.RegistryNumber) {
		return Onboarded{}, fmt.Errorf("%w: registry number %q (want 1-32 of A-Z a-z 0-9 -)", ErrInvalidOrg, o.RegistryNumber)
	}
	now := s.now()
	rec := store.Organization{ID: o.ID, Name: o.Name, Identifier: "NTR" + s.cfg.Country + "-" + o.RegistryNumber, Created: now}
	if err := s.recs.CreateOrganization(ctx, rec); err != nil {
		return Onboarded{}, err
	}
	out, err := s.newSeal(ctx, rec, o.RegistryNumber)
	if err != nil {
		if derr := s.recs.DeleteOrganization(context.WithoutCancel(ctx), o.ID); derr != nil {
			s.log.ErrorContext(ctx, "onboarding: removing the organization again", "org", o.ID, "err", derr)
		}
		return Onboarded{}, err
	}
	return out, nil
}

// newSeal makes a seal key and certificate for rec.
func (s *Service) newSeal(ctx context.Context, rec store.Organization, registry string) (Onboarded, error) {
	now := s.now()
	purpose := hsm.SealPurpose(rec.ID)
	k, err := s.keys.CreateKey(ctx, hsm.KeySpec{Label: fmt.Sprintf("seal-%s-%s", rec.ID, now.UTC().Format("20060102-150405")),
		Algorithm: s.cfg.Algorithm, Purpose: purpose, Owner: rec.ID})
	if err != nil {
		return Onboarded{}, err
	}
	pub, err := s.keys.PublicKey(ctx, k.URI)
	if err == nil {
		err = s.recs.PutKeyRecord(ctx, store.KeyRecord{URI: k.URI, Purpose: string(purpose), Owner: rec.ID,
			Algorithm: string(s.cfg.Algorithm), State: string(hsm.StateActive), Created: k.Created})
	}
	var cert *x509.Certificate
	if err == nil {
		cert, err = s.pki.IssueLeaf(ctx, certs.Request{Profile: certs.LegalPerson, Subject: certs.LegalPersonName(rec.Name, registry, s.cfg.Country),
			PublicKey: pub, NotBefore: now.Add(-time.Minute), NotAfter: now.AddDate(s.cfg.Years, 0, 0)}, k.URI)
	}
	if err != nil {
		if rerr := s.keys.Retire(context.WithoutCancel(ctx), k.URI); rerr != nil {
			s.log.ErrorContext(ctx, "onboarding: retiring the new key", "key", k.URI, "err", rerr)
		}
		return Onboarded{}, err
	}
	return Onboarded{Organization: rec, KeyURI: k.URI, Certificate: cert}, nil
}

// orgTTL is how long OrganizationOf uses a client's organization without reading the client
// again: reading it at every seal was 6 % of a seal's server CPU. A client rebound or removed
// on any replica seals for its old organization at most this long, the same lag as the
// identity provider's own client cache, whose bearer check admits the client's tokens.
const orgTTL = 5 * time.Second

type boundOrg struct {
	org     string
	expires time.Time
}

// OrganizationOf returns the organization a client acts for.
func (s *Service) OrganizationOf(ctx context.Context, clientID string) (string, error) {
	now := s.now()
	s.mu.Lock()
	b, ok := s.orgs[clientID]
	s.mu.Unlock()
	if ok && now.Before(b.expires) {
		return b.org, nil
	}
	c, err := s.recs.Client(ctx, clientID)
	if err != nil {
		return "", err
	}
	if c.OrganizationID == "" {
		return "", fmt.Errorf("%w: client %s", ErrNotBound, clientID)
	}
	// Only clients that are bound are kept: at most one entry a registered client.
	s.mu.Lock()
	s.orgs[clientID] = boundOrg{org: c.OrganizationID, expires: now.Add(orgTTL)}
	s.mu.Unlock()
	return c.OrganizationID, nil
}

// Sealer returns the organization's seal: its active key and the newest valid, unrevoked
// certificate of that key, with the chain. The certificate's status is read from the store at
// every call.
func (s *Service) Sealer(ctx context.Context, org string) (signing.Signer, error) {
	c, err := s.sealer(ctx, org)
	return c.Signer, err
}

// sealer is Sealer with the key's URI.
func (s *Service) sealer(ctx context.Context, org string) (sealer, error) {
	s.mu.Lock()
	c, ok := s.sealers[org]
	s.mu.Unlock()
	now := s.now()
	if ok {
		revoked, err := s.recs.CertificateRevoked(ctx, certs.NameSealCA, c.serial)
		if err != nil {
			return sealer{}, err
		}
		if !revoked && now.Before(c.Cert.NotAfter) {
			return c, nil
		}
	}
	c, err := s.findSealer(ctx, org, now)
	if err != nil {
		return sealer{}, err
	}
	s.mu.Lock()
	s.sealers[org] = c
	s.mu.Unlock()
	return c, nil
}

func (s *Service) findSealer(ctx context.Context, org string, now time.Time) (sealer, error) {
	purpose := hsm.SealPurpose(org)
	keys, err := s.recs.KeyRecords(ctx)
	if err != nil {
		return sealer{}, err
	}
	issued, err := s.recs.CertificatesByCA(ctx, certs.NameSealCA)
	if err != nil {
		return sealer{}, err
	}
	var best sealer
	for _, k := range keys {
		if k.Purpose != string(purpose) || k.State != string(hsm.StateActive) {
			continue
		}
		for _, rec := range issued {
			if rec.KeyURI != k.URI || rec.Revoked || !now.Before(rec.NotAfter) || now.Before(rec.NotBefore) {
				continue
			}
			if best.Cert != nil && !rec.NotBefore.After(best.Cert.NotBefore) {
				continue
			}
			cert, err := x509.ParseCertificate(rec.DER)
			if err != nil {
				return sealer{}, fmt.Errorf("seal: certificate %s in the store: %w", rec.Serial, err)
			}
			best = sealer{Signer: signing.Signer{Cert: cert, Chain: s.pki.Chain(cert)}, keyURI: k.URI, serial: rec.Serial}
		}
	}
	if best.Cert == nil {
		return sealer{}, fmt.Errorf("%w: organization %s has no active seal key with a valid certificate", ErrNoSeal, org)
	}
	key, err := s.keys.Signer(ctx, best.keyURI, purpose)
	if err != nil {
		return sealer{}, err
	}
	best.Key = key
	if err := best.Validate(); err != nil {
		return sealer{}, fmt.Errorf("seal: organization %s: %w", org, err)
	}
	return best, nil
}

// recordKind keeps a completed operation of kind (seal, renew) as a transaction.
func (s *Service) recordKind(ctx context.Context, kind, actor, org string, digests [][]byte, format, level string) (string, error) {
	t := s.transaction(kind, actor, org, digests, format, level)
	return t.ID, s.recs.CreateTransaction(ctx, t)
}

// transaction is the record of a completed operation of kind, with a new id.
func (s *Service) transaction(kind, actor, org string, digests [][]byte, format, level string) store.Transaction {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (it panics where it would)
	now := s.now()
	return store.Transaction{ID: hex.EncodeToString(b), Kind: kind, Actor: actor, OrganizationID: org,
		Digests: digests, Format: format, Level: level, State: "completed", Created: now, Completed: now}
}
