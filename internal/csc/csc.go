// Package csc is the officials' remote signing service and its Cloud Signature Consortium API v2
// edge (/csc/v2/...). An official's credential is a key in the key layer with purpose
// sign:<subject id>, so that no other service can use it, and a natural-person signature
// certificate under person-ca.
//
// Sole control (SCAL2): a key signs only hashes the official authorized with both factors
// (password as the CSC "PIN", TOTP code as the "OTP") for that very request. The authorization's
// signature activation data (SAD) is a random opaque token; what it allows is kept in the
// ephemeral store (so any replica can redeem it) under the token's SHA-256: the credential, the
// official, the exact list of hashes, the hash algorithm and an expiry. Each hash is signed at
// most once; redeeming is a compare-and-swap on the stored record, so two replicas cannot both
// use one hash, and the record is consumed when every hash is signed. A credential whose
// certificate is revoked or expired authorizes and signs nothing: the durable store is asked at
// every authorization and every signature.
//
// Credential authorization comes in two modes: explicit (credentials/authorize with PIN and OTP
// gives a SAD) and oauth2code (oauth.go): the official's fresh two-factor login at the identity
// provider for scope credential or authorization_details of type credential gives an access
// token that, sent as the Authorization header of signHash or signDoc, stands in for a SAD over
// exactly its digests and is redeemed the same way. A third way, for Vula's own signing portal,
// is AuthorizeLogin: the official's session login (LoA substantial or higher with a one-time
// code, at most Config.LoginMaxAge old: 15 minutes by default, an hour at most) stands for the
// knowledge factor and one fresh TOTP code is the second, for exactly the listed hashes; the
// checks, SAD and audit event are Authorize's.
//
// What is signed: SignHash signs the authorized hashes themselves. SignDoc signs documents
// through the signing engine (PAdES, XAdES, CAdES; B-B to B-LTA) and
// SignDigests makes detached CAdES over digests; for them the SAD lists each document's digest
// (DocumentDigest: the authorized hash algorithm over the whole document), every digest is
// spent before anything is signed, and the key makes exactly one signature per document
// (through the audited key layer, its record naming the SAD). ExtendTransaction trades a live
// SAD for a new one over what is left, with a fresh expiry but never past Config.SADLimit (30
// minutes) after the authorization; the old SAD is spent. A service token (scope service) must
// come from a login at LoA substantial or higher. Renew gives a credential's key a new
// certificate; a revoked credential is not renewed.
//
// Every authorization (granted or refused) is an audit event (action csc.authorize) with its
// hashes and how it was given; every extension is one (csc.extend); every signature is the key
// layer's audit record, whose detail names the authorization's audit sequence number and SAD
// id.
package csc

import (
	"bytes"
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
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/vula-eid/vula/hsm"
	"github.com/vula-eid/vula/internal/audit"
	"github.com/vula-eid/vula/internal/auth"
	"github.com/vula-eid/vula/internal/certs"
	"github.com/vula-eid/vula/internal/signing"
	"github.com/vula-eid/vula/internal/store"
)

// Records is what the service reads and writes in the durable store.
type Records interface {
	store.Persons
	store.KeyRecords
	store.Certificates
	store.Settings // the level each credential's authorization requires (level.go)
}

// PKI is the part of the platform's CA the service uses.
type PKI interface {
	IssueLeaf(ctx context.Context, req certs.Request, keyURI string) (*x509.Certificate, error)
	Chain(c *x509.Certificate) []*x509.Certificate
	signing.Revocation // for signDoc's LT levels and validation info
}

var _ PKI = (*certs.Authority)(nil)

// Factors checks an official's two factors, with the identity provider's brute-force limits
// (the provider's accounts, given by the composition root).
type Factors = auth.Factors

// Auditor appends a security event to the audit log.
type Auditor interface {
	Append(ctx context.Context, ev audit.Event) (store.AuditRecord, error)
}

var _ Auditor = (*audit.Log)(nil)

// Config is the service's setup.
type Config struct {
	Country   string        // of the certificates' subjects (pki.country)
	Algorithm hsm.Algorithm // of new signing keys; EC-P256 when empty
	Years     int           // validity of signature certificates; 2 when 0
	// SADTTL is how long an authorization may be redeemed; 5 minutes when 0, and never more.
	SADTTL time.Duration
	// SADLimit bounds how long credentials/extendTransaction can keep an authorization alive,
	// counted from the authorization: 30 minutes when 0, and never more.
	SADLimit time.Duration
	// MaxSignatures bounds numSignatures of one authorization; 100 when 0.
	MaxSignatures int
	// LoginMaxAge is how long ago the session login AuthorizeLogin accepts may have been:
	// DefaultLoginMaxAge when 0, and never more than MaxLoginMaxAge.
	LoginMaxAge time.Duration
	// Timestamper gives signDoc its signature timestamps (the platform's TSA, in process); nil:
	// signDoc makes B-B only.
	Timestamper signing.Timestamper
}

