package cassandra

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/gocql/gocql"

	"github.com/natter-chat/natter/schema"
	"github.com/natter-chat/natter/store"
)

// previewRunes is how much of the last message the conversation list shows.
const previewRunes = 100

// Write timestamps of message rows. An insert is stamped tsTombstone minus
// the current time in microseconds, so an earlier write outranks a later
// one: a replay racing the first write cannot replace it. A deletion for
// everyone is stamped tsTombstone, above every insert, so no replay
// brings the content back.
const tsTombstone = int64(1) << 62

// lastStamp is the write timestamp of the last-message fields for a
// message of seq: the highest seq wins; a cleared preview (2*seq+1)
// outranks its own message but not the next one.
func lastStamp(seq int64) int64 { return 2 * seq }

// parallelism bounds the statements one call has in flight. A persist
// batch of 256 messages over 100 conversations is some 850 statements:
// 64 in flight rather than 16 took the batch p50 from 590-910 ms to
// 410-420 ms under natter bench pairs at 500 msg/s on the loaded 2-core
// machine (docs/benchmarks.md, section 10).
const parallelism = 64

func (db *DB) bucket(seq int64) int64 { return seq / db.bucketSize }

// SaveMessages checks every conversation first, so an unknown one fails
// the batch before anything is written. Then, per messages partition, it
// reads which seqs are stored already and inserts the others in one
// single-partition batch (atomic and cheap in Cassandra), writes the
// retry-detection rows, and last the conversations' last-message fields,
// so those never point at a message that is not stored. Cassandra has no
// transaction across partitions: a failure part-way leaves some writes
// done, and since each is idempotent, the caller's retry (the persistence
// consumer retries unavailable errors until they pass) completes them.
func (db *DB) SaveMessages(ctx context.Context, msgs []store.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	type partition struct {
		conv   string
		bucket int64
		msgs   []store.Message
	}
	var (
		convs = map[string]conversation{}
		parts = map[[2]any]*partition{}
		order []*partition
	)
	for _, m := range msgs {
		if _, ok := convs[m.ConversationID]; !ok {
			c, err := db.conversation(ctx, m.ConversationID)
			if err != nil {
				return fmt.Errorf("save messages: conversation %s: %w", m.ConversationID, err)
			}
			convs[m.ConversationID] = c
		}
		key := [2]any{m.ConversationID, db.bucket(m.Seq)}
		p := parts[key]
		if p == nil {
			p = &partition{conv: m.ConversationID, bucket: db.bucket(m.Seq)}
			parts[key] = p
			order = append(order, p)
		}
		p.msgs = append(p.msgs, m)
	}

	// The stored version of each conversation's newest message of the
	// batch, which the last-message fields show.
	var (
		mu     sync.Mutex
		latest = map[string]store.Message{}
	)
	err := db.each(ctx, len(order), func(ctx context.Context, i int) error {
		p := order[i]
		stored, err := db.savePartition(ctx, p.conv, p.bucket, p.msgs)
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		for _, m := range stored {
			if l, ok := latest[m.ConversationID]; !ok || m.Seq > l.Seq {
				latest[m.ConversationID] = m
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("save messages: %w", err)
	}

	// A direct conversation's first messages put it into every
	// participant's list (EnsureDirect listed it for its opener only).
	// Before the last_seq writes: a retry after a failure here still sees
	// last_seq 0 and writes the rows again.
	var lists []*gocql.Query
	for id := range latest {
		if c := convs[id]; c.typ == store.ConversationDirect && c.lastSeq == 0 {
			for _, user := range c.participants {
				lists = append(lists, db.listDirect(ctx, id, user, c.peerOf(user), c.createdAt))
			}
		}
	}
	if err := db.each(ctx, len(lists), func(ctx context.Context, i int) error { return lists[i].Exec() }); err != nil {
		return fmt.Errorf("save messages: conversation lists: %w", classify(err))
	}

	var writes []*gocql.Query
	for id, m := range latest {
		p := preview(m.Content)
		ts := lastStamp(m.Seq)
		writes = append(writes, db.query(ctx, `UPDATE conversations USING TIMESTAMP ? SET last_seq = ? WHERE id = ?`, ts, m.Seq, id))
		for _, user := range convs[id].participants {
			writes = append(writes, db.query(ctx, `UPDATE user_conversations USING TIMESTAMP ?
				SET last_seq = ?, last_message_at = ?, last_preview = ? WHERE user_id = ? AND conversation_id = ?`,
				ts, m.Seq, m.ServerTS, p, user, id))
		}
	}
	if err := db.each(ctx, len(writes), func(ctx context.Context, i int) error { return writes[i].Exec() }); err != nil {
		return fmt.Errorf("save messages: last message: %w", classify(err))
	}
	return nil
}

const insertMessage = `INSERT INTO messages (conversation_id, bucket, seq, id, sender_id, recipient_id,
	message_type, content, client_message_id, server_ts, deleted) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, false)
	USING TIMESTAMP ?`

// savePartition stores the messages of one (conversation, bucket) that
// are not stored yet and returns every message of msgs as stored (a
// message stored before keeps its content, or its tombstone).
func (db *DB) savePartition(ctx context.Context, conv string, bucket int64, msgs []store.Message) ([]store.Message, error) {
	lo, hi := int64(math.MaxInt64), int64(math.MinInt64)
	for _, m := range msgs {
		lo, hi = min(lo, m.Seq), max(hi, m.Seq)
	}
	iter := db.query(ctx, `SELECT `+messageColumns+` FROM messages
		WHERE conversation_id = ? AND bucket = ? AND seq >= ? AND seq <= ?`, conv, bucket, lo, hi).PageSize(5000).Iter()
	existing := map[int64]store.Message{}
	for {
		m, ok := scanMessage(iter.Scan)
		if !ok {
			break
		}
		existing[m.Seq] = m
	}
	if err := iter.Close(); err != nil {
		return nil, fmt.Errorf("messages of %s/%d: %w", conv, bucket, classify(err))
	}

	stored := make([]store.Message, 0, len(msgs))
	batch := db.s.NewBatch(gocql.UnloggedBatch).WithContext(ctx)
	stamp := tsTombstone - time.Now().UnixMicro()
	for _, m := range msgs {
		if old, ok := existing[m.Seq]; ok {
			stored = append(stored, old)
			continue
		}
		existing[m.Seq] = m // a seq twice in one batch: the first counts
		stored = append(stored, m)
		batch.Entries = append(batch.Entries, gocql.BatchEntry{Stmt: insertMessage, Idempotent: true,
			Args: []any{m.ConversationID, bucket, m.Seq, m.ID, m.SenderID, m.RecipientID, m.MessageType,
				m.Content, m.ClientMessageID, m.ServerTS, stamp}})
	}
	if batch.Size() > 0 {
		if err := db.s.ExecuteBatch(batch); err != nil {
			return nil, fmt.Errorf("insert into %s/%d: %w", conv, bucket, classify(err))
		}
	}
	// Every message's retry row, the stored ones' too: a previous attempt
	// may have stopped between the messages and these.
	err := db.each(ctx, len(stored), func(ctx context.Context, i int) error {
		m := stored[i]
		return db.query(ctx, `INSERT INTO messages_by_client_id (sender_id, client_message_id, seq, conversation_id)
			VALUES (?, ?, ?, ?)`, m.SenderID, m.ClientMessageID, m.Seq, m.ConversationID).Exec()
	})
	if err != nil {
		return nil, fmt.Errorf("client ids of %s/%d: %w", conv, bucket, classify(err))
	}
	return stored, nil
}

// each runs fn(ctx, 0..n-1) with at most parallelism calls at once and
// returns the first error; the others are cancelled. It returns when
// every call has.
func (db *DB) each(ctx context.Context, n int, fn func(ctx context.Context, i int) error) error {
	if n == 1 {
		return fn(ctx, 0)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	sem := make(chan struct{}, parallelism)
	for i := range n {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := fn(ctx, i); err != nil {
				cancel(err)
			}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return ctx.Err()
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

func scanMessage(scan func(...any) bool) (store.Message, bool) {
	var m store.Message
	ok := scan(&m.ConversationID, &m.Seq, &m.ID, &m.SenderID, &m.RecipientID, &m.MessageType,
		&m.Content, &m.ClientMessageID, &m.ServerTS, &m.Deleted)
	return m, ok
}

func (db *DB) MessageByClientID(ctx context.Context, senderID, clientMessageID string) (store.Message, error) {
	var (
		conv string
		seq  int64
	)
	err := db.query(ctx, `SELECT conversation_id, seq FROM messages_by_client_id
		WHERE sender_id = ? AND client_message_id = ? LIMIT 1`, senderID, clientMessageID).Scan(&conv, &seq)
	if err != nil {
		return store.Message{}, fmt.Errorf("message by client id: %w", classify(err))
	}
	return db.Message(ctx, conv, seq)
}

func (db *DB) Message(ctx context.Context, conversationID string, seq int64) (store.Message, error) {
	iter := db.query(ctx, `SELECT `+messageColumns+` FROM messages WHERE conversation_id = ? AND bucket = ? AND seq = ?`,
		conversationID, db.bucket(seq), seq).Iter()
	m, found := scanMessage(iter.Scan)
	if err := iter.Close(); err != nil {
		return store.Message{}, fmt.Errorf("message %s/%d: %w", conversationID, seq, classify(err))
	}
	if !found {
		return store.Message{}, fmt.Errorf("message %s/%d: %w", conversationID, seq, store.ErrNotFound)
	}
	return m, nil
}

// LastSeq reads the messages themselves: the conversation's last_seq is
// only a hint (it is written after the messages, so it may lag), and the
// buckets after it are probed until one is empty. Seqs are gap-free, so
// an empty bucket means none after it either.
func (db *DB) LastSeq(ctx context.Context, conversationID string) (int64, error) {
	c, err := db.conversation(ctx, conversationID)
	if errors.Is(err, store.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("last seq of %s: %w", conversationID, err)
	}
	return db.lastSeq(ctx, conversationID, c.lastSeq)
}

func (db *DB) lastSeq(ctx context.Context, conversationID string, hint int64) (int64, error) {
	last := hint
	for b := db.bucket(last); ; b++ {
		var seq int64
		err := db.query(ctx, `SELECT seq FROM messages WHERE conversation_id = ? AND bucket = ? LIMIT 1`,
			conversationID, b).Scan(&seq)
		if errors.Is(err, gocql.ErrNotFound) {
			return last, nil
		}
		if err != nil {
			return 0, fmt.Errorf("last seq of %s: %w", conversationID, classify(err))
		}
		last = max(last, seq)
	}
}

// History walks the buckets from the newest wanted seq down until the
// page is full or bucket 0 is read.
func (db *DB) History(ctx context.Context, conversationID, viewerID string, beforeSeq int64, limit int) ([]store.HistoryEntry, error) {
	if limit <= 0 {
		return nil, nil
	}
	c, err := db.conversation(ctx, conversationID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("history of %s: %w", conversationID, err)
	}
	// Starting at the last seq rather than at beforeSeq-1 spares a walk
	// through empty buckets for a far-off beforeSeq.
	top, err := db.lastSeq(ctx, conversationID, c.lastSeq)
	if err != nil {
		return nil, fmt.Errorf("history of %s: %w", conversationID, err)
	}
	if beforeSeq > 0 {
		top = min(top, beforeSeq-1)
	}
	var hs []store.HistoryEntry
	for b := db.bucket(top); b >= 0 && len(hs) < limit && top > 0; b-- {
		iter := db.query(ctx, `SELECT `+messageColumns+` FROM messages
			WHERE conversation_id = ? AND bucket = ? AND seq <= ? LIMIT ?`, conversationID, b, top, limit-len(hs)).Iter()
		for {
			m, ok := scanMessage(iter.Scan)
			if !ok {
				break
			}
			hs = append(hs, store.HistoryEntry{Message: m})
		}
		if err := iter.Close(); err != nil {
			return nil, fmt.Errorf("history of %s: %w", conversationID, classify(err))
		}
	}
	if len(hs) == 0 {
		return hs, nil
	}
	hidden, err := db.hidden(ctx, conversationID, viewerID, hs[len(hs)-1].Seq, hs[0].Seq)
	if err != nil {
		return nil, fmt.Errorf("history of %s: %w", conversationID, err)
	}
	receipts, err := db.receipts(ctx, conversationID, c.participants)
	if err != nil {
		return nil, fmt.Errorf("history of %s: %w", conversationID, err)
	}
	for i := range hs {
		if hidden[hs[i].Seq] {
			hs[i].Deleted, hs[i].Content = true, ""
		}
		hs[i].Status = receipts.status(hs[i].SenderID, hs[i].Seq)
	}
	return hs, nil
}

// receiptStates maps each participant of a conversation to its receipts.
type receiptStates map[string]store.ReceiptState

// receipts has an entry for every participant, the zero state for those
// without a row.
func (db *DB) receipts(ctx context.Context, conversationID string, participants []string) (receiptStates, error) {
	rs := receiptStates{}
	for _, p := range participants {
		rs[p] = store.ReceiptState{}
	}
	iter := db.query(ctx, `SELECT user_id, delivered_seq, read_seq FROM receipts WHERE conversation_id = ?`, conversationID).Iter()
	var (
		user string
		st   store.ReceiptState
	)
	for iter.Scan(&user, &st.DeliveredSeq, &st.ReadSeq) {
		if _, ok := rs[user]; ok {
			rs[user] = st
		}
	}
	if err := iter.Close(); err != nil {
		return nil, classify(err)
	}
	return rs, nil
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

// DeleteForEveryone tombstones the row in place (seq keeps no hole, the
// client_message_id stays so a retry is still recognised) above every
// insert's timestamp, and clears the participants' preview with a stamp
// that outranks this message's last-message write but not the next
// message's: the preview goes only where it showed this message.
func (db *DB) DeleteForEveryone(ctx context.Context, conversationID string, seq int64) error {
	what := fmt.Sprintf("delete message %s/%d for everyone", conversationID, seq)
	if _, err := db.Message(ctx, conversationID, seq); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	c, err := db.conversation(ctx, conversationID)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	writes := []*gocql.Query{db.query(ctx, `UPDATE messages USING TIMESTAMP ? SET content = '', deleted = true
		WHERE conversation_id = ? AND bucket = ? AND seq = ?`, tsTombstone, conversationID, db.bucket(seq), seq)}
	for _, user := range c.participants {
		writes = append(writes, db.query(ctx, `UPDATE user_conversations USING TIMESTAMP ? SET last_preview = ''
			WHERE user_id = ? AND conversation_id = ?`, lastStamp(seq)+1, user, conversationID))
	}
	for _, q := range writes {
		if err := q.Exec(); err != nil {
			return fmt.Errorf("%s: %w", what, classify(err))
		}
	}
	return nil
}

func (db *DB) DeleteForUser(ctx context.Context, conversationID string, seq int64, userID string) error {
	what := fmt.Sprintf("delete message %s/%d for %s", conversationID, seq, userID)
	if _, err := db.Message(ctx, conversationID, seq); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	err := db.query(ctx, `INSERT INTO hidden_messages (conversation_id, user_id, seq) VALUES (?, ?, ?)`,
		conversationID, userID, seq).Exec()
	if err != nil {
		return fmt.Errorf("%s: %w", what, classify(err))
	}
	return nil
}

// The message side of store.Store.
var _ interface {
	store.Conversations
	store.Messages
	store.Receipts
	Close() error
} = (*DB)(nil)
