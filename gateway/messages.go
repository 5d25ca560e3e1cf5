package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natter-chat/natter/chat/auth"
	"github.com/natter-chat/natter/schema"
	"github.com/natter-chat/natter/store"
	"github.com/natter-chat/natter/streams"
)

// send is the send path shared by WebSocket and REST: validate, rate-limit,
// dedupe against the store, authorize, sequence and publish. The ack is
// returned only after JetStream stored the message.
func (g *Gateway) send(ctx context.Context, c auth.Claims, req *schema.SendRequest) (schema.Ack, error) {
	if err := schema.ValidateSend(req, c.UserID); err != nil {
		return schema.Ack{}, err
	}
	if err := g.sendLimit.allow(c.UserID); err != nil {
		return schema.Ack{}, err
	}
	// Retries after JetStream's duplicate window are answered from the
	// store, which keeps every (sender, client_message_id) for good; the
	// filter spares that read for ids surely never used.
	if g.seen.mayHave(c.UserID, req.ClientMessageID) {
		if ack, found, err := g.storedAck(ctx, c.UserID, req.ClientMessageID); found || err != nil {
			return ack, err
		}
		// A loaded filter says "maybe" for ids used before and for 0.1 %
		// of new ones. The store may just not have the message yet: when
		// persist lags by more than the duplicate window, JetStream no
		// longer knows it either. Wait for persist and look again.
		if g.seen.ready.Load() {
			if err := g.persisted(ctx); err != nil {
				return schema.Ack{}, err
			}
			if ack, found, err := g.storedAck(ctx, c.UserID, req.ClientMessageID); found || err != nil {
				return ack, err
			}
		}
	}
	if req.MessageType == schema.MessageTypeGroup {
		return schema.Ack{}, schema.Errorf(http.StatusNotFound, schema.CodeNotFound, "group %q not found", req.RecipientID)
	}
	conv, err := g.direct(ctx, c.UserID, req.RecipientID)
	if err != nil {
		return schema.Ack{}, err
	}
	// Before publishing: a publish that fails for us may still be stored.
	g.seen.add(c.UserID, req.ClientMessageID)
	return g.seq.publish(ctx, schema.Message{
		ConversationID: conv, SenderID: c.UserID, RecipientID: req.RecipientID,
		MessageType: schema.MessageTypeUser, Content: req.Content, ClientMessageID: req.ClientMessageID,
		ServerTS: time.Now().UnixMilli(),
	})
}

// storedAck answers a retry from the store: the original ack, marked
// duplicate, when the sender used clientMessageID before.
func (g *Gateway) storedAck(ctx context.Context, senderID, clientMessageID string) (schema.Ack, bool, error) {
	m, err := g.st.MessageByClientID(ctx, senderID, clientMessageID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return schema.Ack{}, false, nil
	case err != nil:
		return schema.Ack{}, false, err
	}
	return ackOf(schema.Message{ClientMessageID: m.ClientMessageID, MessageID: m.ID,
		ConversationID: m.ConversationID, Seq: m.Seq, ServerTS: m.ServerTS}, true), true, nil
}

// direct returns the direct conversation of me and peer, creating it, after
// checking that peer exists and neither blocked the other.
func (g *Gateway) direct(ctx context.Context, me, peer string) (string, error) {
	if !schema.ValidUserID(peer) {
		return "", schema.Errorf(http.StatusNotFound, schema.CodeNotFound, "user %q not found", peer)
	}
	if err := g.userExists(ctx, peer); err != nil {
		return "", err
	}
	if me != peer {
		blocked, err := g.blocked(ctx, me, peer)
		if err != nil {
			return "", err
		}
		if blocked {
			return "", schema.ErrBlocked
		}
	}
	conv := schema.DirectConversationID(me, peer)
	if _, ok := g.ensured.Load(conv); !ok {
		if err := g.st.EnsureDirect(ctx, conv, me, peer, time.Now().UnixMilli()); err != nil {
			return "", fmt.Errorf("create conversation %s: %w", conv, err)
		}
		g.ensured.Store(conv, struct{}{})
	}
	return conv, nil
}

func (g *Gateway) handleSend(w http.ResponseWriter, r *http.Request) error {
	var req schema.SendRequest
	if err := g.decodeBody(w, r, &req); err != nil {
		return err
	}
	ack, err := g.send(r.Context(), caller(r), &req)
	if err != nil {
		return err
	}
	// 201 for retries too: the contract's answer does not depend on them.
	writeJSON(w, http.StatusCreated, ack)
	return nil
}

