package sqlite

import (
	"context"
	"fmt"

	"github.com/natter-chat/natter/store"
)

// ListUsers walks the username index from after (or prefix); the device counts are
// index lookups (devices_by_user).
func (db *DB) ListUsers(ctx context.Context, prefix, after string, limit int) ([]store.UserListing, error) {
	rows, err := db.query(ctx, `SELECT `+userColumns+`,
		(SELECT COUNT(*) FROM devices d WHERE d.user_id = users.id AND d.revoked_at IS NULL),
		(SELECT COALESCE(MAX(d.created_at), 0) FROM devices d WHERE d.user_id = users.id)
		FROM users WHERE username > ? AND username >= ? AND substr(username, 1, length(?)) = ?
		ORDER BY username LIMIT ?`, after, prefix, prefix, prefix, limit)
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	defer rows.Close()
	var us []store.UserListing
	for rows.Next() {
		var u store.UserListing
		if err := rows.Scan(&u.ID, &u.Username, &u.PasswordHash, &u.CreatedAt, &u.LastSeenPrivacy, &u.OnlinePrivacy,
			&u.Devices, &u.LastLoginAt); err != nil {
			return nil, fmt.Errorf("list users: %w", err)
		}
		us = append(us, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	return us, nil
}

func (db *DB) DeviceActivity(ctx context.Context, userID string) ([]store.DeviceActivity, error) {
	rows, err := db.query(ctx, `SELECT `+deviceColumns+`,
		(SELECT COALESCE(MAX(r.used_at), 0) FROM refresh_tokens r WHERE r.device_id = devices.id)
		FROM devices WHERE user_id = ? ORDER BY created_at, id`, userID)
	if err != nil {
		return nil, fmt.Errorf("devices of %s: %w", userID, err)
	}
	defer rows.Close()
	var ds []store.DeviceActivity
	for rows.Next() {
		var d store.DeviceActivity
		if err := rows.Scan(&d.ID, &d.UserID, &d.Name, &d.CreatedAt, &d.RevokedAt, &d.LastRefreshAt); err != nil {
			return nil, fmt.Errorf("devices of %s: %w", userID, err)
		}
		ds = append(ds, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("devices of %s: %w", userID, err)
	}
	return ds, nil
}

func (db *DB) ListGroups(ctx context.Context, after string, limit int) ([]store.GroupListing, error) {
	rows, err := db.query(ctx, `SELECT g.id, g.conversation_id, g.name, g.created_by, g.created_at, g.member_count,
		c.last_message_at, c.last_seq
		FROM group_chats g JOIN conversations c ON c.id = g.conversation_id
		WHERE g.id > ? ORDER BY g.id LIMIT ?`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("list groups: %w", err)
	}
	defer rows.Close()
	var gs []store.GroupListing
	for rows.Next() {
		var g store.GroupListing
		if err := rows.Scan(&g.ID, &g.ConversationID, &g.Name, &g.CreatedBy, &g.CreatedAt, &g.MemberCount,
			&g.LastMessageAt, &g.LastSeq); err != nil {
			return nil, fmt.Errorf("list groups: %w", err)
		}
		gs = append(gs, g)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list groups: %w", err)
	}
	return gs, nil
}

// UserGroups goes through the user's conversations (participants_by_user):
// a group's current members are its conversation's participants, so no
// index on group_members by user is needed.
func (db *DB) UserGroups(ctx context.Context, userID string) ([]store.UserGroup, error) {
	rows, err := db.query(ctx, `SELECT g.id, g.conversation_id, g.name, g.created_by, g.created_at, g.member_count, m.role
		FROM participants p
		JOIN group_chats g ON g.conversation_id = p.conversation_id
		JOIN group_members m ON m.group_id = g.id AND m.user_id = p.user_id
		WHERE p.user_id = ? ORDER BY g.id`, userID)
	if err != nil {
		return nil, fmt.Errorf("groups of %s: %w", userID, err)
	}
	defer rows.Close()
	var gs []store.UserGroup
	for rows.Next() {
		var g store.UserGroup
		if err := rows.Scan(&g.ID, &g.ConversationID, &g.Name, &g.CreatedBy, &g.CreatedAt, &g.MemberCount, &g.Role); err != nil {
			return nil, fmt.Errorf("groups of %s: %w", userID, err)
		}
		gs = append(gs, g)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("groups of %s: %w", userID, err)
	}
	return gs, nil
}