// Service enrols officials and signs for them under sole control.
type Service struct {
	CredentialRequests // how the provider reads a credential authorization request
	cfg                Config
	keys               hsm.Manager // instrumented: every signature is in the audit log
	pki                PKI
	recs               Records
	eph                store.Ephemeral
	factors            Factors
	audit              Auditor // nil in the CLI, which authorizes nothing
	log                *slog.Logger
	now                func() time.Time
}

// New makes the service.
func New(cfg Config, keys hsm.Manager, pki PKI, recs Records, eph store.Ephemeral, factors Factors, au Auditor, log *slog.Logger, now func() time.Time) *Service {
	if cfg.Algorithm == "" {
		cfg.Algorithm = hsm.ECP256
	}
	if cfg.Years <= 0 {
		cfg.Years = 2
	}
	if cfg.SADTTL <= 0 || cfg.SADTTL > 5*time.Minute {
		cfg.SADTTL = 5 * time.Minute
	}
	if cfg.SADLimit <= 0 || cfg.SADLimit > 30*time.Minute {
		cfg.SADLimit = 30 * time.Minute
	}
	cfg.SADLimit = max(cfg.SADLimit, cfg.SADTTL)
	if cfg.MaxSignatures <= 0 {
		cfg.MaxSignatures = 100
	}
	if cfg.LoginMaxAge <= 0 {
		cfg.LoginMaxAge = DefaultLoginMaxAge
	}
	cfg.LoginMaxAge = min(cfg.LoginMaxAge, MaxLoginMaxAge)
	return &Service{cfg: cfg, keys: keys, pki: pki, recs: recs, eph: eph, factors: factors, audit: au, log: log, now: now}
}

// ErrNotOfficial: only a person marked official may hold a signing key.
var ErrNotOfficial = errors.New("csc: the person is not an official")

// Credential is one signing credential of an official.
type Credential struct {
	ID      string // the certificate's serial, lower-case hex (credentialID)
	Subject string // the official's subject id
	KeyURI  string
	Cert    *x509.Certificate
	Chain   []*x509.Certificate // issuer first, root last
	Revoked bool
}

// Valid reports whether the credential may sign at t.
func (c Credential) Valid(t time.Time) bool {
	return !c.Revoked && !t.Before(c.Cert.NotBefore) && t.Before(c.Cert.NotAfter)
}

// Enrol gives the official a new signing key (purpose sign:<subject id>) and a natural-person
// signature certificate with their names and personal number. If the certificate cannot be
// issued the key is retired again.
func (s *Service) Enrol(ctx context.Context, p store.Person) (Credential, error) {
	if !p.Official {
		return Credential{}, fmt.Errorf("%w: %s (vula persons create --official)", ErrNotOfficial, p.PersonalNumber)
	}
	if p.GivenName == "" || p.FamilyName == "" {
		return Credential{}, fmt.Errorf("%w: %s has no given and family name for the certificate", ErrNotOfficial, p.PersonalNumber)
	}
	now := s.now()
	purpose := hsm.SignPurpose(p.SubjectID)
	k, err := s.keys.CreateKey(ctx, hsm.KeySpec{Label: fmt.Sprintf("sign-%s-%s", p.SubjectID[:min(16, len(p.SubjectID))], now.UTC().Format("20060102-150405.000")),
		Algorithm: s.cfg.Algorithm, Purpose: purpose, Owner: p.SubjectID})
	if err != nil {
		return Credential{}, err
	}
	pub, err := s.keys.PublicKey(ctx, k.URI)
	if err == nil {
		err = s.recs.PutKeyRecord(ctx, store.KeyRecord{URI: k.URI, Purpose: string(purpose), Owner: p.SubjectID,
			Algorithm: string(s.cfg.Algorithm), State: string(hsm.StateActive), Created: k.Created})
	}
	var cert *x509.Certificate
	if err == nil {
		cert, err = s.pki.IssueLeaf(ctx, certs.Request{Profile: certs.NaturalPerson,
			Subject:   certs.NaturalPersonName(p.GivenName, p.FamilyName, p.PersonalNumber, s.cfg.Country),
			PublicKey: pub, NotBefore: now.Add(-time.Minute), NotAfter: now.AddDate(s.cfg.Years, 0, 0)}, k.URI)
	}
	if err != nil {
		if rerr := s.keys.Retire(context.WithoutCancel(ctx), k.URI); rerr != nil {
			s.log.ErrorContext(ctx, "enrolment: retiring the new key", "key", k.URI, "err", rerr)
		}
		return Credential{}, err
	}
	return Credential{ID: cert.SerialNumber.Text(16), Subject: p.SubjectID, KeyURI: k.URI, Cert: cert, Chain: s.pki.Chain(cert)}, nil
}

