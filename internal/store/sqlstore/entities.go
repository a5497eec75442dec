package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/vula-eid/vula/internal/store"
)

func jsonText(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func fromJSON[T any](s string) (T, error) {
	var v T
	err := json.Unmarshal([]byte(s), &v)
	return v, err
}

func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// --- clients

const clientCols = `id, secret_hash, redirect_uris, grant_types, response_types, scopes, token_endpoint_auth_method,
 jwks, jwks_uri, require_par, sector_identifier, organization_id, created, name, allowed_acr, post_logout_redirect_uris, policy`

func scanClient(r rowScanner) (store.Client, error) {
	var c store.Client
	var redirect, grants, responses, scopes, acr, logout, policy string
	var par int
	var created int64
	err := r.Scan(&c.ID, &c.SecretHash, &redirect, &grants, &responses, &scopes, &c.TokenEndpointAuthMethod,
		&c.JWKS, &c.JWKSURI, &par, &c.SectorIdentifier, &c.OrganizationID, &created, &c.Name, &acr, &logout, &policy)
	if err != nil {
		return c, err
	}
	c.RequirePAR, c.Created = par != 0, fromMicros(created)
	if c.Policy, err = fromJSON[store.ClientPolicy](policy); err != nil {
		return c, fmt.Errorf("client %s: policy: %w", c.ID, err)
	}
	for _, f := range []struct {
		dst *[]string
		src string
	}{{&c.RedirectURIs, redirect}, {&c.GrantTypes, grants}, {&c.ResponseTypes, responses}, {&c.Scopes, scopes},
		{&c.AllowedACR, acr}, {&c.PostLogoutRedirectURIs, logout}} {
		if *f.dst, err = fromJSON[[]string](f.src); err != nil {
			return c, fmt.Errorf("client %s: %w", c.ID, err)
		}
	}
	return c, nil
}

func clientArgs(c store.Client) []any {
	return []any{c.ID, c.SecretHash, jsonText(c.RedirectURIs), jsonText(c.GrantTypes), jsonText(c.ResponseTypes),
		jsonText(c.Scopes), c.TokenEndpointAuthMethod, c.JWKS, c.JWKSURI, b2i(c.RequirePAR), c.SectorIdentifier,
		c.OrganizationID, micros(c.Created), c.Name, jsonText(c.AllowedACR), jsonText(c.PostLogoutRedirectURIs), jsonText(c.Policy)}
}

// CreateClient stores c.
func (d *DB) CreateClient(ctx context.Context, c store.Client) error {
	_, err := d.db.ExecContext(ctx, `INSERT INTO clients (`+clientCols+`) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17)`, clientArgs(c)...)
	return d.wrap("create client", err)
}

// Client returns one client.
func (d *DB) Client(ctx context.Context, id string) (store.Client, error) {
	return get(ctx, d, "client "+id, `SELECT `+clientCols+` FROM clients WHERE id = $1`, scanClient, id)
}

// Clients lists clients by id.
func (d *DB) Clients(ctx context.Context) ([]store.Client, error) {
	return list(ctx, d, "clients", `SELECT `+clientCols+` FROM clients ORDER BY id`, scanClient)
}

// UpdateClient applies f atomically; the id cannot change.
func (d *DB) UpdateClient(ctx context.Context, id string, f func(store.Client) (store.Client, error)) error {
	return update(ctx, d, "update client "+id, `SELECT `+clientCols+` FROM clients WHERE id = $1`, scanClient, id, f,
		func(tx *sql.Tx, c store.Client) error {
			c.ID = id
			_, err := tx.ExecContext(ctx, `UPDATE clients SET secret_hash=$2, redirect_uris=$3, grant_types=$4, response_types=$5,
 scopes=$6, token_endpoint_auth_method=$7, jwks=$8, jwks_uri=$9, require_par=$10, sector_identifier=$11,
 organization_id=$12, created=$13, name=$14, allowed_acr=$15, post_logout_redirect_uris=$16, policy=$17 WHERE id=$1`, clientArgs(c)...)
			return err
		})
}

// DeleteClient removes a client.
func (d *DB) DeleteClient(ctx context.Context, id string) error {
	return d.exec(ctx, "delete client "+id, `DELETE FROM clients WHERE id = $1`, id)
}

// --- persons

const personCols = `subject_id, personal_number, given_name, family_name, birth_date, email, official, created,
 proofing, proofed_by, proofed_at, document_number, document_expiry, status, roles`

func scanPerson(r rowScanner) (store.Person, error) {
	var p store.Person
	var email sql.NullString
	var official int
	var created, proofed int64
	var roles string
	err := r.Scan(&p.SubjectID, &p.PersonalNumber, &p.GivenName, &p.FamilyName, &p.BirthDate, &email, &official, &created,
		&p.Proofing, &p.ProofedBy, &proofed, &p.DocumentNumber, &p.DocumentExpiry, &p.Status, &roles)
	if err != nil {
		return p, err
	}
	p.Email, p.Official, p.Created, p.ProofedAt = email.String, official != 0, fromMicros(created), fromMicros(proofed)
	if p.Roles, err = fromJSON[[]string](roles); err != nil {
		return p, fmt.Errorf("person %s: roles: %w", p.SubjectID, err)
	}
	return p, nil
}

func personArgs(p store.Person) []any {
	return []any{p.SubjectID, p.PersonalNumber, p.GivenName, p.FamilyName, p.BirthDate, nullString(p.Email), b2i(p.Official), micros(p.Created),
		p.Proofing, p.ProofedBy, micros(p.ProofedAt), p.DocumentNumber, p.DocumentExpiry, p.Status, jsonText(p.Roles)}
}

// CreatePerson stores p.
func (d *DB) CreatePerson(ctx context.Context, p store.Person) error {
	_, err := d.db.ExecContext(ctx, `INSERT INTO persons (`+personCols+`) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15)`, personArgs(p)...)
	return d.wrap("create person", err)
}

// Person returns one person by subject id.
func (d *DB) Person(ctx context.Context, id string) (store.Person, error) {
	return get(ctx, d, "person", `SELECT `+personCols+` FROM persons WHERE subject_id = $1`, scanPerson, id)
}

// PersonByPersonalNumber returns one person by personal number.
func (d *DB) PersonByPersonalNumber(ctx context.Context, n string) (store.Person, error) {
	return get(ctx, d, "person by personal number", `SELECT `+personCols+` FROM persons WHERE personal_number = $1`, scanPerson, n)
}

// PersonByEmail returns one person by e-mail.
func (d *DB) PersonByEmail(ctx context.Context, email string) (store.Person, error) {
	return get(ctx, d, "person by e-mail", `SELECT `+personCols+` FROM persons WHERE email = $1`, scanPerson, email)
}

// Persons lists persons by subject id.
func (d *DB) Persons(ctx context.Context) ([]store.Person, error) {
	return list(ctx, d, "persons", `SELECT `+personCols+` FROM persons ORDER BY subject_id`, scanPerson)
}

// UpdatePerson applies f atomically; the subject id cannot change.
func (d *DB) UpdatePerson(ctx context.Context, id string, f func(store.Person) (store.Person, error)) error {
	return update(ctx, d, "update person", `SELECT `+personCols+` FROM persons WHERE subject_id = $1`, scanPerson, id, f,
		func(tx *sql.Tx, p store.Person) error {
			p.SubjectID = id
			_, err := tx.ExecContext(ctx, `UPDATE persons SET personal_number=$2, given_name=$3, family_name=$4, birth_date=$5,
 email=$6, official=$7, created=$8, proofing=$9, proofed_by=$10, proofed_at=$11, document_number=$12,
 document_expiry=$13, status=$14, roles=$15 WHERE subject_id=$1`, personArgs(p)...)
			return err
		})
}

// DeletePerson removes a person and their credential in one transaction.
func (d *DB) DeletePerson(ctx context.Context, id string) error {
	return d.inTx(ctx, "delete person", func(tx *sql.Tx) error {
		for _, q := range []string{`DELETE FROM credentials WHERE subject_id = $1`, `DELETE FROM passkeys WHERE subject_id = $1`} {
			if _, err := tx.ExecContext(ctx, q, id); err != nil {
				return err
			}
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM persons WHERE subject_id = $1`, id)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err == nil && n == 0 {
			return fmt.Errorf("person: %w", store.ErrNotFound)
		}
		return nil
	})
}

// --- credentials

const credentialCols = `subject_id, password_hash, totp_seed_sealed, failed_attempts, locked_until, updated, activation_hash, activation_expires`

func scanCredential(r rowScanner) (store.Credential, error) {
	var c store.Credential
	var locked, updated, activation int64
	err := r.Scan(&c.SubjectID, &c.PasswordHash, &c.TOTPSeedSealed, &c.FailedAttempts, &locked, &updated, &c.ActivationHash, &activation)
	c.LockedUntil, c.Updated, c.ActivationExpires = fromMicros(locked), fromMicros(updated), fromMicros(activation)
	return c, err
}

func credentialArgs(c store.Credential) []any {
	return []any{c.SubjectID, c.PasswordHash, c.TOTPSeedSealed, c.FailedAttempts, micros(c.LockedUntil), micros(c.Updated),
		c.ActivationHash, micros(c.ActivationExpires)}
}

// PutCredential creates or replaces a person's credential.
func (d *DB) PutCredential(ctx context.Context, c store.Credential) error {
	return d.inTx(ctx, "put credential", func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM persons WHERE subject_id = $1`, c.SubjectID).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("person %s: %w", c.SubjectID, store.ErrNotFound)
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO credentials (`+credentialCols+`) VALUES ($1,$2,$3,$4,$5,$6,$7,$8)
 ON CONFLICT (subject_id) DO UPDATE SET password_hash=excluded.password_hash, totp_seed_sealed=excluded.totp_seed_sealed,
 failed_attempts=excluded.failed_attempts, locked_until=excluded.locked_until, updated=excluded.updated,
 activation_hash=excluded.activation_hash, activation_expires=excluded.activation_expires`, credentialArgs(c)...)
		return err
	})
}

// Credential returns a person's credential.
func (d *DB) Credential(ctx context.Context, id string) (store.Credential, error) {
	return get(ctx, d, "credential", `SELECT `+credentialCols+` FROM credentials WHERE subject_id = $1`, scanCredential, id)
}

// UpdateCredential applies f atomically.
func (d *DB) UpdateCredential(ctx context.Context, id string, f func(store.Credential) (store.Credential, error)) error {
	return update(ctx, d, "update credential", `SELECT `+credentialCols+` FROM credentials WHERE subject_id = $1`, scanCredential, id, f,
		func(tx *sql.Tx, c store.Credential) error {
			c.SubjectID = id
			_, err := tx.ExecContext(ctx, `UPDATE credentials SET password_hash=$2, totp_seed_sealed=$3, failed_attempts=$4,
 locked_until=$5, updated=$6, activation_hash=$7, activation_expires=$8 WHERE subject_id=$1`, credentialArgs(c)...)
			return err
		})
}

// --- passkeys

const passkeyCols = `id, subject_id, name, level, record, created, last_used`

func scanPasskey(r rowScanner) (store.Passkey, error) {
	var p store.Passkey
	var created, used int64
	err := r.Scan(&p.ID, &p.SubjectID, &p.Name, &p.Level, &p.Record, &created, &used)
	p.Created, p.LastUsed = fromMicros(created), fromMicros(used)
	return p, err
}

func passkeyArgs(p store.Passkey) []any {
	return []any{p.ID, p.SubjectID, p.Name, p.Level, p.Record, micros(p.Created), micros(p.LastUsed)}
}

// CreatePasskey stores p.
func (d *DB) CreatePasskey(ctx context.Context, p store.Passkey) error {
	return d.inTx(ctx, "create passkey", func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM persons WHERE subject_id = $1`, p.SubjectID).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("person %s: %w", p.SubjectID, store.ErrNotFound)
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO passkeys (`+passkeyCols+`) VALUES ($1,$2,$3,$4,$5,$6,$7)`, passkeyArgs(p)...)
		return err
	})
}

// Passkey returns one passkey by credential id.
func (d *DB) Passkey(ctx context.Context, id []byte) (store.Passkey, error) {
	return get(ctx, d, "passkey", `SELECT `+passkeyCols+` FROM passkeys WHERE id = $1`, scanPasskey, id)
}

// PasskeysOf lists a person's passkeys, oldest first.
func (d *DB) PasskeysOf(ctx context.Context, subject string) ([]store.Passkey, error) {
	return list(ctx, d, "passkeys", `SELECT `+passkeyCols+` FROM passkeys WHERE subject_id = $1 ORDER BY created, id`, scanPasskey, subject)
}

// UpdatePasskey applies f atomically; the id and owner cannot change.
func (d *DB) UpdatePasskey(ctx context.Context, id []byte, f func(store.Passkey) (store.Passkey, error)) error {
	return d.inTx(ctx, "update passkey", func(tx *sql.Tx) error {
		p, err := scanPasskey(tx.QueryRowContext(ctx, `SELECT `+passkeyCols+` FROM passkeys WHERE id = $1`+d.forUpdate(), id))
		if err != nil {
			return err
		}
		owner := p.SubjectID
		if p, err = f(p); err != nil {
			return callerError{err}
		}
		p.ID, p.SubjectID = id, owner
		_, err = tx.ExecContext(ctx, `UPDATE passkeys SET subject_id=$2, name=$3, level=$4, record=$5, created=$6, last_used=$7 WHERE id=$1`, passkeyArgs(p)...)
		return err
	})
}

// DeletePasskey removes one of a person's passkeys.
func (d *DB) DeletePasskey(ctx context.Context, subject string, id []byte) error {
	return d.exec(ctx, "delete passkey", `DELETE FROM passkeys WHERE id = $1 AND subject_id = $2`, id, subject)
}

// --- organizations

const orgCols = `id, name, identifier, created`

func scanOrg(r rowScanner) (store.Organization, error) {
	var o store.Organization
	var created int64
	err := r.Scan(&o.ID, &o.Name, &o.Identifier, &created)
	o.Created = fromMicros(created)
	return o, err
}

// CreateOrganization stores o.
func (d *DB) CreateOrganization(ctx context.Context, o store.Organization) error {
	_, err := d.db.ExecContext(ctx, `INSERT INTO organizations (`+orgCols+`) VALUES ($1,$2,$3,$4)`, o.ID, o.Name, o.Identifier, micros(o.Created))
	return d.wrap("create organization", err)
}

// Organization returns one organization.
func (d *DB) Organization(ctx context.Context, id string) (store.Organization, error) {
	return get(ctx, d, "organization "+id, `SELECT `+orgCols+` FROM organizations WHERE id = $1`, scanOrg, id)
}

// Organizations lists organizations by id.
func (d *DB) Organizations(ctx context.Context) ([]store.Organization, error) {
	return list(ctx, d, "organizations", `SELECT `+orgCols+` FROM organizations ORDER BY id`, scanOrg)
}

// UpdateOrganization applies f atomically.
func (d *DB) UpdateOrganization(ctx context.Context, id string, f func(store.Organization) (store.Organization, error)) error {
	return update(ctx, d, "update organization "+id, `SELECT `+orgCols+` FROM organizations WHERE id = $1`, scanOrg, id, f,
		func(tx *sql.Tx, o store.Organization) error {
			_, err := tx.ExecContext(ctx, `UPDATE organizations SET name=$2, identifier=$3, created=$4 WHERE id=$1`, id, o.Name, o.Identifier, micros(o.Created))
			return err
		})
}

// DeleteOrganization removes an organization.
func (d *DB) DeleteOrganization(ctx context.Context, id string) error {
	return d.exec(ctx, "delete organization "+id, `DELETE FROM organizations WHERE id = $1`, id)
}

// --- key records

const keyCols = `uri, purpose, owner, algorithm, state, created`

func scanKey(r rowScanner) (store.KeyRecord, error) {
	var k store.KeyRecord
	var created int64
	err := r.Scan(&k.URI, &k.Purpose, &k.Owner, &k.Algorithm, &k.State, &created)
	k.Created = fromMicros(created)
	return k, err
}

// PutKeyRecord creates or replaces a key record.
func (d *DB) PutKeyRecord(ctx context.Context, k store.KeyRecord) error {
	_, err := d.db.ExecContext(ctx, `INSERT INTO key_records (`+keyCols+`) VALUES ($1,$2,$3,$4,$5,$6)
 ON CONFLICT (uri) DO UPDATE SET purpose=excluded.purpose, owner=excluded.owner, algorithm=excluded.algorithm,
 state=excluded.state, created=excluded.created`, k.URI, k.Purpose, k.Owner, k.Algorithm, k.State, micros(k.Created))
	return d.wrap("put key record", err)
}

// KeyRecord returns one key record.
func (d *DB) KeyRecord(ctx context.Context, uri string) (store.KeyRecord, error) {
	return get(ctx, d, "key record", `SELECT `+keyCols+` FROM key_records WHERE uri = $1`, scanKey, uri)
}

// KeyRecords lists key records by URI.
func (d *DB) KeyRecords(ctx context.Context) ([]store.KeyRecord, error) {
	return list(ctx, d, "key records", `SELECT `+keyCols+` FROM key_records ORDER BY uri`, scanKey)
}

// DeleteKeyRecord removes a key record.
func (d *DB) DeleteKeyRecord(ctx context.Context, uri string) error {
	return d.exec(ctx, "delete key record", `DELETE FROM key_records WHERE uri = $1`, uri)
}

// --- certificates

const certCols = `ca, serial, subject, key_uri, profile, der, not_before, not_after, revoked, revoked_at, revocation_reason`

func scanCert(r rowScanner) (store.Certificate, error) {
	var c store.Certificate
	var nb, na, ra int64
	var revoked int
	err := r.Scan(&c.CA, &c.Serial, &c.Subject, &c.KeyURI, &c.Profile, &c.DER, &nb, &na, &revoked, &ra, &c.RevocationReason)
	c.NotBefore, c.NotAfter, c.Revoked, c.RevokedAt = fromMicros(nb), fromMicros(na), revoked != 0, fromMicros(ra)
	return c, err
}

// CreateCertificate stores c.
func (d *DB) CreateCertificate(ctx context.Context, c store.Certificate) error {
	_, err := d.db.ExecContext(ctx, `INSERT INTO certificates (`+certCols+`) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)`,
		c.CA, c.Serial, c.Subject, c.KeyURI, c.Profile, c.DER, micros(c.NotBefore), micros(c.NotAfter),
		b2i(c.Revoked), micros(c.RevokedAt), c.RevocationReason)
	return d.wrap("create certificate", err)
}

// Certificate returns one certificate.
func (d *DB) Certificate(ctx context.Context, ca, serial string) (store.Certificate, error) {
	return get(ctx, d, "certificate "+ca+"/"+serial, `SELECT `+certCols+` FROM certificates WHERE ca = $1 AND serial = $2`, scanCert, ca, serial)
}

// CertificateRevoked reads one certificate's revoked flag.
func (d *DB) CertificateRevoked(ctx context.Context, ca, serial string) (bool, error) {
	return get(ctx, d, "certificate status", `SELECT revoked FROM certificates WHERE ca = $1 AND serial = $2`, func(r rowScanner) (bool, error) {
		var revoked int
		err := r.Scan(&revoked)
		return revoked != 0, err
	}, ca, serial)
}

// CertificatesByCA lists a CA's certificates by serial.
func (d *DB) CertificatesByCA(ctx context.Context, ca string) ([]store.Certificate, error) {
	return list(ctx, d, "certificates", `SELECT `+certCols+` FROM certificates WHERE ca = $1 ORDER BY serial`, scanCert, ca)
}

// Revoke marks a certificate revoked, once.
func (d *DB) Revoke(ctx context.Context, ca, serial string, at time.Time, reason int) error {
	return d.inTx(ctx, "revoke "+ca+"/"+serial, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE certificates SET revoked = 1, revoked_at = $3, revocation_reason = $4
 WHERE ca = $1 AND serial = $2 AND revoked = 0`, ca, serial, micros(at), reason)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 1 {
			return nil
		}
		var revoked int
		if err := tx.QueryRowContext(ctx, `SELECT revoked FROM certificates WHERE ca = $1 AND serial = $2`, ca, serial).Scan(&revoked); err != nil {
			return err
		}
		return fmt.Errorf("already revoked: %w", store.ErrConflict)
	})
}

