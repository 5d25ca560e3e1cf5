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

// Group conversations (store.GroupConversations). The groups themselves,
// their members, roles and membership intervals live on the user side,
// where the 500 cap is checked in a transaction; this side keeps what
// the message path reads: the conversation row and its participants set
// (the current members), each member's list row and receipts, and the
// receipt log. store.Combine writes the user side first and mirrors
// here; every write below is idempotent, so repeating a mirror is safe.

// EnsureGroupConversation creates the row with the package's one kind of
// lightweight transaction, as EnsureDirect does.
func (db *DB) EnsureGroupConversation(ctx context.Context, conversationID, groupID string, createdAt int64) error {
	existing := map[string]any{}
	applied, err := db.query(ctx, `INSERT INTO conversations (id, type, group_id, created_at)
		VALUES (?, ?, ?, ?) IF NOT EXISTS`, conversationID, store.ConversationGroup, groupID, createdAt).MapScanCAS(existing)
	if err != nil {
		return fmt.Errorf("ensure group conversation %s: %w", conversationID, classify(err))
	}
	if !applied && (existing["type"] != store.ConversationGroup || existing["group_id"] != groupID) {
		return fmt.Errorf("ensure group conversation %s: %w: it is another conversation", conversationID, store.ErrConflict)
	}
	return nil
}

