package postgres

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/jackc/pgx/v5"

	"github.com/natter-chat/natter/store"
)

// Groups: AddMembers and RemoveMember lock the group's row first (FOR
// UPDATE), so concurrent changes of one group run one after the other and
// the cap check inside one sees every seat the others took.

func (db *DB) CreateGroup(ctx context.Context, g store.Group, members []store.Member) error {
	if len(members) > store.MaxGroupMembers {
		return fmt.Errorf("create group %s: %w", g.ID, store.ErrGroupFull)
	}
	return db.tx(ctx, "create group "+g.ID, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO conversations (id, type, group_id, created_at) VALUES ($1, $2, $3, $4)`,
			g.ConversationID, store.ConversationGroup, g.ID, g.CreatedAt); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO group_chats (id, conversation_id, name, created_by, created_at, member_count)
			VALUES ($1, $2, $3, $4, $5, $6)`, g.ID, g.ConversationID, g.Name, g.CreatedBy, g.CreatedAt, len(members)); err != nil {
			return err
		}
		for _, m := range members {
			if err := joinGroup(ctx, tx, g.ID, g.ConversationID, m); err != nil {
				return err
			}
		}
		return nil
	})
}

// joinGroup adds one member: the member row, the interval and the
// conversation's participant, whose receipts start just before joining.
func joinGroup(ctx context.Context, tx pgx.Tx, groupID, conv string, m store.Member) error {
	if _, err := tx.Exec(ctx, `INSERT INTO group_members (group_id, user_id, role, joined_seq, joined_at)
		VALUES ($1, $2, $3, $4, $5)`, groupID, m.UserID, m.Role, m.JoinedSeq, m.JoinedAt); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `INSERT INTO group_memberships (group_id, user_id, joined_seq) VALUES ($1, $2, $3)
		ON CONFLICT DO NOTHING`, groupID, m.UserID, m.JoinedSeq); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, `INSERT INTO participants (conversation_id, user_id, delivered_seq, read_seq) VALUES ($1, $2, $3, $3)
		ON CONFLICT (conversation_id, user_id) DO UPDATE SET delivered_seq = GREATEST(participants.delivered_seq, $3), read_seq = GREATEST(participants.read_seq, $3)`,
		conv, m.UserID, m.JoinedSeq-1)
	return err
}

func (db *DB) Group(ctx context.Context, groupID string) (store.Group, error) {
	var g store.Group
	err := db.pool.QueryRow(ctx, `SELECT id, conversation_id, name, created_by, created_at, member_count FROM group_chats WHERE id = $1`,
		groupID).Scan(&g.ID, &g.ConversationID, &g.Name, &g.CreatedBy, &g.CreatedAt, &g.MemberCount)
	if err != nil {
		return store.Group{}, notFound("group "+groupID, err)
	}
	return g, nil
}

func (db *DB) Members(ctx context.Context, groupID string) ([]store.Member, error) {
	rows, err := db.pool.Query(ctx, `SELECT user_id, role, joined_seq, joined_at FROM group_members WHERE group_id = $1
		ORDER BY joined_at, joined_seq, user_id`, groupID)
	if err != nil {
		return nil, fmt.Errorf("members of %s: %w", groupID, classify(err))
	}
	defer rows.Close()
	var ms []store.Member
	for rows.Next() {
		var m store.Member
		if err := rows.Scan(&m.UserID, &m.Role, &m.JoinedSeq, &m.JoinedAt); err != nil {
			return nil, fmt.Errorf("members of %s: %w", groupID, err)
		}
		ms = append(ms, m)
	}
	return ms, rows.Err()
}

func (db *DB) Member(ctx context.Context, groupID, userID string) (store.Member, error) {
	m := store.Member{UserID: userID}
	err := db.pool.QueryRow(ctx, `SELECT role, joined_seq, joined_at FROM group_members WHERE group_id = $1 AND user_id = $2`,
		groupID, userID).Scan(&m.Role, &m.JoinedSeq, &m.JoinedAt)
	if err != nil {
		return store.Member{}, notFound(fmt.Sprintf("member %s of %s", userID, groupID), err)
	}
	return m, nil
}

