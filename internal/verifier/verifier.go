// Package verifier is the platform's OpenID for Verifiable Presentations 1.0 verifier for
// relying parties (with the HAIP 1.0 choices): a relying party asks, with a DCQL query, for
// claims of a credential; Vula shows the wallet a signed request (JAR, x509_hash client id under
// Vula's PKI), receives the wallet's response at its response URI (direct_post, or
// direct_post.jwt encrypted to a key of the transaction), checks every presentation and keeps
// the result for the relying party to fetch.
//
// The contract:
//   - requests are signed only by the verifier key of the key layer (purpose verifier) with a
//     valid, unrevoked verifier certificate under seal-ca, whose chain is in every request;
//   - a transaction takes one response: the first one that reaches it decides the result, and
//     every later one is refused; its nonce is its own, so a presentation made for another
//     transaction or another verifier is refused;
//   - a presentation is accepted only when the issuer's signature chains to a trust anchor
//     (under Config.PIDIssuerCAs, Vula's own, only the PID issuer's certificate is trusted),
//     the disclosures match the issuer's digests, the key binding is by the credential's key,
//     for this verifier, this nonce and recent, the credential is within its validity and its
//     status list says valid; the relying party is given exactly the claims it asked for;
//   - transactions and results live in the ephemeral store (any replica serves any step) and
//     expire; only the client that made a transaction reads its result;
//   - the audit log records each transaction made and each response accepted or refused, with
//     the names of the claims, never their values.
//
// The service imports no other service: keys, certificates, status lists and the audit log
// come through the small interfaces below.
package verifier

import (
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/vula-eid/vula/hsm"
	"github.com/vula-eid/vula/internal/audit"
	"github.com/vula-eid/vula/internal/certs"
	"github.com/vula-eid/vula/internal/store"
)

// Records is what the service reads from the durable store: its key and certificate.
type Records interface {
	store.KeyRecords
	store.Certificates
}

// PKI is the part of the platform's CA the service uses.
type PKI interface {
	IssueLeaf(ctx context.Context, req certs.Request, keyURI string) (*x509.Certificate, error)
	Chain(c *x509.Certificate) []*x509.Certificate
}

// Auditor records transactions and their results.
type Auditor interface {
	Append(ctx context.Context, ev audit.Event) (store.AuditRecord, error)
}

// StatusLists fetches status list tokens (IETF Token Status List) by their URI.
type StatusLists interface {
	// StatusList returns the token published at uri, as a JWT. It MUST NOT wait longer than ctx
	// allows, and MUST bound what it reads.
	StatusList(ctx context.Context, uri string) ([]byte, error)
}

var (
	_ PKI         = (*certs.Authority)(nil)
	_ Auditor     = (*audit.Log)(nil)
	_ StatusLists = HTTPStatusLists{}
)

// Config is the verifier's setup.
type Config struct {
	// BaseURL is Vula's public base URL, no trailing slash: request and response URIs are under it.
	BaseURL string
	// Organization and Country name the verifier in its certificate.
	Organization string
	Country      string
	// Algorithm of a new verifier key; EC-P256 when empty (HAIP: ES256).
	Algorithm hsm.Algorithm
	// TTL is how long a transaction waits for the wallet; 10 minutes when 0.
	TTL time.Duration
	// ResultTTL is how long a result is kept once it came; 10 minutes when 0.
	ResultTTL time.Duration
	// Freshness is how old (or how far ahead) a key binding's iat may be; 5 minutes when 0.
	Freshness time.Duration
	// PIDIssuerCAs are the CAs of Vula's own PID issuer. Under them only a certificate of the
	// PID issuer's profile (certs.IsPIDIssuer) may sign credentials and status lists, not every
	// certificate they issue: the organizations' seals, the TSA's, this verifier's own.
	PIDIssuerCAs []*x509.Certificate
	// Anchors are further trust anchors (other issuers' CAs): any certificate for digital
	// signatures under them may sign credentials and status lists.
	Anchors []*x509.Certificate
}

