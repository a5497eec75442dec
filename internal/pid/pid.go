// Package pid is the platform's wallet issuer: it issues a citizen's person identification data
// (PID, the EU PID rulebook's attributes) to a wallet as an SD-JWT VC (dc+sd-jwt, every claim
// selectively disclosable, bound to the wallet's key by cnf.jwk) over OpenID for Verifiable
// Credential Issuance 1.0, and publishes the credentials' revocation status as signed Token Status
// Lists (JWT and CWT).
//
// The contract:
//   - credentials are signed only by the issuer key of the key layer (purpose pid) with a valid,
//     unrevoked pid-issuer certificate under seal-ca, whose chain is in every credential (x5c);
//   - every issuance and revocation is an audit record naming who, which key, which credential
//     and which claims — never the claims' values;
//   - each credential holds its own status-list slot, drawn at random (so that slots say nothing
//     about issuance order), and a revoked slot is set in the next status list served;
//   - a proof of possession is accepted once, only with a nonce this issuer handed out and that
//     has not expired.
//
// The service imports no other service: persons, keys, certificates and the audit log come
// through the small interfaces below.
package pid

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"sort"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v3"

	"github.com/vula-eid/vula/hsm"
	"github.com/vula-eid/vula/internal/audit"
	"github.com/vula-eid/vula/internal/auth"
	"github.com/vula-eid/vula/internal/certs"
	"github.com/vula-eid/vula/internal/rawsig"
	"github.com/vula-eid/vula/internal/store"
)

// Formats and the credential configurations of the issuer's metadata.
const (
	FormatSDJWT = "dc+sd-jwt"
	// VCT is the SD-JWT VC type of the EU PID (PID rulebook, SD-JWT VC encoding).
	VCT = "urn:eudi:pid:1"
	// ConfigSDJWT is the credential configuration id of the PID as an SD-JWT VC.
	ConfigSDJWT = "eu.europa.ec.eudi.pid.1.dc+sd-jwt"
	// Scope asks for the PID in an authorization request.
	Scope = auth.ScopePID
)

// Records is what the service keeps in the durable store.
type Records interface {
	store.PIDs
	store.KeyRecords
	store.Certificates
}

// Persons reads the citizens whose data is issued.
type Persons interface {
	Person(ctx context.Context, subjectID string) (store.Person, error)
	PersonByPersonalNumber(ctx context.Context, number string) (store.Person, error)
}

// PKI is the part of the platform's CA the service uses.
type PKI interface {
	IssueLeaf(ctx context.Context, req certs.Request, keyURI string) (*x509.Certificate, error)
	Chain(c *x509.Certificate) []*x509.Certificate
}

// Auditor records issuances and revocations.
type Auditor interface {
	Append(ctx context.Context, ev audit.Event) (store.AuditRecord, error)
}

var (
	_ PKI     = (*certs.Authority)(nil)
	_ Auditor = (*audit.Log)(nil)
)

// Config is the issuer's setup.
type Config struct {
	// Issuer is the credential issuer identifier: Vula's public base URL, no trailing slash.
	Issuer string
	// Country is the issuing country and the citizens' nationality (ISO 3166-1 alpha-2).
	Country string
	// Authority is the issuing authority's name, in every credential.
	Authority string
	// Validity of a credential; 1 year when 0.
	Validity time.Duration
	// Algorithm of a new issuer key; EC-P256 when empty (HAIP: ES256).
	Algorithm hsm.Algorithm
	// BatchSize is the most credentials one request may ask for; 10 when 0.
	BatchSize int
	// ListSize is the number of entries of a status list; 1<<17 when 0.
	ListSize int
	// StatusTTL is how long a status list token may be cached; 5 minutes when 0.
	StatusTTL time.Duration
	// LoA is the least level of assurance a login must reach for a PID (auth.LoA*).
	LoA string
}