// RevokedCertificates lists a CA's revoked certificates by serial.
func (d *DB) RevokedCertificates(ctx context.Context, ca string) ([]store.Certificate, error) {
	return list(ctx, d, "revoked certificates", `SELECT `+certCols+` FROM certificates WHERE ca = $1 AND revoked = 1 ORDER BY serial`, scanCert, ca)
}

// NextCRLNumber counts up atomically, per CA.
func (d *DB) NextCRLNumber(ctx context.Context, ca string) (int64, error) {
	var n int64
	err := d.db.QueryRowContext(ctx, `INSERT INTO crl_numbers (ca, n) VALUES ($1, 1)
 ON CONFLICT (ca) DO UPDATE SET n = crl_numbers.n + 1 RETURNING n`, ca).Scan(&n)
	return n, d.wrap("next CRL number", err)
}

// --- signature transactions

const txCols = `id, kind, actor, organization_id, subject_id, digests, format, level, state, created, completed`

func scanTx(r rowScanner) (store.Transaction, error) {
	var t store.Transaction
	var digests string
	var created, completed int64
	err := r.Scan(&t.ID, &t.Kind, &t.Actor, &t.OrganizationID, &t.SubjectID, &digests, &t.Format, &t.Level, &t.State, &created, &completed)
	if err != nil {
		return t, err
	}
	t.Created, t.Completed = fromMicros(created), fromMicros(completed)
	t.Digests, err = fromJSON[[][]byte](digests)
	return t, err
}

