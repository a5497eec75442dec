package sqlstore

import (
	"context"
	"database/sql"
	"errors"

	"github.com/vula-eid/vula/internal/store"
)

// Setting returns the value of name.
func (d *DB) Setting(ctx context.Context, name string) ([]byte, error) {
	return get(ctx, d, "setting "+name, `SELECT value FROM settings WHERE name = $1`, func(r rowScanner) ([]byte, error) {
		var v []byte
		return v, r.Scan(&v)
	}, name)
}

// PutSetting stores value under name, replacing what was there.
func (d *DB) PutSetting(ctx context.Context, name string, value []byte) error {
	_, err := d.db.ExecContext(ctx, `INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = excluded.value`, name, value)
	return d.wrap("put setting "+name, err)
}

// PutSettingIfAbsent stores value unless name has one, and returns the value name holds.
func (d *DB) PutSettingIfAbsent(ctx context.Context, name string, value []byte) ([]byte, error) {
	var v []byte
	err := d.inTx(ctx, "put setting "+name, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING`, name, value); err != nil {
			return err
		}
		return tx.QueryRowContext(ctx, `SELECT value FROM settings WHERE name = $1`, name).Scan(&v)
	})
	return v, err
}

// DeleteSetting removes name, if it is there.
func (d *DB) DeleteSetting(ctx context.Context, name string) error {
	if err := d.exec(ctx, "delete setting "+name, `DELETE FROM settings WHERE name = $1`, name); err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	return nil
}
