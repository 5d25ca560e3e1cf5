package consumers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/natter-chat/natter/schema"
	"github.com/natter-chat/natter/store"
	"github.com/natter-chat/natter/streams"
)

// ReceiptStore is what Receipts needs from the store.
type ReceiptStore interface {
	ParticipantLister
	ReceiptState(ctx context.Context, conversationID, userID string) (store.ReceiptState, error)
	AdvanceReceipt(ctx context.Context, conversationID, userID string, st store.ReceiptState) error
}

// Receipts applies delivered/read statuses: it moves each reader's state
// forward only and emits one receipt event per change, to every
// participant's inbox (the senders and the reader's other devices).
// A status that changes nothing emits nothing.
type Receipts struct {
	js    jetstream.JetStream
	store ReceiptStore
	opts  Options
}

// NewReceipts returns the receipts consumer.
func NewReceipts(js jetstream.JetStream, st ReceiptStore, opts Options) *Receipts {
	return &Receipts{js: js, store: st, opts: opts}
}

// Run consumes until ctx ends.
func (c *Receipts) Run(ctx context.Context) error {
	r, err := newRunner(ctx, c.js, streams.ConsumerReceipts, c.opts)
	if err != nil {
		return err
	}
	w, err := newInboxWriter(ctx, c.js, streams.InboxReceipts)
	if err != nil {
		return err
	}
	return r.run(ctx, func(ctx context.Context, batch []jetstream.Msg) error {
		return c.handle(ctx, r, w, batch)
	})
}

type readerKey struct{ conv, user string }

func (c *Receipts) handle(ctx context.Context, r *runner, w *inboxWriter, batch []jetstream.Msg) error {
	states := map[readerKey]store.ReceiptState{}
	changed := map[readerKey]bool{}
	var (
		evs     []inboxEvent
		changes []store.ReceiptChange
	)
	for _, m := range batch {
		src, redelivered, err := r.source(m)
		if err != nil {
			r.deadLetter(ctx, m, err, 1)
			continue
		}
		rc, err := streams.DecodeReceipt(m.Data())
		if err != nil || rc.UserID == "" || rc.Seq < 1 || schema.ValidateStatus(rc.Status) != nil {
			r.deadLetter(ctx, m, fmt.Errorf("%w: receipt does not decode: %v", errPoison, err), 1)
			continue
		}
		if groupID, ok := schema.GroupOfConversation(rc.ConversationID); ok {
			// Group aggregates read the stored states: store what came
			// before first.
			if err := c.flush(ctx, w, evs, changes, states, changed); err != nil {
				return err
			}
			evs, changes, states, changed = nil, nil, map[readerKey]store.ReceiptState{}, map[readerKey]bool{}
			if err := c.groupReceipt(ctx, w, src, redelivered, rc, groupID); errors.Is(err, errPoison) {
				r.deadLetter(ctx, m, err, 1)
			} else if err != nil {
				return err
			}
			continue
		}
		k := readerKey{rc.ConversationID, rc.UserID}
		st, ok := states[k]
		if !ok {
			if st, err = c.store.ReceiptState(ctx, k.conv, k.user); err != nil {
				return fmt.Errorf("receipt state of %s in %s: %w", k.user, k.conv, err)
			}
		}
		next, moved := advance(st, rc.Status, rc.Seq)
		states[k] = next
		if !moved {
			continue
		}
		changed[k] = true
		changes = append(changes, store.ReceiptChange{ConversationID: rc.ConversationID, UserID: rc.UserID,
			Seq: rc.Seq, Status: rc.Status, TS: rc.TS})
		users, err := c.store.Participants(ctx, rc.ConversationID)
		if err != nil {
			return fmt.Errorf("receipt for %s: %w", rc.ConversationID, err)
		}
		data, _ := json.Marshal(schema.ReceiptEvent{Type: schema.TypeReceipt,
			MessageID: schema.MessageID(rc.ConversationID, rc.Seq), ConversationID: rc.ConversationID,
			Seq: rc.Seq, Status: rc.Status, UserID: rc.UserID, TS: rc.TS})
		for _, u := range users {
			evs = append(evs, inboxEvent{user: u, src: src, redelivered: redelivered, data: data})
		}
	}
	return c.flush(ctx, w, evs, changes, states, changed)
}

// flush publishes evs, then logs changes and stores the changed states.
func (c *Receipts) flush(ctx context.Context, w *inboxWriter, evs []inboxEvent, changes []store.ReceiptChange,
	states map[readerKey]store.ReceiptState, changed map[readerKey]bool) error {
	// Events first, state second: a crash in between recomputes the same
	// change, and the inbox writer skips what it already published.
	if err := w.publish(ctx, evs); err != nil {
		return err
	}
	if err := c.logReceipts(ctx, changes); err != nil {
		return err
	}
	for k := range changed {
		if err := c.store.AdvanceReceipt(ctx, k.conv, k.user, states[k]); err != nil {
			return fmt.Errorf("advance receipt of %s in %s: %w", k.user, k.conv, err)
		}
	}
	return nil
}

// advance applies one status to a reader's state. Only a move forward is
// a change: read implies delivered, and a read that comes first is not
// preceded by a separate delivered.
func advance(st store.ReceiptState, status string, seq int64) (store.ReceiptState, bool) {
	switch status {
	case schema.StatusRead:
		if seq <= st.ReadSeq {
			return st, false
		}
		st.ReadSeq = seq
		st.DeliveredSeq = max(st.DeliveredSeq, seq)
		return st, true
	case schema.StatusDelivered:
		if seq <= st.DeliveredSeq {
			return st, false
		}
		st.DeliveredSeq = seq
		return st, true
	}
	return st, false
}
