// Package store is natter's persistence contract in domain terms: the
// system of record for accounts, conversations and message history.
// JetStream is the durable log in front of it; the persistence consumer
// writes messages here after they were acknowledged.
//
// Adapters live in sub-packages (store/sqlite, later store/postgres and
// store/cassandra) that never import each other; store/storetest is the
// conformance suite every adapter passes.
package store

import (
	"context"
	"errors"
)

// Errors every adapter returns for these conditions (wrapped is fine).
var (
	ErrNotFound      = errors.New("not found")
	ErrConflict      = errors.New("already exists")
	ErrRefreshReused = errors.New("refresh token was already used")
	// ErrUnavailable: the store cannot do it now (disk full, I/O error,
	// lock held too long, connection lost) and a later retry may succeed.
	// Consumers wait and retry such errors instead of dead-lettering.
	ErrUnavailable = errors.New("store unavailable")
)

// Conversation types.
const (
	ConversationDirect = "user"
	ConversationGroup  = "group"
)

// User is an account.
type User struct {
	ID           string
	Username     string
	PasswordHash string // encoded hash with its parameters (PHC string)
	CreatedAt    int64  // ms since the epoch
	// LastSeenPrivacy is "everyone" (the default when empty), "contacts" or "nobody".
	LastSeenPrivacy string
	// OnlinePrivacy is "everyone" (the default when empty) or
	// "same_as_last_seen".
	OnlinePrivacy string
}

// Device is one login of a user.
type Device struct {
	ID        string
	UserID    string
	Name      string
	CreatedAt int64
	RevokedAt int64 // 0 while active
}

// Message is one message of a conversation, as the persistence consumer
// writes it.
type Message struct {
	ID              string
	ConversationID  string
	Seq             int64
	SenderID        string
	RecipientID     string
	MessageType     string // "user" or "group"
	Content         string
	ClientMessageID string
	ServerTS        int64
	// Deleted is true once deleted for everyone; Content is then empty.
	Deleted bool
}

// HistoryEntry is a message as one viewer sees it in history.
type HistoryEntry struct {
	Message
	// Status as the sender sees it: "sent", "delivered" or "read".
	Status string
	// Deleted is true when deleted for everyone or, for this viewer, for
	// them; Content is then empty.
}

// ConversationSummary is one row of a user's conversation list.
type ConversationSummary struct {
	ID                 string
	Type               string // ConversationDirect or ConversationGroup
	PeerID             string // direct conversations: the other participant (the user for self-chat)
	GroupID            string
	Title              string // direct: the peer's username
	CreatedAt          int64
	LastMessageAt      int64 // 0 when the conversation has no message yet
	LastMessagePreview string
	LastSeq            int64
	LastReadSeq        int64
	UnreadCount        int64
}

// ActivityAt orders the conversation list: the last message's time, or the
// creation time for a conversation without messages.
func (c ConversationSummary) ActivityAt() int64 {
	if c.LastMessageAt > 0 {
		return c.LastMessageAt
	}
	return c.CreatedAt
}

// ConversationPage positions a conversation-list page: conversations
// strictly older than (ActivityAt, ID) in list order. The zero value
// starts at the most recent.
type ConversationPage struct {
	ActivityAt int64
	ID         string
}

// ReceiptState is how far one participant has received and read a
// conversation: every message with seq <= DeliveredSeq is delivered to
// them, every one <= ReadSeq read. ReadSeq <= DeliveredSeq always holds.
type ReceiptState struct {
	DeliveredSeq int64
	ReadSeq      int64
}

// Accounts stores users.
type Accounts interface {
	// CreateUser returns ErrConflict when the username is taken.
	CreateUser(ctx context.Context, u User) error
	UserByID(ctx context.Context, id string) (User, error)
	UserByUsername(ctx context.Context, username string) (User, error)
	SetLastSeenPrivacy(ctx context.Context, userID, value string) error
	// SetOnlinePrivacy sets User.OnlinePrivacy; ErrNotFound for an
	// unknown user.
	SetOnlinePrivacy(ctx context.Context, userID, value string) error
}

