package streams

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go"
)

// BlockNotices carries "this pair's block changed" between nodes on
// SubjectBlocksChanged, so that each drops what it cached for the pair.
type BlockNotices struct {
	nc *nats.Conn
}

// NewBlockNotices uses nc; it sets no handler on it.
func NewBlockNotices(nc *nats.Conn) *BlockNotices { return &BlockNotices{nc: nc} }

// PairKey names an unordered pair of users.
func PairKey(a, b string) string {
	if a > b {
		a, b = b, a
	}
	return a + "|" + b
}

// Announce tells every node. It flushes, so this node's own subscription
// has it before the caller answers.
func (b *BlockNotices) Announce(userA, userB string) error {
	if err := b.nc.Publish(SubjectBlocksChanged, []byte(PairKey(userA, userB))); err != nil {
		return fmt.Errorf("announce block change: %w: %v", ErrUnavailable, err)
	}
	if err := b.nc.Flush(); err != nil {
		return fmt.Errorf("announce block change: %w: %v", ErrUnavailable, err)
	}
	return nil
}

// Run calls onChange with the PairKey of each change announced anywhere,
// until ctx ends.
func (b *BlockNotices) Run(ctx context.Context, onChange func(pair string)) error {
	sub, err := b.nc.Subscribe(SubjectBlocksChanged, func(m *nats.Msg) { onChange(string(m.Data)) })
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", SubjectBlocksChanged, err)
	}
	<-ctx.Done()
	_ = sub.Unsubscribe()
	return nil
}

// Typing and other ephemeral events travel on core NATS only.

// Ephemeral publishes data to user's live subject (LiveSubject).
type Ephemeral struct {
	nc *nats.Conn
}

// NewEphemeral uses nc.
func NewEphemeral(nc *nats.Conn) *Ephemeral { return &Ephemeral{nc: nc} }

// Publish sends data to the connections of user; nothing is stored.
func (e *Ephemeral) Publish(user string, data []byte) error {
	return e.nc.Publish(LiveSubject(user), data)
}