// Service verifies presentations for relying parties.
type Service struct {
	cfg     Config
	keys    hsm.Manager // instrumented: every signature is in the audit log
	pki     PKI
	reqKey  *certs.ServiceKey
	status  StatusLists
	audit   Auditor
	eph     store.Ephemeral
	log     *slog.Logger
	now     func() time.Time
	anchors *x509.CertPool // PIDIssuerCAs and Anchors: the chains mdoc.Verify accepts
	own     *x509.CertPool // PIDIssuerCAs
	outside *x509.CertPool // Anchors

	mu     sync.Mutex
	signer *verifierKey
	lists  map[[32]byte]*statusList // verified status lists, by the token's digest
}

// verifierKey is the request signing key and its certificate chain (leaf first, root left out).
type verifierKey struct {
	uri      string
	signer   crypto.Signer
	cert     *x509.Certificate
	x5c      []string // standard base64 DER, as JOSE's x5c wants
	clientID string   // x509_hash:<base64url SHA-256 of the leaf>
}

// New makes the service.
func New(cfg Config, keys hsm.Manager, pki PKI, recs Records, status StatusLists, au Auditor, eph store.Ephemeral,
	log *slog.Logger, now func() time.Time) *Service {
	if cfg.Algorithm == "" {
		cfg.Algorithm = hsm.ECP256
	}
	if cfg.TTL <= 0 {
		cfg.TTL = 10 * time.Minute
	}
	if cfg.ResultTTL <= 0 {
		cfg.ResultTTL = 10 * time.Minute
	}
	if cfg.Freshness <= 0 {
		cfg.Freshness = 5 * time.Minute
	}
	pool, own, outside := x509.NewCertPool(), x509.NewCertPool(), x509.NewCertPool()
	for _, c := range cfg.PIDIssuerCAs {
		pool.AddCert(c)
		own.AddCert(c)
	}
	for _, c := range cfg.Anchors {
		pool.AddCert(c)
		outside.AddCert(c)
	}
	reqKey := certs.NewServiceKey(certs.ServiceKeySpec{Purpose: hsm.PurposeVerifier, Profile: certs.Verifier, Algorithm: cfg.Algorithm,
		Subject: certs.LegalPersonName(cfg.Organization+" verifier", "VERIFIER", cfg.Country)}, keys, recs, pki, log, now)
	return &Service{cfg: cfg, keys: keys, pki: pki, reqKey: reqKey, status: status, audit: au, eph: eph, log: log, now: now,
		anchors: pool, own: own, outside: outside, lists: map[[32]byte]*statusList{}}
}

// ErrNoVerifierKey: there is no active verifier key with a valid certificate.
var ErrNoVerifierKey = errors.New("verifier: no usable verifier key")

// Provision makes sure the verifier has an active key with a valid certificate, making both
// when there is none. serve calls it before the routes answer.
func (s *Service) Provision(ctx context.Context) error {
	return noVerifierKey(s.reqKey.Provision(ctx))
}

// noVerifierKey names the service's own error for a missing key.
func noVerifierKey(err error) error {
	if errors.Is(err, certs.ErrNoServiceKey) {
		return fmt.Errorf("%w: %w", ErrNoVerifierKey, err)
	}
	return err
}

// key returns the verifier key (certs.ServiceKey: its certificate's status is read from the
// store at every call, so a revoked verifier certificate stops new requests on every replica),
// with its x5c and client_id made once per certificate.
func (s *Service) key(ctx context.Context) (*verifierKey, error) {
	leaf, err := s.reqKey.Current(ctx)
	if err != nil {
		return nil, noVerifierKey(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.signer != nil && s.signer.cert == leaf.Cert {
		return s.signer, nil
	}
	sum := sha256.Sum256(leaf.Cert.Raw)
	k := &verifierKey{uri: leaf.URI, signer: leaf.Signer, cert: leaf.Cert, clientID: "x509_hash:" + b64.EncodeToString(sum[:])}
	for _, c := range leaf.Chain {
		k.x5c = append(k.x5c, base64.StdEncoding.EncodeToString(c.Raw))
	}
	s.signer = k
	return k, nil
}

// ClientID is the verifier's client identifier as wallets see it.
func (s *Service) ClientID(ctx context.Context) (string, error) {
	k, err := s.key(ctx)
	if err != nil {
		return "", err
	}
	return k.clientID, nil
}

// HTTPStatusLists fetches status lists of other issuers over HTTP(S), with a short timeout and
// a bound on the size read.
type HTTPStatusLists struct {
	Client *http.Client
	// MaxSize bounds a token; 1 MiB when 0.
	MaxSize int64
}
