package chat

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/natter-chat/natter/schema"
	"github.com/natter-chat/natter/store"
	"github.com/natter-chat/natter/streams"
)

// Messages is the send path and what follows a message: statuses,
// deletions, history and the conversation list.
type Messages struct {
	st    Store
	seq   *streams.Sequencer
	conv  *streams.ConvWriter
	wm    *streams.Watermark
	limit *Limiter
	rel   *Relations
	seen  *seenIDs
	obs   Observer
	// groups is the send path's group branch (set by New).
	groups *Groups
	// limits (nil: none) and marks: statuses and deletions (limits.go,
	// receipts.go).
	limits *Limits
	marks  receiptMarks

	// ensured remembers direct conversations known to exist, so the hot
	// path does not write to the store on every send.
	ensured sync.Map
}

func newMessages(st Store, seq *streams.Sequencer, conv *streams.ConvWriter, wm *streams.Watermark, limit *Limiter, rel *Relations) *Messages {
	return &Messages{st: st, seq: seq, conv: conv, wm: wm, limit: limit, rel: rel, seen: newSeenIDs()}
}

// send validates, rate-limits, dedupes against the store, authorizes,
// sequences and publishes. The ack is returned only after JetStream
// stored the message.
func (m *Messages) send(ctx context.Context, c Claims, req *schema.SendRequest) (schema.Ack, error) {
	if err := schema.ValidateSend(req, c.UserID); err != nil {
		return schema.Ack{}, err
	}
	if err := m.limit.Allow(c.UserID); err != nil {
		return schema.Ack{}, err
	}
	// Retries after JetStream's duplicate window are answered from the
	// store, which keeps every (sender, client_message_id) for good; the
	// filter spares that read for ids surely never used.
	if m.seen.mayHave(c.UserID, req.ClientMessageID) {
		if ack, found, err := m.storedAck(ctx, c.UserID, req.ClientMessageID); found || err != nil {
			return ack, err
		}
		// A loaded filter says "maybe" for ids used before and for 0.1 %
		// of new ones. The store may just not have the message yet: when
		// persist lags by more than the duplicate window, JetStream no
		// longer knows it either. Wait for persist and look again.
		if m.seen.ready.Load() {
			if err := m.persisted(ctx, RetrySend); err != nil {
				return schema.Ack{}, err
			}
			if ack, found, err := m.storedAck(ctx, c.UserID, req.ClientMessageID); found || err != nil {
				return ack, err
			}
		}
	}
	if req.MessageType == schema.MessageTypeGroup {
		return m.sendGroup(ctx, c, req)
	}
	conv, err := m.direct(ctx, c.UserID, req.RecipientID, RetrySend)
	if err != nil {
		return schema.Ack{}, err
	}
	// Before publishing: a publish that fails for us may still be stored.
	m.seen.add(c.UserID, req.ClientMessageID)
	rec, dup, err := m.seq.Publish(ctx, streams.MessageRecord{
		ConversationID: conv, SenderID: c.UserID, RecipientID: req.RecipientID,
		MessageType: schema.MessageTypeUser, Content: req.Content, ClientMessageID: req.ClientMessageID,
		ServerTS: time.Now().UnixMilli(),
	})
	if err != nil {
		return schema.Ack{}, Translate(err, "send", RetrySend)
	}
	return schema.Ack{ClientMessageID: rec.ClientMessageID, MessageID: rec.MessageID, ConversationID: rec.ConversationID,
		Seq: rec.Seq, ServerTS: rec.ServerTS, Status: schema.StatusSent, Duplicate: dup}, nil
}

// storedAck answers a retry from the store: the original ack, marked
// duplicate, when the sender used clientMessageID before.
func (m *Messages) storedAck(ctx context.Context, senderID, clientMessageID string) (schema.Ack, bool, error) {
	msg, err := m.st.MessageByClientID(ctx, senderID, clientMessageID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return schema.Ack{}, false, nil
	case err != nil:
		return schema.Ack{}, false, Translate(err, "look up a retry", RetrySend)
	}
	return schema.Ack{ClientMessageID: msg.ClientMessageID, MessageID: msg.ID, ConversationID: msg.ConversationID,
		Seq: msg.Seq, ServerTS: msg.ServerTS, Status: schema.StatusSent, Duplicate: true}, true, nil
}

// Direct returns the direct conversation of me and peer, creating it,
// after checking that peer exists and neither blocked the other.
func (m *Messages) Direct(ctx context.Context, me, peer string) (string, error) {
	if peer == "" {
		return "", badRequest("peer_id is required")
	}
	return m.direct(ctx, me, peer, RetryRequest)
}

