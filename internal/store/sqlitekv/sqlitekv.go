// Package sqlitekv is the ephemeral store of the embedded default: one table with an expiry
// column in a SQLite file of its own, so that sessions, one-time codes and the state of issued
// tokens survive a restart of the one process. Processes on one machine may share the file
// (SQLite's locks keep every operation atomic; `vula status` reads it beside the server);
// replicas on several machines share Redis instead (package rediskv).
//
// An expired entry is invisible at once (every read compares its expiry with the injected
// clock); a janitor goroutine deletes expired rows, and Close stops it. The file runs in WAL mode
// with synchronous=OFF: a commit is in the operating system's hands when it returns, so it
// survives the process being killed; an operating-system crash or a power cut may lose recent
// commits or damage the file, and Open then moves the damaged file aside and starts afresh (what
// it held lived minutes). That trade saves the fsync of every WAL checkpoint, which with
// synchronous=NORMAL cut the identity provider's token rate by a third to a half. The file is
// read through a memory map (mmap_size, 256 MiB), which saves a pread system call for every
// page a lookup visits (about a tenth of a token's store CPU). All statements of a process go
// through one connection, so its operations are serialised without contention; Take is one
// statement, CompareAndSwap and Incr one IMMEDIATE transaction each, atomic across processes
// too.
package sqlitekv

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/vula-eid/vula/internal/store"
)

// sweepEvery is how often the janitor deletes expired rows. Correctness does not depend on it.
const sweepEvery = time.Minute

// The entries are a rowid table with a unique index on the key, not a table keyed by it
// (WITHOUT ROWID): a token's session is about a kilobyte under a random key, and in a table
// keyed by it every put rewrote a random leaf page with an overflow page beside it; here the
// row is appended at the table's end and only the small key index takes a random insert
// (a third less CPU a token, BenchmarkTokenSessions).
const schema = `CREATE TABLE IF NOT EXISTS entries (
	key     TEXT NOT NULL UNIQUE,
	value   BLOB NOT NULL,
	expires INTEGER NOT NULL -- Unix nanoseconds
);
CREATE INDEX IF NOT EXISTS entries_expires ON entries (expires)`

// migrate moves the live rows of the layout before 2026-12 (table ephemeral, WITHOUT ROWID)
// into entries, once, so that sessions and tokens survive the upgrade.
var migrate = [...]string{
	`INSERT INTO entries (key, value, expires) SELECT key, value, expires FROM ephemeral WHERE expires > ?`,
	`DROP TABLE ephemeral`,
}

// Store is a store.Ephemeral in a SQLite file, safe for concurrent use.
type Store struct {
	// mu admits one operation at a time to the one connection. database/sql would queue the
	// others and hand the connection to each in turn, a goroutine switch per operation, which
	// on a busy machine costs far more than the operation.
	mu sync.Mutex
	db *sql.DB
	// batchMu guards batch, the puts waiting for the connection (see PutAll).
	batchMu sync.Mutex
	batch   *putBatch
	q       statements
	now     func() time.Time
	stop    chan struct{}
	once    sync.Once

	// MovedAside is where Open moved a damaged file before making a new one; "" if it did not.
	MovedAside string
}

// statements are prepared once: parsing a statement costs about as much as running it.
type statements struct {
	put, putIfAbsent, get, get2, del, take, update, setValue *sql.Stmt
}

func (q *statements) prepare(ctx context.Context, db *sql.DB) error {
	for dst, query := range map[**sql.Stmt]string{
		&q.put: `INSERT INTO entries (key, value, expires) VALUES (?, ?, ?)
			ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires = excluded.expires`,
		&q.putIfAbsent: `INSERT INTO entries (key, value, expires) VALUES (?, ?, ?)
			ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires = excluded.expires
			WHERE entries.expires <= ?`,
		&q.get:      `SELECT value FROM entries WHERE key = ? AND expires > ?`,
		&q.get2:     `SELECT key, value FROM entries WHERE key IN (?, ?) AND expires > ?`,
		&q.del:      `DELETE FROM entries WHERE key = ?`,
		&q.take:     `DELETE FROM entries WHERE key = ? AND expires > ? RETURNING value`,
		&q.update:   `UPDATE entries SET value = ?, expires = ? WHERE key = ?`,
		&q.setValue: `UPDATE entries SET value = ? WHERE key = ?`,
	} {
		st, err := db.PrepareContext(ctx, query)
		if err != nil {
			return err
		}
		*dst = st
	}
	return nil
}

var (
	_ store.Ephemeral   = (*Store)(nil)
	_ store.Batcher     = (*Store)(nil)
	_ store.MultiGetter = (*Store)(nil)
)

