// Package sqlstore is the durable store on SQLite (the embedded default, modernc.org/sqlite, no
// cgo) and PostgreSQL (jackc/pgx), one implementation over database/sql with a dialect switch
// only where the two differ: column types in the migrations, how a writer takes the lock.
//
// Times are stored as microseconds since the epoch and lists as JSON text, so that both databases
// keep exactly the same values. SQLite runs in WAL mode with synchronous=FULL and every
// transaction taken IMMEDIATE: a committed write survives a crash and writers never deadlock on
// lock upgrades.
//
// Schema migrations are embedded, one directory per dialect (migrations/sqlite,
// migrations/postgres), named NNNN_name.sql and applied in order at Open, in one transaction,
// under a lock (PostgreSQL: an advisory lock; SQLite: the IMMEDIATE transaction's), and recorded
// in schema_migrations. A migration file is split into statements at semicolons, so a statement
// must not contain one.
package sqlstore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/vula-eid/vula/internal/store"
)

//go:embed migrations
var migrations embed.FS

type dialect int

const (
	sqliteDialect dialect = iota
	postgresDialect
)

// DB is a durable store.
type DB struct {
	db      *sql.DB
	dialect dialect
	log     *slog.Logger

	// auditInsert is the one-row audit INSERT, prepared once (SQLite only, see AppendAudit).
	txGroup txGroup // group commit of CreateTransaction on SQLite

	// stmts holds the statements prepared on SQLite (query -> *sql.Stmt), nStmts their count.
	stmts  sync.Map
	nStmts atomic.Int64

	auditOnce   sync.Once
	auditInsert *sql.Stmt
	auditErr    error
	// checkpointUpsert replaces the audit log's latest checkpoint (SQLite only, as auditInsert).
	checkpointOnce   sync.Once
	checkpointUpsert *sql.Stmt
	checkpointErr    error
}

var _ store.Durable = (*DB)(nil)

// Open connects to dsn and applies the migrations that are missing. dsn is
//
//   - sqlite:<path>, a file path relative to the working directory (sqlite:var/vula.db) or
//     absolute (sqlite:/var/lib/vula/vula.db; sqlite:///var/lib/vula/vula.db is the same file);
//     the file is created, owner-only, if it does not exist, but its directory must;
//   - postgres://user@host:port/db?sslmode=... (or postgresql://), as pgx reads it.
//
// A database that does not answer gives an error wrapping store.ErrUnavailable: the caller may
// retry.
func Open(ctx context.Context, dsn string, log *slog.Logger) (*DB, error) {
	d := &DB{log: log}
	var err error
	switch {
	case strings.HasPrefix(dsn, "sqlite:"):
		path := strings.TrimPrefix(dsn, "sqlite:")
		if strings.HasPrefix(path, "///") {
			path = path[2:]
		}
		if path == "" {
			return nil, errors.New("sqlstore: sqlite: empty path")
		}
		if strings.HasPrefix(path, ":memory:") || strings.Contains(path, "mode=memory") {
			// Each pooled connection would see a database of its own.
			return nil, errors.New("sqlstore: sqlite: an in-memory database is not supported, give a file path")
		}
		// The database holds credentials and the audit log: owner-only, like the keystore.
		// SQLite gives its WAL and shared-memory files the database file's mode.
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil { // a first command before any serve
			return nil, fmt.Errorf("sqlstore: sqlite: %w", err)
		}
		if f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600); err == nil {
			_ = f.Close() // only created, nothing written
		}
		q := url.Values{}
		for _, p := range []string{"busy_timeout(10000)", "journal_mode(WAL)", "synchronous(FULL)", "foreign_keys(1)"} {
			q.Add("_pragma", p)
		}
		q.Set("_txlock", "immediate")
		// The driver reads a file: URI, in which ?, # and % would be taken for syntax.
		uriPath := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(path)
		d.db, err = sql.Open("sqlite", "file:"+uriPath+"?"+q.Encode())
		d.dialect = sqliteDialect
		if err == nil {
			// Keep the connections that concurrent requests open: with database/sql's 2 idle
			// ones, every connection past the second was closed when handed back and opened
			// again (its pragmas, the schema read, each prepared statement prepared anew),
			// which was 13 % of a seal's server CPU at 8 clients. The number open stays
			// unbounded, so that nothing that holds a connection waits for another.
			d.db.SetMaxIdleConns(DefaultPool)
		}
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		d.db, err = sql.Open("pgx", dsn)
		d.dialect = postgresDialect
		if err == nil {
			d.SizePool(DefaultPool)
		}
	default:
		return nil, fmt.Errorf("sqlstore: want a sqlite:<path> or postgres:// DSN")
	}
	if err != nil {
		return nil, fmt.Errorf("sqlstore: %w", err)
	}
	// A new SQLite file is switched to WAL by the first connection's pragmas; a handle opened
	// at that very moment can get SQLITE_BUSY without the busy handler running (1 run in 40 of
	// TestConcurrentOpen). Such a handle tries again, for as long as busy_timeout would wait.
	err = d.migrate(ctx)
	for deadline := time.Now().Add(10 * time.Second); d.dialect == sqliteDialect && isBusy(err) && time.Now().Before(deadline); {
		select {
		case <-ctx.Done():
			err = ctx.Err()
		case <-time.After(20 * time.Millisecond):
			err = d.migrate(ctx)
		}
	}
	if err != nil {
		_ = d.db.Close() // the open error is the one to report
		return nil, err
	}
	return d, nil
}