// Service issues PIDs and publishes their status.
type Service struct {
	cfg     Config
	keys    hsm.Manager // instrumented: every signature is in the audit log
	key     *certs.ServiceKey
	recs    Records
	persons Persons
	audit   Auditor
	eph     store.Ephemeral
	log     *slog.Logger
	now     func() time.Time

	mu     sync.Mutex
	signer *issuerKey
	list   int // the status list new slots are drawn from
	tokens map[tokenKey]cachedToken
}

// issuerKey is the signing key and its certificate chain (leaf first, root left out).
type issuerKey struct {
	uri    string
	signer crypto.Signer
	cert   *x509.Certificate
	x5c    []string // standard base64 DER, as JOSE's x5c wants
	chain  [][]byte // DER, as COSE's x5chain wants
}

// New makes the service. eph holds nonces, offers and access tokens.
func New(cfg Config, keys hsm.Manager, pki PKI, recs Records, persons Persons, au Auditor, eph store.Ephemeral,
	log *slog.Logger, now func() time.Time) *Service {
	if cfg.Validity <= 0 {
		cfg.Validity = 365 * 24 * time.Hour
	}
	if cfg.Algorithm == "" {
		cfg.Algorithm = hsm.ECP256
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 10
	}
	if cfg.ListSize <= 0 {
		cfg.ListSize = 1 << 17
	}
	if cfg.StatusTTL <= 0 {
		cfg.StatusTTL = 5 * time.Minute
	}
	if cfg.LoA == "" {
		cfg.LoA = auth.LoASubstantial
	}
	key := certs.NewServiceKey(certs.ServiceKeySpec{Purpose: hsm.PurposePID, Profile: certs.PIDIssuer, Algorithm: cfg.Algorithm,
		Subject: certs.LegalPersonName(cfg.Authority+" PID issuer", "PID", cfg.Country)}, keys, recs, pki, log, now)
	return &Service{cfg: cfg, keys: keys, key: key, recs: recs, persons: persons, audit: au, eph: eph, log: log, now: now,
		list: 1, tokens: map[tokenKey]cachedToken{}}
}

// Errors of the service; the edge maps them to OAuth and OpenID4VCI errors.
var (
	ErrNoIssuerKey = errors.New("pid: no usable issuer key")
	ErrNotEligible = errors.New("pid: the person cannot be issued a PID")
	ErrInvalidKey  = errors.New("pid: the holder key is not acceptable")
	ErrNoList      = errors.New("pid: no such status list")
)

// Provision makes sure the issuer has an active key with a valid certificate, making both when
// there is none. serve and the CLI call it before issuing.
func (s *Service) Provision(ctx context.Context) error {
	return noIssuerKey(s.key.Provision(ctx))
}

// noIssuerKey names the service's own error for a missing key.
func noIssuerKey(err error) error {
	if errors.Is(err, certs.ErrNoServiceKey) {
		return fmt.Errorf("%w: %w", ErrNoIssuerKey, err)
	}
	return err
}

