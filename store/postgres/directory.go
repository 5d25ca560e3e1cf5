package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/natter-chat/natter/store"
)

// ListUsers walks the username index (COLLATE "C") from after (or
// prefix); the device counts are index lookups (devices_by_user).
func (db *DB) ListUsers(ctx context.Context, prefix, after string, limit int) ([]store.UserListing, error) {
	rows, err := db.pool.Query(ctx, `SELECT `+userColumns+`,
		(SELECT COUNT(*) FROM devices d WHERE d.user_id = users.id AND d.revoked_at IS NULL),
		(SELECT COALESCE(MAX(d.created_at), 0) FROM devices d WHERE d.user_id = users.id)
		FROM users WHERE username > $1 AND username >= $2 AND starts_with(username, $2)
		ORDER BY username LIMIT $3`, after, prefix, limit)
	if err != nil {
		return nil, fmt.Errorf("list users: %w", classify(err))
	}
	us, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.UserListing, error) {
		var u store.UserListing
		err := row.Scan(&u.ID, &u.Username, &u.PasswordHash, &u.CreatedAt, &u.LastSeenPrivacy, &u.OnlinePrivacy,
			&u.Devices, &u.LastLoginAt)
		return u, err
	})
	if err != nil {
		return nil, fmt.Errorf("list users: %w", classify(err))
	}
	return us, nil
}

func (db *DB) DeviceActivity(ctx context.Context, userID string) ([]store.DeviceActivity, error) {
	rows, err := db.pool.Query(ctx, `SELECT `+deviceColumns+`,
		(SELECT COALESCE(MAX(r.used_at), 0) FROM refresh_tokens r WHERE r.device_id = devices.id)
		FROM devices WHERE user_id = $1 ORDER BY created_at, id`, userID)
	if err != nil {
		return nil, fmt.Errorf("devices of %s: %w", userID, classify(err))
	}
	ds, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.DeviceActivity, error) {
		var d store.DeviceActivity
		var err error
		d.Device, err = scanDevice(row, &d.LastRefreshAt)
		return d, err
	})
	if err != nil {
		return nil, fmt.Errorf("devices of %s: %w", userID, classify(err))
	}
	return ds, nil
}

func (db *DB) ListGroups(ctx context.Context, after string, limit int) ([]store.GroupListing, error) {
	rows, err := db.pool.Query(ctx, `SELECT g.id, g.conversation_id, g.name, g.created_by, g.created_at, g.member_count,
		c.last_message_at, c.last_seq
		FROM group_chats g JOIN conversations c ON c.id = g.conversation_id
		WHERE g.id > $1 ORDER BY g.id LIMIT $2`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("list groups: %w", classify(err))
	}
	gs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.GroupListing, error) {
		var g store.GroupListing
		err := row.Scan(&g.ID, &g.ConversationID, &g.Name, &g.CreatedBy, &g.CreatedAt, &g.MemberCount, &g.LastMessageAt, &g.LastSeq)
		return g, err
	})
	if err != nil {
		return nil, fmt.Errorf("list groups: %w", classify(err))
	}
	return gs, nil
}

// UserGroups goes through the user's conversations (participants by
// user): a group's current members are its conversation's participants.
func (db *DB) UserGroups(ctx context.Context, userID string) ([]store.UserGroup, error) {
	rows, err := db.pool.Query(ctx, `SELECT g.id, g.conversation_id, g.name, g.created_by, g.created_at, g.member_count, m.role
		FROM participants p
		JOIN group_chats g ON g.conversation_id = p.conversation_id
		JOIN group_members m ON m.group_id = g.id AND m.user_id = p.user_id
		WHERE p.user_id = $1 ORDER BY g.id`, userID)
	if err != nil {
		return nil, fmt.Errorf("groups of %s: %w", userID, classify(err))
	}
	gs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.UserGroup, error) {
		var g store.UserGroup
		err := row.Scan(&g.ID, &g.ConversationID, &g.Name, &g.CreatedBy, &g.CreatedAt, &g.MemberCount, &g.Role)
		return g, err
	})
	if err != nil {
		return nil, fmt.Errorf("groups of %s: %w", userID, classify(err))
	}
	return gs, nil
}