// Open opens (creating it, owner-only, if missing) the store in the SQLite file at path, with
// the clock now (time.Now in production, a fake clock in tests), and starts its janitor. The
// file's directory is created if missing. A damaged file is renamed to path.damaged-<time> and
// a new one made; the store's MovedAside says so.
func Open(ctx context.Context, path string, now func() time.Time) (*Store, error) {
	if path == "" {
		return nil, errors.New("sqlitekv: empty path")
	}
	s, err := openFile(ctx, path, now)
	if !isDamaged(err) {
		return s, err
	}
	aside := path + ".damaged-" + now().UTC().Format("20060102T150405")
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if err := os.Rename(path+suffix, aside+suffix); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("sqlitekv: moving a damaged file aside: %w", err)
		}
	}
	if s, err = openFile(ctx, path, now); err == nil {
		s.MovedAside = aside
	}
	return s, err
}

// errDamaged is a file that fails SQLite's quick check.
var errDamaged = errors.New("sqlitekv: the file is damaged")

// isDamaged reports whether err says the file is not a sound SQLite database.
func isDamaged(err error) bool {
	var liteErr *sqlite.Error
	if errors.As(err, &liteErr) {
		c := liteErr.Code() & 0xff
		return c == sqlite3.SQLITE_CORRUPT || c == sqlite3.SQLITE_NOTADB
	}
	return errors.Is(err, errDamaged)
}

