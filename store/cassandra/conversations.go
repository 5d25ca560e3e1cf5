package cassandra

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/gocql/gocql"

	"github.com/natter-chat/natter/store"
)

// query is a statement with ctx, marked idempotent (every statement of
// this package is) so that the driver may retry it.
func (db *DB) query(ctx context.Context, stmt string, args ...any) *gocql.Query {
	return db.s.Query(stmt, args...).WithContext(ctx).Idempotent(true)
}

// EnsureDirect creates the conversation with a lightweight transaction,
// the one place where two writers must agree (two first messages between
// the same pair at once). The rows derived from it (the opener a's list
// row, both participants' contacts) are written every time, from the
// stored row, so a call interrupted after the transaction is completed by
// the next one. The peer's list row is written with the first message
// (SaveMessages): an empty conversation is listed for its opener only.
func (db *DB) EnsureDirect(ctx context.Context, id, a, b string, at int64) error {
	want := []string{a, b}
	slices.Sort(want)
	want = slices.Compact(want)
	existing := map[string]any{}
	applied, err := db.query(ctx, `INSERT INTO conversations (id, type, group_id, created_at, participants)
		VALUES (?, ?, '', ?, ?) IF NOT EXISTS`, id, store.ConversationDirect, at, want).MapScanCAS(existing)
	if err != nil {
		return fmt.Errorf("ensure direct conversation %s: %w", id, classify(err))
	}
	if !applied {
		got, _ := existing["participants"].([]string)
		slices.Sort(got)
		if existing["type"] != store.ConversationDirect || !slices.Equal(got, want) {
			return fmt.Errorf("ensure direct conversation %s: %w: it belongs to other participants", id, store.ErrConflict)
		}
		at, _ = existing["created_at"].(int64)
	}
	if err := db.listDirect(ctx, id, a, b, at).Exec(); err != nil {
		return fmt.Errorf("ensure direct conversation %s: list of %s: %w", id, a, classify(err))
	}
	for _, user := range want {
		peer := a
		if user == a {
			peer = b
		}
		if err := db.query(ctx, `INSERT INTO contacts (user_id, contact_id) VALUES (?, ?)`, user, peer).Exec(); err != nil {
			return fmt.Errorf("ensure direct conversation %s: contacts of %s: %w", id, user, classify(err))
		}
	}
	return nil
}

// listDirect writes user's list row of direct conversation id with peer
// (not value-stamped cells: the same values every time).
func (db *DB) listDirect(ctx context.Context, id, user, peer string, at int64) *gocql.Query {
	return db.query(ctx, `UPDATE user_conversations SET type = ?, peer_id = ?, group_id = '', created_at = ?
			WHERE user_id = ? AND conversation_id = ?`, store.ConversationDirect, peer, at, user, id)
}

// conversation is the conversations row.
type conversation struct {
	typ          string
	participants []string
	lastSeq      int64
	createdAt    int64
}

// peerOf is user's peer in a direct conversation (user for self-chat).
func (c conversation) peerOf(user string) string {
	for _, p := range c.participants {
		if p != user {
			return p
		}
	}
	return user
}

func (db *DB) conversation(ctx context.Context, id string) (conversation, error) {
	var c conversation
	err := db.query(ctx, `SELECT type, participants, last_seq, created_at FROM conversations WHERE id = ?`, id).
		Scan(&c.typ, &c.participants, &c.lastSeq, &c.createdAt)
	if err == nil && c.typ == "" {
		// A row of value-stamped cells only: never created. (A group
		// whose members all left has a type and no participants.)
		err = gocql.ErrNotFound
	}
	return c, classify(err)
}

func (db *DB) Participants(ctx context.Context, conversationID string) ([]string, error) {
	c, err := db.conversation(ctx, conversationID)
	if err != nil {
		return nil, fmt.Errorf("participants of %s: %w", conversationID, err)
	}
	return c.participants, nil
}

func (db *DB) SharesConversation(ctx context.Context, a, b string) (bool, error) {
	var contact string
	err := db.query(ctx, `SELECT contact_id FROM contacts WHERE user_id = ? AND contact_id = ?`, a, b).Scan(&contact)
	if errors.Is(err, gocql.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("shares conversation: %w", classify(err))
	}
	return true, nil
}

