package sqlstore

import (
	"context"
	"database/sql"
	"strconv"
	"time"

	"github.com/vula-eid/vula/internal/store"
)

var _ store.PIDs = (*DB)(nil)

const pidCols = `id, subject_id, format, key_uri, list, idx, issued, expires, revoked_at`

func scanPID(r rowScanner) (store.IssuedPID, error) {
	var p store.IssuedPID
	var issued, expires, revoked int64
	err := r.Scan(&p.ID, &p.SubjectID, &p.Format, &p.KeyURI, &p.List, &p.Index, &issued, &expires, &revoked)
	p.Issued, p.Expires, p.RevokedAt, p.Revoked = fromMicros(issued), fromMicros(expires), fromMicros(revoked), revoked != 0
	return p, err
}

// CreatePID stores p.
func (d *DB) CreatePID(ctx context.Context, p store.IssuedPID) error {
	_, err := d.db.ExecContext(ctx, `INSERT INTO pid_credentials (`+pidCols+`) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)`,
		p.ID, p.SubjectID, p.Format, p.KeyURI, p.List, p.Index, micros(p.Issued), micros(p.Expires), micros(p.RevokedAt))
	return d.wrap("create pid", err)
}

// PIDsOf lists a person's credentials, oldest first.
func (d *DB) PIDsOf(ctx context.Context, subjectID string) ([]store.IssuedPID, error) {
	return list(ctx, d, "pids of "+subjectID, `SELECT `+pidCols+` FROM pid_credentials WHERE subject_id = $1 ORDER BY issued, id`,
		scanPID, subjectID)
}

// CountPIDs counts the credentials of a status list.
func (d *DB) CountPIDs(ctx context.Context, list int) (int, error) {
	var n int
	err := d.db.QueryRowContext(ctx, `SELECT count(*) FROM pid_credentials WHERE list = $1`, list).Scan(&n)
	return n, d.wrap("count pids", err)
}

// RevokePIDs revokes the person's unrevoked credentials.
func (d *DB) RevokePIDs(ctx context.Context, subjectID string, at time.Time) (int, error) {
	var n int64
	err := d.inTx(ctx, "revoke pids of "+subjectID, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE pid_credentials SET revoked_at = $2 WHERE subject_id = $1 AND revoked_at = 0`,
			subjectID, micros(at))
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	return int(n), err
}

// RevokePID revokes one credential of a person.
func (d *DB) RevokePID(ctx context.Context, subjectID, id string, at time.Time) (bool, error) {
	var n int64
	err := d.inTx(ctx, "revoke pid "+id, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE pid_credentials SET revoked_at = $3 WHERE id = $1 AND subject_id = $2 AND revoked_at = 0`,
			id, subjectID, micros(at))
		if err != nil {
			return err
		}
		if n, err = res.RowsAffected(); err != nil || n > 0 {
			return err
		}
		var one int
		err = tx.QueryRowContext(ctx, `SELECT 1 FROM pid_credentials WHERE id = $1 AND subject_id = $2`, id, subjectID).Scan(&one)
		if err == sql.ErrNoRows {
			return store.ErrNotFound
		}
		return err
	})
	return n > 0, err
}

// RevokedPIDs lists the revoked indexes of a status list.
func (d *DB) RevokedPIDs(ctx context.Context, l int) ([]int, error) {
	return list(ctx, d, "revoked pids of list "+strconv.Itoa(l), `SELECT c.idx FROM pid_credentials c LEFT JOIN persons p ON p.subject_id = c.subject_id
		 WHERE c.list = $1 AND (c.revoked_at <> 0 OR p.subject_id IS NULL OR p.status = $2) ORDER BY c.idx`,
		func(r rowScanner) (int, error) {
			var i int
			err := r.Scan(&i)
			return i, err
		}, l, store.EIDRevoked)
}