func (m *Messages) direct(ctx context.Context, me, peer, retry string) (string, error) {
	if err := m.rel.UserExists(ctx, peer); err != nil {
		return "", err
	}
	blocked, err := m.rel.Blocked(ctx, me, peer)
	if err != nil {
		return "", err
	}
	if blocked {
		return "", Errorf(schema.CodeBlocked, "one of you has blocked the other")
	}
	conv := schema.DirectConversationID(me, peer)
	// Per caller: EnsureDirect also records that me opened it (listed
	// for me while empty).
	key := conv + " " + me
	if _, ok := m.ensured.Load(key); !ok {
		if err := m.st.EnsureDirect(ctx, conv, me, peer, time.Now().UnixMilli()); err != nil {
			return "", Translate(fmt.Errorf("create conversation %s: %w", conv, err), "conversation", retry)
		}
		m.ensured.Store(key, struct{}{})
	}
	return conv, nil
}

// visible resolves a message id for userID: not_found when the id is not
// natter's, the conversation is not theirs, or the message does not exist
// (so existence does not leak).
func (m *Messages) visible(ctx context.Context, userID, messageID string) (store.Message, error) {
	nf := notFound("message %q not found", messageID)
	conv, seq, ok := schema.ParseMessageID(messageID)
	if !ok {
		return store.Message{}, nf
	}
	if _, err := m.st.Conversation(ctx, conv, userID); errors.Is(err, store.ErrNotFound) {
		return store.Message{}, nf
	} else if err != nil {
		return store.Message{}, Translate(err, "conversation", RetryRequest)
	}
	msg, err := m.st.Message(ctx, conv, seq)
	if errors.Is(err, store.ErrNotFound) {
		// It may be acknowledged but not yet persisted: wait, look again.
		if err := m.persisted(ctx, RetryRequest); err != nil {
			return store.Message{}, err
		}
		msg, err = m.st.Message(ctx, conv, seq)
	}
	if errors.Is(err, store.ErrNotFound) {
		return store.Message{}, nf
	}
	return msg, Translate(err, "message", RetryRequest)
}

