package store

import (
	"context"
	"crypto/sha256"
	"strings"
	"time"
)

// Durable is everything Vula keeps for good. Each part is its own small interface so that a
// service asks only for what it uses. Implementations: sqlstore (SQLite, PostgreSQL), which
// passes the conformance suite in storetest.
//
// Every method takes a context and returns the package's sentinels wrapped with detail:
// ErrNotFound for a missing record, ErrConflict for a taken unique value, ErrUnavailable when the
// database does not answer. An UpdateX method reads the record, calls the updater and writes what
// it returns, atomically (concurrent updaters of one record run one after the other, none is
// lost); the updater cannot change the record's key; an error from the updater is returned as it
// is and nothing is written. Certificates, signature transactions and the audit log are records
// of what happened and have no delete: a certificate is revoked instead.
type Durable interface {
	Clients
	Persons
	Credentials
	Passkeys
	Organizations
	KeyRecords
	Certificates
	Transactions
	AuditLog
	Settings
	PIDs
	// Ping reports whether the database answers now (for readiness).
	Ping(ctx context.Context) error
	Close() error
}

// Client is a relying party registered with the identity provider.
type Client struct {
	ID                      string
	SecretHash              []byte // nil for clients that authenticate with private_key_jwt
	RedirectURIs            []string
	GrantTypes              []string
	ResponseTypes           []string
	Scopes                  []string
	TokenEndpointAuthMethod string
	JWKS                    []byte // JSON Web Key Set, for private_key_jwt
	JWKSURI                 string
	RequirePAR              bool
	SectorIdentifier        string // for pairwise subject identifiers
	OrganizationID          string // the institution the client acts for, "" if none
	Created                 time.Time
	Name                    string   // shown to the person on the consent page
	AllowedACR              []string // levels of assurance the client may ask for; empty: any
	PostLogoutRedirectURIs  []string // where RP-initiated logout may return to
	Policy                  ClientPolicy
}

// ClientPolicy is what a client is allowed or bound to beyond its registration proper. It is
// kept as one JSON value, so that a new rule needs no schema change.
type ClientPolicy struct {
	// Introspection lets the client introspect tokens issued to other clients (a resource
	// server, RFC 7662 §4); every client may introspect its own.
	Introspection bool `json:"introspection,omitempty"`
	// IDTokenAlg is the client's id_token_signed_response_alg: ES256 (default) or RS256.
	IDTokenAlg string `json:"id_token_alg,omitempty"`
	// RequestObjectAlg, when set, is the only JWS algorithm its request objects may use.
	RequestObjectAlg string `json:"request_object_alg,omitempty"`
	// DPoP is "required" when every access token must be DPoP-bound (RFC 9449); "" lets the
	// client choose by sending a proof or not.
	DPoP string `json:"dpop,omitempty"`
	// Profile is "fapi2" for a client held to the FAPI 2.0 Security Profile.
	Profile string `json:"profile,omitempty"`
}

// Clients keeps relying-party clients.
type Clients interface {
	// CreateClient stores c; ErrConflict if its ID is taken.
	CreateClient(ctx context.Context, c Client) error
	Client(ctx context.Context, id string) (Client, error)
	Clients(ctx context.Context) ([]Client, error)
	// UpdateClient applies update to the stored client atomically.
	UpdateClient(ctx context.Context, id string, update func(Client) (Client, error)) error
	DeleteClient(ctx context.Context, id string) error
}

// Person is a citizen or an official.
type Person struct {
	SubjectID      string
	PersonalNumber string // unique
	GivenName      string
	FamilyName     string
	BirthDate      string // YYYY-MM-DD
	Email          string // unique when not empty
	Official       bool
	Created        time.Time
	// Proofing is how the identity was verified (ProofingLow, ProofingSubstantial,
	// ProofingHigh: Regulation 2015/1502 §2.1.2), ProofedBy who verified it (a registrar's
	// subject id, or "cli"), ProofedAt when.
	Proofing  string
	ProofedBy string
	ProofedAt time.Time
	// DocumentNumber and DocumentExpiry (YYYY-MM-DD) are the identity document checked at
	// proofing, "" when none was.
	DocumentNumber string
	DocumentExpiry string
	// Status is the state of the person's eID means: EIDActive, EIDSuspended, EIDRevoked.
	Status string
	// Roles are what the person may do beyond logging in (RoleRegistrar).
	Roles []string
}