// visibleMessage resolves a message id for the caller: 404 when the id is
// not natter's, the conversation is not theirs, or the message does not
// exist (so existence does not leak).
func (g *Gateway) visibleMessage(ctx context.Context, userID, messageID string) (store.Message, error) {
	notFound := schema.Errorf(http.StatusNotFound, schema.CodeNotFound, "message %q not found", messageID)
	conv, seq, ok := schema.ParseMessageID(messageID)
	if !ok {
		return store.Message{}, notFound
	}
	if _, err := g.st.Conversation(ctx, conv, userID); errors.Is(err, store.ErrNotFound) {
		return store.Message{}, notFound
	} else if err != nil {
		return store.Message{}, err
	}
	m, err := g.st.Message(ctx, conv, seq)
	if errors.Is(err, store.ErrNotFound) {
		// It may be acknowledged but not yet persisted: wait, look again.
		if err := g.persisted(ctx); err != nil {
			return store.Message{}, err
		}
		m, err = g.st.Message(ctx, conv, seq)
	}
	if errors.Is(err, store.ErrNotFound) {
		return store.Message{}, notFound
	}
	return m, err
}

// persisted waits until the store holds every message acknowledged so
// far: read-your-writes for REST.
func (g *Gateway) persisted(ctx context.Context) error {
	last, err := g.wm.ConvLastSeq(ctx)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := g.wm.Wait(ctx, last, streams.ConsumerPersist); err != nil {
		return fmt.Errorf("%w: %v", schema.ErrUnavailable, err)
	}
	return nil
}

// setStatus publishes a delivered/read status for the caller.
func (g *Gateway) setStatus(ctx context.Context, c auth.Claims, messageID, status string) (store.Message, error) {
	if err := schema.ValidateStatus(status); err != nil {
		return store.Message{}, err
	}
	m, err := g.visibleMessage(ctx, c.UserID, messageID)
	if err != nil {
		return store.Message{}, err
	}
	if m.SenderID == c.UserID {
		return store.Message{}, schema.Errorf(http.StatusForbidden, schema.CodeForbidden, "only a recipient may set a message's status")
	}
	data, _ := json.Marshal(streams.Receipt{ConversationID: m.ConversationID, UserID: c.UserID, DeviceID: c.DeviceID,
		Seq: m.Seq, Status: status, TS: time.Now().UnixMilli()})
	if _, err := g.js.Publish(ctx, streams.ReceiptSubject(m.ConversationID), data); err != nil {
		return store.Message{}, fmt.Errorf("%w: publish status: %v", schema.ErrUnavailable, err)
	}
	return m, nil
}

// awaitReceipt waits until the reader's state covers seq for status.
func (g *Gateway) awaitReceipt(ctx context.Context, conv, reader, status string, seq int64) (store.ReceiptState, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		st, err := g.st.ReceiptState(ctx, conv, reader)
		if err != nil {
			return st, err
		}
		if st.ReadSeq >= seq || status == schema.StatusDelivered && st.DeliveredSeq >= seq {
			return st, nil
		}
		select {
		case <-ctx.Done():
			return st, fmt.Errorf("%w: status not applied yet: %v", schema.ErrUnavailable, ctx.Err())
		case <-time.After(2 * time.Millisecond):
		}
	}
}

func (g *Gateway) handleStatus(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		Status    string `json:"status"`
		Timestamp *int64 `json:"timestamp"`
	}
	if err := g.decodeBody(w, r, &body); err != nil {
		return err
	}
	c := caller(r)
	m, err := g.setStatus(r.Context(), c, r.PathValue("message_id"), body.Status)
	if err != nil {
		return err
	}
	// Answer with the state after this status was applied: the receipts
	// consumer moves the reader's state to at least this seq.
	st, err := g.awaitReceipt(r.Context(), m.ConversationID, c.UserID, body.Status, m.Seq)
	if err != nil {
		return err
	}
	status := schema.StatusSent
	switch {
	case st.ReadSeq >= m.Seq:
		status = schema.StatusRead
	case st.DeliveredSeq >= m.Seq:
		status = schema.StatusDelivered
	}
	writeJSON(w, http.StatusOK, map[string]any{"message_id": m.ID, "conversation_id": m.ConversationID, "seq": m.Seq, "status": status})
	return nil
}

func (g *Gateway) handleDelete(w http.ResponseWriter, r *http.Request) error {
	c := caller(r)
	scope := r.URL.Query().Get("for")
	if scope == "" {
		scope = "me"
	}
	if scope != "me" && scope != "everyone" {
		return schema.BadRequest(`for must be "me" or "everyone"`)
	}
	m, err := g.visibleMessage(r.Context(), c.UserID, r.PathValue("message_id"))
	if err != nil {
		return err
	}
	if scope == "everyone" && m.SenderID != c.UserID {
		return schema.Errorf(http.StatusForbidden, schema.CodeForbidden, "only the sender may delete a message for everyone")
	}
	data, _ := json.Marshal(streams.Deletion{ConversationID: m.ConversationID, Seq: m.Seq, MessageID: m.ID,
		UserID: c.UserID, For: scope, TS: time.Now().UnixMilli()})
	msg := nats.NewMsg(streams.DeleteSubject(m.ConversationID))
	msg.Data = data
	if _, err := g.js.PublishMsg(r.Context(), msg); err != nil {
		return fmt.Errorf("%w: publish deletion: %v", schema.ErrUnavailable, err)
	}
	if err := g.persisted(r.Context()); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"message_id": m.ID, "conversation_id": m.ConversationID, "seq": m.Seq, "for": scope, "deleted": true})
	return nil
}