func txArgs(t store.Transaction) []any {
	return []any{t.ID, t.Kind, t.Actor, t.OrganizationID, t.SubjectID, jsonText(t.Digests), t.Format, t.Level, t.State, micros(t.Created), micros(t.Completed)}
}

const insertTx = `INSERT INTO transactions (` + txCols + `) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)`

// CreateTransaction stores t. On SQLite, transactions created at once are group-committed (see
// txGroup): each seal records one, and one synchronous commit a seal, whose fsync no other seal
// shared, was 18 % of a seal's server CPU. PostgreSQL groups concurrent commits' WAL flushes
// itself.
func (d *DB) CreateTransaction(ctx context.Context, t store.Transaction) error {
	if d.dialect == sqliteDialect {
		return d.txGroup.add(ctx, d, t)
	}
	_, err := d.execute(ctx, insertTx, txArgs(t)...)
	return d.wrap("create transaction", err)
}

// txGroup batches the transactions created while a batch is being written: the first of them
// writes the next batch in one database transaction when the one before is done.
type txGroup struct {
	mu      sync.Mutex // guards pending
	pending *txBatch
	writing sync.Mutex // one batch written at a time
}

type txBatch struct {
	recs []store.Transaction
	err  error   // the batch's, when errs is nil
	errs []error // each record's, when the batch failed and they were written one by one
	done chan struct{}
}