// DefaultPool is the PostgreSQL connection pool's size unless configured (store.durable_pool).
const DefaultPool = 16

// SizePool sets a PostgreSQL pool to n connections, all kept open when idle: database/sql keeps
// only 2 idle ones by default, so under more than two concurrent requests every request past the
// second opened a new connection (TCP, authentication, a backend process), and the token rate
// fell from 1,150/s at two clients to 57–130/s at eight. Connections are renewed every half
// hour, so a failover or a restarted PostgreSQL is picked up. SQLite's pool keeps DefaultPool idle
// connections (see Open).
func (d *DB) SizePool(n int) {
	if d.dialect != postgresDialect || n <= 0 {
		return
	}
	d.db.SetMaxOpenConns(n)
	d.db.SetMaxIdleConns(n)
	d.db.SetConnMaxLifetime(30 * time.Minute)
	d.db.SetConnMaxIdleTime(5 * time.Minute)
}

// PoolStats are the pool's figures (for tests and status).
func (d *DB) PoolStats() sql.DBStats { return d.db.Stats() }

// isBusy reports whether err is SQLite's "database is locked".
func isBusy(err error) bool {
	var liteErr *sqlite.Error
	return errors.As(err, &liteErr) && (liteErr.Code()&0xff == sqlite3.SQLITE_BUSY || liteErr.Code()&0xff == sqlite3.SQLITE_LOCKED)
}

// Ping reports whether the database answers.
func (d *DB) Ping(ctx context.Context) error {
	if err := d.db.PingContext(ctx); err != nil {
		return d.wrap("ping", err)
	}
	return nil
}

// Close closes the connection pool.
func (d *DB) Close() error {
	var err error
	if d.auditInsert != nil {
		err = d.auditInsert.Close()
	}
	if d.checkpointUpsert != nil {
		err = errors.Join(err, d.checkpointUpsert.Close())
	}
	d.stmts.Range(func(_, st any) bool {
		err = errors.Join(err, st.(*sql.Stmt).Close())
		return true
	})
	return errors.Join(err, d.db.Close())
}