const summaryColumns = `conversation_id, type, peer_id, group_id, created_at, last_message_at, last_preview, last_seq, read_seq`

func scanSummary(scan func(...any) bool) (store.ConversationSummary, bool) {
	var c store.ConversationSummary
	ok := scan(&c.ID, &c.Type, &c.PeerID, &c.GroupID, &c.CreatedAt, &c.LastMessageAt, &c.LastMessagePreview,
		&c.LastSeq, &c.LastReadSeq)
	return c, ok
}

// Conversation leaves Title empty: usernames live on the user side, and
// store.Combine fills it in.
func (db *DB) Conversation(ctx context.Context, conversationID, userID string) (store.ConversationSummary, error) {
	iter := db.query(ctx, `SELECT `+summaryColumns+` FROM user_conversations
		WHERE user_id = ? AND conversation_id = ?`, userID, conversationID).Iter()
	c, found := scanSummary(iter.Scan)
	if err := iter.Close(); err != nil {
		return store.ConversationSummary{}, fmt.Errorf("conversation %s: %w", conversationID, classify(err))
	}
	if !found || c.Type == "" {
		// Not in the user's list (yet): the peer of an empty direct
		// conversation someone else opened still sees it by id.
		conv, err := db.conversation(ctx, conversationID)
		if err == nil && (conv.typ != store.ConversationDirect || !slices.Contains(conv.participants, userID)) {
			err = store.ErrNotFound
		}
		if err != nil {
			return store.ConversationSummary{}, fmt.Errorf("conversation %s for %s: %w", conversationID, userID, err)
		}
		c = store.ConversationSummary{ID: conversationID, Type: conv.typ, PeerID: conv.peerOf(userID),
			CreatedAt: conv.createdAt, LastSeq: conv.lastSeq, LastReadSeq: c.LastReadSeq}
	}
	n, err := db.unread(ctx, c, userID)
	if err != nil {
		return store.ConversationSummary{}, fmt.Errorf("conversation %s: %w", conversationID, err)
	}
	c.UnreadCount = n
	return c, nil
}

// Conversations reads the user's whole partition and orders it by
// activity here: a user has hundreds of conversations, not millions, and
// an activity-ordered table would need a delete and an insert (and a
// tombstone) per message. The unread counts are computed for the page
// only.
func (db *DB) Conversations(ctx context.Context, userID string, after store.ConversationPage, limit int) ([]store.ConversationSummary, error) {
	if limit <= 0 {
		return nil, nil
	}
	iter := db.query(ctx, `SELECT `+summaryColumns+` FROM user_conversations WHERE user_id = ?`, userID).Iter()
	var all []store.ConversationSummary
	for {
		c, ok := scanSummary(iter.Scan)
		if !ok {
			break
		}
		if c.Type != "" {
			all = append(all, c)
		}
	}
	if err := iter.Close(); err != nil {
		return nil, fmt.Errorf("conversations of %s: %w", userID, classify(err))
	}
	// List order: activity, then id, both descending.
	order := func(x, y store.ConversationSummary) int {
		return cmp.Or(cmp.Compare(y.ActivityAt(), x.ActivityAt()), cmp.Compare(y.ID, x.ID))
	}
	slices.SortFunc(all, order)
	if after != (store.ConversationPage{}) {
		mark := store.ConversationSummary{ID: after.ID, CreatedAt: after.ActivityAt}
		i, _ := slices.BinarySearchFunc(all, mark, func(c, m store.ConversationSummary) int {
			if order(c, m) <= 0 {
				return -1
			}
			return 1
		})
		all = all[i:]
	}
	if len(all) > limit {
		all = all[:limit]
	}
	for i := range all {
		n, err := db.unread(ctx, all[i], userID)
		if err != nil {
			return nil, fmt.Errorf("conversations of %s: %w", userID, err)
		}
		all[i].UnreadCount = n
	}
	return all, nil
}

