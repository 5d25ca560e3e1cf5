package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"

	"github.com/natter-chat/natter/store"
)

// EnsureDirect creates the conversation with its participants, or checks
// that the existing one is this pair's: an id reused for another pair is
// store.ErrConflict rather than a silent new member.
func (db *DB) EnsureDirect(ctx context.Context, id, a, b string, at int64) error {
	return db.write(ctx, "ensure direct conversation "+id, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO conversations (id, type, created_at) VALUES (?, ?, ?)
			ON CONFLICT (id) DO NOTHING`, id, store.ConversationDirect, at)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		if n == 0 {
			if err := checkDirect(ctx, tx, id, a, b); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx, `UPDATE participants SET opened = 1
				WHERE conversation_id = ? AND user_id = ? AND NOT opened`, id, a)
			return err
		}
		// a opened it; for a == b the second row is the first's conflict.
		_, err = tx.ExecContext(ctx, `INSERT INTO participants (conversation_id, user_id, opened) VALUES (?1, ?2, 1), (?1, ?3, 0)
			ON CONFLICT DO NOTHING`, id, a, b)
		return err
	})
}

func checkDirect(ctx context.Context, tx *sql.Tx, id, a, b string) error {
	var typ string
	if err := tx.QueryRowContext(ctx, `SELECT type FROM conversations WHERE id = ?`, id).Scan(&typ); err != nil {
		return err
	}
	got, err := queryStrings(ctx, tx, `SELECT user_id FROM participants WHERE conversation_id = ? ORDER BY user_id`, id)
	if err != nil {
		return err
	}
	want := []string{a, b}
	slices.Sort(want)
	want = slices.Compact(want)
	if typ != store.ConversationDirect || !slices.Equal(got, want) {
		return fmt.Errorf("%w: conversation %s belongs to other participants", store.ErrConflict, id)
	}
	return nil
}

func (db *DB) Participants(ctx context.Context, conversationID string) ([]string, error) {
	ids, err := queryStrings(ctx, cachedReads{db}, `SELECT user_id FROM participants WHERE conversation_id = ? ORDER BY user_id`, conversationID)
	if err != nil {
		return nil, fmt.Errorf("participants of %s: %w", conversationID, err)
	}
	if len(ids) == 0 {
		// Every conversation has a participant, so none means no conversation.
		return nil, fmt.Errorf("participants of %s: %w", conversationID, store.ErrNotFound)
	}
	return ids, nil
}

func (db *DB) SharesConversation(ctx context.Context, a, b string) (bool, error) {
	var shares bool
	err := db.queryRow(ctx, `SELECT EXISTS (SELECT 1 FROM participants pa
		JOIN participants pb ON pb.conversation_id = pa.conversation_id AND pb.user_id = ?
		WHERE pa.user_id = ?)`, b, a).Scan(&shares)
	if err != nil {
		return false, fmt.Errorf("shares conversation: %w", err)
	}
	return shares, nil
}

// summaryQuery is a viewer's list in list order. The inner query picks the
// rows (its %s is the filter); the outer one adds the peer, title and
// unread count only for those, so a page does not count every
// conversation's unread messages.
const summaryQuery = `
SELECT v.id, v.type, v.group_id, v.created_at, v.last_message_at, v.last_message_preview, v.last_seq, v.read_seq,
	CASE WHEN v.type = 'user' THEN COALESCE(peer.user_id, v.viewer) ELSE '' END,
	COALESCE(u.username, g.name, ''),
	(SELECT COUNT(*) FROM messages m
		WHERE m.conversation_id = v.id AND m.seq > v.read_seq AND m.sender_id <> v.viewer AND NOT m.deleted
		AND NOT EXISTS (SELECT 1 FROM hidden_messages h
			WHERE h.user_id = v.viewer AND h.conversation_id = m.conversation_id AND h.seq = m.seq))
FROM (
	SELECT c.*, p.user_id AS viewer, p.read_seq,
		CASE WHEN c.last_message_at > 0 THEN c.last_message_at ELSE c.created_at END AS activity_at
	FROM participants p JOIN conversations c ON c.id = p.conversation_id
	WHERE %s
	ORDER BY activity_at DESC, c.id DESC
	LIMIT ?
) v
LEFT JOIN participants peer ON v.type = 'user' AND peer.conversation_id = v.id AND peer.user_id <> v.viewer
LEFT JOIN users u ON v.type = 'user' AND u.id = COALESCE(peer.user_id, v.viewer)
LEFT JOIN group_chats g ON v.type = 'group' AND g.id = v.group_id
ORDER BY v.activity_at DESC, v.id DESC`

var (
	oneSummaryQuery = fmt.Sprintf(summaryQuery, `p.user_id = ? AND p.conversation_id = ?`)
	// Row values compare (activity_at, id) lexicographically, which is the
	// list order; ?3 is false for the first page. An empty direct
	// conversation is listed only for a participant who opened it.
	pageSummaryQuery = fmt.Sprintf(summaryQuery, `p.user_id = ?
		AND (p.opened OR c.last_seq > 0 OR c.type <> 'user')
		AND (NOT ? OR (CASE WHEN c.last_message_at > 0 THEN c.last_message_at ELSE c.created_at END, c.id) < (?, ?))`)
)

func (db *DB) Conversation(ctx context.Context, conversationID, userID string) (store.ConversationSummary, error) {
	cs, err := db.summaries(ctx, oneSummaryQuery, userID, conversationID, 1)
	if err != nil {
		return store.ConversationSummary{}, fmt.Errorf("conversation %s: %w", conversationID, err)
	}
	if len(cs) == 0 {
		return store.ConversationSummary{}, fmt.Errorf("conversation %s for %s: %w", conversationID, userID, store.ErrNotFound)
	}
	return cs[0], nil
}

func (db *DB) Conversations(ctx context.Context, userID string, after store.ConversationPage, limit int) ([]store.ConversationSummary, error) {
	if limit <= 0 {
		return nil, nil
	}
	paged := after != store.ConversationPage{}
	cs, err := db.summaries(ctx, pageSummaryQuery, userID, paged, after.ActivityAt, after.ID, limit)
	if err != nil {
		return nil, fmt.Errorf("conversations of %s: %w", userID, err)
	}
	return cs, nil
}

func (db *DB) summaries(ctx context.Context, query string, args ...any) ([]store.ConversationSummary, error) {
	rows, err := db.query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var cs []store.ConversationSummary
	for rows.Next() {
		var c store.ConversationSummary
		if err := rows.Scan(&c.ID, &c.Type, &c.GroupID, &c.CreatedAt, &c.LastMessageAt, &c.LastMessagePreview,
			&c.LastSeq, &c.LastReadSeq, &c.PeerID, &c.Title, &c.UnreadCount); err != nil {
			return nil, err
		}
		cs = append(cs, c)
	}
	return cs, rows.Err()
}

// ReceiptState is the zero state for a participant with no row.
func (db *DB) ReceiptState(ctx context.Context, conversationID, userID string) (store.ReceiptState, error) {
	var st store.ReceiptState
	err := db.queryRow(ctx, `SELECT delivered_seq, read_seq FROM participants
		WHERE conversation_id = ? AND user_id = ?`, conversationID, userID).Scan(&st.DeliveredSeq, &st.ReadSeq)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return store.ReceiptState{}, fmt.Errorf("receipt state: %w", err)
	}
	return st, nil
}

// AdvanceReceipt raises delivered to at least read so that
// read_seq <= delivered_seq holds whatever order receipts arrive in. A
// non-participant is store.ErrNotFound: receipts must not create members.
func (db *DB) AdvanceReceipt(ctx context.Context, conversationID, userID string, st store.ReceiptState) error {
	n, err := db.exec(ctx, "advance receipt", `UPDATE participants
		SET read_seq = MAX(read_seq, ?1), delivered_seq = MAX(delivered_seq, ?1, ?2)
		WHERE conversation_id = ?3 AND user_id = ?4`, st.ReadSeq, st.DeliveredSeq, conversationID, userID)
	if err == nil && n == 0 {
		err = fmt.Errorf("advance receipt: %s in %s: %w", userID, conversationID, store.ErrNotFound)
	}
	return err
}

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// cachedReads is a querier over the read pool's prepared statements.
type cachedReads struct{ db *DB }

func (c cachedReads) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return c.db.query(ctx, query, args...)
}

func queryStrings(ctx context.Context, q querier, query string, args ...any) ([]string, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ss []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		ss = append(ss, s)
	}
	return ss, rows.Err()
}
