package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/natter-chat/natter/store"
)

// SetPushToken registers t.Token on t.DeviceID, taking it off any other
// device, in one transaction. The device row is locked so that a
// concurrent revocation cannot slip between the check and the insert.
func (db *DB) SetPushToken(ctx context.Context, t store.PushToken) error {
	return db.tx(ctx, "set push token", func(tx pgx.Tx) error {
		var one int
		err := tx.QueryRow(ctx, `SELECT 1 FROM devices WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL FOR SHARE`,
			t.DeviceID, t.UserID).Scan(&one)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("device %s of %s: %w", t.DeviceID, t.UserID, store.ErrNotFound)
		}
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM push_tokens WHERE token = $1 AND device_id <> $2`, t.Token, t.DeviceID); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO push_tokens (device_id, user_id, platform, token, updated_at) VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (device_id) DO UPDATE SET platform = excluded.platform, token = excluded.token, updated_at = excluded.updated_at`,
			t.DeviceID, t.UserID, t.Platform, t.Token, t.UpdatedAt)
		return err
	})
}

func (db *DB) DeletePushToken(ctx context.Context, userID, deviceID string) error {
	return db.tx(ctx, "delete push token", func(tx pgx.Tx) error {
		var one int
		err := tx.QueryRow(ctx, `SELECT 1 FROM devices WHERE id = $1 AND user_id = $2`, deviceID, userID).Scan(&one)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("device %s of %s: %w", deviceID, userID, store.ErrNotFound)
		}
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `DELETE FROM push_tokens WHERE device_id = $1`, deviceID)
		return err
	})
}

func (db *DB) PushTokens(ctx context.Context, userID string) ([]store.PushToken, error) {
	rows, err := db.pool.Query(ctx, `SELECT p.device_id, p.user_id, p.platform, p.token, p.updated_at
		FROM push_tokens p JOIN devices d ON d.id = p.device_id
		WHERE p.user_id = $1 AND d.revoked_at IS NULL ORDER BY p.device_id`, userID)
	if err != nil {
		return nil, fmt.Errorf("push tokens of %s: %w", userID, classify(err))
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.PushToken, error) {
		var t store.PushToken
		err := row.Scan(&t.DeviceID, &t.UserID, &t.Platform, &t.Token, &t.UpdatedAt)
		return t, err
	})
	if err != nil {
		return nil, fmt.Errorf("push tokens of %s: %w", userID, classify(err))
	}
	return out, nil
}

func (db *DB) DropPushToken(ctx context.Context, deviceID, token string) error {
	_, err := db.exec(ctx, "drop push token", `DELETE FROM push_tokens WHERE device_id = $1 AND token = $2`, deviceID, token)
	return err
}

func (db *DB) SetMute(ctx context.Context, userID, conversationID string, until int64) error {
	_, err := db.exec(ctx, "mute "+conversationID, `INSERT INTO mutes (user_id, conversation_id, until) VALUES ($1, $2, $3)
		ON CONFLICT (user_id, conversation_id) DO UPDATE SET until = excluded.until`, userID, conversationID, until)
	return err
}

func (db *DB) DeleteMute(ctx context.Context, userID, conversationID string) error {
	_, err := db.exec(ctx, "unmute "+conversationID, `DELETE FROM mutes WHERE user_id = $1 AND conversation_id = $2`, userID, conversationID)
	return err
}

func (db *DB) MutedUntil(ctx context.Context, userID, conversationID string) (int64, error) {
	var until int64
	err := db.pool.QueryRow(ctx, `SELECT until FROM mutes WHERE user_id = $1 AND conversation_id = $2`, userID, conversationID).Scan(&until)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("mute of %s: %w", conversationID, classify(err))
	}
	return until, nil
}

func (db *DB) SetQuietHours(ctx context.Context, userID string, q store.QuietHours) error {
	return db.tx(ctx, "set quiet hours", func(tx pgx.Tx) error {
		var one int
		err := tx.QueryRow(ctx, `SELECT 1 FROM users WHERE id = $1`, userID).Scan(&one)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("user %s: %w", userID, store.ErrNotFound)
		}
		if err != nil {
			return err
		}
		if q == (store.QuietHours{}) {
			_, err := tx.Exec(ctx, `DELETE FROM quiet_hours WHERE user_id = $1`, userID)
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO quiet_hours (user_id, start, "end", tz) VALUES ($1, $2, $3, $4)
			ON CONFLICT (user_id) DO UPDATE SET start = excluded.start, "end" = excluded."end", tz = excluded.tz`,
			userID, q.Start, q.End, q.TZ)
		return err
	})
}

func (db *DB) QuietHours(ctx context.Context, userID string) (store.QuietHours, error) {
	var q store.QuietHours
	err := db.pool.QueryRow(ctx, `SELECT start, "end", tz FROM quiet_hours WHERE user_id = $1`, userID).Scan(&q.Start, &q.End, &q.TZ)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.QuietHours{}, nil
	}
	if err != nil {
		return store.QuietHours{}, fmt.Errorf("quiet hours of %s: %w", userID, classify(err))
	}
	return q, nil
}