// ErrRenewRevoked: a revoked credential's key may be compromised; it gets no new certificate.
var ErrRenewRevoked = errors.New("csc: a revoked credential is not renewed (issue a new signing key)")

// Renew gives one of the official's credentials a new certificate for the same key and purpose,
// with the names from the store and a fresh validity. The old certificate stays listed (and
// usable) until it expires or is revoked; the new one is a credential of its own.
func (s *Service) Renew(ctx context.Context, subject, credentialID string) (Credential, error) {
	c, err := s.Credential(ctx, subject, credentialID)
	if err != nil {
		return Credential{}, err
	}
	if c.Revoked {
		return Credential{}, fmt.Errorf("%w: %s", ErrRenewRevoked, c.ID)
	}
	p, err := s.recs.Person(ctx, subject)
	if err != nil {
		return Credential{}, err
	}
	if !p.Official {
		return Credential{}, fmt.Errorf("%w: %s", ErrNotOfficial, p.PersonalNumber)
	}
	now := s.now()
	cert, err := s.pki.IssueLeaf(ctx, certs.Request{Profile: certs.NaturalPerson,
		Subject:   certs.NaturalPersonName(p.GivenName, p.FamilyName, p.PersonalNumber, s.cfg.Country),
		PublicKey: c.Cert.PublicKey, NotBefore: now.Add(-time.Minute), NotAfter: now.AddDate(s.cfg.Years, 0, 0)}, c.KeyURI)
	if err != nil {
		return Credential{}, err
	}
	return Credential{ID: cert.SerialNumber.Text(16), Subject: subject, KeyURI: c.KeyURI, Cert: cert, Chain: s.pki.Chain(cert)}, nil
}