// JoinGroupConversation adds the members to the participants set, writes
// each one's list row (the group's last message copied in, as the
// relational adapters show the conversation's last message to every
// member) and starts their receipts at JoinedSeq-1, value-stamped so that
// they only move forward. The list row's type is written with the
// server's clock, above every value-stamped cell: a later leave (an empty type)
// and re-join order by time.
func (db *DB) JoinGroupConversation(ctx context.Context, conversationID string, members []store.Member) error {
	what := "join group conversation " + conversationID
	if len(members) == 0 {
		return nil
	}
	var (
		groupID   string
		createdAt int64
		hint      int64
		typ       string
	)
	err := db.query(ctx, `SELECT type, group_id, created_at, last_seq FROM conversations WHERE id = ?`, conversationID).
		Scan(&typ, &groupID, &createdAt, &hint)
	if err == nil && typ != store.ConversationGroup {
		err = gocql.ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("%s: %w", what, classify(err))
	}
	users := make([]string, 0, len(members))
	for _, m := range members {
		users = append(users, m.UserID)
	}
	if err := db.query(ctx, `UPDATE conversations SET participants = participants + ? WHERE id = ?`, users, conversationID).Exec(); err != nil {
		return fmt.Errorf("%s: participants: %w", what, classify(err))
	}
	last, err := db.lastSeq(ctx, conversationID, hint)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	var lastMsg *store.Message
	if last > 0 {
		m, err := db.Message(ctx, conversationID, last)
		if err != nil {
			return fmt.Errorf("%s: last message: %w", what, err)
		}
		lastMsg = &m
	}
	err = db.each(ctx, len(members), func(ctx context.Context, i int) error {
		m := members[i]
		writes := []*gocql.Query{db.query(ctx, `UPDATE user_conversations SET type = ?, peer_id = '', group_id = ?, created_at = ?
			WHERE user_id = ? AND conversation_id = ?`, store.ConversationGroup, groupID, createdAt, m.UserID, conversationID)}
		if lastMsg != nil {
			p := preview(lastMsg.Content)
			if lastMsg.Deleted {
				p = ""
			}
			writes = append(writes, db.query(ctx, `UPDATE user_conversations USING TIMESTAMP ?
				SET last_seq = ?, last_message_at = ?, last_preview = ? WHERE user_id = ? AND conversation_id = ?`,
				lastStamp(lastMsg.Seq), lastMsg.Seq, lastMsg.ServerTS, p, m.UserID, conversationID))
		}
		if from := m.JoinedSeq - 1; from > 0 {
			writes = append(writes,
				db.query(ctx, `UPDATE receipts USING TIMESTAMP ? SET delivered_seq = ? WHERE conversation_id = ? AND user_id = ?`,
					from, from, conversationID, m.UserID),
				db.query(ctx, `UPDATE receipts USING TIMESTAMP ? SET read_seq = ? WHERE conversation_id = ? AND user_id = ?`,
					from, from, conversationID, m.UserID),
				db.query(ctx, `UPDATE user_conversations USING TIMESTAMP ? SET read_seq = ? WHERE user_id = ? AND conversation_id = ?`,
					from, from, m.UserID, conversationID))
		}
		for _, q := range writes {
			if err := q.Exec(); err != nil {
				return fmt.Errorf("member %s: %w", m.UserID, classify(err))
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// LeaveGroupConversation takes the user out of the participants (so no
// later message updates their row and their receipts stop counting) and
// out of their list (an empty type; the row's value-stamped cells cannot be
// deleted without shadowing a later re-join's). Their receipts row stays,
// unread by anyone: receipts are read for participants only.
func (db *DB) LeaveGroupConversation(ctx context.Context, conversationID, userID string) error {
	what := fmt.Sprintf("leave group conversation %s: %s", conversationID, userID)
	if err := db.query(ctx, `UPDATE conversations SET participants = participants - ? WHERE id = ?`,
		[]string{userID}, conversationID).Exec(); err != nil {
		return fmt.Errorf("%s: %w", what, classify(err))
	}
	if err := db.query(ctx, `UPDATE user_conversations SET type = '' WHERE user_id = ? AND conversation_id = ?`,
		userID, conversationID).Exec(); err != nil {
		return fmt.Errorf("%s: %w", what, classify(err))
	}
	return nil
}

// LowestReceipts reads the conversation's receipts partition (one row per
// member who ever had one, at most a few hundred narrow rows) and sorts it
// here. An index by seq would be a second table whose rows move with every
// receipt: a read before each write and a tombstone per move, for a read
// that is one partition anyway.
func (db *DB) LowestReceipts(ctx context.Context, conversationID string, read bool, n int) ([]store.UserSeq, error) {
	c, err := db.conversation(ctx, conversationID)
	if err != nil {
		return nil, fmt.Errorf("lowest receipts of %s: %w", conversationID, err)
	}
	rs, err := db.receipts(ctx, conversationID, c.participants)
	if err != nil {
		return nil, fmt.Errorf("lowest receipts of %s: %w", conversationID, err)
	}
	out := make([]store.UserSeq, 0, len(rs))
	for user, st := range rs {
		seq := st.DeliveredSeq
		if read {
			seq = st.ReadSeq
		}
		out = append(out, store.UserSeq{UserID: user, Seq: seq})
	}
	slices.SortFunc(out, func(a, b store.UserSeq) int {
		return cmp.Or(cmp.Compare(a.Seq, b.Seq), cmp.Compare(a.UserID, b.UserID))
	})
	if len(out) > n {
		out = out[:max(n, 0)]
	}
	return out, nil
}

// LastSent reads (seq, sender) of the range, bucket by bucket: the range
// is what one reader's status move covers.
func (db *DB) LastSent(ctx context.Context, conversationID string, after, upTo int64) ([]store.UserSeq, error) {
	if upTo <= after {
		return nil, nil
	}
	last := map[string]int64{}
	for b := db.bucket(max(after+1, 0)); b <= db.bucket(upTo); b++ {
		iter := db.query(ctx, `SELECT seq, sender_id FROM messages
			WHERE conversation_id = ? AND bucket = ? AND seq > ? AND seq <= ?`, conversationID, b, after, upTo).
			PageSize(5000).Iter()
		var (
			seq    int64
			sender string
		)
		for iter.Scan(&seq, &sender) {
			last[sender] = max(last[sender], seq)
		}
		if err := iter.Close(); err != nil {
			return nil, fmt.Errorf("senders of %s: %w", conversationID, classify(err))
		}
	}
	out := make([]store.UserSeq, 0, len(last))
	for user, seq := range last {
		out = append(out, store.UserSeq{UserID: user, Seq: seq})
	}
	slices.SortFunc(out, func(a, b store.UserSeq) int { return cmp.Compare(a.UserID, b.UserID) })
	return out, nil
}

// LogReceipts writes each change stamped tsTombstone minus its time, so
// that the earliest time recorded for a (conversation, seq, user, status)
// wins, as the relational adapters keep the first.
func (db *DB) LogReceipts(ctx context.Context, changes []store.ReceiptChange) error {
	err := db.each(ctx, len(changes), func(ctx context.Context, i int) error {
		c := changes[i]
		return db.query(ctx, `INSERT INTO receipt_log (conversation_id, bucket, seq, user_id, status, ts)
			VALUES (?, ?, ?, ?, ?, ?) USING TIMESTAMP ?`, c.ConversationID, db.bucket(c.Seq), c.Seq, c.UserID, c.Status, c.TS,
			tsTombstone-c.TS).Exec()
	})
	if err != nil && len(changes) > 0 {
		return fmt.Errorf("log receipts: %w", classify(err))
	}
	return nil
}

// ReceiptTimes reads the log from seq's bucket up to the conversation's
// last message's: a status change never lands above the last message.
func (db *DB) ReceiptTimes(ctx context.Context, conversationID string, seq int64) ([]store.ReceiptTime, error) {
	what := fmt.Sprintf("receipt times of %s/%d", conversationID, seq)
	c, err := db.conversation(ctx, conversationID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	top, err := db.lastSeq(ctx, conversationID, c.lastSeq)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	times := map[string]*store.ReceiptTime{}
	for b := db.bucket(max(seq, 0)); b <= db.bucket(max(top, seq)); b++ {
		iter := db.query(ctx, `SELECT user_id, status, ts FROM receipt_log
			WHERE conversation_id = ? AND bucket = ? AND seq >= ?`, conversationID, b, seq).PageSize(5000).Iter()
		var (
			user, status string
			ts           int64
		)
		for iter.Scan(&user, &status, &ts) {
			t := times[user]
			if t == nil {
				t = &store.ReceiptTime{UserID: user}
				times[user] = t
			}
			if t.DeliveredAt == 0 || ts < t.DeliveredAt {
				t.DeliveredAt = ts
			}
			if status == "read" && (t.ReadAt == 0 || ts < t.ReadAt) {
				t.ReadAt = ts
			}
		}
		if err := iter.Close(); err != nil {
			return nil, fmt.Errorf("%s: %w", what, classify(err))
		}
	}
	out := make([]store.ReceiptTime, 0, len(times))
	for _, t := range times {
		out = append(out, *t)
	}
	slices.SortFunc(out, func(a, b store.ReceiptTime) int { return cmp.Compare(a.UserID, b.UserID) })
	return out, nil
}

// ClientMessageIDs calls fn with every (sender, client_message_id) in the
// retry table, paged through the whole table: natter's dedupe filter is
// loaded once at start, on a single node only (--sole-sequencer), where
// the table is one node's history. A pair used twice comes twice.
func (db *DB) ClientMessageIDs(ctx context.Context, fn func(senderID, clientMessageID string)) error {
	iter := db.query(ctx, `SELECT sender_id, client_message_id FROM messages_by_client_id`).PageSize(5000).Iter()
	var sender, cmid string
	for iter.Scan(&sender, &cmid) {
		fn(sender, cmid)
	}
	if err := iter.Close(); err != nil {
		return fmt.Errorf("client message ids: %w", classify(err))
	}
	return nil
}

var _ store.GroupConversations = (*DB)(nil)
