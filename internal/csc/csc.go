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
// Every authorization (granted or refused) is an audit event (action csc.authorize) with its
// hashes; every signature is the key layer's audit record, whose detail names the
// authorization's audit sequence number and SAD id.
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

	"github.com/vula-eid/vula/certs"
	"github.com/vula-eid/vula/hsm"
	"github.com/vula-eid/vula/internal/audit"
	"github.com/vula-eid/vula/internal/idp"
	"github.com/vula-eid/vula/internal/store"
)

// Records is what the service reads and writes in the durable store.
type Records interface {
	store.Persons
	store.KeyRecords
	store.Certificates
}

// PKI is the part of the platform's CA the service uses.
type PKI interface {
	IssueLeaf(ctx context.Context, req certs.Request, keyURI string) (*x509.Certificate, error)
	Chain(c *x509.Certificate) []*x509.Certificate
}

var _ PKI = (*certs.Authority)(nil)

// Factors checks an official's two factors, with the identity provider's brute-force limits.
type Factors interface {
	// Password checks identifier (personal number or e-mail) and password from address ip.
	Password(ctx context.Context, identifier, password, ip string) (store.Person, error)
	// TOTP checks a one-time code of subject; a code is accepted once.
	TOTP(ctx context.Context, subject, code string) error
	HasTOTP(ctx context.Context, subject string) bool
}

var _ Factors = (*idp.Accounts)(nil)

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
	// MaxSignatures bounds numSignatures of one authorization; 100 when 0.
	MaxSignatures int
}

// Service enrols officials and signs for them under sole control.
type Service struct {
	cfg     Config
	keys    hsm.Manager // instrumented: every signature is in the audit log
	pki     PKI
	recs    Records
	eph     store.Ephemeral
	factors Factors
	audit   Auditor // nil in the CLI, which authorizes nothing
	log     *slog.Logger
	now     func() time.Time
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
	if cfg.MaxSignatures <= 0 {
		cfg.MaxSignatures = 100
	}
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
		s.record(ctx, subject, c, a, e.Code+": "+e.Description, "")
		return Authorized{}, e
	}
	if !c.Valid(now) {
		return refuse(invalidRequest("The credential is disabled: its certificate is revoked or expired"))
	}
	p, err := s.recs.Person(ctx, subject)
	if err != nil {
		return Authorized{}, err
	}
	if a.PIN == "" {
		return refuse(errInvalidPIN)
	}
	got, err := s.factors.Password(ctx, p.PersonalNumber, a.PIN, a.IP)
	switch {
	case errors.Is(err, idp.ErrLockedOut):
		return refuse(errLockedPIN)
	case errors.Is(err, idp.ErrBadCredentials):
		return refuse(errInvalidPIN)
	case err != nil:
		return Authorized{}, err
	case got.SubjectID != subject:
		return refuse(errInvalidPIN)
	}
	if a.OTP == "" {
		return refuse(errInvalidOTP)
	}
	err = s.factors.TOTP(ctx, subject, a.OTP)
	switch {
	case errors.Is(err, idp.ErrLockedOut):
		return refuse(errLockedOTP)
	case errors.Is(err, idp.ErrBadCode), errors.Is(err, idp.ErrNoTOTP):
		return refuse(errInvalidOTP)
	case err != nil:
		return Authorized{}, err
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return Authorized{}, err
	}
	sad := base64.RawURLEncoding.EncodeToString(b)
	seq, err := s.record(ctx, subject, c, a, "ok", sadID(sad))
	if err != nil {
		// An authorization that is not in the audit log is not given.
		return Authorized{}, err
	}
	rec := sadRecord{Credential: c.ID, Subject: subject, KeyURI: c.KeyURI, HashOID: a.HashOID, Hashes: a.Hashes,
		Used: make([]bool, len(a.Hashes)), Expires: now.Add(s.cfg.SADTTL), AuditSeq: seq}
	v, err := json.Marshal(rec)
	if err != nil {
		return Authorized{}, err
	}
	// The record outlives its expiry by a minute, so that a late redemption hears "SAD expired"
	// rather than "Invalid parameter SAD"; Expires decides.
	if err := s.eph.PutIfAbsent(ctx, sadKey(sad), v, s.cfg.SADTTL+time.Minute); err != nil {
		return Authorized{}, err
	}
	return Authorized{SAD: sad, ExpiresIn: int(s.cfg.SADTTL / time.Second)}, nil
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
		"hash_algorithm": a.HashOID, "hashes": hexes, "sad": sad})
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
	key := sadKey(r.SAD)
	for attempt := 0; ; attempt++ {
		old, err := s.eph.Get(ctx, key)
		if errors.Is(err, store.ErrNotFound) {
			return nil, errInvalidSAD
		}
		if err != nil {
			return nil, err
		}
		var rec sadRecord
		if err := json.Unmarshal(old, &rec); err != nil {
			return nil, fmt.Errorf("csc: a SAD record in the store: %w", err)
		}
		if rec.Consumed {
			return nil, invalidRequest("Invalid parameter SAD: it has been used for all its signatures")
		}
		if rec.Subject != subject || rec.Credential != r.CredentialID {
			return nil, errInvalidSAD
		}
		if !s.now().Before(rec.Expires) {
			return nil, errSADExpired
		}
		hashOID := r.HashOID
		if hashOID == "" {
			hashOID = rec.HashOID
		}
		h := hashOIDs[hashOID]
		if hashOID != rec.HashOID || alg.hash != 0 && alg.hash != h {
			return nil, invalidRequest("Invalid parameter hashAlgorithmOID: the SAD authorized %s", rec.HashOID)
		}
		idx := make([]int, len(r.Hashes))
		for i, d := range r.Hashes {
			j := slices.IndexFunc(rec.Hashes, func(e []byte) bool { return bytes.Equal(d, e) })
			if j < 0 {
				return nil, invalidRequest("Invalid parameter hashes: hash %d is not authorized by the SAD", i)
			}
			if rec.Used[j] || slices.Contains(idx[:i], j) {
				return nil, invalidRequest("Invalid parameter hashes: hash %d has already been signed with this SAD", i)
			}
			idx[i] = j
		}
		// The certificate's status is read at every signature: a revocation by any replica
		// stops the credential at once.
		c, err := s.Credential(ctx, subject, r.CredentialID)
		if err != nil {
			return nil, err
		}
		if !c.Valid(s.now()) {
			return nil, invalidRequest("The credential is disabled: its certificate is revoked or expired")
		}
		if keyIsEC(c.Cert) != alg.ec {
			return nil, invalidRequest("Invalid parameter signAlgo: the credential's key is %s", c.Cert.PublicKeyAlgorithm)
		}
		next := rec
		next.Used = slices.Clone(rec.Used)
		for _, j := range idx {
			next.Used[j] = true
		}
		if !slices.Contains(next.Used, false) {
			next = sadRecord{Consumed: true}
		}
		nv, err := json.Marshal(next)
		if err != nil {
			return nil, err
		}
		ttl := rec.Expires.Sub(s.now()) + time.Minute
		err = s.eph.CompareAndSwap(ctx, key, old, nv, max(ttl, time.Second))
		if errors.Is(err, store.ErrConflict) && attempt < 8 {
			continue // another request redeemed part of the SAD meanwhile: check again
		}
		if errors.Is(err, store.ErrNotFound) {
			return nil, errSADExpired
		}
		if err != nil {
			return nil, err
		}
		// The hashes are now spent, whatever happens next: a signature that fails is not
		// retried on the same authorization.
		return s.sign(ctx, subject, c, r, rec, h)
	}
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
