package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"math"

	"github.com/natter-chat/natter/schema"
	"github.com/natter-chat/natter/store"
)

// previewRunes is how much of the last message the conversation list shows.
const previewRunes = 100

// SaveMessages inserts the batch in one transaction, leaving stored
// messages untouched, then moves each conversation's last-message fields
// to the batch's highest seq if that is newer than what is stored, so a
// replayed or out-of-order batch never moves them back.
func (db *DB) SaveMessages(ctx context.Context, msgs []store.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	return db.write(ctx, "save messages", func(tx *sql.Tx) error {
		// The statements run without ctx's cancellation: for a context
		// that can end, the driver starts a watcher goroutine per
		// statement, a row each here. The transaction still ends with ctx.
		ctx := context.WithoutCancel(ctx)
		latest, err := db.insertMessages(ctx, tx, msgs)
		if err != nil {
			return err
		}
		return db.advanceConversations(ctx, tx, latest)
	})
}

// insertMessages returns each conversation's highest-seq message of msgs.
func (db *DB) insertMessages(ctx context.Context, tx *sql.Tx, msgs []store.Message) (map[string]store.Message, error) {
	ins := tx.StmtContext(ctx, db.insertMessage)
	defer ins.Close()
	latest := make(map[string]store.Message)
	for _, m := range msgs {
		if _, err := ins.ExecContext(ctx, m.ConversationID, m.Seq, m.ID, m.SenderID, m.RecipientID,
			m.MessageType, m.Content, m.ClientMessageID, m.ServerTS); err != nil {
			return nil, fmt.Errorf("message %s/%d: %w", m.ConversationID, m.Seq, classify(err))
		}
		if l, ok := latest[m.ConversationID]; !ok || m.Seq > l.Seq {
			latest[m.ConversationID] = m
		}
	}
	return latest, nil
}

func (db *DB) advanceConversations(ctx context.Context, tx *sql.Tx, latest map[string]store.Message) error {
	upd := tx.StmtContext(ctx, db.advanceConversation)
	defer upd.Close()
	for id, m := range latest {
		if _, err := upd.ExecContext(ctx, m.Seq, m.ServerTS, preview(m.Content), id); err != nil {
			return fmt.Errorf("conversation %s: %w", id, err)
		}
	}
	return nil
}

// preview is the first previewRunes runes of s.
func preview(s string) string {
	n := 0
	for i := range s {
		if n == previewRunes {
			return s[:i]
		}
		n++
	}
	return s
}

const messageColumns = `conversation_id, seq, id, sender_id, recipient_id, message_type, content, client_message_id, server_ts, deleted`

func scanMessage(row interface{ Scan(...any) error }, extra ...any) (store.Message, error) {
	var m store.Message
	err := row.Scan(append([]any{&m.ConversationID, &m.Seq, &m.ID, &m.SenderID, &m.RecipientID,
		&m.MessageType, &m.Content, &m.ClientMessageID, &m.ServerTS, &m.Deleted}, extra...)...)
	return m, err
}

func (db *DB) MessageByClientID(ctx context.Context, senderID, clientMessageID string) (store.Message, error) {
	m, err := scanMessage(db.queryRow(ctx, `SELECT `+messageColumns+` FROM messages
		WHERE sender_id = ? AND client_message_id = ? ORDER BY seq, conversation_id LIMIT 1`, senderID, clientMessageID))
	if err != nil {
		return store.Message{}, notFound("message by client id", err)
	}
	return m, nil
}

func (db *DB) Message(ctx context.Context, conversationID string, seq int64) (store.Message, error) {
	m, err := scanMessage(db.queryRow(ctx, `SELECT `+messageColumns+` FROM messages
		WHERE conversation_id = ? AND seq = ?`, conversationID, seq))
	if err != nil {
		return store.Message{}, notFound(fmt.Sprintf("message %s/%d", conversationID, seq), err)
	}
	return m, nil
}

// LastSeq reads the messages themselves, not conversations.last_seq, so it
// is exact whatever order batches were saved in.
// ClientMessageIDs calls fn with the sender and client_message_id of every
// stored message, in no particular order. It reads the covering index
// only; fn must not use the store.
func (db *DB) ClientMessageIDs(ctx context.Context, fn func(senderID, clientMessageID string)) error {
	rows, err := db.r.QueryContext(ctx, `SELECT sender_id, client_message_id FROM messages INDEXED BY messages_by_client_id`)
	if err != nil {
		return fmt.Errorf("scan client message ids: %w", err)
	}
	defer rows.Close()
	var sender, cmid string
	for rows.Next() {
		if err := rows.Scan(&sender, &cmid); err != nil {
			return fmt.Errorf("scan client message ids: %w", err)
		}
		fn(sender, cmid)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("scan client message ids: %w", err)
	}
	return nil
}

func (db *DB) LastSeq(ctx context.Context, conversationID string) (int64, error) {
	var seq int64
	err := db.queryRow(ctx, `SELECT COALESCE(MAX(seq), 0) FROM messages WHERE conversation_id = ?`, conversationID).Scan(&seq)
	if err != nil {
		return 0, fmt.Errorf("last seq of %s: %w", conversationID, err)
	}
	return seq, nil
}

