package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/natter-chat/natter/store"
)

// CreateUser stores u; a taken username or id is store.ErrConflict.
func (db *DB) CreateUser(ctx context.Context, u store.User) error {
	_, err := db.exec(ctx, "create user",
		`INSERT INTO users (id, username, password_hash, created_at, last_seen_privacy, online_privacy) VALUES (?, ?, ?, ?, ?, ?)`,
		u.ID, u.Username, u.PasswordHash, u.CreatedAt, u.LastSeenPrivacy, u.OnlinePrivacy)
	return err
}

const userColumns = `id, username, password_hash, created_at, last_seen_privacy, online_privacy`

func (db *DB) UserByID(ctx context.Context, id string) (store.User, error) {
	return db.user(ctx, "user "+id, `SELECT `+userColumns+` FROM users WHERE id = ?`, id)
}

func (db *DB) UserByUsername(ctx context.Context, username string) (store.User, error) {
	return db.user(ctx, "user "+username, `SELECT `+userColumns+` FROM users WHERE username = ?`, username)
}

func (db *DB) user(ctx context.Context, what, query string, arg string) (store.User, error) {
	var u store.User
	err := db.queryRow(ctx, query, arg).Scan(&u.ID, &u.Username, &u.PasswordHash, &u.CreatedAt, &u.LastSeenPrivacy, &u.OnlinePrivacy)
	if err != nil {
		return store.User{}, notFound(what, err)
	}
	return u, nil
}

func (db *DB) SetLastSeenPrivacy(ctx context.Context, userID, value string) error {
	n, err := db.exec(ctx, "set last-seen privacy", `UPDATE users SET last_seen_privacy = ? WHERE id = ?`, value, userID)
	if err == nil && n == 0 {
		err = fmt.Errorf("set last-seen privacy: user %s: %w", userID, store.ErrNotFound)
	}
	return err
}

// CreateDevice stores d and its first refresh token together.
func (db *DB) CreateDevice(ctx context.Context, d store.Device, refreshHash string) error {
	return db.write(ctx, "create device", func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO devices (id, user_id, name, created_at, revoked_at) VALUES (?, ?, ?, ?, ?)`,
			d.ID, d.UserID, d.Name, d.CreatedAt, nullIfZero(d.RevokedAt)); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO refresh_tokens (hash, device_id) VALUES (?, ?)`, refreshHash, d.ID)
		return err
	})
}

const deviceColumns = `id, user_id, name, created_at, COALESCE(revoked_at, 0)`

func scanDevice(row interface{ Scan(...any) error }) (store.Device, error) {
	var d store.Device
	err := row.Scan(&d.ID, &d.UserID, &d.Name, &d.CreatedAt, &d.RevokedAt)
	return d, err
}

func (db *DB) Device(ctx context.Context, id string) (store.Device, error) {
	d, err := scanDevice(db.queryRow(ctx, `SELECT `+deviceColumns+` FROM devices WHERE id = ?`, id))
	if err != nil {
		return store.Device{}, notFound("device "+id, err)
	}
	return d, nil
}

func (db *DB) Devices(ctx context.Context, userID string) ([]store.Device, error) {
	rows, err := db.query(ctx, `SELECT `+deviceColumns+` FROM devices
		WHERE user_id = ? AND revoked_at IS NULL ORDER BY created_at, id`, userID)
	if err != nil {
		return nil, fmt.Errorf("list devices: %w", err)
	}
	defer rows.Close()
	var ds []store.Device
	for rows.Next() {
		d, err := scanDevice(rows)
		if err != nil {
			return nil, fmt.Errorf("list devices: %w", err)
		}
		ds = append(ds, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list devices: %w", err)
	}
	return ds, nil
}

// RevokeDevice keeps the first revocation time when revoked again.
func (db *DB) RevokeDevice(ctx context.Context, userID, deviceID string, at int64) error {
	n, err := db.exec(ctx, "revoke device",
		`UPDATE devices SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ? AND user_id = ?`, at, deviceID, userID)
	if err == nil && n == 0 {
		err = fmt.Errorf("revoke device %s: %w", deviceID, store.ErrNotFound)
	}
	return err
}

func (db *DB) RotateRefresh(ctx context.Context, oldHash, newHash string, at int64) (store.Device, error) {
	var (
		d      store.Device
		reused bool
	)
	err := db.write(ctx, "rotate refresh token", func(tx *sql.Tx) error {
		var usedAt sql.NullInt64
		err := tx.QueryRowContext(ctx, `SELECT `+deviceColumns+`, t.used_at FROM refresh_tokens t
			JOIN devices ON devices.id = t.device_id WHERE t.hash = ?`, oldHash).
			Scan(&d.ID, &d.UserID, &d.Name, &d.CreatedAt, &d.RevokedAt, &usedAt)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return store.ErrNotFound
		case err != nil:
			return err
		case d.RevokedAt != 0:
			return store.ErrNotFound
		case usedAt.Valid:
			// Someone holds a copy of a rotated token: end the session
			// for both holders. Committed, then reported.
			reused = true
			_, err := tx.ExecContext(ctx, `UPDATE devices SET revoked_at = ? WHERE id = ?`, at, d.ID)
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE refresh_tokens SET used_at = ? WHERE hash = ?`, at, oldHash); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO refresh_tokens (hash, device_id) VALUES (?, ?)`, newHash, d.ID)
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
		`INSERT INTO blocks (blocker, blocked) VALUES (?, ?) ON CONFLICT DO NOTHING`, blocker, blocked)
	return err
}

func (db *DB) Unblock(ctx context.Context, blocker, blocked string) error {
	_, err := db.exec(ctx, "unblock", `DELETE FROM blocks WHERE blocker = ? AND blocked = ?`, blocker, blocked)
	return err
}

func (db *DB) Blocked(ctx context.Context, a, b string) (bool, error) {
	var blocked bool
	err := db.queryRow(ctx, `SELECT EXISTS (SELECT 1 FROM blocks
		WHERE (blocker = ?1 AND blocked = ?2) OR (blocker = ?2 AND blocked = ?1))`, a, b).Scan(&blocked)
	if err != nil {
		return false, fmt.Errorf("blocked: %w", err)
	}
	return blocked, nil
}

func (db *DB) SetOnlinePrivacy(ctx context.Context, userID, value string) error {
	n, err := db.exec(ctx, "set online privacy", `UPDATE users SET online_privacy = ? WHERE id = ?`, value, userID)
	if err == nil && n == 0 {
		err = fmt.Errorf("set online privacy: user %s: %w", userID, store.ErrNotFound)
	}
	return err
}

func (db *DB) BlockedUsers(ctx context.Context, blocker string) ([]string, error) {
	rows, err := db.query(ctx, `SELECT blocked FROM blocks WHERE blocker = ? ORDER BY blocked`, blocker)
	if err != nil {
		return nil, fmt.Errorf("blocked users: %w", err)
	}
	defer rows.Close()
	out := []string{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("blocked users: %w", err)
		}
		out = append(out, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("blocked users: %w", err)
	}
	return out, nil
}

func nullIfZero(v int64) sql.NullInt64 { return sql.NullInt64{Int64: v, Valid: v != 0} }
