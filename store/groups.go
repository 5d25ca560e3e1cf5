package store

import (
	"context"
	"errors"
)

// Group roles.
const (
	RoleAdmin  = "admin"
	RoleMember = "member"
)

// MaxGroupMembers is the contract's cap on a group's size.
const MaxGroupMembers = 500

// ErrGroupFull: the change would take a group past MaxGroupMembers.
var ErrGroupFull = errors.New("group is full")

// Group is a group chat and its conversation.
type Group struct {
	ID             string
	ConversationID string
	Name           string
	CreatedBy      string
	CreatedAt      int64
	MemberCount    int
}

// Member is one current member of a group.
type Member struct {
	UserID string
	Role   string // RoleAdmin or RoleMember
	// JoinedSeq is the first seq of the group's conversation the member
	// sees: messages below it were sequenced before they joined.
	JoinedSeq int64
	JoinedAt  int64
}

// Groups stores groups and their membership. Every change names the seq
// from which it counts, so that "who is a member as of seq s" has one
// answer whatever happens later: a member sees the messages with
// joined_seq <= seq < left_seq of each of their memberships.
//
// A group's conversation is created with it, and its current members are
// its participants (with their receipts), so the conversation list,
// unread counts and history statuses work as for direct conversations.
// A member joining at seq j starts with delivered and read at j-1: what
// was sent before they joined is neither unread nor waiting for them.
type Groups interface {
	// CreateGroup creates the group, its conversation (type group) and
	// its first members in one transaction; they join at seq 1.
	// ErrNotFound when a member is not a user, ErrGroupFull over
	// MaxGroupMembers, ErrConflict for an id in use. g.MemberCount is
	// ignored.
	CreateGroup(ctx context.Context, g Group, members []Member) error
	// Group returns a group with its member count; ErrNotFound when unknown.
	Group(ctx context.Context, groupID string) (Group, error)
	// Members lists the current members, longest-standing first (joined
	// earliest, then by user id).
	Members(ctx context.Context, groupID string) ([]Member, error)
	// Member returns one current member; ErrNotFound for anyone else.
	Member(ctx context.Context, groupID, userID string) (Member, error)
	// AddMembers makes the users who are not members yet members with
	// role member from joinedSeq on, and raises member_count, in one
	// transaction, and returns those it added (in the order given). The
	// cap is checked inside the transaction: of two concurrent calls that
	// would both take the 500th seat, one fails with ErrGroupFull and
	// adds no one. ErrNotFound for an unknown group or user.
	AddMembers(ctx context.Context, groupID string, userIDs []string, joinedSeq, at int64) ([]string, error)
	// RemoveMember ends userID's membership: they see the messages below
	// leftSeq. When they were the last admin, the longest-standing
	// remaining member becomes admin in the same transaction and is
	// returned (else ""). ErrNotFound when userID is not a member.
	RemoveMember(ctx context.Context, groupID, userID string, leftSeq int64) (promoted string, err error)
	// SetRole sets a member's role; ErrNotFound for a non-member.
	SetRole(ctx context.Context, groupID, userID, role string) error
	// RenameGroup sets the name; ErrNotFound for an unknown group.
	RenameGroup(ctx context.Context, groupID, name string) error
	// MembersAt lists the users who were members at seq, in id order.
	MembersAt(ctx context.Context, groupID string, seq int64) ([]string, error)
}

// UserSeq is one user's position: a receipt seq, or the last message
// they sent in a range.
type UserSeq struct {
	UserID string
	Seq    int64
}

// GroupReceipts computes a group message's aggregate status from the
// participants' receipts without reading every member: the adapters keep
// the participants indexed by delivered and by read seq.
type GroupReceipts interface {
	// LowestReceipts returns up to n participants of the conversation with
	// the lowest delivered seqs (read is false) or read seqs (read true),
	// lowest first, ties by user id.
	LowestReceipts(ctx context.Context, conversationID string, read bool, n int) ([]UserSeq, error)
	// LastSent returns, for each sender of a message with after < seq <=
	// upTo, the highest such seq, in sender order.
	LastSent(ctx context.Context, conversationID string, after, upTo int64) ([]UserSeq, error)
}

// ReceiptChange is one move of a reader's status: at TS, their Status
// ("delivered" or "read") reached Seq.
type ReceiptChange struct {
	ConversationID string
	UserID         string
	Seq            int64
	Status         string
	TS             int64
}

// ReceiptTime is when one reader had a message delivered and read (0 when
// not yet).
type ReceiptTime struct {
	UserID      string
	DeliveredAt int64
	ReadAt      int64
}

// ReceiptLog keeps when each status change happened, for a message's
// per-reader "message info".
type ReceiptLog interface {
	// LogReceipts records changes; idempotent on (conversation, user,
	// seq, status).
	LogReceipts(ctx context.Context, changes []ReceiptChange) error
	// ReceiptTimes returns, for every reader with a change at or above
	// seq, when they first reached it (delivered: any status; read: read).
	ReceiptTimes(ctx context.Context, conversationID string, seq int64) ([]ReceiptTime, error)
}
