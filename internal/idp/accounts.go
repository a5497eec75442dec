package idp

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
	"golang.org/x/crypto/argon2"

	"github.com/vula-eid/vula/internal/auth"
	"github.com/vula-eid/vula/internal/problem"
	"github.com/vula-eid/vula/internal/store"
)

// Passwords are hashed with Argon2id at OWASP's minimum (19 MiB, two passes, one lane), kept as
// a PHC string.
const (
	argonMemory  = 19 * 1024
	argonTime    = 2
	argonThreads = 1
	argonKeyLen  = 32
)

// HashPassword makes the PHC string of pw.
func HashPassword(pw string) (string, error) {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	key := argon2.IDKey([]byte(pw), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key)), nil
}

// checkPassword compares pw with a PHC string made by HashPassword (or with other parameters).
func checkPassword(phc, pw string) bool {
	parts := strings.Split(phc, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false
	}
	var m, t uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil || m == 0 || t == 0 || p == 0 || m > 1<<22 {
		return false
	}
	salt, err1 := base64.RawStdEncoding.DecodeString(parts[4])
	want, err2 := base64.RawStdEncoding.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(want) == 0 || len(want) > 128 {
		return false
	}
	got := argon2.IDKey([]byte(pw), salt, t, m, p, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1
}

// hashSlots bounds the password checks computed at once. An Argon2id check holds 19 MiB and a
// core for tens of milliseconds: more of them at once than there are cores only makes every
// login slower and memory grow with the crowd. A check waits for a slot at most wait; past it
// the login is refused with ErrBusy (503 with Retry-After), so latency and memory stay bounded.
type hashSlots struct {
	slots chan struct{}
	wait  time.Duration
}

// Default bound of password checks: one in progress per core, and a wait that keeps a login's
// latency under about two seconds whatever the crowd.
const defaultHashWait = 2 * time.Second

// ErrBusy refuses a password check that found no free slot in time: too many logins at once.
// It wraps store.ErrUnavailable, so that every edge answers it 503 with Retry-After.
var ErrBusy = fmt.Errorf("idp: too many logins at once, try again shortly: %w", store.ErrUnavailable)

// check runs f in a slot, or returns ErrBusy (no slot within the wait) or ctx's error (the
// client gave up) without running it.
func (h *hashSlots) check(ctx context.Context, f func() bool) (bool, error) {
	select {
	case h.slots <- struct{}{}:
	default:
		t := time.NewTimer(h.wait)
		defer t.Stop()
		select {
		case h.slots <- struct{}{}:
		case <-t.C:
			return false, ErrBusy
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
	defer func() { <-h.slots }()
	return f(), nil
}

// dummyHash is checked against when the person is unknown, so that an unknown identifier costs
// the same time as a wrong password.
var dummyHash, _ = HashPassword("vula-dummy-password")

// Accounts checks people's credentials with brute-force limits.
type Accounts struct {
	db     store.Durable
	eph    store.Ephemeral
	sealer *store.SeedSealer
	issuer string // shown in authenticator apps
	now    func() time.Time
	hashes *hashSlots
}

// NewAccounts makes the credential checker; sealer protects TOTP seeds.
func NewAccounts(db store.Durable, eph store.Ephemeral, sealer *store.SeedSealer, issuer string, now func() time.Time) *Accounts {
	a := &Accounts{db: db, eph: eph, sealer: sealer, issuer: issuer, now: now}
	a.LimitPasswordChecks(runtime.GOMAXPROCS(0), defaultHashWait)
	return a
}

// LimitPasswordChecks allows n password checks at once (at least 1); a check that waits longer
// than wait for its turn is refused with ErrBusy. NewAccounts sets one per core and two seconds.
func (a *Accounts) LimitPasswordChecks(n int, wait time.Duration) {
	a.hashes = &hashSlots{slots: make(chan struct{}, max(n, 1)), wait: wait}
}

// Errors of a login, each shown to the person in their own words. ErrBadCredentials is the same
// for an unknown person and a wrong password. They are auth's: the signing service reads them.
var (
	ErrBadCredentials = auth.ErrBadCredentials
	ErrLockedOut      = auth.ErrLockedOut
	ErrBadCode        = auth.ErrBadCode
	ErrNoTOTP         = auth.ErrNoTOTP
)

var _ auth.Factors = (*Accounts)(nil)

// Brute-force limits, on two keys: after failuresFree failures on one identifier, or
// ipFailuresFree failures from one address (one guesser trying many identifiers), the next
// attempt on that key waits backoffBase, doubling with each further failure up to backoffMax.
// Only failures count: many people behind one address (an office, a mobile carrier's NAT) who
// type their passwords right are never slowed down.
const (
	failuresFree   = 5
	ipFailuresFree = 20
	backoffBase    = 30 * time.Second
	backoffMax     = time.Hour
	failureWindow  = 24 * time.Hour
)

// throttleKey is per identifier (hashed: identifiers are personal data), not per person, so an
// unknown identifier locks exactly like a known one and tells nothing.
func throttleKey(identifier string) string {
	h := sha256.Sum256([]byte(strings.ToLower(strings.TrimSpace(identifier))))
	return hex.EncodeToString(h[:16])
}

// Password checks identifier (personal number or e-mail) and password from client address ip.
func (a *Accounts) Password(ctx context.Context, identifier, password, ip string) (store.Person, error) {
	id := throttleKey(identifier)
	ipID := "ip:" + ip
	for _, k := range []string{id, ipID} {
		if _, err := a.eph.Get(ctx, "idp:lock:"+k); err == nil {
			return store.Person{}, ErrLockedOut
		} else if !errors.Is(err, store.ErrNotFound) {
			return store.Person{}, err
		}
	}
	p, err := a.find(ctx, identifier)
	hash := dummyHash
	if err == nil {
		if c, cerr := a.db.Credential(ctx, p.SubjectID); cerr == nil {
			hash = c.PasswordHash
		} else if !errors.Is(cerr, store.ErrNotFound) {
			return store.Person{}, cerr
		}
	} else if !errors.Is(err, store.ErrNotFound) {
		return store.Person{}, err
	}
	ok, herr := a.hashes.check(ctx, func() bool { return checkPassword(hash, password) })
	if herr != nil {
		return store.Person{}, herr
	}
	if !ok || err != nil || hash == dummyHash {
		if err := a.failed(ctx, ipID, ipFailuresFree); err != nil {
			return store.Person{}, err
		}
		if err := a.failed(ctx, id, failuresFree); err != nil {
			return store.Person{}, err
		}
		return store.Person{}, ErrBadCredentials
	}
	// A failure count left behind would lock the person out sooner.
	if err := a.eph.Delete(ctx, "idp:fail:"+id); err != nil {
		return store.Person{}, err
	}
	return p, nil
}

// failed counts a failure on key and, from the free-th on, locks key for a time that doubles
// with each further failure.
func (a *Accounts) failed(ctx context.Context, key string, free int64) error {
	n, err := a.eph.Incr(ctx, "idp:fail:"+key, failureWindow)
	if err != nil {
		return err
	}
	if n >= free {
		wait := min(backoffBase<<min(n-free, 16), backoffMax)
		if err := a.eph.Put(ctx, "idp:lock:"+key, []byte(strconv.FormatInt(n, 10)), wait); err != nil {
			return err
		}
	}
	return nil
}

func (a *Accounts) find(ctx context.Context, identifier string) (store.Person, error) {
	identifier = strings.TrimSpace(identifier)
	if strings.Contains(identifier, "@") {
		return a.db.PersonByEmail(ctx, strings.ToLower(identifier))
	}
	return a.db.PersonByPersonalNumber(ctx, identifier)
}

// HasTOTP reports whether the person has an authenticator.
func (a *Accounts) HasTOTP(ctx context.Context, subject string) bool {
	c, err := a.db.Credential(ctx, subject)
	return err == nil && len(c.TOTPSeedSealed) > 0
}

// TOTP checks a one-time code (RFC 6238: SHA-1, 6 digits, 30 s, one step of drift either way).
// A code is accepted once: its time step is remembered.
func (a *Accounts) TOTP(ctx context.Context, subject, code string) error {
	c, err := a.db.Credential(ctx, subject)
	if err != nil || len(c.TOTPSeedSealed) == 0 {
		return ErrNoTOTP
	}
	seed, err := a.sealer.Open(subject, c.TOTPSeedSealed)
	if err != nil {
		return fmt.Errorf("idp: TOTP seed of %s: %w", subject, err)
	}
	id := throttleKey("totp:" + subject)
	if _, err := a.eph.Get(ctx, "idp:lock:"+id); err == nil {
		return ErrLockedOut
	}
	now := a.now()
	for skew := -1; skew <= 1; skew++ {
		at := now.Add(time.Duration(skew) * 30 * time.Second)
		want, err := totp.GenerateCodeCustom(string(seed), at, totp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
		if err != nil {
			return err
		}
		if subtle.ConstantTimeCompare([]byte(want), []byte(strings.TrimSpace(code))) == 1 {
			step := at.Unix() / 30
			first, err := a.eph.SeenOnce(ctx, fmt.Sprintf("idp:totp-used:%s:%d", subject, step), 2*time.Minute)
			if err != nil {
				return err
			}
			if !first {
				return ErrBadCode
			}
			return a.eph.Delete(ctx, "idp:fail:"+id)
		}
	}
	if err := a.failed(ctx, id, failuresFree); err != nil {
		return err
	}
	return ErrBadCode
}

// NewTOTP makes a fresh authenticator secret for subject and returns its otpauth URI, to be
// confirmed with ConfirmTOTP (or stored at once with EnrollTOTP).
func (a *Accounts) NewTOTP(p store.Person) (*otp.Key, error) {
	return totp.Generate(totp.GenerateOpts{Issuer: a.issuer, AccountName: p.PersonalNumber, Period: 30,
		Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
}

// EnrollTOTP stores key as subject's authenticator, sealed.
func (a *Accounts) EnrollTOTP(ctx context.Context, subject string, key *otp.Key) error {
	sealed, err := a.sealer.Seal(subject, []byte(key.Secret()))
	if err != nil {
		return err
	}
	return a.db.UpdateCredential(ctx, subject, func(c store.Credential) (store.Credential, error) {
		c.TOTPSeedSealed, c.Updated = sealed, a.now()
		return c, nil
	})
}

// CreatePerson stores a person with a password.
func (a *Accounts) CreatePerson(ctx context.Context, p store.Person, password string) (store.Person, error) {
	if p.PersonalNumber == "" || p.GivenName == "" || p.FamilyName == "" {
		return p, fmt.Errorf("%w: personal number, given name and family name are required", ErrInvalidPerson)
	}
	if p.BirthDate != "" {
		if _, err := time.Parse("2006-01-02", p.BirthDate); err != nil {
			return p, fmt.Errorf("%w: birth date %q: want YYYY-MM-DD", ErrInvalidPerson, p.BirthDate)
		}
	}
	switch p.Proofing {
	case "":
		// Made by an operator who vouches for the person: substantial, as every person made
		// before proofing levels were recorded (the 0005 migration).
		p.Proofing = store.ProofingSubstantial
	case store.ProofingLow, store.ProofingSubstantial, store.ProofingHigh:
	default:
		return p, fmt.Errorf("%w: proofing %q: want low, substantial or high", ErrInvalidPerson, p.Proofing)
	}
	if p.Status == "" {
		p.Status = store.EIDActive
	}
	if len(password) < 10 {
		return p, fmt.Errorf("%w: the password must have at least 10 characters", ErrInvalidPerson)
	}
	if p.SubjectID == "" {
		b := make([]byte, 16)
		rand.Read(b)
		p.SubjectID = hex.EncodeToString(b)
	}
	p.Email = strings.ToLower(strings.TrimSpace(p.Email))
	p.Created = a.now().UTC()
	if p.ProofedAt.IsZero() {
		p.ProofedAt = p.Created
	}
	hash, err := HashPassword(password)
	if err != nil {
		return p, err
	}
	if err := a.db.CreatePerson(ctx, p); err != nil {
		return p, err
	}
	if err := a.db.PutCredential(ctx, store.Credential{SubjectID: p.SubjectID, PasswordHash: hash, Updated: p.Created}); err != nil {
		if derr := a.db.DeletePerson(ctx, p.SubjectID); derr != nil {
			return p, fmt.Errorf("%w (and the person without a password remains: %v)", err, derr)
		}
		return p, err
	}
	return p, nil
}

// ErrInvalidPerson is a person record that cannot be accepted.
var ErrInvalidPerson = problem.New(problem.InvalidRequest, "idp: invalid person")
