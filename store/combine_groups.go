package store

import (
	"context"
	"errors"
	"fmt"
)

// GroupConversations is what a message side implements to hold the
// conversations of groups whose groups, members, roles and membership
// intervals live on the user side (Combine's groups): the conversation,
// its participants (the current members) with their receipts and list
// rows, the aggregates over those receipts and the receipt log. Every
// call is idempotent, so repeating one completes it.
type GroupConversations interface {
	// EnsureGroupConversation creates the conversation of group groupID,
	// with no participants; idempotent. ErrConflict when the id is
	// already another conversation.
	EnsureGroupConversation(ctx context.Context, conversationID, groupID string, createdAt int64) error
	// JoinGroupConversation makes each member a participant, listed, with
	// delivered and read at least JoinedSeq-1 (forward only).
	// ErrNotFound for an unknown conversation.
	JoinGroupConversation(ctx context.Context, conversationID string, members []Member) error
	// LeaveGroupConversation ends userID's participation: the
	// conversation leaves their list and their view, their receipts stop
	// counting. Leaving twice is not an error.
	LeaveGroupConversation(ctx context.Context, conversationID, userID string) error
	GroupReceipts
	ReceiptLog
}

// combinedGroups is a combined store whose user side holds groups and
// whose message side holds their conversations. The user side is the
// authority on membership: it checks the cap inside its transaction, and
// each change is written there first and mirrored to the message side
// after (there is no transaction across the two). A mirror that fails
// fails the call; the change holds on the user side, and the mirror's
// gap is what a failure costs (docs/architecture.md, "Groups on the
// combined stores").
type combinedGroups struct {
	*combined
	groups Groups
	convs  GroupConversations
}

// The group roles of Store, so that callers' type assertions find them.
var _ interface {
	Store
	Groups
	GroupReceipts
	ReceiptLog
	GroupDirectory
} = (*combinedGroups)(nil)

func (c *combinedGroups) Group(ctx context.Context, groupID string) (Group, error) {
	return c.groups.Group(ctx, groupID)
}

func (c *combinedGroups) Members(ctx context.Context, groupID string) ([]Member, error) {
	return c.groups.Members(ctx, groupID)
}

func (c *combinedGroups) Member(ctx context.Context, groupID, userID string) (Member, error) {
	return c.groups.Member(ctx, groupID, userID)
}

func (c *combinedGroups) MembersAt(ctx context.Context, groupID string, seq int64) ([]string, error) {
	return c.groups.MembersAt(ctx, groupID, seq)
}

func (c *combinedGroups) SetRole(ctx context.Context, groupID, userID, role string) error {
	return c.groups.SetRole(ctx, groupID, userID, role)
}

func (c *combinedGroups) RenameGroup(ctx context.Context, groupID, name string) error {
	return c.groups.RenameGroup(ctx, groupID, name)
}

func (c *combinedGroups) LowestReceipts(ctx context.Context, conversationID string, read bool, n int) ([]UserSeq, error) {
	return c.convs.LowestReceipts(ctx, conversationID, read, n)
}

func (c *combinedGroups) LastSent(ctx context.Context, conversationID string, after, upTo int64) ([]UserSeq, error) {
	return c.convs.LastSent(ctx, conversationID, after, upTo)
}

func (c *combinedGroups) LogReceipts(ctx context.Context, changes []ReceiptChange) error {
	return c.convs.LogReceipts(ctx, changes)
}

func (c *combinedGroups) ReceiptTimes(ctx context.Context, conversationID string, seq int64) ([]ReceiptTime, error) {
	return c.convs.ReceiptTimes(ctx, conversationID, seq)
}

// CreateGroup creates the (empty) conversation first, so that the group
// never exists on the user side without one, then the group, then its
// participants. A failure of the group leaves an empty conversation that
// nobody lists or can reach (group ids are never reused).
func (c *combinedGroups) CreateGroup(ctx context.Context, g Group, members []Member) error {
	if len(members) > MaxGroupMembers {
		return fmt.Errorf("create group %s: %w", g.ID, ErrGroupFull)
	}
	if err := c.convs.EnsureGroupConversation(ctx, g.ConversationID, g.ID, g.CreatedAt); err != nil {
		return fmt.Errorf("create group %s: %w", g.ID, err)
	}
	if err := c.groups.CreateGroup(ctx, g, members); err != nil {
		return err
	}
	if err := c.convs.JoinGroupConversation(ctx, g.ConversationID, members); err != nil {
		return fmt.Errorf("create group %s: participants: %w", g.ID, err)
	}
	return nil
}

// AddMembers adds on the user side (the cap's transaction), then makes
// every named user who is a member now a participant: those just added,
// and those already members, whose participation an earlier failed call
// may have left unwritten (repeating it changes nothing).
func (c *combinedGroups) AddMembers(ctx context.Context, groupID string, userIDs []string, joinedSeq, at int64) ([]string, error) {
	added, err := c.groups.AddMembers(ctx, groupID, userIDs, joinedSeq, at)
	if err != nil {
		return nil, err
	}
	g, err := c.groups.Group(ctx, groupID)
	if err != nil {
		return nil, fmt.Errorf("add members to %s: %w", groupID, err)
	}
	ms := make([]Member, 0, len(userIDs))
	for _, u := range userIDs {
		m, err := c.groups.Member(ctx, groupID, u)
		switch {
		case errors.Is(err, ErrNotFound):
			continue // removed meanwhile
		case err != nil:
			return nil, fmt.Errorf("add members to %s: %w", groupID, err)
		}
		ms = append(ms, m)
	}
	if err := c.convs.JoinGroupConversation(ctx, g.ConversationID, ms); err != nil {
		return nil, fmt.Errorf("add members to %s: participants: %w", groupID, err)
	}
	return added, nil
}

