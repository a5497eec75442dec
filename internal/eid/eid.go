// Package eid is the life of a person's eID means at a service centre's registration desk:
// a registrar (a person with the registrar role) registers a person after checking their ID
// document in person (identity proofing at high), issues an activation letter with a one-time
// code, suspends, resumes or revokes the eID means, resets its credentials (a new letter), and
// reads the person's history from the audit log.
//
// Every action, and every search for or look at a person's record, is audited with the registrar
// as the actor and the person as the subject before it is answered. Activation
// codes are random (100 bits, printed in groups), kept only as a hash (store.HashActivationCode),
// valid for Config.CodeTTL, and used once; the citizen redeems one at the identity provider's
// activation page. The desk knows the provider and the seal only through its own interfaces.
//
// Pages (pages.go) are the desk's server-rendered pages under /desk/, for registrars logged in
// at LoA high through the provider (internal/rp); a letter's PDF comes from a Printer. History
// reads the audit log's index by subject (store.AuditLog.AuditOf).
package eid

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/vula-eid/vula/internal/audit"
	"github.com/vula-eid/vula/internal/store"
)

// Config tunes the desk.
type Config struct {
	// CodeTTL is how long an activation code is valid (default 30 days).
	CodeTTL time.Duration
}

// Auditor appends an event to the audit log (implemented by *audit.Log).
type Auditor interface {
	Append(ctx context.Context, ev audit.Event) (store.AuditRecord, error)
}

var _ Auditor = (*audit.Log)(nil)

// Store is the part of the durable store the desk uses.
type Store interface {
	store.Persons
	store.Credentials
	store.Passkeys
	store.AuditLog
}

// Desk is the registration desk's service.
type Desk struct {
	cfg   Config
	db    Store
	audit Auditor
	now   func() time.Time
}

// New makes the desk.
func New(cfg Config, db Store, au Auditor, now func() time.Time) *Desk {
	if cfg.CodeTTL <= 0 {
		cfg.CodeTTL = 30 * 24 * time.Hour
	}
	return &Desk{cfg: cfg, db: db, audit: au, now: now}
}

// Errors of the desk.
var (
	ErrNotRegistrar = errors.New("eid: not an active registrar")
	ErrInvalid      = errors.New("eid: invalid registration")
	ErrRevoked      = errors.New("eid: the eID means is revoked")
)

// Letter is what an activation letter says: to whom, the code, until when.
type Letter struct {
	Person  store.Person
	Code    string // groups of four, e.g. ABCD-EFGH-...
	Expires time.Time
}

// Printer makes the printable, sealed activation letter (a PDF) for a letter the desk issued.
type Printer interface {
	Print(ctx context.Context, l Letter, lang string) ([]byte, error)
}

// Record is what the desk shows of a person: who, the proofing and the state of their eID
// means, and which credentials they hold (never the credentials themselves).
type Record struct {
	Person            store.Person
	Password, TOTP    bool
	Passkeys          int
	ActivationPending bool // a letter's code not yet used and not expired
	ActivationExpires time.Time
}

// Find reads the person with personal number number for registrar (store.ErrNotFound when
// there is none). The search is audited (eid.find) before it is answered: with the person
// found as the subject, or as not_found with no subject; the number itself is never in the
// log (a hash of so short a number would not hide it).
func (d *Desk) Find(ctx context.Context, registrar, number string) (Record, error) {
	if err := d.registrar(ctx, registrar); err != nil {
		return Record{}, err
	}
	p, err := d.db.PersonByPersonalNumber(ctx, strings.TrimSpace(number))
	if errors.Is(err, store.ErrNotFound) {
		b, _ := json.Marshal(map[string]string{"by": "personal number"})
		if _, aerr := d.audit.Append(ctx, audit.Event{Actor: registrar, Action: "eid.find", Result: "not_found", Detail: b}); aerr != nil {
			return Record{}, aerr
		}
		return Record{}, err
	}
	if err != nil {
		return Record{}, err
	}
	if err := d.audited(ctx, registrar, "eid.find", p.SubjectID, map[string]string{"by": "personal number"}); err != nil {
		return Record{}, err
	}
	return d.record(ctx, p)
}

// Look reads the person subject for registrar (store.ErrNotFound when there is none). Each
// look at a person's record is audited (eid.view, the person as subject) before it is
// answered, so the person's history shows who read their data.
func (d *Desk) Look(ctx context.Context, registrar, subject string) (Record, error) {
	if err := d.registrar(ctx, registrar); err != nil {
		return Record{}, err
	}
	p, err := d.db.Person(ctx, subject)
	if err != nil {
		return Record{}, err
	}
	if err := d.audited(ctx, registrar, "eid.view", p.SubjectID, nil); err != nil {
		return Record{}, err
	}
	return d.record(ctx, p)
}

