package postgres

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/natter-chat/natter/schema"
	"github.com/natter-chat/natter/store"
)

// previewRunes is how much of the last message the conversation list shows.
const previewRunes = 100

// sqlInsertMessages inserts a whole batch in one statement, from one
// array per column; rows already stored are left as they are.
const sqlInsertMessages = `INSERT INTO messages
	(conversation_id, seq, id, sender_id, recipient_id, message_type, content, client_message_id, server_ts)
	SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bytea[], $8::bytea[], $9::bigint[])
	ON CONFLICT (conversation_id, seq) DO NOTHING`

// sqlAdvanceConversation moves the last-message fields forward only.
const sqlAdvanceConversation = `UPDATE conversations
	SET last_seq = $1, last_message_at = $2, last_message_preview = $3
	WHERE id = $4 AND last_seq < $1`

// SaveMessages inserts the batch in one transaction, leaving stored
// messages untouched, then moves each conversation's last-message fields
// to the batch's highest seq if that is newer than what is stored, so a
// replayed or out-of-order batch never moves them back. Rows are written
// in key order, so concurrent batches lock in the same order and queue
// rather than deadlock. The insert and the updates go in one round trip.
func (db *DB) SaveMessages(ctx context.Context, msgs []store.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	sorted := slices.Clone(msgs)
	slices.SortStableFunc(sorted, func(a, b store.Message) int {
		return cmp.Or(strings.Compare(a.ConversationID, b.ConversationID), cmp.Compare(a.Seq, b.Seq))
	})
	n := len(sorted)
	var (
		convs, ids, senders, recipients, types = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		seqs, tss                              = make([]int64, n), make([]int64, n)
		contents, clientIDs                    = make([][]byte, n), make([][]byte, n)
		latest                                 []store.Message // the highest seq of each conversation, by id
	)
	for i, m := range sorted {
		convs[i], seqs[i], ids[i], senders[i], recipients[i], types[i] = m.ConversationID, m.Seq, m.ID, m.SenderID, m.RecipientID, m.MessageType
		contents[i], clientIDs[i], tss[i] = []byte(m.Content), []byte(m.ClientMessageID), m.ServerTS
		if i == n-1 || sorted[i+1].ConversationID != m.ConversationID {
			latest = append(latest, m)
		}
	}
	return db.tx(ctx, "save messages", func(tx pgx.Tx) error {
		b := &pgx.Batch{}
		b.Queue(sqlInsertMessages, convs, seqs, ids, senders, recipients, types, contents, clientIDs, tss)
		for _, m := range latest {
			b.Queue(sqlAdvanceConversation, m.Seq, m.ServerTS, []byte(preview(m.Content)), m.ConversationID)
		}
		return tx.SendBatch(ctx, b).Close()
	})
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

const messageColumns = `m.conversation_id, m.seq, m.id, m.sender_id, m.recipient_id, m.message_type, m.content, m.client_message_id, m.server_ts, m.deleted`

func scanMessage(row pgx.Row, extra ...any) (store.Message, error) {
	var (
		m                 store.Message
		content, clientID []byte
	)
	err := row.Scan(append([]any{&m.ConversationID, &m.Seq, &m.ID, &m.SenderID, &m.RecipientID,
		&m.MessageType, &content, &clientID, &m.ServerTS, &m.Deleted}, extra...)...)
	m.Content, m.ClientMessageID = string(content), string(clientID)
	return m, err
}

func (db *DB) MessageByClientID(ctx context.Context, senderID, clientMessageID string) (store.Message, error) {
	m, err := scanMessage(db.pool.QueryRow(ctx, `SELECT `+messageColumns+` FROM messages m
		WHERE m.sender_id = $1 AND m.client_message_id = $2 ORDER BY m.seq, m.conversation_id LIMIT 1`,
		senderID, []byte(clientMessageID)))
	if err != nil {
		return store.Message{}, notFound("message by client id", err)
	}
	return m, nil
}

func (db *DB) Message(ctx context.Context, conversationID string, seq int64) (store.Message, error) {
	m, err := scanMessage(db.pool.QueryRow(ctx, `SELECT `+messageColumns+` FROM messages m
		WHERE m.conversation_id = $1 AND m.seq = $2`, conversationID, seq))
	if err != nil {
		return store.Message{}, notFound(fmt.Sprintf("message %s/%d", conversationID, seq), err)
	}
	return m, nil
}

// ClientMessageIDs calls fn with the sender and client_message_id of every
// stored message, in no particular order (the gateway's dedupe filter
// loads from it). fn must not use the store.
func (db *DB) ClientMessageIDs(ctx context.Context, fn func(senderID, clientMessageID string)) error {
	rows, err := db.pool.Query(ctx, `SELECT sender_id, client_message_id FROM messages`)
	if err != nil {
		return fmt.Errorf("scan client message ids: %w", classify(err))
	}
	defer rows.Close()
	var (
		sender string
		cmid   []byte
	)
	for rows.Next() {
		if err := rows.Scan(&sender, &cmid); err != nil {
			return fmt.Errorf("scan client message ids: %w", classify(err))
		}
		fn(sender, string(cmid))
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("scan client message ids: %w", classify(err))
	}
	return nil
}

// LastSeq reads the messages themselves, not conversations.last_seq, so it
// is exact whatever order batches were saved in.
func (db *DB) LastSeq(ctx context.Context, conversationID string) (int64, error) {
	var seq int64
	err := db.pool.QueryRow(ctx, `SELECT COALESCE(MAX(seq), 0) FROM messages WHERE conversation_id = $1`, conversationID).Scan(&seq)
	if err != nil {
		if err := classify(err); !isNotFound(err) { // a key with U+0000 has no messages
			return 0, fmt.Errorf("last seq of %s: %w", conversationID, err)
		}
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
	// Both reads in one round trip.
	b := &pgx.Batch{}
	var (
		receipts receiptStates
		hs       []store.HistoryEntry
	)
	b.Queue(`SELECT user_id, delivered_seq, read_seq FROM participants WHERE conversation_id = $1`, conversationID).
		Query(func(rows pgx.Rows) (err error) {
			receipts, err = scanReceipts(rows)
			return err
		})
	b.Queue(`SELECT `+messageColumns+`,
		EXISTS (SELECT 1 FROM hidden_messages h WHERE h.user_id = $1 AND h.conversation_id = m.conversation_id AND h.seq = m.seq)
		FROM messages m WHERE m.conversation_id = $2 AND m.seq < $3 ORDER BY m.seq DESC LIMIT $4`,
		viewerID, conversationID, beforeSeq, limit).
		Query(func(rows pgx.Rows) (err error) {
			hs, err = scanHistory(rows)
			return err
		})
	if err := db.pool.SendBatch(ctx, b).Close(); err != nil {
		if err := classify(err); !isNotFound(err) { // a key with U+0000 has no messages
			return nil, fmt.Errorf("history of %s: %w", conversationID, err)
		}
		return nil, nil
	}
	for i := range hs {
		hs[i].Status = receipts.status(hs[i].SenderID, hs[i].Seq)
	}
	return hs, nil
}

func scanHistory(rows pgx.Rows) ([]store.HistoryEntry, error) {
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.HistoryEntry, error) {
		var hidden bool
		m, err := scanMessage(row, &hidden)
		if hidden {
			m.Deleted, m.Content = true, ""
		}
		return store.HistoryEntry{Message: m}, err
	})
}

