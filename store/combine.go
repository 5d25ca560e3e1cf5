package store

import (
	"context"
	"errors"
	"fmt"
)

// UserSide is what Combine takes from the adapter holding accounts.
type UserSide interface {
	Accounts
	Devices
	Blocks
	Push
	Close() error
}

// MessageSide is what Combine takes from the adapter holding history.
type MessageSide interface {
	Conversations
	Messages
	Receipts
	Close() error
}

// Combine is a Store with users, devices and blocks in one adapter and
// conversations, messages and receipts in another (for example users in
// PostgreSQL, history in Cassandra), neither importing the other. The one
// thing the message side cannot know is a direct conversation's title,
// the peer's username: Combine fills it in from the user side when the
// message side left it empty. Close closes both.
//
// When the user side holds groups (Groups) and the message side their
// conversations (GroupConversations), the result has groups too:
// membership on the user side, group messages and receipts on the
// message side (combine_groups.go).
func Combine(users UserSide, messages MessageSide) Store {
	c := &combined{UserSide: users, MessageSide: messages}
	groups, ok := users.(Groups)
	if !ok {
		return c
	}
	if convs, ok := messages.(GroupConversations); ok {
		return &combinedGroups{combined: c, groups: groups, convs: convs}
	}
	return c
}

type combined struct {
	UserSide
	MessageSide
}

func (c *combined) Close() error {
	return errors.Join(c.MessageSide.Close(), c.UserSide.Close())
}

func (c *combined) Conversation(ctx context.Context, conversationID, userID string) (ConversationSummary, error) {
	s, err := c.MessageSide.Conversation(ctx, conversationID, userID)
	if err != nil {
		return s, err
	}
	if err := c.title(ctx, &s); err != nil {
		return ConversationSummary{}, fmt.Errorf("conversation %s: %w", conversationID, err)
	}
	return s, nil
}

func (c *combined) Conversations(ctx context.Context, userID string, after ConversationPage, limit int) ([]ConversationSummary, error) {
	cs, err := c.MessageSide.Conversations(ctx, userID, after, limit)
	if err != nil {
		return nil, err
	}
	for i := range cs {
		if err := c.title(ctx, &cs[i]); err != nil {
			return nil, fmt.Errorf("conversations of %s: %w", userID, err)
		}
	}
	return cs, nil
}

// title sets a direct conversation's title to the peer's username; a
// peer without an account (deleted, or never stored) leaves it empty.
func (c *combined) title(ctx context.Context, s *ConversationSummary) error {
	if s.Type != ConversationDirect || s.Title != "" || s.PeerID == "" {
		return nil
	}
	u, err := c.UserByID(ctx, s.PeerID)
	switch {
	case errors.Is(err, ErrNotFound):
		return nil
	case err != nil:
		return fmt.Errorf("title: %w", err)
	}
	s.Title = u.Username
	return nil
}
