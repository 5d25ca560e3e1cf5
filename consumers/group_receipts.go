package consumers

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/natter-chat/natter/schema"
	"github.com/natter-chat/natter/store"
	"github.com/natter-chat/natter/streams"
)

// groupReceiptStore is what group receipts need besides ReceiptStore.
type groupReceiptStore interface {
	Member(ctx context.Context, groupID, userID string) (store.Member, error)
	store.GroupReceipts
}

// groupReceipt applies one member's status in a group conversation, on
// its own (the aggregates read the other members' stored state, so every
// earlier change must be stored first). The reader's other devices get
// the member's receipt; each sender whose messages this change completes
// gets one aggregate receipt (no user_id) for the highest of them: a
// message is delivered (read) when every member but its sender has
// delivered (read) at least its seq, and the change of the last member to
// get there is the one that says so. Events first, log and state second,
// as for direct receipts.
func (c *Receipts) groupReceipt(ctx context.Context, w *inboxWriter, src uint64, redelivered bool, rc streams.Receipt, groupID string) error {
	gs, ok := c.store.(groupReceiptStore)
	if !ok {
		return fmt.Errorf("%w: group receipt for %s but the store has no groups", errPoison, rc.ConversationID)
	}
	if _, err := gs.Member(ctx, groupID, rc.UserID); errors.Is(err, store.ErrNotFound) {
		return nil // a member who left since: their status counts no more
	} else if err != nil {
		return fmt.Errorf("group receipt of %s in %s: %w", rc.UserID, rc.ConversationID, err)
	}
	old, err := c.store.ReceiptState(ctx, rc.ConversationID, rc.UserID)
	if err != nil {
		return fmt.Errorf("receipt state of %s in %s: %w", rc.UserID, rc.ConversationID, err)
	}
	next, moved := advance(old, rc.Status, rc.Seq)
	if !moved {
		return nil
	}
	own, _ := json.Marshal(schema.ReceiptEvent{Type: schema.TypeReceipt,
		MessageID: schema.MessageID(rc.ConversationID, rc.Seq), ConversationID: rc.ConversationID,
		Seq: rc.Seq, Status: rc.Status, UserID: rc.UserID, TS: rc.TS})
	evs := []inboxEvent{{user: rc.UserID, src: src, redelivered: redelivered, data: own}}
	delivered, err := completed(ctx, gs, rc.ConversationID, rc.UserID, false, old.DeliveredSeq, next.DeliveredSeq)
	if err != nil {
		return err
	}
	read, err := completed(ctx, gs, rc.ConversationID, rc.UserID, true, old.ReadSeq, next.ReadSeq)
	if err != nil {
		return err
	}
	senders := make([]string, 0, len(delivered)+len(read))
	for s := range delivered {
		senders = append(senders, s)
	}
	for s := range read {
		if _, ok := delivered[s]; !ok {
			senders = append(senders, s)
		}
	}
	slices.Sort(senders)
	aggregate := func(sender, status string, seq int64) {
		data, _ := json.Marshal(schema.ReceiptEvent{Type: schema.TypeReceipt,
			MessageID: schema.MessageID(rc.ConversationID, seq), ConversationID: rc.ConversationID,
			Seq: seq, Status: status, TS: rc.TS})
		evs = append(evs, inboxEvent{user: sender, src: src, redelivered: redelivered, data: data})
	}
	for _, s := range senders {
		d, r := delivered[s], read[s]
		// A read that covers the delivered message is not preceded by a
		// separate delivered.
		if d > r {
			aggregate(s, schema.StatusDelivered, d)
		}
		if r > 0 {
			aggregate(s, schema.StatusRead, r)
		}
	}
	if err := w.publish(ctx, evs); err != nil {
		return err
	}
	if err := c.logReceipts(ctx, []store.ReceiptChange{{ConversationID: rc.ConversationID, UserID: rc.UserID,
		Seq: rc.Seq, Status: rc.Status, TS: rc.TS}}); err != nil {
		return err
	}
	if err := c.store.AdvanceReceipt(ctx, rc.ConversationID, rc.UserID, next); err != nil {
		return fmt.Errorf("advance receipt of %s in %s: %w", rc.UserID, rc.ConversationID, err)
	}
	return nil
}

// completed returns, per sender other than reader, the highest of their
// messages that reader's move of one status from old to next (stored:
// old) completes for every member. It reads the three lowest states of
// the conversation, not every member's.
func completed(ctx context.Context, gs groupReceiptStore, conv, reader string, read bool, old, next int64) (map[string]int64, error) {
	if next <= old {
		return nil, nil
	}
	low, err := gs.LowestReceipts(ctx, conv, read, 3)
	if err != nil {
		return nil, fmt.Errorf("lowest receipts of %s: %w", conv, err)
	}
	// The reader's state as it is after this change: the two lowest of
	// the others and the reader are the two lowest of all.
	present := false
	low = slices.DeleteFunc(low, func(u store.UserSeq) bool {
		if u.UserID == reader {
			present = true
			return true
		}
		return false
	})
	if present {
		low = append(low, store.UserSeq{UserID: reader, Seq: next})
	}
	slices.SortFunc(low, func(a, b store.UserSeq) int {
		return cmp.Or(cmp.Compare(a.Seq, b.Seq), strings.Compare(a.UserID, b.UserID))
	})
	if len(low) == 0 {
		return nil, nil
	}
	first := low[0]
	second := int64(math.MaxInt64) // the least of everyone but first.UserID
	if len(low) > 1 {
		second = low[1].Seq
	}
	out := map[string]int64{}
	// Senders other than the lowest member wait for the lowest one;
	// the lowest member's own messages wait for the second lowest.
	if upTo := min(next, first.Seq); upTo > old {
		sent, err := gs.LastSent(ctx, conv, old, upTo)
		if err != nil {
			return nil, fmt.Errorf("senders of %s: %w", conv, err)
		}
		for _, s := range sent {
			if s.UserID != reader && s.UserID != first.UserID {
				out[s.UserID] = s.Seq
			}
		}
	}
	if upTo := min(next, second); first.UserID != reader && upTo > old {
		sent, err := gs.LastSent(ctx, conv, old, upTo)
		if err != nil {
			return nil, fmt.Errorf("senders of %s: %w", conv, err)
		}
		for _, s := range sent {
			if s.UserID == first.UserID {
				out[s.UserID] = s.Seq
			}
		}
	}
	return out, nil
}

// logReceipts records changes for message info when the store keeps a log.
func (c *Receipts) logReceipts(ctx context.Context, changes []store.ReceiptChange) error {
	l, ok := c.store.(store.ReceiptLog)
	if !ok || len(changes) == 0 {
		return nil
	}
	if err := l.LogReceipts(ctx, changes); err != nil {
		return fmt.Errorf("log receipts: %w", err)
	}
	return nil
}