func (d *Desk) record(ctx context.Context, p store.Person) (Record, error) {
	r := Record{Person: p}
	c, err := d.db.Credential(ctx, p.SubjectID)
	switch {
	case err == nil:
		r.Password, r.TOTP = c.PasswordHash != "", c.TOTPSeedSealed != nil
		if c.ActivationHash != nil && d.now().Before(c.ActivationExpires) {
			r.ActivationPending, r.ActivationExpires = true, c.ActivationExpires
		}
	case !errors.Is(err, store.ErrNotFound):
		return Record{}, err
	}
	keys, err := d.db.PasskeysOf(ctx, p.SubjectID)
	if err != nil {
		return Record{}, err
	}
	r.Passkeys = len(keys)
	return r, nil
}

// Registration is what the registrar types from the ID document.
type Registration struct {
	PersonalNumber, GivenName, FamilyName, BirthDate string
	DocumentNumber, DocumentExpiry                   string // YYYY-MM-DD
	Email                                            string
}

// registrar checks that subject is an active registrar.
func (d *Desk) registrar(ctx context.Context, subject string) error {
	p, err := d.db.Person(ctx, subject)
	if errors.Is(err, store.ErrNotFound) {
		return ErrNotRegistrar
	}
	if err != nil {
		return err
	}
	active := p.Status == "" || p.Status == store.EIDActive
	for _, r := range p.Roles {
		if r == store.RoleRegistrar && active {
			return nil
		}
	}
	return ErrNotRegistrar
}

func (d *Desk) audited(ctx context.Context, registrar, action, subject string, extra map[string]string) error {
	detail := map[string]string{"subject": subject}
	for k, v := range extra {
		detail[k] = v
	}
	b, _ := json.Marshal(detail)
	_, err := d.audit.Append(ctx, audit.Event{Actor: registrar, Action: action, Result: "ok", Detail: b, Subject: subject})
	return err
}

func checkDate(what, v string) error {
	if _, err := time.Parse("2006-01-02", v); err != nil {
		return fmt.Errorf("%w: %s %q: want YYYY-MM-DD", ErrInvalid, what, v)
	}
	return nil
}

// Register records a person proofed in person at high by registrar, with the ID document
// checked, and issues their first activation letter. A person already known (by personal
// number) is proofed again and given a new letter: the desk is also where a self-registered
// person is raised to high.
func (d *Desk) Register(ctx context.Context, registrar string, in Registration) (Letter, error) {
	if err := d.registrar(ctx, registrar); err != nil {
		return Letter{}, err
	}
	in.PersonalNumber = strings.TrimSpace(in.PersonalNumber)
	if in.PersonalNumber == "" || strings.TrimSpace(in.GivenName) == "" || strings.TrimSpace(in.FamilyName) == "" || in.DocumentNumber == "" {
		return Letter{}, fmt.Errorf("%w: personal number, names and the document number are required", ErrInvalid)
	}
	if err := checkDate("birth date", in.BirthDate); err != nil {
		return Letter{}, err
	}
	if err := checkDate("document expiry", in.DocumentExpiry); err != nil {
		return Letter{}, err
	}
	now := d.now().UTC()
	if exp, _ := time.Parse("2006-01-02", in.DocumentExpiry); exp.Before(now) {
		return Letter{}, fmt.Errorf("%w: the ID document expired on %s", ErrInvalid, in.DocumentExpiry)
	}
	proofed := func(p store.Person) store.Person {
		p.GivenName, p.FamilyName, p.BirthDate = strings.TrimSpace(in.GivenName), strings.TrimSpace(in.FamilyName), in.BirthDate
		p.DocumentNumber, p.DocumentExpiry = in.DocumentNumber, in.DocumentExpiry
		p.Proofing, p.ProofedBy, p.ProofedAt = store.ProofingHigh, registrar, now
		return p
	}
	p, err := d.db.PersonByPersonalNumber(ctx, in.PersonalNumber)
	switch {
	case errors.Is(err, store.ErrNotFound):
		id := make([]byte, 16)
		rand.Read(id)
		p = proofed(store.Person{SubjectID: fmt.Sprintf("%x", id), PersonalNumber: in.PersonalNumber,
			Email: strings.ToLower(strings.TrimSpace(in.Email)), Created: now, Status: store.EIDActive})
		if err := d.db.CreatePerson(ctx, p); err != nil {
			return Letter{}, err
		}
	case err != nil:
		return Letter{}, err
	default:
		if p.Status == store.EIDRevoked {
			return Letter{}, ErrRevoked
		}
		if err := d.db.UpdatePerson(ctx, p.SubjectID, func(q store.Person) (store.Person, error) { return proofed(q), nil }); err != nil {
			return Letter{}, err
		}
		p = proofed(p)
	}
	if err := d.audited(ctx, registrar, "eid.register", p.SubjectID, map[string]string{"proofing": store.ProofingHigh, "document": in.DocumentNumber}); err != nil {
		return Letter{}, err
	}
	return d.letter(ctx, registrar, p, false)
}