func (d *DB) migrate(ctx context.Context) error {
	dir := "migrations/sqlite"
	if d.dialect == postgresDialect {
		dir = "migrations/postgres"
	}
	entries, err := fs.ReadDir(migrations, dir)
	if err != nil {
		return err
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].Name() < entries[j].Name() })
	return d.inTx(ctx, "migrate", func(tx *sql.Tx) error {
		if d.dialect == postgresDialect {
			// Replicas starting together wait here instead of racing to create the schema.
			if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(715100)`); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)`); err != nil {
			return err
		}
		for _, e := range entries {
			v, err := strconv.Atoi(strings.SplitN(e.Name(), "_", 2)[0])
			if err != nil {
				return fmt.Errorf("migration %s: bad name", e.Name())
			}
			var n int
			if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations WHERE version = $1`, v).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				continue
			}
			body, err := fs.ReadFile(migrations, dir+"/"+e.Name())
			if err != nil {
				return err
			}
			for _, stmt := range strings.Split(string(body), ";") {
				if strings.TrimSpace(stmt) == "" {
					continue
				}
				if _, err := tx.ExecContext(ctx, stmt); err != nil {
					return fmt.Errorf("migration %s: %w", e.Name(), err)
				}
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)`, v, micros(time.Now())); err != nil {
				return err
			}
			d.log.Info("applied schema migration", "version", v, "name", e.Name())
		}
		return nil
	})
}

// inTx runs f in a transaction (IMMEDIATE on SQLite) and commits when f returns nil.
func (d *DB) inTx(ctx context.Context, op string, f func(tx *sql.Tx) error) error {
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return d.wrap(op, err)
	}
	if err := f(tx); err != nil {
		_ = tx.Rollback() // f's error is the one to report; the transaction ends either way
		return d.wrap(op, err)
	}
	if err := tx.Commit(); err != nil {
		return d.wrap(op, err)
	}
	return nil
}

// forUpdate is the row-locking suffix of a read that precedes an update. SQLite needs none: an
// IMMEDIATE transaction already holds the database's write lock.
func (d *DB) forUpdate() string {
	if d.dialect == postgresDialect {
		return " FOR UPDATE"
	}
	return ""
}

// callerError carries an error returned by a caller's function (an updater, an audit appender's
// next) through inTx, so that wrap gives it back as it is instead of mapping it.
type callerError struct{ err error }

func (e callerError) Error() string { return e.err.Error() }

// wrap maps driver errors to the store's sentinels. Errors already wrapping a sentinel, and
// errors from callers' functions, pass through.
func (d *DB) wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	var ce callerError
	if errors.As(err, &ce) {
		return ce.err
	}
	for _, s := range []error{store.ErrNotFound, store.ErrConflict, store.ErrUnavailable} {
		if errors.Is(err, s) {
			return err
		}
	}
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("sqlstore: %s: %w", op, store.ErrNotFound)
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		if pgErr.Code == "23505" {
			return fmt.Errorf("sqlstore: %s: %w: %s", op, store.ErrConflict, pgErr.ConstraintName)
		}
		if strings.HasPrefix(pgErr.Code, "08") || strings.HasPrefix(pgErr.Code, "57P") {
			return fmt.Errorf("sqlstore: %s: %w: %s", op, store.ErrUnavailable, pgErr.Message)
		}
		return fmt.Errorf("sqlstore: %s: %w", op, err)
	}
	var liteErr *sqlite.Error
	if errors.As(err, &liteErr) {
		switch liteErr.Code() {
		case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
			return fmt.Errorf("sqlstore: %s: %w: %v", op, store.ErrConflict, err)
		case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_FULL:
			return fmt.Errorf("sqlstore: %s: %w: %w", op, store.ErrUnavailable, err)
		}
		return fmt.Errorf("sqlstore: %s: %w", op, err)
	}
	var netErr net.Error
	var connErr *pgconn.ConnectError
	if errors.As(err, &netErr) || errors.As(err, &connErr) || errors.Is(err, driver.ErrBadConn) ||
		errors.Is(err, context.DeadlineExceeded) || pgconn.SafeToRetry(err) || isConnClosed(err) {
		return fmt.Errorf("sqlstore: %s: %w: %v", op, store.ErrUnavailable, err)
	}
	return fmt.Errorf("sqlstore: %s: %w", op, err)
}