// unread counts the messages after the viewer's read seq that someone
// else sent and that are neither deleted for everyone nor hidden for the
// viewer. It reads that tail of the history (three narrow columns): exact
// whatever order messages, receipts and deletions arrive in, and cheap
// while users read what they receive; a conversation with a huge unread
// tail costs a read of that tail when it is listed. Counters were the
// alternative, but a Cassandra counter update is not idempotent: a retry
// after a timeout would count twice.
func (db *DB) unread(ctx context.Context, c store.ConversationSummary, viewer string) (int64, error) {
	if c.LastSeq <= c.LastReadSeq {
		return 0, nil
	}
	hidden, err := db.hidden(ctx, c.ID, viewer, c.LastReadSeq+1, c.LastSeq)
	if err != nil {
		return 0, fmt.Errorf("unread count: %w", err)
	}
	var n int64
	for b := db.bucket(c.LastReadSeq + 1); b <= db.bucket(c.LastSeq); b++ {
		iter := db.query(ctx, `SELECT seq, sender_id, deleted FROM messages
			WHERE conversation_id = ? AND bucket = ? AND seq > ? AND seq <= ?`, c.ID, b, c.LastReadSeq, c.LastSeq).
			PageSize(5000).Iter()
		var (
			seq     int64
			sender  string
			deleted bool
		)
		for iter.Scan(&seq, &sender, &deleted) {
			if sender != viewer && !deleted && !hidden[seq] {
				n++
			}
		}
		if err := iter.Close(); err != nil {
			return 0, fmt.Errorf("unread count: %w", classify(err))
		}
	}
	return n, nil
}

// hidden is the set of seqs in [from, to] the viewer deleted for themselves.
func (db *DB) hidden(ctx context.Context, conversationID, viewer string, from, to int64) (map[int64]bool, error) {
	iter := db.query(ctx, `SELECT seq FROM hidden_messages WHERE conversation_id = ? AND user_id = ? AND seq >= ? AND seq <= ?`,
		conversationID, viewer, from, to).Iter()
	hidden := map[int64]bool{}
	var seq int64
	for iter.Scan(&seq) {
		hidden[seq] = true
	}
	if err := iter.Close(); err != nil {
		return nil, classify(err)
	}
	return hidden, nil
}

// ReceiptState is the zero state for a participant without a row.
func (db *DB) ReceiptState(ctx context.Context, conversationID, userID string) (store.ReceiptState, error) {
	var st store.ReceiptState
	err := db.query(ctx, `SELECT delivered_seq, read_seq FROM receipts WHERE conversation_id = ? AND user_id = ?`,
		conversationID, userID).Scan(&st.DeliveredSeq, &st.ReadSeq)
	if err != nil && !errors.Is(err, gocql.ErrNotFound) {
		return store.ReceiptState{}, fmt.Errorf("receipt state: %w", classify(err))
	}
	return st, nil
}

// AdvanceReceipt writes each seq with itself as the write timestamp:
// Cassandra keeps the cell with the highest timestamp, so the stored
// value is the maximum of all ever written, in any order, with no read
// and no transaction. Delivered is raised to at least read so that
// read_seq <= delivered_seq holds. The read seq is copied into the
// viewer's list row, where the unread count starts from.
func (db *DB) AdvanceReceipt(ctx context.Context, conversationID, userID string, st store.ReceiptState) error {
	c, err := db.conversation(ctx, conversationID)
	if err == nil && !slices.Contains(c.participants, userID) {
		err = store.ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("advance receipt: %s in %s: %w", userID, conversationID, err)
	}
	delivered := max(st.DeliveredSeq, st.ReadSeq)
	var writes []*gocql.Query
	if delivered > 0 {
		writes = append(writes, db.query(ctx, `UPDATE receipts USING TIMESTAMP ? SET delivered_seq = ?
			WHERE conversation_id = ? AND user_id = ?`, delivered, delivered, conversationID, userID))
	}
	if st.ReadSeq > 0 {
		writes = append(writes,
			db.query(ctx, `UPDATE receipts USING TIMESTAMP ? SET read_seq = ? WHERE conversation_id = ? AND user_id = ?`,
				st.ReadSeq, st.ReadSeq, conversationID, userID),
			db.query(ctx, `UPDATE user_conversations USING TIMESTAMP ? SET read_seq = ? WHERE user_id = ? AND conversation_id = ?`,
				st.ReadSeq, st.ReadSeq, userID, conversationID))
	}
	for _, q := range writes {
		if err := q.Exec(); err != nil {
			return fmt.Errorf("advance receipt: %s in %s: %w", userID, conversationID, classify(err))
		}
	}
	return nil
}
