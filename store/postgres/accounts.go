package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/natter-chat/natter/store"
)

// CreateUser stores u; a taken username or id is store.ErrConflict.
func (db *DB) CreateUser(ctx context.Context, u store.User) error {
	_, err := db.exec(ctx, "create user",
		`INSERT INTO users (id, username, password_hash, created_at, last_seen_privacy) VALUES ($1, $2, $3, $4, $5)`,
		u.ID, u.Username, u.PasswordHash, u.CreatedAt, u.LastSeenPrivacy)
	return err
}

const userColumns = `id, username, password_hash, created_at, last_seen_privacy`

func (db *DB) UserByID(ctx context.Context, id string) (store.User, error) {
	return db.user(ctx, "user "+id, `SELECT `+userColumns+` FROM users WHERE id = $1`, id)
}

func (db *DB) UserByUsername(ctx context.Context, username string) (store.User, error) {
	return db.user(ctx, "user "+username, `SELECT `+userColumns+` FROM users WHERE username = $1`, username)
}

func (db *DB) user(ctx context.Context, what, query string, arg string) (store.User, error) {
	var u store.User
	err := db.pool.QueryRow(ctx, query, arg).Scan(&u.ID, &u.Username, &u.PasswordHash, &u.CreatedAt, &u.LastSeenPrivacy)
	if err != nil {
		return store.User{}, notFound(what, err)
	}
	return u, nil
}

func (db *DB) SetLastSeenPrivacy(ctx context.Context, userID, value string) error {
	n, err := db.exec(ctx, "set last-seen privacy", `UPDATE users SET last_seen_privacy = $1 WHERE id = $2`, value, userID)
	if err == nil && n == 0 {
		err = fmt.Errorf("set last-seen privacy: user %s: %w", userID, store.ErrNotFound)
	}
	return err
}

// CreateDevice stores d and its first refresh token together.
func (db *DB) CreateDevice(ctx context.Context, d store.Device, refreshHash string) error {
	return db.tx(ctx, "create device", func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO devices (id, user_id, name, created_at, revoked_at) VALUES ($1, $2, $3, $4, $5)`,
			d.ID, d.UserID, []byte(d.Name), d.CreatedAt, nullIfZero(d.RevokedAt)); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO refresh_tokens (hash, device_id) VALUES ($1, $2)`, refreshHash, d.ID)
		return err
	})
}

const deviceColumns = `devices.id, devices.user_id, devices.name, devices.created_at, COALESCE(devices.revoked_at, 0)`

func scanDevice(row pgx.Row, extra ...any) (store.Device, error) {
	var (
		d    store.Device
		name []byte
	)
	err := row.Scan(append([]any{&d.ID, &d.UserID, &name, &d.CreatedAt, &d.RevokedAt}, extra...)...)
	d.Name = string(name)
	return d, err
}

func (db *DB) Device(ctx context.Context, id string) (store.Device, error) {
	d, err := scanDevice(db.pool.QueryRow(ctx, `SELECT `+deviceColumns+` FROM devices WHERE id = $1`, id))
	if err != nil {
		return store.Device{}, notFound("device "+id, err)
	}
	return d, nil
}

func (db *DB) Devices(ctx context.Context, userID string) ([]store.Device, error) {
	rows, err := db.pool.Query(ctx, `SELECT `+deviceColumns+` FROM devices
		WHERE user_id = $1 AND revoked_at IS NULL ORDER BY created_at, id`, userID)
	if err != nil {
		return nil, fmt.Errorf("list devices: %w", classify(err))
	}
	ds, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.Device, error) { return scanDevice(row) })
	if err != nil {
		return nil, fmt.Errorf("list devices: %w", classify(err))
	}
	return ds, nil
}

// RevokeDevice keeps the first revocation time when revoked again.
func (db *DB) RevokeDevice(ctx context.Context, userID, deviceID string, at int64) error {
	n, err := db.exec(ctx, "revoke device",
		`UPDATE devices SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2 AND user_id = $3`, at, deviceID, userID)
	if err == nil && n == 0 {
		err = fmt.Errorf("revoke device %s: %w", deviceID, store.ErrNotFound)
	}
	return err
}

// RotateRefresh locks the token's row (FOR UPDATE), so two concurrent
// rotations of one token cannot both succeed: the second waits, then sees
// the token used and treats it as reuse.
func (db *DB) RotateRefresh(ctx context.Context, oldHash, newHash string, at int64) (store.Device, error) {
	var (
		d      store.Device
		reused bool
	)
	err := db.tx(ctx, "rotate refresh token", func(tx pgx.Tx) error {
		var usedAt *int64
		d2, err := scanDevice(tx.QueryRow(ctx, `SELECT `+deviceColumns+`, t.used_at FROM refresh_tokens t
			JOIN devices ON devices.id = t.device_id WHERE t.hash = $1 FOR UPDATE`, oldHash), &usedAt)
		d = d2
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return store.ErrNotFound
		case err != nil:
			return err
		case d.RevokedAt != 0:
			return store.ErrNotFound
		case usedAt != nil:
			// Someone holds a copy of a rotated token: end the session
			// for both holders. Committed, then reported.
			reused = true
			_, err := tx.Exec(ctx, `UPDATE devices SET revoked_at = $1 WHERE id = $2`, at, d.ID)
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE refresh_tokens SET used_at = $1 WHERE hash = $2`, at, oldHash); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO refresh_tokens (hash, device_id) VALUES ($1, $2)`, newHash, d.ID)
		return err
	})
	switch {
	case err != nil:
		return store.Device{}, err
	case reused:
		// The revoked device comes back so the caller can cut it off.
		return d, fmt.Errorf("rotate refresh token: device %s: %w", d.ID, store.ErrRefreshReused)
	}
	return d, nil
}

func (db *DB) Block(ctx context.Context, blocker, blocked string) error {
	_, err := db.exec(ctx, "block",
		`INSERT INTO blocks (blocker, blocked) VALUES ($1, $2) ON CONFLICT DO NOTHING`, blocker, blocked)
	return err
}

func (db *DB) Unblock(ctx context.Context, blocker, blocked string) error {
	_, err := db.exec(ctx, "unblock", `DELETE FROM blocks WHERE blocker = $1 AND blocked = $2`, blocker, blocked)
	return err
}

func (db *DB) Blocked(ctx context.Context, a, b string) (bool, error) {
	var blocked bool
	err := db.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM blocks
		WHERE (blocker = $1 AND blocked = $2) OR (blocker = $2 AND blocked = $1))`, a, b).Scan(&blocked)
	if err := classify(err); err != nil && !isNotFound(err) { // a key with U+0000 blocks nobody
		return false, fmt.Errorf("blocked: %w", err)
	}
	return blocked, nil
}

func nullIfZero(v int64) *int64 {
	if v == 0 {
		return nil
	}
	return &v
}
