package schema

// Wire types of the client contract. Field names and presence follow
// shared/protocol.md exactly; extensions are marked.

// Event and frame type names.
const (
	TypeSend               = "send"
	TypeReceipt            = "receipt"
	TypeTyping             = "typing"
	TypePresenceSubscribe  = "presence.subscribe"
	TypePresenceUnsubscrib = "presence.unsubscribe"
	TypePing               = "ping"

	TypeAck      = "ack"
	TypeError    = "error"
	TypePong     = "pong"
	TypeSynced   = "synced"
	TypeMessage  = "message"
	TypeDeleted  = "deleted"
	TypeGroup    = "group"
	TypePresence = "presence"
)

// Message types and statuses.
const (
	MessageTypeUser  = "user"
	MessageTypeGroup = "group"

	StatusSent      = "sent"
	StatusDelivered = "delivered"
	StatusRead      = "read"
)

// SendRequest is the body of POST /v1/messages and the fields of a send frame.
type SendRequest struct {
	ClientMessageID string `json:"client_message_id"`
	RecipientID     string `json:"recipient_id"`
	MessageType     string `json:"message_type"`
	Content         string `json:"content"`
	Timestamp       *int64 `json:"timestamp"`
	SenderID        string `json:"sender_id,omitempty"`
}

// Ack answers a send: the ack frame (with Type "ack") or the 201 body.
type Ack struct {
	Type            string `json:"type,omitempty"`
	Ref             string `json:"ref,omitempty"`
	ClientMessageID string `json:"client_message_id"`
	MessageID       string `json:"message_id"`
	ConversationID  string `json:"conversation_id"`
	Seq             int64  `json:"seq"`
	ServerTS        int64  `json:"server_ts"`
	Status          string `json:"status"`
	Duplicate       bool   `json:"duplicate"`
}

// Message is a chat message as events and history carry it.
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
}

// MessageEvent is the durable `message` event (cursor added on delivery).
type MessageEvent struct {
	Type string `json:"type"`
	Message
}

// HistoryMessage is one entry of a history page.
type HistoryMessage struct {
	Message
	Status  string `json:"status"`
	Deleted bool   `json:"deleted,omitempty"`
}

// ReceiptEvent is the durable `receipt` event.
type ReceiptEvent struct {
	Type           string `json:"type"`
	MessageID      string `json:"message_id"`
	ConversationID string `json:"conversation_id"`
	Seq            int64  `json:"seq"`
	Status         string `json:"status"`
	UserID         string `json:"user_id,omitempty"`
	TS             int64  `json:"ts"`
}

// DeletedEvent is the durable `deleted` event.
type DeletedEvent struct {
	Type           string `json:"type"`
	MessageID      string `json:"message_id"`
	ConversationID string `json:"conversation_id"`
	Seq            int64  `json:"seq"`
	For            string `json:"for"`
}

// Synced ends the replay of a WebSocket connection.
type Synced struct {
	Type        string `json:"type"`
	Cursor      string `json:"cursor"`
	HeartbeatMS int64  `json:"heartbeat_ms"`
}

// ErrorFrame is an error over WebSocket.
type ErrorFrame struct {
	Type         string `json:"type"`
	Status       int    `json:"status"`
	Code         string `json:"code"`
	Message      string `json:"message"`
	Ref          string `json:"ref,omitempty"`
	RetryAfterMS int64  `json:"retry_after_ms,omitempty"`
}

// NewErrorFrame renders err for a WebSocket client.
func NewErrorFrame(err error, ref string) ErrorFrame {
	e := AsError(err)
	return ErrorFrame{Type: TypeError, Status: e.Status, Code: e.Code, Message: e.Message, Ref: ref, RetryAfterMS: e.RetryAfterMS}
}

// Pong answers a ping.
type Pong struct {
	Type string `json:"type"`
	Ref  string `json:"ref,omitempty"`
}

// Presence is the ephemeral presence event and the body of
// GET /v1/users/{id}/presence.
type Presence struct {
	Type     string `json:"type,omitempty"`
	UserID   string `json:"user_id"`
	Status   string `json:"status"`
	LastSeen int64  `json:"last_seen,omitempty"`
}

// Typing is the ephemeral typing event.
type Typing struct {
	Type           string `json:"type"`
	ConversationID string `json:"conversation_id"`
	UserID         string `json:"user_id"`
	State          string `json:"state"`
}

// ClientFrame is any frame a WebSocket client sends; which fields matter
// depends on Type.
type ClientFrame struct {
	Type string `json:"type"`
	Ref  string `json:"ref,omitempty"`
	SendRequest
	// receipt
	MessageID string `json:"message_id,omitempty"`
	Status    string `json:"status,omitempty"`
	// typing
	ConversationID string `json:"conversation_id,omitempty"`
	State          string `json:"state,omitempty"`
	// presence.subscribe / unsubscribe
	UserIDs []string `json:"user_ids,omitempty"`
}