// Devices stores logins and their refresh tokens (by hash only).
type Devices interface {
	// CreateDevice stores d with its first refresh token.
	CreateDevice(ctx context.Context, d Device, refreshHash string) error
	Device(ctx context.Context, id string) (Device, error)
	// Devices lists a user's active devices, oldest first.
	Devices(ctx context.Context, userID string) ([]Device, error)
	// RevokeDevice revokes one of userID's devices (ErrNotFound when it is
	// not theirs). Revoking a revoked device is not an error.
	RevokeDevice(ctx context.Context, userID, deviceID string, at int64) error
	// RotateRefresh replaces the device's current refresh token oldHash by
	// newHash and returns the device. A hash that was current once but has
	// been rotated away revokes the device and returns it with
	// ErrRefreshReused;
	// an unknown hash, or one of a revoked device, returns ErrNotFound.
	RotateRefresh(ctx context.Context, oldHash, newHash string, at int64) (Device, error)
}

// Blocks stores who blocked whom.
type Blocks interface {
	Block(ctx context.Context, blocker, blocked string) error
	Unblock(ctx context.Context, blocker, blocked string) error
	// Blocked reports whether either user has blocked the other.
	Blocked(ctx context.Context, a, b string) (bool, error)
	// BlockedUsers lists the users blocker has blocked, in id order.
	BlockedUsers(ctx context.Context, blocker string) ([]string, error)
}

// Conversations stores conversations and their participants.
type Conversations interface {
	// EnsureDirect creates the direct conversation id between a and b (a
	// may equal b) if it does not exist. Idempotent; ErrConflict when id is
	// already a conversation of other participants.
	EnsureDirect(ctx context.Context, id, a, b string, at int64) error
	// Participants returns the user ids of a conversation, ErrNotFound for
	// an unknown one.
	Participants(ctx context.Context, conversationID string) ([]string, error)
	// Conversation returns userID's view of one conversation, ErrNotFound
	// when it does not exist or userID is not a participant.
	Conversation(ctx context.Context, conversationID, userID string) (ConversationSummary, error)
	// Conversations lists userID's conversations, most recent activity first.
	Conversations(ctx context.Context, userID string, after ConversationPage, limit int) ([]ConversationSummary, error)
	// SharesConversation reports whether a and b are both participants of
	// some conversation (the "contacts" of the privacy settings).
	SharesConversation(ctx context.Context, a, b string) (bool, error)
}

// Messages stores history.
type Messages interface {
	// SaveMessages stores messages in one transaction, idempotent on
	// (ConversationID, Seq): a message already stored is left as it is.
	// It also advances each conversation's last message fields. A message
	// of an unknown conversation fails the whole batch with ErrNotFound.
	SaveMessages(ctx context.Context, msgs []Message) error
	// MessageByClientID finds the message senderID sent with that
	// client_message_id (the lowest seq if there were several).
	MessageByClientID(ctx context.Context, senderID, clientMessageID string) (Message, error)
	Message(ctx context.Context, conversationID string, seq int64) (Message, error)
	// History returns up to limit messages of the conversation with seq <
	// beforeSeq (all when beforeSeq <= 0), newest first, as viewerID sees them.
	// An unknown conversation has no messages (no error): callers check
	// membership first.
	History(ctx context.Context, conversationID, viewerID string, beforeSeq int64, limit int) ([]HistoryEntry, error)
	// LastSeq returns the highest stored seq of a conversation, 0 if none.
	LastSeq(ctx context.Context, conversationID string) (int64, error)
	// DeleteForEveryone tombstones a message: content gone for every viewer,
	// ClientMessageID kept so that a retry is still recognised. ErrNotFound
	// for an unknown message.
	DeleteForEveryone(ctx context.Context, conversationID string, seq int64) error
	// DeleteForUser hides a message from one viewer's history. ErrNotFound
	// for an unknown message.
	DeleteForUser(ctx context.Context, conversationID string, seq int64, userID string) error
}

// Receipts stores how far each participant has received and read.
type Receipts interface {
	// ReceiptState is the zero state for a participant with no receipt.
	ReceiptState(ctx context.Context, conversationID, userID string) (ReceiptState, error)
	// AdvanceReceipt moves the state forward only: each field becomes the
	// maximum of the stored and the given value. ErrNotFound for a
	// non-participant: receipts never add members.
	AdvanceReceipt(ctx context.Context, conversationID, userID string, st ReceiptState) error
}

// Store is everything an adapter implements. Callers should depend on the
// small interfaces they use, not on Store.
type Store interface {
	Accounts
	Devices
	Blocks
	Conversations
	Messages
	Receipts
	Push
	Close() error
}