// receiptStates maps each participant of a conversation to its receipts.
type receiptStates map[string]store.ReceiptState

func scanReceipts(rows pgx.Rows) (receiptStates, error) {
	defer rows.Close()
	rs := receiptStates{}
	var (
		user string
		st   store.ReceiptState
	)
	for rows.Next() {
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
// conversation's preview when it showed this message.
func (db *DB) DeleteForEveryone(ctx context.Context, conversationID string, seq int64) error {
	return db.tx(ctx, fmt.Sprintf("delete message %s/%d for everyone", conversationID, seq), func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE messages SET content = ''::bytea, deleted = true WHERE conversation_id = $1 AND seq = $2`, conversationID, seq)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return store.ErrNotFound
		}
		_, err = tx.Exec(ctx, `UPDATE conversations SET last_message_preview = ''::bytea WHERE id = $1 AND last_seq = $2`, conversationID, seq)
		return err
	})
}

func (db *DB) DeleteForUser(ctx context.Context, conversationID string, seq int64, userID string) error {
	// The foreign key to messages turns an unknown message into ErrNotFound.
	_, err := db.exec(ctx, fmt.Sprintf("delete message %s/%d for %s", conversationID, seq, userID),
		`INSERT INTO hidden_messages (user_id, conversation_id, seq) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`,
		userID, conversationID, seq)
	return err
}