// Credentials lists the official's credentials: every person-ca certificate of an active key
// with purpose sign:<subject>, revoked and expired ones included (their status says so).
func (s *Service) Credentials(ctx context.Context, subject string) ([]Credential, error) {
	keys, err := s.recs.KeyRecords(ctx)
	if err != nil {
		return nil, err
	}
	mine := map[string]bool{}
	for _, k := range keys {
		if k.Purpose == string(hsm.SignPurpose(subject)) && k.State == string(hsm.StateActive) {
			mine[k.URI] = true
		}
	}
	if len(mine) == 0 {
		return nil, nil
	}
	issued, err := s.recs.CertificatesByCA(ctx, certs.NamePersonCA)
	if err != nil {
		return nil, err
	}
	var out []Credential
	for _, rec := range issued {
		if !mine[rec.KeyURI] {
			continue
		}
		c, err := s.credential(subject, rec)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

func (s *Service) credential(subject string, rec store.Certificate) (Credential, error) {
	cert, err := x509.ParseCertificate(rec.DER)
	if err != nil {
		return Credential{}, fmt.Errorf("csc: certificate %s in the store: %w", rec.Serial, err)
	}
	return Credential{ID: rec.Serial, Subject: subject, KeyURI: rec.KeyURI, Cert: cert, Chain: s.pki.Chain(cert), Revoked: rec.Revoked}, nil
}

// Credential returns one of the official's credentials, read afresh from the store. Another
// official's credential, or none, is errUnknownCredential: the answer must not tell which.
func (s *Service) Credential(ctx context.Context, subject, id string) (Credential, error) {
	if id == "" || len(id) > 64 {
		return Credential{}, errUnknownCredential
	}
	rec, err := s.recs.Certificate(ctx, certs.NamePersonCA, id)
	if errors.Is(err, store.ErrNotFound) {
		return Credential{}, errUnknownCredential
	}
	if err != nil {
		return Credential{}, err
	}
	k, err := s.recs.KeyRecord(ctx, rec.KeyURI)
	if errors.Is(err, store.ErrNotFound) || err == nil && (k.Purpose != string(hsm.SignPurpose(subject)) || k.State != string(hsm.StateActive)) {
		return Credential{}, errUnknownCredential
	}
	if err != nil {
		return Credential{}, err
	}
	return s.credential(subject, rec)
}

// Error is a refusal with its CSC error code (CSC API v2 §10.1 "Error handling": a JSON body of
// error and error_description). Status is the HTTP status.
type Error struct {
	Status      int
	Code        string
	Description string
}

func (e *Error) Error() string { return "csc: " + e.Code + ": " + e.Description }

func invalidRequest(format string, a ...any) *Error {
	return &Error{Status: 400, Code: "invalid_request", Description: fmt.Sprintf(format, a...)}
}

// The spec's error strings (CSC API v2 §11.6 credentials/authorize, §11.9 signatures/signHash).
var (
	errUnknownCredential = invalidRequest("Invalid parameter credentialID")
	errInvalidSAD        = invalidRequest("Invalid parameter SAD")
	errSADExpired        = invalidRequest("SAD expired")
	errInvalidPIN        = &Error{Status: 400, Code: "invalid_pin", Description: "The PIN is invalid"}
	errLockedPIN         = &Error{Status: 400, Code: "invalid_pin", Description: "PIN locked"}
	errInvalidOTP        = &Error{Status: 400, Code: "invalid_otp", Description: "The OTP is invalid"}
	errLockedOTP         = &Error{Status: 400, Code: "invalid_otp", Description: "OTP locked"}
	errDisabled          = invalidRequest("The credential is disabled: its certificate is revoked or expired")
)

// Hash algorithms an authorization may name, with their digest lengths.
var hashOIDs = map[string]crypto.Hash{
	"2.16.840.1.101.3.4.2.1": crypto.SHA256,
	"2.16.840.1.101.3.4.2.2": crypto.SHA384,
	"2.16.840.1.101.3.4.2.3": crypto.SHA512,
}

// Authorization is what credentials/authorize asks for.
type Authorization struct {
	CredentialID  string
	NumSignatures int
	Hashes        [][]byte
	HashOID       string
	PIN, OTP      string
	IP            string // of the caller, for the brute-force limits
	via           string // how the official authorized, for the audit event: explicit, session
}

// Authorized is a granted authorization.
type Authorized struct {
	SAD       string
	ExpiresIn int // seconds
}

// sadRecord is what a SAD allows, kept in the ephemeral store. Used marks the hashes signed.
type sadRecord struct {
	Credential string    `json:"credential"`
	Subject    string    `json:"subject"`
	KeyURI     string    `json:"key"`
	HashOID    string    `json:"hash_oid"`
	Hashes     [][]byte  `json:"hashes"`
	Used       []bool    `json:"used"`
	Expires    time.Time `json:"expires"`
	AuditSeq   int64     `json:"audit_seq"`
	Consumed   bool      `json:"consumed,omitempty"`
	// Limit is the latest Expires extendTransaction may give: the first authorization's time
	// plus Config.SADLimit.
	Limit time.Time `json:"limit"`
}

// sadKey names a SAD's record: its hash, so the store never holds the token itself.
func sadKey(sad string) string {
	h := sha256.Sum256([]byte(sad))
	return "csc:sad:" + hex.EncodeToString(h[:])
}

// sadID is a short public name of a SAD for the audit log and logs.
func sadID(sad string) string {
	h := sha256.Sum256([]byte(sad))
	return hex.EncodeToString(h[:8])
}

// Authorize checks the official's two factors for exactly a.Hashes on one of their own
// credentials and returns the SAD. Every outcome past the parameter checks is an audit event.
func (s *Service) Authorize(ctx context.Context, subject string, a Authorization) (Authorized, error) {
	a.via = "explicit"
	return s.authorize(ctx, subject, a, func(p store.Person) error {
		if a.PIN == "" {
			return errInvalidPIN
		}
		got, err := s.factors.Password(ctx, p.PersonalNumber, a.PIN, a.IP)
		switch {
		case errors.Is(err, auth.ErrLockedOut):
			return errLockedPIN
		case errors.Is(err, auth.ErrBadCredentials):
			return errInvalidPIN
		case err != nil:
			return err
		case got.SubjectID != subject:
			return errInvalidPIN
		}
		return nil
	})
}

// Login is how the official's current session was authenticated.
type Login struct {
	ACR      string
	AMR      []string
	AuthTime time.Time
}

const (
	// DefaultLoginMaxAge is how long ago a login may have been for AuthorizeLogin unless
	// Config.LoginMaxAge says otherwise.
	DefaultLoginMaxAge = 15 * time.Minute
	// MaxLoginMaxAge bounds Config.LoginMaxAge: the session login stands for the knowledge
	// factor of sole control, and a login older than an hour no longer shows that the official
	// is still the one at the browser.
	MaxLoginMaxAge = time.Hour
)

// LoginMaxAge is how long ago a login may have been for AuthorizeLogin (Config.LoginMaxAge
// with its default and bound): the portal sends the official to log in again past it.
func (s *Service) LoginMaxAge() time.Duration { return s.cfg.LoginMaxAge }

func weakLogin(maxAge time.Duration) *Error {
	within := maxAge.String()
	if maxAge%time.Minute == 0 {
		within = fmt.Sprintf("%d minutes", maxAge/time.Minute)
	}
	return &Error{Status: 403, Code: "access_denied",
		Description: "The login must be at level of assurance substantial or higher, with a one-time code, within the last " + within + ": log in again"}
}

// AuthorizeLogin authorizes exactly a.Hashes for an official whose session login was at LoA
// substantial or higher with a one-time code ("otp" in amr), no longer than LoginMaxAge() ago: the
// session stands for the knowledge factor, and one fresh TOTP code (a.OTP; a.PIN is unused) is
// the second factor for this very request. Checks, SAD record, audit event and errors are those
// of Authorize; the audit detail says it was a session authorization.
func (s *Service) AuthorizeLogin(ctx context.Context, subject string, login Login, a Authorization) (Authorized, error) {
	a.via, a.PIN = "session", ""
	return s.authorize(ctx, subject, a, func(store.Person) error {
		age := s.now().Sub(login.AuthTime)
		if login.AuthTime.IsZero() || age > s.cfg.LoginMaxAge || age < -time.Minute ||
			!auth.AtLeast(login.ACR, auth.LoASubstantial) || !slices.Contains(login.AMR, "otp") {
			return weakLogin(s.cfg.LoginMaxAge)
		}
		return nil
	})
}

// authorize is what Authorize and AuthorizeLogin share: the parameter checks, the credential's
// status, the first factor (first: a *Error is a refusal, recorded; another error a failure),
// the TOTP code, the audit event and the SAD record.
func (s *Service) authorize(ctx context.Context, subject string, a Authorization, first func(p store.Person) error) (Authorized, error) {
	h, ok := hashOIDs[a.HashOID]
	if !ok {
		return Authorized{}, invalidRequest("Invalid parameter hashAlgorithmOID")
	}
	if len(a.Hashes) == 0 {
		// SCAL2: the authorization is over the hashes themselves.
		return Authorized{}, invalidRequest("Missing (or invalid type) array parameter hashes")
	}
	if a.NumSignatures < 1 || a.NumSignatures > s.cfg.MaxSignatures {
		return Authorized{}, invalidRequest("Invalid value for parameter numSignatures (1 to %d)", s.cfg.MaxSignatures)
	}
	if a.NumSignatures != len(a.Hashes) {
		return Authorized{}, invalidRequest("Invalid value for parameter numSignatures: %d signatures for %d hashes", a.NumSignatures, len(a.Hashes))
	}
	for i, d := range a.Hashes {
		if len(d) != h.Size() {
			return Authorized{}, invalidRequest("Invalid digest value length (hash %d)", i)
		}
		for _, e := range a.Hashes[:i] {
			if bytes.Equal(d, e) {
				return Authorized{}, invalidRequest("Invalid parameter hashes: hash %d is given twice", i)
			}
		}
	}
	c, err := s.Credential(ctx, subject, a.CredentialID)
	if err != nil {
		return Authorized{}, err
	}
	now := s.now()
	refuse := func(e *Error) (Authorized, error) {
		_, _ = s.record(ctx, subject, c, a, e.Code+": "+e.Description, "") // record logs its failure; the refusal stands
		return Authorized{}, e
	}
	if !c.Valid(now) {
		return refuse(errDisabled)
	}
	p, err := s.recs.Person(ctx, subject)
	if err != nil {
		return Authorized{}, err
	}
	var e *Error
	if err := first(p); errors.As(err, &e) {
		return refuse(e)
	} else if err != nil {
		return Authorized{}, err
	}
	if a.OTP == "" {
		return refuse(errInvalidOTP)
	}
	err = s.factors.TOTP(ctx, subject, a.OTP)
	switch {
	case errors.Is(err, auth.ErrLockedOut):
		return refuse(errLockedOTP)
	case errors.Is(err, auth.ErrBadCode), errors.Is(err, auth.ErrNoTOTP):
		return refuse(errInvalidOTP)
	case err != nil:
		return Authorized{}, err
	}
	rec := sadRecord{Credential: c.ID, Subject: subject, KeyURI: c.KeyURI, HashOID: a.HashOID, Hashes: a.Hashes,
		Used: make([]bool, len(a.Hashes)), Expires: now.Add(s.cfg.SADTTL), Limit: now.Add(s.cfg.SADLimit)}
	return s.grant(ctx, rec, func(sad string) (int64, error) { return s.record(ctx, subject, c, a, "ok", sadID(sad)) })
}

// grant makes a new SAD for rec, has it recorded (an authorization that is not in the audit log
// is not given) and stores rec under it.
func (s *Service) grant(ctx context.Context, rec sadRecord, audit func(sad string) (int64, error)) (Authorized, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return Authorized{}, err
	}
	sad := base64.RawURLEncoding.EncodeToString(b)
	seq, err := audit(sad)
	if err != nil {
		return Authorized{}, err
	}
	rec.AuditSeq = seq
	v, err := json.Marshal(rec)
	if err != nil {
		return Authorized{}, err
	}
	ttl := rec.Expires.Sub(s.now())
	// The record outlives its expiry by a minute, so that a late redemption hears "SAD expired"
	// rather than "Invalid parameter SAD"; Expires decides.
	if err := s.eph.PutIfAbsent(ctx, sadKey(sad), v, ttl+time.Minute); err != nil {
		return Authorized{}, err
	}
	return Authorized{SAD: sad, ExpiresIn: int(ttl.Round(time.Second) / time.Second)}, nil
}

// record appends an authorization event with its hashes and returns its sequence number.
func (s *Service) record(ctx context.Context, subject string, c Credential, a Authorization, result, sad string) (int64, error) {
	if s.audit == nil {
		return 0, errors.New("csc: no audit log")
	}
	hexes := make([]string, len(a.Hashes))
	all := sha256.New()
	for i, d := range a.Hashes {
		hexes[i] = hex.EncodeToString(d)
		all.Write(d)
	}
	detail, _ := json.Marshal(map[string]any{"credential": c.ID, "num_signatures": a.NumSignatures,
		"hash_algorithm": a.HashOID, "hashes": hexes, "sad": sad, "authorization": a.via})
	r, err := s.audit.Append(ctx, audit.Event{Actor: subject, Action: "csc.authorize", Key: c.KeyURI,
		Digest: all.Sum(nil), Result: result, Detail: detail, RequestID: requestID(ctx)})
	if err != nil {
		s.log.ErrorContext(ctx, "csc: audit of an authorization", "err", err)
		return 0, err
	}
	return r.Seq, nil
}

// SignRequest is what signatures/signHash asks for.
type SignRequest struct {
	CredentialID string
	SAD          string
	Hashes       [][]byte
	HashOID      string // may be empty when SignAlgo names the hash
	SignAlgo     string
}

// Signature algorithms: for each OID the key type and the hash it implies (0: none implied,
// hashAlgorithmOID must say it).
var signAlgos = map[string]struct {
	ec   bool
	hash crypto.Hash
}{
	"1.2.840.10045.4.3.2":   {true, crypto.SHA256}, // ecdsa-with-SHA256
	"1.2.840.10045.4.3.3":   {true, crypto.SHA384}, // ecdsa-with-SHA384
	"1.2.840.10045.4.3.4":   {true, crypto.SHA512}, // ecdsa-with-SHA512
	"1.2.840.10045.2.1":     {true, 0},             // id-ecPublicKey
	"1.2.840.113549.1.1.11": {false, crypto.SHA256},
	"1.2.840.113549.1.1.12": {false, crypto.SHA384},
	"1.2.840.113549.1.1.13": {false, crypto.SHA512},
	"1.2.840.113549.1.1.1":  {false, 0}, // rsaEncryption: PKCS #1 v1.5
}

// SignHash signs each hash of r with the credential, if the SAD authorized it and it was not
// signed before. ECDSA signatures are DER, RSA ones PKCS #1 v1.5.
func (s *Service) SignHash(ctx context.Context, subject string, r SignRequest) ([][]byte, error) {
	if r.SAD == "" || len(r.SAD) > 256 {
		return nil, errInvalidSAD
	}
	if len(r.Hashes) == 0 {
		return nil, invalidRequest("Missing (or invalid type) array parameter hashes")
	}
	alg, ok := signAlgos[r.SignAlgo]
	if !ok {
		return nil, invalidRequest("Invalid parameter signAlgo")
	}
	c, rec, err := s.redeem(ctx, subject, r.CredentialID, r.SAD, r.HashOID, r.Hashes, func(hashOID string, c Credential) error {
		if alg.hash != 0 && alg.hash != hashOIDs[hashOID] {
			return invalidRequest("Invalid parameter hashAlgorithmOID: the SAD authorized %s", hashOID)
		}
		if keyIsEC(c.Cert) != alg.ec {
			return invalidRequest("Invalid parameter signAlgo: the credential's key is %s", c.Cert.PublicKeyAlgorithm)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	// The hashes are now spent, whatever happens next: a signature that fails is not retried
	// on the same authorization.
	return s.sign(ctx, subject, c, r, rec, hashOIDs[rec.HashOID])
}

// redeem spends digests of the SAD: each must be listed by it and not yet spent, the SAD must be
// the official's, for credentialID, unexpired, and for hashOID ("" = the SAD's own), and the
// credential valid now; check may refuse further (it sees the SAD's hash OID and the credential). The
// record is updated by compare-and-swap, so that no two requests, on any replicas, spend one
// digest; it is consumed when every digest is spent.
func (s *Service) redeem(ctx context.Context, subject, credentialID, sad, hashOID string, digests [][]byte,
	check func(hashOID string, c Credential) error) (Credential, sadRecord, error) {
	if sad == "" || len(sad) > 256 {
		return Credential{}, sadRecord{}, errInvalidSAD
	}
	key := sadKey(sad)
	for attempt := 0; ; attempt++ {
		rec, old, err := s.sadRecord(ctx, key, subject, credentialID)
		if err != nil {
			return Credential{}, sadRecord{}, err
		}
		if hashOID == "" {
			hashOID = rec.HashOID
		}
		if hashOID != rec.HashOID {
			return Credential{}, sadRecord{}, invalidRequest("Invalid parameter hashAlgorithmOID: the SAD authorized %s", rec.HashOID)
		}
		idx := make([]int, len(digests))
		for i, d := range digests {
			j := slices.IndexFunc(rec.Hashes, func(e []byte) bool { return bytes.Equal(d, e) })
			if j < 0 {
				return Credential{}, sadRecord{}, invalidRequest("Invalid parameter hashes: hash %d is not authorized by the SAD", i)
			}
			if rec.Used[j] || slices.Contains(idx[:i], j) {
				return Credential{}, sadRecord{}, invalidRequest("Invalid parameter hashes: hash %d has already been signed with this SAD", i)
			}
			idx[i] = j
		}
		// The certificate's status is read at every signature: a revocation by any replica
		// stops the credential at once.
		c, err := s.Credential(ctx, subject, credentialID)
		if err != nil {
			return Credential{}, sadRecord{}, err
		}
		if !c.Valid(s.now()) {
			return Credential{}, sadRecord{}, errDisabled
		}
		if check != nil {
			if err := check(rec.HashOID, c); err != nil {
				return Credential{}, sadRecord{}, err
			}
		}
		next := rec
		next.Used = slices.Clone(rec.Used)
		for _, j := range idx {
			next.Used[j] = true
		}
		if !slices.Contains(next.Used, false) {
			next = sadRecord{Consumed: true}
		}
		err = s.swap(ctx, key, old, next, rec.Expires)
		if errors.Is(err, store.ErrConflict) && attempt < 8 {
			continue // another request redeemed part of the SAD meanwhile: check again
		}
		if errors.Is(err, store.ErrNotFound) {
			return Credential{}, sadRecord{}, errSADExpired
		}
		if err != nil {
			return Credential{}, sadRecord{}, err
		}
		return c, rec, nil
	}
}

// ExtendTransaction trades a live SAD for a new one with what remains of its authorization
// (the same credential and unsigned hashes) and a fresh expiry of Config.SADTTL, never past the
// authorization's overall limit (Config.SADLimit after it was granted). The old SAD is consumed
// first, by compare-and-swap, so that one SAD extends once. The extension is an audit event
// (csc.extend) naming both SADs.
func (s *Service) ExtendTransaction(ctx context.Context, subject, credentialID, sad string) (Authorized, error) {
	if sad == "" || len(sad) > 256 {
		return Authorized{}, errInvalidSAD
	}
	c, err := s.Credential(ctx, subject, credentialID)
	if err != nil {
		return Authorized{}, err
	}
	key := sadKey(sad)
	rec, old, err := s.sadRecord(ctx, key, subject, credentialID)
	if err != nil {
		return Authorized{}, err
	}
	now := s.now()
	if !c.Valid(now) {
		return Authorized{}, errDisabled
	}
	expires := now.Add(s.cfg.SADTTL)
	if rec.Limit.Before(expires) {
		expires = rec.Limit
	}
	if !expires.After(now) {
		return Authorized{}, invalidRequest("SAD expired: the authorization cannot be extended past %s", rec.Limit.UTC().Format(time.RFC3339))
	}
	switch err := s.swap(ctx, key, old, sadRecord{Consumed: true}, rec.Expires); {
	case errors.Is(err, store.ErrConflict):
		return Authorized{}, invalidRequest("Invalid parameter SAD: it was used or extended meanwhile")
	case errors.Is(err, store.ErrNotFound):
		return Authorized{}, errSADExpired
	case err != nil:
		return Authorized{}, err
	}
	next := rec
	next.Expires = expires
	return s.grant(ctx, next, func(newSAD string) (int64, error) {
		if s.audit == nil {
			return 0, errors.New("csc: no audit log")
		}
		left := 0
		for _, u := range rec.Used {
			if !u {
				left++
			}
		}
		detail, _ := json.Marshal(map[string]any{"credential": c.ID, "sad": sadID(sad), "new_sad": sadID(newSAD),
			"authorization_seq": rec.AuditSeq, "hashes_left": left, "expires": expires.UTC()})
		if _, err := s.audit.Append(ctx, audit.Event{Actor: subject, Action: "csc.extend", Key: c.KeyURI,
			Result: "ok", Detail: detail, RequestID: requestID(ctx)}); err != nil {
			return 0, err
		}
		// Signatures under the new SAD name the authorization the official gave.
		return rec.AuditSeq, nil
	})
}

// sadRecord reads the SAD record under key, with its stored bytes for a compare-and-swap, and
// refuses one that is spent, expired, or not the official's for credentialID.
func (s *Service) sadRecord(ctx context.Context, key, subject, credentialID string) (sadRecord, []byte, error) {
	old, err := s.eph.Get(ctx, key)
	if errors.Is(err, store.ErrNotFound) {
		return sadRecord{}, nil, errInvalidSAD
	}
	if err != nil {
		return sadRecord{}, nil, err
	}
	var rec sadRecord
	if err := json.Unmarshal(old, &rec); err != nil {
		return sadRecord{}, nil, fmt.Errorf("csc: a SAD record in the store: %w", err)
	}
	if rec.Consumed {
		return sadRecord{}, nil, invalidRequest("Invalid parameter SAD: it has been used for all its signatures")
	}
	if rec.Subject != subject || rec.Credential != credentialID {
		return sadRecord{}, nil, errInvalidSAD
	}
	if !s.now().Before(rec.Expires) {
		return sadRecord{}, nil, errSADExpired
	}
	return rec, old, nil
}

// swap replaces the record under key if it still holds old; it lives a minute past expires.
func (s *Service) swap(ctx context.Context, key string, old []byte, next sadRecord, expires time.Time) error {
	nv, err := json.Marshal(next)
	if err != nil {
		return err
	}
	ttl := expires.Sub(s.now()) + time.Minute
	return s.eph.CompareAndSwap(ctx, key, old, nv, max(ttl, time.Second))
}

func keyIsEC(c *x509.Certificate) bool { return c.PublicKeyAlgorithm == x509.ECDSA }

func (s *Service) sign(ctx context.Context, subject string, c Credential, r SignRequest, rec sadRecord, h crypto.Hash) ([][]byte, error) {
	signer, err := s.keys.Signer(ctx, c.KeyURI, hsm.SignPurpose(subject))
	if err != nil {
		return nil, err
	}
	ctx = hsm.WithAuditDetail(hsm.WithActor(ctx, subject), map[string]string{
		"csc_credential": c.ID, "csc_sad": sadID(r.SAD), "csc_authorization_seq": strconv.FormatInt(rec.AuditSeq, 10),
		"csc_authorized_hashes": strconv.Itoa(len(rec.Hashes)),
	})
	cs, ok := signer.(hsm.ContextSigner)
	if !ok {
		return nil, errors.New("csc: the key layer is not instrumented: refusing to sign unaudited")
	}
	// Each signature waits for its audit record to be durable; signing a batch side by side
	// lets the audit log group-commit the records.
	out := make([][]byte, len(r.Hashes))
	errs := make([]error, len(r.Hashes))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i, d := range r.Hashes {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			out[i], errs[i] = cs.SignContext(ctx, rand.Reader, d, h)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

type ctxKey struct{}

// WithRequestID names the request in the audit events of ctx.
func WithRequestID(ctx context.Context, id string) context.Context {
	return hsm.WithRequestID(context.WithValue(ctx, ctxKey{}, id), id)
}

func requestID(ctx context.Context) string {
	s, _ := ctx.Value(ctxKey{}).(string)
	return s
}