// persisted waits until the store holds every message acknowledged so
// far: read-your-writes.
func (m *Messages) persisted(ctx context.Context, retry string) error {
	last, err := m.wm.ConvLastSeq(ctx)
	if err != nil {
		return Unavailable(err, 5*time.Second, "the message log is unavailable", retry)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := m.wm.Wait(ctx, last, streams.ConsumerPersist); err != nil {
		return Unavailable(err, 5*time.Second, "the server is behind in storing messages", retry)
	}
	return nil
}

// StatusResult is a message's status as its reader sees it after a
// status change.
type StatusResult struct {
	MessageID      string `json:"message_id"`
	ConversationID string `json:"conversation_id"`
	Seq            int64  `json:"seq"`
	Status         string `json:"status"`
}

// SetStatus publishes a delivered/read status for the caller, a recipient
// of the message.
func (m *Messages) SetStatus(ctx context.Context, c Claims, messageID, status string) (store.Message, error) {
	if err := schema.ValidateStatus(status); err != nil {
		return store.Message{}, err
	}
	if err := m.limits.Allow(LimitReceipt, c.UserID); err != nil {
		return store.Message{}, err
	}
	msg, err := m.visible(ctx, c.UserID, messageID)
	if err != nil {
		return store.Message{}, err
	}
	if msg.SenderID == c.UserID {
		return store.Message{}, Errorf(schema.CodeForbidden, "only a recipient may set a message's status")
	}
	if done, err := m.receiptChangesNothing(ctx, msg.ConversationID, c.UserID, status, msg.Seq); done || err != nil {
		return msg, err
	}
	err = m.conv.Receipt(ctx, streams.Receipt{ConversationID: msg.ConversationID, UserID: c.UserID, DeviceID: c.DeviceID,
		Seq: msg.Seq, Status: status, TS: time.Now().UnixMilli()})
	if err != nil {
		return store.Message{}, Translate(err, "status", RetryRequest)
	}
	m.marks.published(msg.ConversationID, c.UserID, status, msg.Seq)
	return msg, nil
}

// SetStatusAndWait sets the status and answers with the state after it
// was applied: the receipts consumer moves the reader's state to at
// least this seq.
func (m *Messages) SetStatusAndWait(ctx context.Context, c Claims, messageID, status string) (StatusResult, error) {
	msg, err := m.SetStatus(ctx, c, messageID, status)
	if err != nil {
		return StatusResult{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		st, err := m.st.ReceiptState(ctx, msg.ConversationID, c.UserID)
		if err != nil && ctx.Err() == nil {
			return StatusResult{}, Translate(err, "status", RetryRequest)
		}
		if err == nil && (st.ReadSeq >= msg.Seq || status == schema.StatusDelivered && st.DeliveredSeq >= msg.Seq) {
			out := StatusResult{msg.ID, msg.ConversationID, msg.Seq, schema.StatusSent}
			switch {
			case st.ReadSeq >= msg.Seq:
				out.Status = schema.StatusRead
			case st.DeliveredSeq >= msg.Seq:
				out.Status = schema.StatusDelivered
			}
			return out, nil
		}
		select {
		case <-ctx.Done():
			return StatusResult{}, Unavailable(ctx.Err(), 5*time.Second, "the status was not applied in time", RetryRequest)
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// Deleted answers a deletion.
type Deleted struct {
	MessageID      string `json:"message_id"`
	ConversationID string `json:"conversation_id"`
	Seq            int64  `json:"seq"`
	For            string `json:"for"`
	Deleted        bool   `json:"deleted"`
}

// Delete deletes a message for the caller ("me") or, the sender alone,
// for every participant ("everyone"). Deleting what is already deleted
// (for everyone, or for the caller) changes nothing and stores nothing.
func (m *Messages) Delete(ctx context.Context, c Claims, messageID, scope string) (Deleted, error) {
	if scope == "" {
		scope = "me"
	}
	if scope != "me" && scope != "everyone" {
		return Deleted{}, badRequest(`for must be "me" or "everyone"`)
	}
	if err := m.limits.Allow(LimitDelete, c.UserID); err != nil {
		return Deleted{}, err
	}
	msg, err := m.visible(ctx, c.UserID, messageID)
	if err != nil {
		return Deleted{}, err
	}
	if scope == "everyone" && msg.SenderID != c.UserID {
		return Deleted{}, Errorf(schema.CodeForbidden, "only the sender may delete a message for everyone")
	}
	out := Deleted{msg.ID, msg.ConversationID, msg.Seq, scope, true}
	if err := m.persisted(ctx, RetryRequest); err != nil {
		return Deleted{}, err
	}
	done, err := m.alreadyDeleted(ctx, msg, c.UserID, scope)
	if err != nil {
		return Deleted{}, err
	}
	if done {
		return out, nil
	}
	err = m.conv.Deletion(ctx, streams.Deletion{ConversationID: msg.ConversationID, Seq: msg.Seq, MessageID: msg.ID,
		UserID: c.UserID, For: scope, TS: time.Now().UnixMilli()})
	if err != nil {
		return Deleted{}, Translate(err, "delete", RetryRequest)
	}
	if err := m.persisted(ctx, RetryRequest); err != nil {
		return Deleted{}, err
	}
	return out, nil
}

// alreadyDeleted reports whether a deletion for scope would change
// nothing: the message is deleted for everyone, or (for "me") the caller
// sees it deleted already. The caller waits for persist first, so that
// deletions already acknowledged are in the store.
func (m *Messages) alreadyDeleted(ctx context.Context, msg store.Message, viewer, scope string) (bool, error) {
	cur, err := m.st.Message(ctx, msg.ConversationID, msg.Seq)
	if err != nil {
		return false, Translate(err, "message", RetryRequest)
	}
	if cur.Deleted {
		return true, nil
	}
	if scope == "everyone" {
		return false, nil
	}
	h, err := m.st.History(ctx, msg.ConversationID, viewer, msg.Seq+1, 1)
	if err != nil {
		return false, Translate(err, "history", RetryRequest)
	}
	return len(h) > 0 && h[0].Seq == msg.Seq && h[0].Deleted, nil
}

// Conversation is the caller's view of one conversation.
type Conversation struct {
	ConversationID     string `json:"conversation_id"`
	Type               string `json:"type"`
	PeerID             string `json:"peer_id,omitempty"`
	GroupID            string `json:"group_id,omitempty"`
	Title              string `json:"title"`
	LastMessageAt      int64  `json:"last_message_at"`
	LastMessagePreview string `json:"last_message_preview"`
	LastSeq            int64  `json:"last_seq"`
	LastReadSeq        int64  `json:"last_read_seq"`
	UnreadCount        int64  `json:"unread_count"`
}

func toConversation(c store.ConversationSummary) Conversation {
	return Conversation{c.ID, c.Type, c.PeerID, c.GroupID, c.Title, c.LastMessageAt, c.LastMessagePreview, c.LastSeq, c.LastReadSeq, c.UnreadCount}
}

// Conversation returns one of the caller's conversations.
func (m *Messages) Conversation(ctx context.Context, userID, conv string) (Conversation, error) {
	if err := m.persisted(ctx, RetryRequest); err != nil {
		return Conversation{}, err
	}
	c, err := m.st.Conversation(ctx, conv, userID)
	if err != nil {
		return Conversation{}, Translate(err, "conversation", RetryRequest)
	}
	return toConversation(c), nil
}

// Page limits of lists: limit 0 means the default.
const (
	defaultPageLimit = 50
	maxPageLimit     = 100
)

// PageLimit reads a limit parameter: empty is the default (50), larger
// values are clamped to 100.
func PageLimit(s string) (int, error) {
	if s == "" {
		return defaultPageLimit, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return 0, badRequest("limit must be a positive integer")
	}
	return min(n, maxPageLimit), nil
}

// ConversationList is one page of conversations, most recent first.
type ConversationList struct {
	Conversations []Conversation `json:"conversations"`
	NextCursor    *string        `json:"next_cursor"`
}

// Conversations lists the caller's conversations after cursor.
func (m *Messages) Conversations(ctx context.Context, userID, cursor string, limit int) (ConversationList, error) {
	var after store.ConversationPage
	if cursor != "" {
		var err error
		if after, err = decodeConversationCursor(cursor); err != nil {
			return ConversationList{}, err
		}
	}
	if err := m.persisted(ctx, RetryRequest); err != nil {
		return ConversationList{}, err
	}
	list, err := m.st.Conversations(ctx, userID, after, limit+1)
	if err != nil {
		return ConversationList{}, Translate(err, "conversations", RetryRequest)
	}
	out := ConversationList{Conversations: make([]Conversation, 0, len(list))}
	if len(list) > limit {
		list = list[:limit]
		last := list[len(list)-1]
		s := encodeConversationCursor(store.ConversationPage{ActivityAt: last.ActivityAt(), ID: last.ID})
		out.NextCursor = &s
	}
	for _, c := range list {
		out.Conversations = append(out.Conversations, toConversation(c))
	}
	return out, nil
}

// HistoryPage is one page of a conversation's messages, newest first.
type HistoryPage struct {
	Messages   []schema.HistoryMessage `json:"messages"`
	NextCursor *string                 `json:"next_cursor"`
}

// History reads a conversation of the caller's, older than cursor.
func (m *Messages) History(ctx context.Context, userID, conv, cursor string, limit int) (HistoryPage, error) {
	var before int64
	if cursor != "" {
		var err error
		if before, err = strconv.ParseInt(cursor, 10, 64); err != nil || before < 1 {
			return HistoryPage{}, badRequest("cursor is not one natter gave out")
		}
	}
	if _, err := m.st.Conversation(ctx, conv, userID); err != nil {
		return HistoryPage{}, Translate(err, "conversation", RetryRequest)
	}
	if err := m.persisted(ctx, RetryRequest); err != nil {
		return HistoryPage{}, err
	}
	floor, err := m.groups.historyFloor(ctx, conv, userID)
	if err != nil {
		return HistoryPage{}, err
	}
	entries, err := m.st.History(ctx, conv, userID, before, limit)
	if err != nil {
		return HistoryPage{}, Translate(err, "history", RetryRequest)
	}
	// A group member reads from their joining on.
	for len(entries) > 0 && entries[len(entries)-1].Seq < floor {
		entries = entries[:len(entries)-1]
	}
	out := HistoryPage{Messages: make([]schema.HistoryMessage, 0, len(entries))}
	for _, e := range entries {
		out.Messages = append(out.Messages, schema.HistoryMessage{Message: toWire(e.Message), Status: e.Status, Deleted: e.Deleted})
	}
	if n := len(entries); n > 0 && entries[n-1].Seq > floor {
		s := strconv.FormatInt(entries[n-1].Seq, 10)
		out.NextCursor = &s
	}
	return out, nil
}

func toWire(m store.Message) schema.Message {
	return schema.Message{MessageID: m.ID, ConversationID: m.ConversationID, Seq: m.Seq, SenderID: m.SenderID,
		RecipientID: m.RecipientID, MessageType: m.MessageType, Content: m.Content, ClientMessageID: m.ClientMessageID, ServerTS: m.ServerTS}
}