// Identity proofing levels, named as the levels of assurance they allow at most.
const (
	ProofingLow         = "low"
	ProofingSubstantial = "substantial"
	ProofingHigh        = "high"
)

// States of an eID means. Only an active one logs in.
const (
	EIDActive    = "active"
	EIDSuspended = "suspended"
	EIDRevoked   = "revoked"
)

// RoleRegistrar is an official of a service centre who registers persons and issues their
// eID means.
const RoleRegistrar = "registrar"

// Persons keeps citizens and officials.
type Persons interface {
	// CreatePerson stores p; ErrConflict if its subject id, personal number or e-mail is taken.
	CreatePerson(ctx context.Context, p Person) error
	Person(ctx context.Context, subjectID string) (Person, error)
	PersonByPersonalNumber(ctx context.Context, number string) (Person, error)
	PersonByEmail(ctx context.Context, email string) (Person, error)
	Persons(ctx context.Context) ([]Person, error)
	UpdatePerson(ctx context.Context, subjectID string, update func(Person) (Person, error)) error
	// DeletePerson removes the person, their credential and passkeys together.
	DeletePerson(ctx context.Context, subjectID string) error
}

// Credential is what a person logs in with. The TOTP seed is sealed (see SeedSealer): the store
// never sees it in clear.
type Credential struct {
	SubjectID      string
	PasswordHash   string // PHC string, Argon2id
	TOTPSeedSealed []byte // nil until TOTP is enrolled
	FailedAttempts int
	LockedUntil    time.Time
	Updated        time.Time
	// ActivationHash is the SHA-256 of the pending activation code (nil when none), valid until
	// ActivationExpires; the code itself is never stored.
	ActivationHash    []byte
	ActivationExpires time.Time
}

// HashActivationCode is what is kept of an activation code: SHA-256 of the code with spaces
// and dashes removed and letters upper-cased (as printed in groups, typed any way). The code is
// random (80 bits or more), so a plain hash suffices.
func HashActivationCode(code string) []byte {
	code = strings.ToUpper(strings.NewReplacer(" ", "", "-", "").Replace(strings.TrimSpace(code)))
	h := sha256.Sum256([]byte(code))
	return h[:]
}

// Credentials keeps login credentials, one per person.
type Credentials interface {
	// PutCredential creates or replaces the credential of c.SubjectID (which must exist).
	PutCredential(ctx context.Context, c Credential) error
	Credential(ctx context.Context, subjectID string) (Credential, error)
	UpdateCredential(ctx context.Context, subjectID string, update func(Credential) (Credential, error)) error
}

// Passkey is a WebAuthn credential of a person.
type Passkey struct {
	ID        []byte // the credential id, unique
	SubjectID string
	Name      string // the person's name for it
	Level     string // the level of assurance it reaches (auth.LoA*), fixed at enrolment
	Record    []byte // the WebAuthn credential record (JSON): public key, flags, sign count, attestation
	Created   time.Time
	LastUsed  time.Time
}

// Passkeys keeps people's passkeys.
type Passkeys interface {
	// CreatePasskey stores p; ErrConflict if its ID is taken, ErrNotFound if the person is not.
	CreatePasskey(ctx context.Context, p Passkey) error
	Passkey(ctx context.Context, id []byte) (Passkey, error)
	// PasskeysOf lists subjectID's passkeys, oldest first.
	PasskeysOf(ctx context.Context, subjectID string) ([]Passkey, error)
	// UpdatePasskey applies update atomically (the sign counter of concurrent logins must not
	// go back); the id and the owner cannot change.
	UpdatePasskey(ctx context.Context, id []byte, update func(Passkey) (Passkey, error)) error
	// DeletePasskey removes subjectID's passkey id; ErrNotFound when subjectID has no such passkey.
	DeletePasskey(ctx context.Context, subjectID string, id []byte) error
}

// Organization is an institution that seals its outputs.
type Organization struct {
	ID         string
	Name       string
	Identifier string // organizationIdentifier, e.g. NTRXK-810000001; unique
	Created    time.Time
}