func openFile(ctx context.Context, path string, now func() time.Time) (*Store, error) {
	// Sessions and codes are credentials: owner-only, like the durable database.
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("sqlitekv: %w", err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("sqlitekv: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("sqlitekv: %w", err)
	}
	q := url.Values{}
	for _, p := range []string{"busy_timeout(5000)", "journal_mode(WAL)", "synchronous(OFF)", "mmap_size(268435456)"} {
		q.Add("_pragma", p)
	}
	q.Set("_txlock", "immediate")
	uriPath := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(path)
	db, err := sql.Open("sqlite", "file:"+uriPath+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("sqlitekv: %w", err)
	}
	db.SetMaxOpenConns(1)
	db.SetConnMaxIdleTime(0)
	var check string
	err = db.QueryRowContext(ctx, `PRAGMA quick_check`).Scan(&check)
	if err == nil && check != "ok" {
		err = errDamaged
	}
	if err == nil {
		err = createSchema(ctx, db, now().UnixNano())
	}
	if err != nil {
		_ = db.Close() // the check's or the schema's error is the one to report
		return nil, wrap("open", err)
	}
	s := &Store{db: db, now: now, stop: make(chan struct{})}
	if err := s.q.prepare(ctx, db); err != nil {
		_ = db.Close() // the statement's error is the one to report
		return nil, wrap("open", err)
	}
	go s.janitor()
	return s, nil
}

// createSchema makes the table, moving the rows of an older layout into it.
func createSchema(ctx context.Context, db *sql.DB, now int64) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }() // after Commit, a no-op
	if _, err := tx.ExecContext(ctx, schema); err != nil {
		return err
	}
	var old int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'ephemeral'`).Scan(&old); err != nil {
		return err
	}
	if old > 0 {
		if _, err := tx.ExecContext(ctx, migrate[0], now); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, migrate[1]); err != nil {
			return err
		}
	}
	return tx.Commit()
}

func (s *Store) janitor() {
	t := time.NewTicker(sweepEvery)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			// A failed sweep leaves expired rows for the next one; reads ignore them.
			_ = s.sweep(context.Background())
		}
	}
}

// sweep deletes every expired row.
func (s *Store) sweep(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, err := s.db.ExecContext(ctx, `DELETE FROM entries WHERE expires <= ?`, s.nowNano())
	return wrap("sweep", err)
}

func (s *Store) nowNano() int64                { return s.now().UnixNano() }
func (s *Store) until(ttl time.Duration) int64 { return s.now().Add(ttl).UnixNano() }

// wrap maps SQLite's errors to the store's sentinels. The driver's messages do not carry bound
// parameters, so a key never reaches an error.
func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	var liteErr *sqlite.Error
	if errors.As(err, &liteErr) {
		switch liteErr.Code() & 0xff {
		case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_FULL:
			return fmt.Errorf("sqlitekv: %s: %w: %v", op, store.ErrUnavailable, err)
		}
	}
	if errors.Is(err, sql.ErrConnDone) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("sqlitekv: %s: %w: %v", op, store.ErrUnavailable, err)
	}
	return fmt.Errorf("sqlitekv: %s: %w", op, err)
}

func notFound(op string) error { return fmt.Errorf("sqlitekv: %s: %w", op, store.ErrNotFound) }
func conflict(op string) error { return fmt.Errorf("sqlitekv: %s: %w", op, store.ErrConflict) }

// blob keeps a nil value storable: the column is NOT NULL and nil would bind as NULL.
func blob(v []byte) []byte {
	if v == nil {
		return []byte{}
	}
	return v
}

// Put stores value for ttl, replacing what was there.
func (s *Store) Put(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	return s.PutAll(ctx, store.Entry{Key: key, Value: value, TTL: ttl})
}

// PutAll stores entries. Puts are group-committed: while the connection is busy, the puts that
// arrive join one batch, and the first of them writes the batch in one transaction when the
// connection is free. Each commit is a WAL append and its system calls (about 40 % of a token's
// CPU, one commit a put); under concurrency a batch shares them.
func (s *Store) PutAll(ctx context.Context, entries ...store.Entry) error {
	for _, e := range entries {
		if err := store.CheckEntry(e.Key, e.TTL); err != nil {
			return err
		}
	}
	s.batchMu.Lock()
	b, lead := s.batch, s.batch == nil
	if lead {
		b = &putBatch{done: make(chan struct{})}
		s.batch = b
	}
	for _, e := range entries {
		// The expiry counts from now, not from when the batch is written.
		b.rows = append(b.rows, putRow{key: e.Key, value: blob(e.Value), until: s.until(e.TTL)})
	}
	s.batchMu.Unlock()
	if !lead {
		<-b.done
		return b.err
	}
	s.mu.Lock()
	s.batchMu.Lock()
	s.batch = nil // closed: later puts start the next batch
	s.batchMu.Unlock()
	// The batch carries others' entries: the leader's cancellation must not drop them.
	b.err = s.write(context.WithoutCancel(ctx), b.rows)
	s.mu.Unlock()
	close(b.done)
	return b.err
}

// putBatch is puts waiting to be written together.
type putBatch struct {
	rows []putRow
	err  error
	done chan struct{} // closed when the batch is written (or failed)
}

type putRow struct {
	key   string
	value []byte
	until int64
}

// write stores rows in one transaction (one statement when there is one row); s.mu is held.
func (s *Store) write(ctx context.Context, rows []putRow) error {
	if len(rows) == 1 {
		_, err := s.q.put.ExecContext(ctx, rows[0].key, rows[0].value, rows[0].until)
		return wrap("put", err)
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return wrap("put", err)
	}
	defer func() { _ = tx.Rollback() }() // after Commit, a no-op
	put := tx.StmtContext(ctx, s.q.put)
	for _, r := range rows {
		if _, err := put.ExecContext(ctx, r.key, r.value, r.until); err != nil {
			return wrap("put", err)
		}
	}
	return wrap("put", tx.Commit())
}

// putIfAbsent stores value unless key holds a live entry, and reports whether it did.
func (s *Store) putIfAbsent(ctx context.Context, op, key string, value []byte, ttl time.Duration) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	res, err := s.q.putIfAbsent.ExecContext(ctx, key, blob(value), s.until(ttl), s.nowNano())
	if err != nil {
		return false, wrap(op, err)
	}
	n, err := res.RowsAffected()
	return n == 1, wrap(op, err)
}

// PutIfAbsent stores value if key holds nothing.
func (s *Store) PutIfAbsent(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if err := store.CheckEntry(key, ttl); err != nil {
		return err
	}
	stored, err := s.putIfAbsent(ctx, "put if absent", key, value, ttl)
	if err == nil && !stored {
		return conflict("put if absent: the key exists")
	}
	return err
}

// Get returns the value of key.
func (s *Store) Get(ctx context.Context, key string) ([]byte, error) {
	if err := store.CheckKey(key); err != nil {
		return nil, err
	}
	var v []byte
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.q.get.QueryRowContext(ctx, key, s.nowNano()).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("get")
	}
	return v, wrap("get", err)
}

// GetMany reads the keys two to a statement (the readers of several keys read two).
func (s *Store) GetMany(ctx context.Context, keys ...string) (map[string][]byte, error) {
	for _, k := range keys {
		if err := store.CheckKey(k); err != nil {
			return nil, err
		}
	}
	out := make(map[string][]byte, len(keys))
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := 0; i < len(keys); i += 2 {
		rows, err := s.q.get2.QueryContext(ctx, keys[i], keys[min(i+1, len(keys)-1)], s.nowNano())
		if err != nil {
			return nil, wrap("get", err)
		}
		for rows.Next() {
			var k string
			var v []byte
			if err := rows.Scan(&k, &v); err != nil {
				_ = rows.Close() // the scan's error is the one to report
				return nil, wrap("get", err)
			}
			out[k] = v
		}
		if err := rows.Close(); err != nil {
			return nil, wrap("get", err)
		}
		if err := rows.Err(); err != nil {
			return nil, wrap("get", err)
		}
	}
	return out, nil
}

// Delete removes key.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := store.CheckKey(key); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, err := s.q.del.ExecContext(ctx, key)
	return wrap("delete", err)
}

// Take returns and removes the value of key, in one statement.
func (s *Store) Take(ctx context.Context, key string) ([]byte, error) {
	if err := store.CheckKey(key); err != nil {
		return nil, err
	}
	var v []byte
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.q.take.QueryRowContext(ctx, key, s.nowNano()).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("take")
	}
	return v, wrap("take", err)
}

// inTx runs f in an IMMEDIATE transaction and commits when f returns nil.
func (s *Store) inTx(ctx context.Context, op string, f func(tx *sql.Tx) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return wrap(op, err)
	}
	if err := f(tx); err != nil {
		_ = tx.Rollback() // f's error is the one to report; the transaction ends either way
		return err
	}
	return wrap(op, tx.Commit())
}

// live reads the unexpired value of key inside tx; found is false when there is none.
func (s *Store) live(ctx context.Context, tx *sql.Tx, op, key string) (v []byte, found bool, err error) {
	err = tx.StmtContext(ctx, s.q.get).QueryRowContext(ctx, key, s.nowNano()).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, false, nil
	}
	return v, err == nil, wrap(op, err)
}

// CompareAndSwap replaces old with new, for ttl.
func (s *Store) CompareAndSwap(ctx context.Context, key string, old, new []byte, ttl time.Duration) error {
	if err := store.CheckEntry(key, ttl); err != nil {
		return err
	}
	const op = "compare and swap"
	return s.inTx(ctx, op, func(tx *sql.Tx) error {
		v, found, err := s.live(ctx, tx, op, key)
		switch {
		case err != nil:
			return err
		case !found:
			return notFound(op)
		case !bytes.Equal(v, old):
			return conflict(op + ": the value changed")
		}
		_, err = tx.StmtContext(ctx, s.q.update).ExecContext(ctx, blob(new), s.until(ttl), key)
		return wrap(op, err)
	})
}

// Incr counts within a fixed window that starts at the first increment. The counter is kept as
// its decimal text, as Redis and the memory store keep it.
func (s *Store) Incr(ctx context.Context, key string, window time.Duration) (int64, error) {
	if err := store.CheckEntry(key, window); err != nil {
		return 0, err
	}
	const op = "incr"
	var n int64
	err := s.inTx(ctx, op, func(tx *sql.Tx) error {
		v, found, err := s.live(ctx, tx, op, key)
		if err != nil {
			return err
		}
		if found {
			if n, err = store.Counter(v); err != nil {
				return err
			}
		}
		n++
		if n == 1 {
			_, err = tx.StmtContext(ctx, s.q.put).ExecContext(ctx, key, strconv.AppendInt(nil, n, 10), s.until(window))
		} else {
			// Later increments keep the window's end.
			_, err = tx.StmtContext(ctx, s.q.setValue).ExecContext(ctx, strconv.AppendInt(nil, n, 10), key)
		}
		return wrap(op, err)
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// SeenOnce records key for ttl and reports whether it is new.
func (s *Store) SeenOnce(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	if err := store.CheckEntry(key, ttl); err != nil {
		return false, err
	}
	return s.putIfAbsent(ctx, "seen once", key, []byte{1}, ttl)
}

// Ping reports whether the file answers.
func (s *Store) Ping(ctx context.Context) error {
	// A read of the table, not only of the connection: a deleted or unreadable file shows.
	var n int
	s.mu.Lock()
	defer s.mu.Unlock()
	return wrap("ping", s.db.QueryRowContext(ctx, `SELECT count(*) FROM entries WHERE key = ''`).Scan(&n))
}

// Close stops the janitor and closes the file; closing twice is harmless.
func (s *Store) Close() error {
	var err error
	s.once.Do(func() {
		close(s.stop)
		err = s.db.Close() // closes the prepared statements too
	})
	return err
}

// Count returns the number of live entries, for `vula status`.
func (s *Store) Count(ctx context.Context) (int64, error) {
	var n int64
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM entries WHERE expires > ?`, s.nowNano()).Scan(&n)
	return n, wrap("count", err)
}