func isConnClosed(err error) bool {
	s := err.Error()
	return strings.Contains(s, "conn closed") || strings.Contains(s, "connection refused") ||
		strings.Contains(s, "unexpected EOF") || strings.Contains(s, "broken pipe") || strings.Contains(s, "connection reset")
}

func micros(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}

func fromMicros(us int64) time.Time {
	if us == 0 {
		return time.Time{}
	}
	return time.UnixMicro(us).UTC()
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// rowScanner is *sql.Row or *sql.Rows.
type rowScanner interface{ Scan(dest ...any) error }

// maxPrepared bounds the statements prepared and kept on SQLite: the queries are constants of
// this package (and a few IN lists of bounded length), so it is never reached in practice.
const maxPrepared = 256

// prepared returns query prepared once on SQLite, where parsing a statement costs about as
// much as running it (a sixth of a seal's durable-store CPU went to parsing); nil on PostgreSQL,
// whose driver caches prepared statements itself, or when the statement cannot be prepared
// (the caller runs it unprepared and gets its error).
func (d *DB) prepared(ctx context.Context, query string) *sql.Stmt {
	if d.dialect != sqliteDialect {
		return nil
	}
	if st, ok := d.stmts.Load(query); ok {
		return st.(*sql.Stmt)
	}
	if d.nStmts.Load() >= maxPrepared {
		return nil
	}
	st, err := d.db.PrepareContext(ctx, query)
	if err != nil {
		return nil
	}
	if old, loaded := d.stmts.LoadOrStore(query, st); loaded {
		_ = st.Close() // another goroutine prepared it first
		return old.(*sql.Stmt)
	}
	d.nStmts.Add(1)
	return st
}

func (d *DB) queryRow(ctx context.Context, query string, args ...any) *sql.Row {
	if st := d.prepared(ctx, query); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return d.db.QueryRowContext(ctx, query, args...)
}

func (d *DB) query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if st := d.prepared(ctx, query); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return d.db.QueryContext(ctx, query, args...)
}

func (d *DB) execute(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if st := d.prepared(ctx, query); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return d.db.ExecContext(ctx, query, args...)
}

// get runs a one-row query and scans it with scan, mapping no rows to ErrNotFound.
func get[T any](ctx context.Context, d *DB, op, query string, scan func(rowScanner) (T, error), args ...any) (T, error) {
	v, err := scan(d.queryRow(ctx, query, args...))
	return v, d.wrap(op, err)
}

// list runs a query and scans every row.
func list[T any](ctx context.Context, d *DB, op, query string, scan func(rowScanner) (T, error), args ...any) ([]T, error) {
	rows, err := d.query(ctx, query, args...)
	if err != nil {
		return nil, d.wrap(op, err)
	}
	defer func() { _ = rows.Close() }() // rows.Err below reports what went wrong
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, d.wrap(op, err)
		}
		out = append(out, v)
	}
	return out, d.wrap(op, rows.Err())
}

// exec runs a statement and reports ErrNotFound when it touched no row.
func (d *DB) exec(ctx context.Context, op, query string, args ...any) error {
	res, err := d.execute(ctx, query, args...)
	if err != nil {
		return d.wrap(op, err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return fmt.Errorf("sqlstore: %s: %w", op, store.ErrNotFound)
	}
	return nil
}

// update reads one row under the write lock, applies f, and writes it back, atomically.
func update[T any](ctx context.Context, d *DB, op, selectQ string, scan func(rowScanner) (T, error), key string,
	f func(T) (T, error), write func(tx *sql.Tx, v T) error) error {
	return d.inTx(ctx, op, func(tx *sql.Tx) error {
		v, err := scan(tx.QueryRowContext(ctx, selectQ+d.forUpdate(), key))
		if err != nil {
			return err
		}
		if v, err = f(v); err != nil {
			return callerError{err}
		}
		return write(tx, v)
	})
}
