package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Message statuses and message types of the contract.
const (
	StatusSent      = "sent"
	StatusDelivered = "delivered"
	StatusRead      = "read"

	TypeUser  = "user"
	TypeGroup = "group"
)

// SendRequest is a message to send. ClientMessageID makes retries safe:
// the server keeps one message per sender and ClientMessageID.
type SendRequest struct {
	ClientMessageID string `json:"client_message_id"`
	RecipientID     string `json:"recipient_id"`
	MessageType     string `json:"message_type"`
	Content         string `json:"content"`
	Timestamp       int64  `json:"timestamp"`
}

// Ack answers a send once the message is durably stored.
type Ack struct {
	ClientMessageID string `json:"client_message_id"`
	MessageID       string `json:"message_id"`
	ConversationID  string `json:"conversation_id"`
	Seq             int64  `json:"seq"`
	ServerTS        int64  `json:"server_ts"`
	Status          string `json:"status"`
	Duplicate       bool   `json:"duplicate"`
}

// Send sends a message over REST. MessageType defaults to "user" and
// Timestamp to now.
func (c *Client) Send(ctx context.Context, req SendRequest) (Ack, error) {
	if req.MessageType == "" {
		req.MessageType = TypeUser
	}
	if req.Timestamp == 0 {
		req.Timestamp = time.Now().UnixMilli()
	}
	var a Ack
	err := c.authed(ctx, http.MethodPost, "/v1/messages", req, &a)
	return a, err
}

// SetStatus marks a message, and every earlier one of its conversation,
// delivered or read for the caller.
func (c *Client) SetStatus(ctx context.Context, messageID, status string) error {
	body := map[string]any{"status": status, "timestamp": time.Now().UnixMilli()}
	return c.authed(ctx, http.MethodPost, "/v1/messages/"+url.PathEscape(messageID)+"/status", body, nil)
}

// Conversation is one entry of the conversation list.
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

// ConversationPage is one page of the conversation list, most recent
// first; NextCursor is empty on the last page.
type ConversationPage struct {
	Conversations []Conversation `json:"conversations"`
	NextCursor    string         `json:"next_cursor"`
}

// Conversations reads one page of the conversation list (cursor "" for
// the first; limit 0 for the server's default).
func (c *Client) Conversations(ctx context.Context, cursor string, limit int) (ConversationPage, error) {
	var p ConversationPage
	err := c.authed(ctx, http.MethodGet, "/v1/conversations"+pageQuery(cursor, limit), nil, &p)
	return p, err
}

// ConversationWith returns the id of the 1:1 conversation with peerID,
// creating it if needed.
func (c *Client) ConversationWith(ctx context.Context, peerID string) (string, error) {
	var out struct {
		ConversationID string `json:"conversation_id"`
	}
	err := c.authed(ctx, http.MethodPost, "/v1/conversations", map[string]string{"peer_id": peerID}, &out)
	return out.ConversationID, err
}

// Message is a message as history shows it: Status as its sender sees
// it, Deleted for a tombstone (no content).
type Message struct {
	MessageID       string `json:"message_id"`
	ConversationID  string `json:"conversation_id"`
	Seq             int64  `json:"seq"`
	SenderID        string `json:"sender_id"`
	RecipientID     string `json:"recipient_id"`
	MessageType     string `json:"message_type"`
	Content         string `json:"content,omitempty"`
	ClientMessageID string `json:"client_message_id"`
	ServerTS        int64  `json:"server_ts"`
	Status          string `json:"status,omitempty"`
	Deleted         bool   `json:"deleted,omitempty"`
}

// HistoryPage is one page of a conversation's history, newest first;
// NextCursor (older messages) is empty on the last page.
type HistoryPage struct {
	Messages   []Message `json:"messages"`
	NextCursor string    `json:"next_cursor"`
}

// History reads one page of a conversation's messages, newest first.
func (c *Client) History(ctx context.Context, conversationID, cursor string, limit int) (HistoryPage, error) {
	var p struct {
		Messages   []Message `json:"messages"`
		NextCursor *string   `json:"next_cursor"`
	}
	err := c.authed(ctx, http.MethodGet, "/v1/conversations/"+url.PathEscape(conversationID)+"/messages"+pageQuery(cursor, limit), nil, &p)
	out := HistoryPage{Messages: p.Messages}
	if p.NextCursor != nil {
		out.NextCursor = *p.NextCursor
	}
	return out, err
}

func pageQuery(cursor string, limit int) string {
	q := url.Values{}
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	if len(q) == 0 {
		return ""
	}
	return "?" + q.Encode()
}