func (db *DB) History(ctx context.Context, conversationID, viewerID string, beforeSeq int64, limit int) ([]store.HistoryEntry, error) {
	if limit <= 0 {
		return nil, nil
	}
	if beforeSeq <= 0 {
		beforeSeq = math.MaxInt64 // a plain bound keeps the primary-key range scan
	}
	receipts, err := db.receipts(ctx, conversationID)
	if err != nil {
		return nil, fmt.Errorf("history of %s: %w", conversationID, err)
	}
	hs, err := db.history(ctx, conversationID, viewerID, beforeSeq, limit)
	if err != nil {
		return nil, fmt.Errorf("history of %s: %w", conversationID, err)
	}
	for i := range hs {
		hs[i].Status = receipts.status(hs[i].SenderID, hs[i].Seq)
	}
	return hs, nil
}

func (db *DB) history(ctx context.Context, conversationID, viewerID string, beforeSeq int64, limit int) ([]store.HistoryEntry, error) {
	rows, err := db.query(ctx, `SELECT `+messageColumns+`,
		EXISTS (SELECT 1 FROM hidden_messages h WHERE h.user_id = ? AND h.conversation_id = m.conversation_id AND h.seq = m.seq)
		FROM messages m WHERE conversation_id = ? AND seq < ? ORDER BY seq DESC LIMIT ?`,
		viewerID, conversationID, beforeSeq, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var hs []store.HistoryEntry
	for rows.Next() {
		var hidden bool
		m, err := scanMessage(rows, &hidden)
		if err != nil {
			return nil, err
		}
		if hidden {
			m.Deleted, m.Content = true, ""
		}
		hs = append(hs, store.HistoryEntry{Message: m})
	}
	return hs, rows.Err()
}

// receiptStates maps each participant of a conversation to its receipts.
type receiptStates map[string]store.ReceiptState

func (db *DB) receipts(ctx context.Context, conversationID string) (receiptStates, error) {
	rows, err := db.query(ctx, `SELECT user_id, delivered_seq, read_seq FROM participants WHERE conversation_id = ?`, conversationID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	rs := receiptStates{}
	for rows.Next() {
		var (
			user string
			st   store.ReceiptState
		)
		if err := rows.Scan(&user, &st.DeliveredSeq, &st.ReadSeq); err != nil {
			return nil, err
		}
		rs[user] = st
	}
	return rs, rows.Err()
}

// status is a message's status as its sender sees it: the least advanced
// of the other participants decides; with nobody else (self-chat) it
// stays "sent".
func (rs receiptStates) status(sender string, seq int64) string {
	least := store.ReceiptState{DeliveredSeq: math.MaxInt64, ReadSeq: math.MaxInt64}
	others := false
	for user, st := range rs {
		if user == sender {
			continue
		}
		others = true
		least.DeliveredSeq = min(least.DeliveredSeq, st.DeliveredSeq)
		least.ReadSeq = min(least.ReadSeq, st.ReadSeq)
	}
	switch {
	case !others:
		return schema.StatusSent
	case least.ReadSeq >= seq:
		return schema.StatusRead
	case least.DeliveredSeq >= seq:
		return schema.StatusDelivered
	}
	return schema.StatusSent
}

// DeleteForEveryone keeps the row (a tombstone, so seq has no holes) and
// its client_message_id (so a retry still finds it), and clears the
// conversation's preview when it showed this message. secure_delete
// zeroes the old content in the page; a truncating checkpoint then
// drops the WAL frames that still hold it (see eraseWAL).
func (db *DB) DeleteForEveryone(ctx context.Context, conversationID string, seq int64) error {
	if err := db.deleteForEveryone(ctx, conversationID, seq); err != nil {
		return err
	}
	db.eraseWAL(ctx)
	return nil
}

// eraseWAL checkpoints the WAL into the database and truncates it, so
// that no earlier frame (the page as it was before a deletion) stays in
// the -wal file. It is best effort: while a reader holds an old snapshot
// the checkpoint cannot complete (it waits up to the busy timeout), and
// the frames go with the next deletion's checkpoint or are overwritten
// as the WAL is reused. Deletions are rare; one checkpoint costs about a
// WAL's worth of page writes.
func (db *DB) eraseWAL(ctx context.Context) {
	var busy, logFrames, done int
	_ = db.w.QueryRowContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`).Scan(&busy, &logFrames, &done)
}

func (db *DB) deleteForEveryone(ctx context.Context, conversationID string, seq int64) error {
	return db.write(ctx, fmt.Sprintf("delete message %s/%d for everyone", conversationID, seq), func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE messages SET content = '', deleted = 1 WHERE conversation_id = ? AND seq = ?`, conversationID, seq)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		if n == 0 {
			return store.ErrNotFound
		}
		_, err = tx.ExecContext(ctx, `UPDATE conversations SET last_message_preview = '' WHERE id = ? AND last_seq = ?`, conversationID, seq)
		return err
	})
}

func (db *DB) DeleteForUser(ctx context.Context, conversationID string, seq int64, userID string) error {
	// The foreign key to messages turns an unknown message into ErrNotFound.
	_, err := db.exec(ctx, fmt.Sprintf("delete message %s/%d for %s", conversationID, seq, userID),
		`INSERT INTO hidden_messages (user_id, conversation_id, seq) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`,
		userID, conversationID, seq)
	return err
}