// letter makes a new activation code for p (replacing any before); reset also clears the
// password, the one-time code authenticator and the passkeys.
func (d *Desk) letter(ctx context.Context, registrar string, p store.Person, reset bool) (Letter, error) {
	raw := make([]byte, 15) // 120 bits, 24 base32 characters
	rand.Read(raw)
	code := base32.StdEncoding.EncodeToString(raw)
	var groups []string
	for i := 0; i < len(code); i += 4 {
		groups = append(groups, code[i:i+4])
	}
	l := Letter{Person: p, Code: strings.Join(groups, "-"), Expires: d.now().UTC().Add(d.cfg.CodeTTL)}
	set := func(c store.Credential) store.Credential {
		c.ActivationHash, c.ActivationExpires, c.Updated = store.HashActivationCode(l.Code), l.Expires, d.now().UTC()
		if reset {
			c.PasswordHash, c.TOTPSeedSealed = "", nil
		}
		return c
	}
	err := d.db.UpdateCredential(ctx, p.SubjectID, func(c store.Credential) (store.Credential, error) { return set(c), nil })
	if errors.Is(err, store.ErrNotFound) {
		err = d.db.PutCredential(ctx, set(store.Credential{SubjectID: p.SubjectID}))
	}
	if err != nil {
		return Letter{}, err
	}
	if reset {
		keys, err := d.db.PasskeysOf(ctx, p.SubjectID)
		if err != nil {
			return Letter{}, err
		}
		for _, k := range keys {
			if err := d.db.DeletePasskey(ctx, p.SubjectID, k.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
				return Letter{}, err
			}
		}
	}
	if err := d.audited(ctx, registrar, "eid.letter", p.SubjectID, map[string]string{"expires": l.Expires.Format(time.RFC3339)}); err != nil {
		return Letter{}, err
	}
	return l, nil
}

// Reset clears a person's password, authenticator app and passkeys and issues a new letter
// (a lost phone, a forgotten password, a stolen key).
func (d *Desk) Reset(ctx context.Context, registrar, subject string) (Letter, error) {
	if err := d.registrar(ctx, registrar); err != nil {
		return Letter{}, err
	}
	p, err := d.db.Person(ctx, subject)
	if err != nil {
		return Letter{}, err
	}
	if p.Status == store.EIDRevoked {
		return Letter{}, ErrRevoked
	}
	if err := d.audited(ctx, registrar, "eid.reset", subject, nil); err != nil {
		return Letter{}, err
	}
	return d.letter(ctx, registrar, p, true)
}

// SetStatus suspends (store.EIDSuspended), resumes (store.EIDActive) or revokes
// (store.EIDRevoked, final) a person's eID means.
func (d *Desk) SetStatus(ctx context.Context, registrar, subject, status string) error {
	if err := d.registrar(ctx, registrar); err != nil {
		return err
	}
	switch status {
	case store.EIDActive, store.EIDSuspended, store.EIDRevoked:
	default:
		return fmt.Errorf("%w: status %q", ErrInvalid, status)
	}
	err := d.db.UpdatePerson(ctx, subject, func(p store.Person) (store.Person, error) {
		if p.Status == store.EIDRevoked && status != store.EIDRevoked {
			return p, ErrRevoked
		}
		p.Status = status
		return p, nil
	})
	if err != nil {
		return err
	}
	if status == store.EIDRevoked {
		// A revoked means cannot be activated again: its pending code goes.
		if err := d.db.UpdateCredential(ctx, subject, func(c store.Credential) (store.Credential, error) {
			c.ActivationHash, c.ActivationExpires = nil, time.Time{}
			return c, nil
		}); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
	}
	return d.audited(ctx, registrar, "eid."+map[string]string{store.EIDActive: "resume", store.EIDSuspended: "suspend", store.EIDRevoked: "revoke"}[status], subject, nil)
}

// historyMax bounds how many records History returns: the most recent are kept.
const historyMax = 1000

// History is the audit trail of subject, oldest first: what registrars did to their eID means
// and their own logins, activation and passkeys. It reads the log's index by subject
// (store.AuditLog.AuditOf), so its cost follows this person's records, not the log's size;
// past historyMax records, the oldest are left out.
func (d *Desk) History(ctx context.Context, registrar, subject string) ([]store.AuditRecord, error) {
	if err := d.registrar(ctx, registrar); err != nil {
		return nil, err
	}
	var out []store.AuditRecord
	for from := int64(1); ; {
		recs, err := d.db.AuditOf(ctx, subject, from, 500)
		if err != nil {
			return nil, err
		}
		if len(recs) == 0 {
			break
		}
		out = append(out, recs...)
		if len(out) > historyMax {
			out = append(out[:0], out[len(out)-historyMax:]...)
		}
		from = recs[len(recs)-1].Seq + 1
	}
	return out, nil
}