// Organizations keeps institutions.
type Organizations interface {
	// CreateOrganization stores o; ErrConflict if its ID or Identifier is taken.
	CreateOrganization(ctx context.Context, o Organization) error
	Organization(ctx context.Context, id string) (Organization, error)
	Organizations(ctx context.Context) ([]Organization, error)
	UpdateOrganization(ctx context.Context, id string, update func(Organization) (Organization, error)) error
	DeleteOrganization(ctx context.Context, id string) error
}

// KeyRecord mirrors a key of the key layer, so services can find keys by owner and purpose.
type KeyRecord struct {
	URI       string
	Purpose   string
	Owner     string
	Algorithm string
	State     string
	Created   time.Time
}

// KeyRecords keeps key records.
type KeyRecords interface {
	// PutKeyRecord creates or replaces the record of k.URI.
	PutKeyRecord(ctx context.Context, k KeyRecord) error
	KeyRecord(ctx context.Context, uri string) (KeyRecord, error)
	KeyRecords(ctx context.Context) ([]KeyRecord, error)
	DeleteKeyRecord(ctx context.Context, uri string) error
}

// Certificate is an issued certificate and its revocation status.
type Certificate struct {
	CA               string // issuing CA's name
	Serial           string // lower-case hex, unique per CA
	Subject          string
	KeyURI           string
	Profile          string
	DER              []byte
	NotBefore        time.Time
	NotAfter         time.Time
	Revoked          bool
	RevokedAt        time.Time
	RevocationReason int // RFC 5280 CRLReason
}

// Certificates keeps issued certificates, revocations and CRL numbers.
type Certificates interface {
	// CreateCertificate stores c; ErrConflict if (CA, Serial) exists.
	CreateCertificate(ctx context.Context, c Certificate) error
	Certificate(ctx context.Context, ca, serial string) (Certificate, error)
	// CertificateRevoked reports whether a certificate is revoked, reading nothing else (a seal
	// asks at every signature); ErrNotFound if there is no such certificate.
	CertificateRevoked(ctx context.Context, ca, serial string) (bool, error)
	CertificatesByCA(ctx context.Context, ca string) ([]Certificate, error)
	// Revoke marks a certificate revoked; ErrConflict if it already is.
	Revoke(ctx context.Context, ca, serial string, at time.Time, reason int) error
	RevokedCertificates(ctx context.Context, ca string) ([]Certificate, error)
	// NextCRLNumber returns the next CRL number of ca: 1, 2, 3, ... with no repeats across replicas.
	NextCRLNumber(ctx context.Context, ca string) (int64, error)
}

// Transaction is one signing or sealing request and what became of it.
type Transaction struct {
	ID             string
	Kind           string // seal, sign
	Actor          string
	OrganizationID string
	SubjectID      string
	Digests        [][]byte
	Format         string
	Level          string
	State          string
	Created        time.Time
	Completed      time.Time
}

// Transactions keeps signature transactions.
type Transactions interface {
	// CreateTransaction stores t; ErrConflict if its ID is taken.
	CreateTransaction(ctx context.Context, t Transaction) error
	Transaction(ctx context.Context, id string) (Transaction, error)
	TransactionsByActor(ctx context.Context, actor string) ([]Transaction, error)
	UpdateTransaction(ctx context.Context, id string, update func(Transaction) (Transaction, error)) error
}

// Settings keeps the platform's own small values that every replica must share (the identity
// provider's token secret, say). Values are opaque bytes.
type Settings interface {
	// Setting returns the value of name; ErrNotFound if there is none.
	Setting(ctx context.Context, name string) ([]byte, error)
	// PutSettingIfAbsent stores value under name unless name has one already, and returns the
	// value that name holds afterwards: so replicas starting together agree on the first.
	PutSettingIfAbsent(ctx context.Context, name string, value []byte) ([]byte, error)
	// DeleteSetting removes name; removing an absent setting is not an error.
	DeleteSetting(ctx context.Context, name string) error
	// PutSetting stores value under name, replacing what was there.
	PutSetting(ctx context.Context, name string, value []byte) error
}