func (b *txBatch) errOf(i int) error {
	if b.errs != nil {
		return b.errs[i]
	}
	return b.err
}

func (g *txGroup) add(ctx context.Context, d *DB, t store.Transaction) error {
	g.mu.Lock()
	b, lead := g.pending, g.pending == nil
	if lead {
		b = &txBatch{done: make(chan struct{})}
		g.pending = b
	}
	i := len(b.recs)
	b.recs = append(b.recs, t)
	g.mu.Unlock()
	if !lead {
		<-b.done
		return b.errOf(i)
	}
	g.writing.Lock()
	g.mu.Lock()
	g.pending = nil // closed: later ones start the next batch
	g.mu.Unlock()
	// The batch carries others' records: the leader's cancellation must not drop them.
	ctx = context.WithoutCancel(ctx)
	b.err = d.inTx(ctx, "create transaction", func(tx *sql.Tx) error {
		for _, r := range b.recs {
			var err error
			if st := d.prepared(ctx, insertTx); st != nil {
				_, err = tx.StmtContext(ctx, st).ExecContext(ctx, txArgs(r)...)
			} else {
				_, err = tx.ExecContext(ctx, insertTx, txArgs(r)...)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	if b.err != nil && len(b.recs) > 1 && !errors.Is(b.err, store.ErrUnavailable) {
		// One bad record (a duplicate ID) must not fail the others: each on its own, and
		// each caller gets its own answer.
		errs := make([]error, len(b.recs))
		for j, r := range b.recs {
			_, err := d.execute(ctx, insertTx, txArgs(r)...)
			errs[j] = d.wrap("create transaction", err)
		}
		b.errs = errs
	}
	g.writing.Unlock()
	close(b.done)
	return b.errOf(i)
}

// Transaction returns one transaction.
func (d *DB) Transaction(ctx context.Context, id string) (store.Transaction, error) {
	return get(ctx, d, "transaction "+id, `SELECT `+txCols+` FROM transactions WHERE id = $1`, scanTx, id)
}

// TransactionsByActor lists an actor's transactions, oldest first.
func (d *DB) TransactionsByActor(ctx context.Context, actor string) ([]store.Transaction, error) {
	return list(ctx, d, "transactions", `SELECT `+txCols+` FROM transactions WHERE actor = $1 ORDER BY created, id`, scanTx, actor)
}

// UpdateTransaction applies f atomically.
func (d *DB) UpdateTransaction(ctx context.Context, id string, f func(store.Transaction) (store.Transaction, error)) error {
	return update(ctx, d, "update transaction "+id, `SELECT `+txCols+` FROM transactions WHERE id = $1`, scanTx, id, f,
		func(tx *sql.Tx, t store.Transaction) error {
			t.ID = id
			_, err := tx.ExecContext(ctx, `UPDATE transactions SET kind=$2, actor=$3, organization_id=$4, subject_id=$5, digests=$6,
 format=$7, level=$8, state=$9, created=$10, completed=$11 WHERE id=$1`, txArgs(t)...)
			return err
		})
}
