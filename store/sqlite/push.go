package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/natter-chat/natter/store"
)

// SetPushToken registers t.Token on t.DeviceID, taking it off any other
// device, in one transaction.
func (db *DB) SetPushToken(ctx context.Context, t store.PushToken) error {
	return db.write(ctx, "set push token", func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM devices WHERE id = ? AND user_id = ? AND revoked_at IS NULL`,
			t.DeviceID, t.UserID).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("device %s of %s: %w", t.DeviceID, t.UserID, store.ErrNotFound)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM push_tokens WHERE token = ? AND device_id <> ?`, t.Token, t.DeviceID); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO push_tokens (device_id, user_id, platform, token, updated_at) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (device_id) DO UPDATE SET platform = excluded.platform, token = excluded.token, updated_at = excluded.updated_at`,
			t.DeviceID, t.UserID, t.Platform, t.Token, t.UpdatedAt)
		return err
	})
}

func (db *DB) DeletePushToken(ctx context.Context, userID, deviceID string) error {
	return db.write(ctx, "delete push token", func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM devices WHERE id = ? AND user_id = ?`, deviceID, userID).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("device %s of %s: %w", deviceID, userID, store.ErrNotFound)
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM push_tokens WHERE device_id = ?`, deviceID)
		return err
	})
}

func (db *DB) PushTokens(ctx context.Context, userID string) ([]store.PushToken, error) {
	rows, err := db.query(ctx, `SELECT p.device_id, p.user_id, p.platform, p.token, p.updated_at
		FROM push_tokens p JOIN devices d ON d.id = p.device_id
		WHERE p.user_id = ? AND d.revoked_at IS NULL ORDER BY p.device_id`, userID)
	if err != nil {
		return nil, fmt.Errorf("push tokens of %s: %w", userID, classify(err))
	}
	defer rows.Close()
	var out []store.PushToken
	for rows.Next() {
		var t store.PushToken
		if err := rows.Scan(&t.DeviceID, &t.UserID, &t.Platform, &t.Token, &t.UpdatedAt); err != nil {
			return nil, fmt.Errorf("push tokens of %s: %w", userID, classify(err))
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("push tokens of %s: %w", userID, classify(err))
	}
	return out, nil
}

func (db *DB) DropPushToken(ctx context.Context, deviceID, token string) error {
	_, err := db.exec(ctx, "drop push token", `DELETE FROM push_tokens WHERE device_id = ? AND token = ?`, deviceID, token)
	return err
}

func (db *DB) SetMute(ctx context.Context, userID, conversationID string, until int64) error {
	_, err := db.exec(ctx, "mute "+conversationID, `INSERT INTO mutes (user_id, conversation_id, until) VALUES (?, ?, ?)
		ON CONFLICT (user_id, conversation_id) DO UPDATE SET until = excluded.until`, userID, conversationID, until)
	return err
}

func (db *DB) DeleteMute(ctx context.Context, userID, conversationID string) error {
	_, err := db.exec(ctx, "unmute "+conversationID, `DELETE FROM mutes WHERE user_id = ? AND conversation_id = ?`, userID, conversationID)
	return err
}

func (db *DB) MutedUntil(ctx context.Context, userID, conversationID string) (int64, error) {
	var until int64
	err := db.queryRow(ctx, `SELECT until FROM mutes WHERE user_id = ? AND conversation_id = ?`, userID, conversationID).Scan(&until)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("mute of %s: %w", conversationID, classify(err))
	}
	return until, nil
}

func (db *DB) SetQuietHours(ctx context.Context, userID string, q store.QuietHours) error {
	return db.write(ctx, "set quiet hours", func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM users WHERE id = ?`, userID).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("user %s: %w", userID, store.ErrNotFound)
		}
		if q == (store.QuietHours{}) {
			_, err := tx.ExecContext(ctx, `DELETE FROM quiet_hours WHERE user_id = ?`, userID)
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO quiet_hours (user_id, start, "end", tz) VALUES (?, ?, ?, ?)
			ON CONFLICT (user_id) DO UPDATE SET start = excluded.start, "end" = excluded."end", tz = excluded.tz`,
			userID, q.Start, q.End, q.TZ)
		return err
	})
}

func (db *DB) QuietHours(ctx context.Context, userID string) (store.QuietHours, error) {
	var q store.QuietHours
	err := db.queryRow(ctx, `SELECT start, "end", tz FROM quiet_hours WHERE user_id = ?`, userID).Scan(&q.Start, &q.End, &q.TZ)
	if errors.Is(err, sql.ErrNoRows) {
		return store.QuietHours{}, nil
	}
	if err != nil {
		return store.QuietHours{}, fmt.Errorf("quiet hours of %s: %w", userID, classify(err))
	}
	return q, nil
}