// History and conversation list.

type conversationJSON struct {
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

func toConversationJSON(c store.ConversationSummary) conversationJSON {
	return conversationJSON{c.ID, c.Type, c.PeerID, c.GroupID, c.Title, c.LastMessageAt, c.LastMessagePreview, c.LastSeq, c.LastReadSeq, c.UnreadCount}
}

func (g *Gateway) handleCreateConversation(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		PeerID string `json:"peer_id"`
	}
	if err := g.decodeBody(w, r, &body); err != nil {
		return err
	}
	if body.PeerID == "" {
		return schema.BadRequest("peer_id is required")
	}
	conv, err := g.direct(r.Context(), caller(r).UserID, body.PeerID)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]string{"conversation_id": conv})
	return nil
}

func (g *Gateway) handleConversation(w http.ResponseWriter, r *http.Request) error {
	if err := g.persisted(r.Context()); err != nil {
		return err
	}
	c, err := g.st.Conversation(r.Context(), r.PathValue("conversation_id"), caller(r).UserID)
	if err != nil {
		return fromStore(err, "conversation")
	}
	writeJSON(w, http.StatusOK, toConversationJSON(c))
	return nil
}

func (g *Gateway) handleConversations(w http.ResponseWriter, r *http.Request) error {
	limit, err := pageLimit(r)
	if err != nil {
		return err
	}
	var after store.ConversationPage
	if cur := r.URL.Query().Get("cursor"); cur != "" {
		if after, err = decodeConversationCursor(cur); err != nil {
			return err
		}
	}
	if err := g.persisted(r.Context()); err != nil {
		return err
	}
	list, err := g.st.Conversations(r.Context(), caller(r).UserID, after, limit+1)
	if err != nil {
		return err
	}
	var next *string
	if len(list) > limit {
		list = list[:limit]
		last := list[len(list)-1]
		s := encodeConversationCursor(store.ConversationPage{ActivityAt: last.ActivityAt(), ID: last.ID})
		next = &s
	}
	out := make([]conversationJSON, 0, len(list))
	for _, c := range list {
		out = append(out, toConversationJSON(c))
	}
	writeJSON(w, http.StatusOK, map[string]any{"conversations": out, "next_cursor": next})
	return nil
}

func (g *Gateway) handleHistory(w http.ResponseWriter, r *http.Request) error {
	c := caller(r)
	conv := r.PathValue("conversation_id")
	limit, err := pageLimit(r)
	if err != nil {
		return err
	}
	var before int64
	if cur := r.URL.Query().Get("cursor"); cur != "" {
		if before, err = strconv.ParseInt(cur, 10, 64); err != nil || before < 1 {
			return schema.BadRequest("cursor is not one natter gave out")
		}
	}
	if _, err := g.st.Conversation(r.Context(), conv, c.UserID); err != nil {
		return fromStore(err, "conversation")
	}
	if err := g.persisted(r.Context()); err != nil {
		return err
	}
	entries, err := g.st.History(r.Context(), conv, c.UserID, before, limit)
	if err != nil {
		return err
	}
	out := make([]schema.HistoryMessage, 0, len(entries))
	for _, e := range entries {
		out = append(out, schema.HistoryMessage{Message: toWire(e.Message), Status: e.Status, Deleted: e.Deleted})
	}
	var next *string
	if n := len(entries); n > 0 && entries[n-1].Seq > 1 {
		s := strconv.FormatInt(entries[n-1].Seq, 10)
		next = &s
	}
	writeJSON(w, http.StatusOK, map[string]any{"messages": out, "next_cursor": next})
	return nil
}

func toWire(m store.Message) schema.Message {
	return schema.Message{MessageID: m.ID, ConversationID: m.ConversationID, Seq: m.Seq, SenderID: m.SenderID,
		RecipientID: m.RecipientID, MessageType: m.MessageType, Content: m.Content, ClientMessageID: m.ClientMessageID, ServerTS: m.ServerTS}
}

// pageLimit reads limit: default 50, clamped to 100.
func pageLimit(r *http.Request) (int, error) {
	s := r.URL.Query().Get("limit")
	if s == "" {
		return 50, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return 0, schema.BadRequest("limit must be a positive integer")
	}
	return min(n, 100), nil
}