// RemoveMember removes on the user side, then ends the participation.
func (c *combinedGroups) RemoveMember(ctx context.Context, groupID, userID string, leftSeq int64) (string, error) {
	g, err := c.groups.Group(ctx, groupID)
	if err != nil {
		return "", fmt.Errorf("remove %s from %s: %w", userID, groupID, err)
	}
	promoted, err := c.groups.RemoveMember(ctx, groupID, userID, leftSeq)
	if err != nil {
		return "", err
	}
	if err := c.convs.LeaveGroupConversation(ctx, g.ConversationID, userID); err != nil {
		return "", fmt.Errorf("remove %s from %s: participation: %w", userID, groupID, err)
	}
	return promoted, nil
}

func (c *combinedGroups) Conversation(ctx context.Context, conversationID, userID string) (ConversationSummary, error) {
	s, err := c.combined.Conversation(ctx, conversationID, userID)
	if err != nil {
		return s, err
	}
	member, err := c.groupView(ctx, &s, userID)
	if err != nil {
		return ConversationSummary{}, fmt.Errorf("conversation %s: %w", conversationID, err)
	}
	if !member {
		return ConversationSummary{}, fmt.Errorf("conversation %s for %s: %w", conversationID, userID, ErrNotFound)
	}
	return s, nil
}

func (c *combinedGroups) Conversations(ctx context.Context, userID string, after ConversationPage, limit int) ([]ConversationSummary, error) {
	var out []ConversationSummary
	for len(out) < limit {
		want := limit - len(out)
		cs, err := c.combined.Conversations(ctx, userID, after, want)
		if err != nil {
			return nil, err
		}
		for i := range cs {
			member, err := c.groupView(ctx, &cs[i], userID)
			if err != nil {
				return nil, fmt.Errorf("conversations of %s: %w", userID, err)
			}
			if member {
				out = append(out, cs[i])
			}
		}
		if len(cs) < want {
			break // the end of the list
		}
		// A row was dropped: read on, so the page stays full.
		last := cs[len(cs)-1]
		after = ConversationPage{ActivityAt: last.ActivityAt(), ID: last.ID}
	}
	return out, nil
}

// groupView sets a group conversation's title to the group's name and
// reports whether userID is a member on the user side, the authority: a
// participation whose end failed to reach the message side never shows
// the group to a former member.
func (c *combinedGroups) groupView(ctx context.Context, s *ConversationSummary, userID string) (bool, error) {
	if s.Type != ConversationGroup || s.GroupID == "" {
		return true, nil
	}
	if _, err := c.groups.Member(ctx, s.GroupID, userID); err != nil {
		if errors.Is(err, ErrNotFound) {
			return false, nil
		}
		return false, fmt.Errorf("group %s: %w", s.GroupID, err)
	}
	g, err := c.groups.Group(ctx, s.GroupID)
	if err != nil {
		return false, fmt.Errorf("group %s: %w", s.GroupID, err)
	}
	s.Title = g.Name
	return true, nil
}

// ClientMessageIDs lists what the message side holds, for the dedupe
// filter, when it can (else the filter stays off).
func (c *combined) ClientMessageIDs(ctx context.Context, fn func(senderID, clientMessageID string)) error {
	l, ok := c.MessageSide.(interface {
		ClientMessageIDs(ctx context.Context, fn func(senderID, clientMessageID string)) error
	})
	if !ok {
		return errors.New("client message ids: the message store cannot list them")
	}
	return l.ClientMessageIDs(ctx, fn)
}

// The operator's group listing: groups and their members are the user
// side's, a group's last message is the message side's (the user side's
// copy of the conversation never sees a message).

func (c *combinedGroups) directory() (GroupDirectory, error) {
	d, ok := c.groups.(GroupDirectory)
	if !ok {
		return nil, fmt.Errorf("list groups: the user store has no group directory: %w", ErrUnavailable)
	}
	return d, nil
}

func (c *combinedGroups) ListGroups(ctx context.Context, after string, limit int) ([]GroupListing, error) {
	d, err := c.directory()
	if err != nil {
		return nil, err
	}
	gs, err := d.ListGroups(ctx, after, limit)
	if err != nil {
		return nil, err
	}
	for i := range gs {
		g := &gs[i]
		if g.LastSeq, err = c.MessageSide.LastSeq(ctx, g.ConversationID); err != nil {
			return nil, fmt.Errorf("list groups: last seq of %s: %w", g.ID, err)
		}
		g.LastMessageAt = 0
		if g.LastSeq == 0 {
			continue
		}
		m, err := c.MessageSide.Message(ctx, g.ConversationID, g.LastSeq)
		if errors.Is(err, ErrNotFound) {
			continue // erased since: the seq stands, its time is gone
		}
		if err != nil {
			return nil, fmt.Errorf("list groups: last message of %s: %w", g.ID, err)
		}
		g.LastMessageAt = m.ServerTS
	}
	return gs, nil
}

// UserGroups is the user side's: membership and roles live there.
func (c *combinedGroups) UserGroups(ctx context.Context, userID string) ([]UserGroup, error) {
	d, err := c.directory()
	if err != nil {
		return nil, err
	}
	return d.UserGroups(ctx, userID)
}