// issuer returns the issuer key (certs.ServiceKey: its certificate's status is read from the
// store at every call, so a revoked issuer certificate stops issuance on every replica), with
// its chain encoded for JOSE and COSE once per certificate.
func (s *Service) issuer(ctx context.Context) (*issuerKey, error) {
	leaf, err := s.key.Current(ctx)
	if err != nil {
		return nil, noIssuerKey(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.signer != nil && s.signer.cert == leaf.Cert {
		return s.signer, nil
	}
	k := &issuerKey{uri: leaf.URI, signer: leaf.Signer, cert: leaf.Cert}
	for _, c := range leaf.Chain {
		k.x5c = append(k.x5c, base64.StdEncoding.EncodeToString(c.Raw))
		k.chain = append(k.chain, c.Raw)
	}
	s.signer = k
	return k, nil
}

// Certificate is the issuer's current certificate.
func (s *Service) Certificate(ctx context.Context) (*x509.Certificate, error) {
	k, err := s.issuer(ctx)
	if err != nil {
		return nil, err
	}
	return k.cert, nil
}

// claims are the PID rulebook's attributes of p, in their SD-JWT VC names.
func (s *Service) claims(p store.Person, issued, expires time.Time) (map[string]any, []string) {
	c := map[string]any{
		"family_name":                    p.FamilyName,
		"given_name":                     p.GivenName,
		"birthdate":                      p.BirthDate,
		"nationalities":                  []string{s.cfg.Country},
		"personal_administrative_number": p.PersonalNumber,
		"issuing_authority":              s.cfg.Authority,
		"issuing_country":                s.cfg.Country,
		"date_of_issuance":               issued.UTC().Format(time.DateOnly),
		"date_of_expiry":                 expires.UTC().Format(time.DateOnly),
	}
	if p.Email != "" {
		c["email"] = p.Email
	}
	if born, err := time.Parse(time.DateOnly, p.BirthDate); err == nil {
		age := ageAt(born, issued)
		c["age_in_years"] = age
		c["age_birth_year"] = born.Year()
		c["age_equal_or_over"] = map[string]any{"14": age >= 14, "16": age >= 16, "18": age >= 18, "21": age >= 21, "65": age >= 65}
	}
	names := make([]string, 0, len(c))
	for n := range c {
		names = append(names, n)
	}
	sort.Strings(names)
	return c, names
}

// ageAt is the age in whole years at t of someone born on born.
func ageAt(born, t time.Time) int {
	t = t.UTC()
	age := t.Year() - born.Year()
	if t.Month() < born.Month() || (t.Month() == born.Month() && t.Day() < born.Day()) {
		age--
	}
	return age
}

// Request asks for credentials for one person.
type Request struct {
	SubjectID string
	Actor     string // who asked: the wallet's client id, or the operator
	Format    string // FormatSDJWT or FormatMdoc
	Holders   []jose.JSONWebKey
	RequestID string
}

// Issue makes one credential per holder key, each with its own status slot, and records the
// issuance in the audit log.
func (s *Service) Issue(ctx context.Context, req Request) ([]string, error) {
	if len(req.Holders) == 0 || len(req.Holders) > s.cfg.BatchSize {
		return nil, fmt.Errorf("%w: %d holder keys (want 1 to %d)", ErrInvalidKey, len(req.Holders), s.cfg.BatchSize)
	}
	p, err := s.persons.Person(ctx, req.SubjectID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("%w: no such person", ErrNotEligible)
	}
	if err != nil {
		return nil, err
	}
	if p.Status == store.EIDSuspended || p.Status == store.EIDRevoked {
		return nil, fmt.Errorf("%w: the person's eID means is %s", ErrNotEligible, p.Status)
	}
	if p.Official || p.BirthDate == "" || p.FamilyName == "" || p.GivenName == "" || p.PersonalNumber == "" {
		return nil, fmt.Errorf("%w: the person record lacks the mandatory PID attributes", ErrNotEligible)
	}
	k, err := s.issuer(ctx)
	if err != nil {
		return nil, err
	}
	now := s.now()
	issued, expires := now.UTC().Truncate(time.Second), now.Add(s.cfg.Validity).UTC().Truncate(time.Second)
	if req.Format != FormatSDJWT && req.Format != FormatMdoc {
		return nil, fmt.Errorf("pid: format %q", req.Format)
	}
	claims, names := s.claims(p, issued, expires)
	if req.Format == FormatMdoc {
		names = names[:0]
		for _, e := range s.mdocElements(p, issued, expires) {
			names = append(names, e.ElementIdentifier)
		}
	}
	out := make([]string, 0, len(req.Holders))
	ids := make([]string, 0, len(req.Holders))
	for _, h := range req.Holders {
		if !h.Valid() || !h.IsPublic() {
			return nil, fmt.Errorf("%w: not a public JWK", ErrInvalidKey)
		}
		if req.Format == FormatMdoc {
			if _, err := coseKey(h); err != nil {
				return nil, err
			}
		}
		rec, err := s.slot(ctx, store.IssuedPID{SubjectID: p.SubjectID, Format: req.Format, KeyURI: k.uri, Issued: issued, Expires: expires})
		if err != nil {
			return nil, err
		}
		var cred string
		if req.Format == FormatMdoc {
			cred, err = s.mdoc(ctx, k, p, h, rec)
		} else {
			cred, err = s.sdJWT(ctx, k, claims, h, rec)
		}
		if err != nil {
			return nil, err
		}
		out = append(out, cred)
		ids = append(ids, rec.ID)
	}
	detail, _ := json.Marshal(map[string]any{"subject": p.SubjectID, "format": req.Format, "credentials": ids, "claims": names})
	sum := sha256.Sum256([]byte(fmt.Sprint(ids)))
	if _, err := s.audit.Append(ctx, audit.Event{Actor: req.Actor, Action: "pid.issue", Key: k.uri, Digest: sum[:],
		Result: "ok", RequestID: req.RequestID, Detail: detail}); err != nil {
		return nil, err
	}
	return out, nil
}

// slot stores the credential record at a random free index of the current status list,
// moving on to a new list once the current one is three quarters full (random draws stay quick).
func (s *Service) slot(ctx context.Context, rec store.IssuedPID) (store.IssuedPID, error) {
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return rec, err
	}
	rec.ID = hex.EncodeToString(id)
	s.mu.Lock()
	list := s.list
	s.mu.Unlock()
	for attempt := 0; attempt < 64; attempt++ {
		if attempt%16 == 0 {
			n, err := s.recs.CountPIDs(ctx, list)
			if err != nil {
				return rec, err
			}
			for n >= s.cfg.ListSize*3/4 {
				list++
				if n, err = s.recs.CountPIDs(ctx, list); err != nil {
					return rec, err
				}
			}
			s.mu.Lock()
			s.list = max(s.list, list)
			s.mu.Unlock()
		}
		idx, err := rand.Int(rand.Reader, big.NewInt(int64(s.cfg.ListSize)))
		if err != nil {
			return rec, err
		}
		rec.List, rec.Index = list, int(idx.Int64())
		err = s.recs.CreatePID(ctx, rec)
		if err == nil {
			return rec, nil
		}
		if !errors.Is(err, store.ErrConflict) {
			return rec, err
		}
	}
	return rec, fmt.Errorf("pid: no free status slot in list %d", list)
}

// sdJWT signs one SD-JWT VC for holder.
func (s *Service) sdJWT(ctx context.Context, k *issuerKey, claims map[string]any, holder jose.JSONWebKey, rec store.IssuedPID) (string, error) {
	body, ds, err := conceal(claims)
	if err != nil {
		return "", err
	}
	pub, err := json.Marshal(holder.Public())
	if err != nil {
		return "", err
	}
	body["iss"] = s.cfg.Issuer
	body["iat"] = rec.Issued.Unix()
	body["exp"] = rec.Expires.Unix()
	body["vct"] = VCT
	body["_sd_alg"] = "sha-256"
	body["cnf"] = map[string]any{"jwk": json.RawMessage(pub)}
	body["status"] = map[string]any{"status_list": map[string]any{"idx": rec.Index, "uri": s.statusURI(rec.List)}}
	jwt, err := rawsig.JWS(ctx, k.signer, map[string]any{"typ": FormatSDJWT, "x5c": k.x5c}, body)
	if err != nil {
		return "", err
	}
	return issuance(jwt, ds), nil
}

// Revoke revokes every credential of the person: on their request, an operator's, or because
// their eID means was revoked. The next status list served shows it.
func (s *Service) Revoke(ctx context.Context, subjectID, actor, reason string) (int, error) {
	n, err := s.recs.RevokePIDs(ctx, subjectID, s.now())
	if err != nil {
		return 0, err
	}
	detail, _ := json.Marshal(map[string]any{"subject": subjectID, "revoked": n, "reason": reason})
	if _, err := s.audit.Append(ctx, audit.Event{Actor: actor, Action: "pid.revoke", Result: "ok", Detail: detail}); err != nil {
		return n, err
	}
	return n, nil
}
