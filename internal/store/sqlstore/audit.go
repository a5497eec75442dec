package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/vula-eid/vula/internal/store"
)

// auditRowsPerInsert keeps a statement's parameters (14 a row) well under SQLite's limit of
// 32766 and PostgreSQL's of 65535.
const auditRowsPerInsert = 500

const auditCols = `seq, time, actor, action, key_uri, digest, result, request_id, detail, signature, prev_hash, hash, tree, subject`

// lastAudit reads the head of the chain.
const lastAudit = `SELECT ` + auditCols + ` FROM audit_log ORDER BY seq DESC LIMIT 1`

func scanAudit(r rowScanner) (store.AuditRecord, error) {
	var a store.AuditRecord
	var t int64
	err := r.Scan(&a.Seq, &t, &a.Actor, &a.Action, &a.Key, &a.Digest, &a.Result, &a.RequestID, &a.Detail, &a.Signature, &a.PrevHash, &a.Hash, &a.Tree, &a.Subject)
	a.Time = fromMicros(t)
	return a, err
}

// AppendAudit appends under the log's write lock: an advisory lock on PostgreSQL (held by every
// replica's appenders), the IMMEDIATE transaction's database lock on SQLite (held across
// processes). The seq primary key refuses a fork should the lock ever fail.
func (d *DB) AppendAudit(ctx context.Context, next func(last *store.AuditRecord) ([]store.AuditRecord, error)) ([]store.AuditRecord, error) {
	var recs []store.AuditRecord
	err := d.inTx(ctx, "append audit", func(tx *sql.Tx) error {
		if d.dialect == postgresDialect {
			if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(715101)`); err != nil {
				return err
			}
		}
		var last *store.AuditRecord
		var row *sql.Row
		if st := d.prepared(ctx, lastAudit); st != nil {
			// Parsing this statement was a third of an append's work in the transaction.
			row = tx.StmtContext(ctx, st).QueryRowContext(ctx)
		} else {
			row = tx.QueryRowContext(ctx, lastAudit)
		}
		a, err := scanAudit(row)
		switch {
		case err == nil:
			last = &a
		case !errors.Is(err, sql.ErrNoRows):
			return err
		}
		if recs, err = next(last); err != nil {
			return callerError{err}
		}
		want := int64(1)
		if last != nil {
			want = last.Seq + 1
		}
		for _, rec := range recs {
			if rec.Seq != want {
				return fmt.Errorf("audit record seq %d does not follow the last one", rec.Seq)
			}
			want++
		}
		// On SQLite, which is in process, one prepared one-row INSERT a record: parsing a
		// statement cost more than running it (45-65 µs of CPU a record). On PostgreSQL,
		// multi-row INSERTs: a round trip per record would cost more than the commit itself
		// when a group commit brings dozens of records.
		if d.dialect == sqliteDialect {
			stmt, err := d.auditStmt(ctx)
			if err != nil {
				return err
			}
			st := tx.StmtContext(ctx, stmt)
			for _, rec := range recs {
				if _, err := st.ExecContext(ctx, rec.Seq, micros(rec.Time), rec.Actor, rec.Action, rec.Key, rec.Digest, rec.Result,
					rec.RequestID, rec.Detail, rec.Signature, rec.PrevHash, rec.Hash, rec.Tree, rec.Subject); err != nil {
					return err
				}
			}
			if err := d.auditTransactions(ctx, tx, recs); err != nil {
				return err
			}
			return d.keepCheckpoint(ctx, tx, recs)
		}
		// The newest checkpoint rides in the last INSERT's statement (a data-modifying WITH):
		// one round trip a commit fewer.
		cp := -1
		for i := len(recs) - 1; i >= 0 && cp < 0; i-- {
			if recs[i].Checkpoint != nil {
				cp = i
			}
		}
		for start := 0; start < len(recs); start += auditRowsPerInsert {
			chunk := recs[start:min(start+auditRowsPerInsert, len(recs))]
			last := start+len(chunk) == len(recs)
			var q strings.Builder
			args := make([]any, 0, len(chunk)*14+2)
			if last && cp >= 0 {
				q.WriteString(`WITH records AS (`)
			}
			q.WriteString(`INSERT INTO audit_log (` + auditCols + `) VALUES `)
			valueRows(&q, len(chunk), 14)
			for _, rec := range chunk {
				args = append(args, rec.Seq, micros(rec.Time), rec.Actor, rec.Action, rec.Key, rec.Digest, rec.Result,
					rec.RequestID, rec.Detail, rec.Signature, rec.PrevHash, rec.Hash, rec.Tree, rec.Subject)
			}
			if last && cp >= 0 {
				fmt.Fprintf(&q, `) INSERT INTO audit_checkpoint (id, seq, checkpoint) VALUES (1, $%d, $%d)
	ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, checkpoint = excluded.checkpoint`, len(args)+1, len(args)+2)
				args = append(args, recs[cp].Seq, recs[cp].Checkpoint)
			}
			if _, err := tx.ExecContext(ctx, q.String(), args...); err != nil {
				return err
			}
		}
		return d.auditTransactions(ctx, tx, recs)
	})
	if err != nil {
		return nil, err
	}
	return recs, nil
}

// auditTransactions stores the transactions that ride on recs, in the append's transaction: one
// prepared INSERT each on SQLite, one multi-row INSERT on PostgreSQL (a round trip a seal is what
// this saves).
func (d *DB) auditTransactions(ctx context.Context, tx *sql.Tx, recs []store.AuditRecord) error {
	var ts []store.Transaction
	for _, r := range recs {
		if r.Transaction != nil {
			ts = append(ts, *r.Transaction)
		}
	}
	if len(ts) == 0 {
		return nil
	}
	if st := d.prepared(ctx, insertTx); st != nil {
		s := tx.StmtContext(ctx, st)
		for _, t := range ts {
			if _, err := s.ExecContext(ctx, txArgs(t)...); err != nil {
				return err
			}
		}
		return nil
	}
	for chunk := range slices.Chunk(ts, auditRowsPerInsert) {
		var q strings.Builder
		args := make([]any, 0, len(chunk)*11)
		q.WriteString(`INSERT INTO transactions (` + txCols + `) VALUES `)
		valueRows(&q, len(chunk), 11)
		for _, t := range chunk {
			args = append(args, txArgs(t)...)
		}
		if _, err := tx.ExecContext(ctx, q.String(), args...); err != nil {
			return err
		}
	}
	return nil
}

// auditStmt prepares the one-row audit INSERT once.
func (d *DB) auditStmt(ctx context.Context) (*sql.Stmt, error) {
	d.auditOnce.Do(func() {
		d.auditInsert, d.auditErr = d.db.PrepareContext(context.WithoutCancel(ctx),
			`INSERT INTO audit_log (`+auditCols+`) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14)`)
	})
	return d.auditInsert, d.auditErr
}

// AuditRecords returns up to limit records from seq from on.
func (d *DB) AuditRecords(ctx context.Context, from int64, limit int) ([]store.AuditRecord, error) {
	return list(ctx, d, "audit records", `SELECT `+auditCols+` FROM audit_log WHERE seq >= $1 ORDER BY seq LIMIT $2`, scanAudit, from, limit)
}

// AuditOf returns up to limit records about subject from seq from on, through the partial
// index audit_log_subject.
func (d *DB) AuditOf(ctx context.Context, subject string, from int64, limit int) ([]store.AuditRecord, error) {
	if subject == "" {
		return nil, nil
	}
	return list(ctx, d, "audit records of a subject", `SELECT `+auditCols+` FROM audit_log WHERE subject = $1 AND subject <> '' AND seq >= $2 ORDER BY seq LIMIT $3`,
		scanAudit, subject, from, limit)
}

const upsertCheckpoint = `INSERT INTO audit_checkpoint (id, seq, checkpoint) VALUES (1, $1, $2)
	ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, checkpoint = excluded.checkpoint`

// keepCheckpoint makes the checkpoint of the last record of recs that carries one the latest.
func (d *DB) keepCheckpoint(ctx context.Context, tx *sql.Tx, recs []store.AuditRecord) error {
	for i := len(recs) - 1; i >= 0; i-- {
		if recs[i].Checkpoint == nil {
			continue
		}
		// Once a commit: prepared on SQLite, where parsing would cost more than running it.
		if d.dialect == sqliteDialect {
			d.checkpointOnce.Do(func() {
				d.checkpointUpsert, d.checkpointErr = d.db.PrepareContext(context.WithoutCancel(ctx), upsertCheckpoint)
			})
			if d.checkpointErr != nil {
				return d.checkpointErr
			}
			_, err := tx.StmtContext(ctx, d.checkpointUpsert).ExecContext(ctx, recs[i].Seq, recs[i].Checkpoint)
			return err
		}
		_, err := tx.ExecContext(ctx, upsertCheckpoint, recs[i].Seq, recs[i].Checkpoint)
		return err
	}
	return nil
}

// AuditTree returns the tree hashes of the records at seqs.
func (d *DB) AuditTree(ctx context.Context, seqs []int64) (map[int64][]byte, error) {
	out := make(map[int64][]byte, len(seqs))
	for chunk := range slices.Chunk(seqs, auditRowsPerInsert) {
		var q strings.Builder
		args := make([]any, len(chunk))
		q.WriteString(`SELECT seq, tree FROM audit_log WHERE seq IN (`)
		for i, s := range chunk {
			if i > 0 {
				q.WriteByte(',')
			}
			fmt.Fprintf(&q, "$%d", i+1)
			args[i] = s
		}
		q.WriteByte(')')
		type row struct {
			seq  int64
			tree []byte
		}
		rows, err := list(ctx, d, "audit tree", q.String(), func(r rowScanner) (row, error) {
			var x row
			err := r.Scan(&x.seq, &x.tree)
			return x, err
		}, args...)
		if err != nil {
			return nil, err
		}
		for _, r := range rows {
			out[r.seq] = r.tree
		}
	}
	return out, nil
}

// AuditCheckpoint returns the latest checkpoint.
func (d *DB) AuditCheckpoint(ctx context.Context) (int64, []byte, error) {
	var seq int64
	var cp []byte
	err := d.db.QueryRowContext(ctx, `SELECT seq, checkpoint FROM audit_checkpoint WHERE id = 1`).Scan(&seq, &cp)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil, fmt.Errorf("%w: no audit checkpoint", store.ErrNotFound)
	}
	if err != nil {
		return 0, nil, d.wrap("audit checkpoint", err)
	}
	return seq, cp, nil
}

// FillAuditTree sets the tree hashes of records that have none.
func (d *DB) FillAuditTree(ctx context.Context, trees map[int64][]byte) error {
	return d.inTx(ctx, "fill audit tree", func(tx *sql.Tx) error {
		for seq, tree := range trees {
			if _, err := tx.ExecContext(ctx, `UPDATE audit_log SET tree = $1 WHERE seq = $2 AND tree IS NULL`, tree, seq); err != nil {
				return err
			}
		}
		return nil
	})
}

// valueRows writes the placeholders of a multi-row VALUES on PostgreSQL: rows of cols each,
// numbered from $1 ("($1,$2),($3,$4)").
func valueRows(q *strings.Builder, rows, cols int) {
	for r := range rows {
		if r > 0 {
			q.WriteByte(',')
		}
		q.WriteByte('(')
		for c := range cols {
			if c > 0 {
				q.WriteByte(',')
			}
			fmt.Fprintf(q, "$%d", r*cols+c+1)
		}
		q.WriteByte(')')
	}
}