func (db *DB) AddMembers(ctx context.Context, groupID string, userIDs []string, joinedSeq, at int64) ([]string, error) {
	var added []string
	err := db.tx(ctx, "add members to "+groupID, func(tx pgx.Tx) error {
		added = added[:0]
		var conv string
		var count int
		if err := tx.QueryRow(ctx, `SELECT conversation_id, member_count FROM group_chats WHERE id = $1 FOR UPDATE`, groupID).
			Scan(&conv, &count); err != nil {
			return notFound("group", err)
		}
		for _, u := range userIDs {
			var exists bool
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM group_members WHERE group_id = $1 AND user_id = $2)`,
				groupID, u).Scan(&exists); err != nil {
				return err
			}
			if exists {
				continue
			}
			if count+len(added)+1 > store.MaxGroupMembers {
				return store.ErrGroupFull
			}
			if err := joinGroup(ctx, tx, groupID, conv, store.Member{UserID: u, Role: store.RoleMember, JoinedSeq: joinedSeq, JoinedAt: at}); err != nil {
				return err
			}
			added = append(added, u)
		}
		_, err := tx.Exec(ctx, `UPDATE group_chats SET member_count = member_count + $1 WHERE id = $2`, len(added), groupID)
		return err
	})
	if err != nil {
		return nil, err
	}
	return added, nil
}

func (db *DB) RemoveMember(ctx context.Context, groupID, userID string, leftSeq int64) (string, error) {
	var promoted string
	err := db.tx(ctx, fmt.Sprintf("remove %s from %s", userID, groupID), func(tx pgx.Tx) error {
		promoted = ""
		var conv, role string
		if _, err := tx.Exec(ctx, `SELECT 1 FROM group_chats WHERE id = $1 FOR UPDATE`, groupID); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, `SELECT g.conversation_id, m.role FROM group_members m JOIN group_chats g ON g.id = m.group_id
			WHERE m.group_id = $1 AND m.user_id = $2`, groupID, userID).Scan(&conv, &role); err != nil {
			return notFound("member", err)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM group_members WHERE group_id = $1 AND user_id = $2`, groupID, userID); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE group_memberships SET left_seq = $1 WHERE group_id = $2 AND user_id = $3 AND left_seq = $4`,
			leftSeq, groupID, userID, int64(math.MaxInt64)); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM participants WHERE conversation_id = $1 AND user_id = $2`, conv, userID); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE group_chats SET member_count = member_count - 1 WHERE id = $1`, groupID); err != nil {
			return err
		}
		if role != store.RoleAdmin {
			return nil
		}
		var admins int
		if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM group_members WHERE group_id = $1 AND role = 'admin'`, groupID).Scan(&admins); err != nil {
			return err
		}
		if admins > 0 {
			return nil
		}
		err := tx.QueryRow(ctx, `SELECT user_id FROM group_members WHERE group_id = $1 ORDER BY joined_at, joined_seq, user_id LIMIT 1`,
			groupID).Scan(&promoted)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil // the group is empty
		}
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE group_members SET role = 'admin' WHERE group_id = $1 AND user_id = $2`, groupID, promoted)
		return err
	})
	return promoted, err
}

func (db *DB) SetRole(ctx context.Context, groupID, userID, role string) error {
	n, err := db.exec(ctx, "set role", `UPDATE group_members SET role = $1 WHERE group_id = $2 AND user_id = $3`, role, groupID, userID)
	if err == nil && n == 0 {
		err = fmt.Errorf("set role of %s in %s: %w", userID, groupID, store.ErrNotFound)
	}
	return err
}

func (db *DB) RenameGroup(ctx context.Context, groupID, name string) error {
	n, err := db.exec(ctx, "rename group", `UPDATE group_chats SET name = $1 WHERE id = $2`, name, groupID)
	if err == nil && n == 0 {
		err = fmt.Errorf("rename group %s: %w", groupID, store.ErrNotFound)
	}
	return err
}

func (db *DB) MembersAt(ctx context.Context, groupID string, seq int64) ([]string, error) {
	ids, err := queryStrings(ctx, db.pool, `SELECT DISTINCT user_id FROM group_memberships
		WHERE group_id = $1 AND joined_seq <= $2 AND left_seq > $2 ORDER BY user_id`, groupID, seq)
	if err != nil {
		return nil, fmt.Errorf("members of %s at %d: %w", groupID, seq, classify(err))
	}
	return ids, nil
}

func (db *DB) LowestReceipts(ctx context.Context, conversationID string, read bool, n int) ([]store.UserSeq, error) {
	q := `SELECT user_id, delivered_seq FROM participants WHERE conversation_id = $1 ORDER BY delivered_seq, user_id LIMIT $2`
	if read {
		q = `SELECT user_id, read_seq FROM participants WHERE conversation_id = $1 ORDER BY read_seq, user_id LIMIT $2`
	}
	return db.userSeqs(ctx, "lowest receipts of "+conversationID, q, conversationID, n)
}

func (db *DB) LastSent(ctx context.Context, conversationID string, after, upTo int64) ([]store.UserSeq, error) {
	return db.userSeqs(ctx, "senders of "+conversationID, `SELECT sender_id, MAX(seq) FROM messages
		WHERE conversation_id = $1 AND seq > $2 AND seq <= $3 GROUP BY sender_id ORDER BY sender_id`, conversationID, after, upTo)
}

func (db *DB) userSeqs(ctx context.Context, what, query string, args ...any) ([]store.UserSeq, error) {
	rows, err := db.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, classify(err))
	}
	defer rows.Close()
	var out []store.UserSeq
	for rows.Next() {
		var u store.UserSeq
		if err := rows.Scan(&u.UserID, &u.Seq); err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		out = append(out, u)
	}
	return out, rows.Err()
}

func (db *DB) LogReceipts(ctx context.Context, changes []store.ReceiptChange) error {
	if len(changes) == 0 {
		return nil
	}
	return db.tx(ctx, "log receipts", func(tx pgx.Tx) error {
		for _, c := range changes {
			if _, err := tx.Exec(ctx, `INSERT INTO receipt_log (conversation_id, seq, user_id, status, ts) VALUES ($1, $2, $3, $4, $5)
				ON CONFLICT DO NOTHING`, c.ConversationID, c.Seq, c.UserID, c.Status, c.TS); err != nil {
				return err
			}
		}
		return nil
	})
}

func (db *DB) ReceiptTimes(ctx context.Context, conversationID string, seq int64) ([]store.ReceiptTime, error) {
	rows, err := db.pool.Query(ctx, `SELECT user_id, MIN(ts), COALESCE(MIN(CASE WHEN status = 'read' THEN ts END), 0) FROM receipt_log
		WHERE conversation_id = $1 AND seq >= $2 GROUP BY user_id ORDER BY user_id`, conversationID, seq)
	if err != nil {
		return nil, fmt.Errorf("receipt times of %s/%d: %w", conversationID, seq, classify(err))
	}
	defer rows.Close()
	var out []store.ReceiptTime
	for rows.Next() {
		var r store.ReceiptTime
		if err := rows.Scan(&r.UserID, &r.DeliveredAt, &r.ReadAt); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}
