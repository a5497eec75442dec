package sqlstore

import (
	"context"
	"database/sql"
	"errors"

	"github.com/vula-eid/vula/internal/store"
)

// Status is what `vula status` shows of the database: read-only, no lock taken, so it may run
// beside any number of servers.
type Status struct {
	Dialect       string           `json:"dialect"`
	SchemaVersion int64            `json:"schema_version"`
	Counts        map[string]int64 `json:"counts"`
	// AuditHead is the last audit record and AuditCheckpoint the last checkpoint; nil if none.
	AuditHead       *store.AuditRecord `json:"-"`
	AuditCheckpoint *store.AuditRecord `json:"-"`
	// Hierarchy holds the newest unrevoked certificate of each active CA, OCSP, TSA and trusted
	// list signer key, by the key's owner (root, person-ca, ..., tsl-signer).
	Hierarchy map[string]store.Certificate `json:"-"`
}

// statusCounts names each count and the query that makes it.
var statusCounts = []struct{ name, query string }{
	{"clients", `SELECT count(*) FROM clients`},
	{"persons", `SELECT count(*) FROM persons`},
	{"organizations", `SELECT count(*) FROM organizations`},
	{"keys", `SELECT count(*) FROM key_records`},
	{"certificates", `SELECT count(*) FROM certificates`},
	{"revoked", `SELECT count(*) FROM certificates WHERE revoked <> 0`},
	{"transactions", `SELECT count(*) FROM transactions`},
	{"audit_records", `SELECT count(*) FROM audit_log`},
}

// Status reads the schema version, the row counts and the audit log's head and last checkpoint.
func (d *DB) Status(ctx context.Context) (Status, error) {
	s := Status{Dialect: "sqlite", Counts: map[string]int64{}}
	if d.dialect == postgresDialect {
		s.Dialect = "postgres"
	}
	if err := d.db.QueryRowContext(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&s.SchemaVersion); err != nil {
		return s, d.wrap("status", err)
	}
	for _, c := range statusCounts {
		var n int64
		if err := d.db.QueryRowContext(ctx, c.query).Scan(&n); err != nil {
			return s, d.wrap("status: "+c.name, err)
		}
		s.Counts[c.name] = n
	}
	rows, err := d.db.QueryContext(ctx, `SELECT k.owner, c.ca, c.serial, c.subject, c.key_uri, c.not_before, c.not_after
		FROM key_records k JOIN certificates c ON c.key_uri = k.uri
		WHERE k.state = 'active' AND k.purpose IN ('ca', 'ocsp', 'tsa', 'seal:trusted-list') AND c.revoked = 0 ORDER BY c.not_after`)
	if err != nil {
		return s, d.wrap("status: hierarchy", err)
	}
	defer func() { _ = rows.Close() }() // rows.Err below reports what went wrong
	s.Hierarchy = map[string]store.Certificate{}
	for rows.Next() {
		var owner string
		var c store.Certificate
		var nb, na int64
		if err := rows.Scan(&owner, &c.CA, &c.Serial, &c.Subject, &c.KeyURI, &nb, &na); err != nil {
			return s, d.wrap("status: hierarchy", err)
		}
		c.NotBefore, c.NotAfter = fromMicros(nb), fromMicros(na)
		s.Hierarchy[owner] = c // ordered by not_after: the newest wins
	}
	if err := rows.Err(); err != nil {
		return s, d.wrap("status: hierarchy", err)
	}
	if s.AuditHead, err = d.auditOne(ctx, `SELECT `+auditCols+` FROM audit_log ORDER BY seq DESC LIMIT 1`); err != nil {
		return s, err
	}
	s.AuditCheckpoint, err = d.auditOne(ctx, `SELECT `+auditCols+` FROM audit_log WHERE action = 'checkpoint' ORDER BY seq DESC LIMIT 1`)
	return s, err
}

// auditOne reads at most one audit record; nil when there is none.
func (d *DB) auditOne(ctx context.Context, query string) (*store.AuditRecord, error) {
	a, err := scanAudit(d.db.QueryRowContext(ctx, query))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, d.wrap("status: audit", err)
	}
	return &a, nil
}
