package consumers

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/natter-chat/natter/schema"
	"github.com/natter-chat/natter/store"
	"github.com/natter-chat/natter/streams"
)

// EraseStore is what Erase needs from the store.
type EraseStore interface {
	ParticipantLister
	Message(ctx context.Context, conversationID string, seq int64) (store.Message, error)
}

// Erase removes the content of messages deleted for everyone from the
// streams: the message's record in CONV and every participant's message
// event in INBOX, by secure delete (streams/erase.go). It reads deletions
// only, and handles one once persist and fanout (its queue included) have passed it: the
// message is then stored and every copy of it, and the deleted events
// after them, are in the inboxes, so nothing written later can carry the
// content again. Erasing is idempotent (what is gone is skipped).
type Erase struct {
	nc    *nats.Conn
	js    jetstream.JetStream
	store EraseStore
	opts  Options
}

// NewErase returns the erasure consumer.
func NewErase(nc *nats.Conn, js jetstream.JetStream, st EraseStore, opts Options) *Erase {
	return &Erase{nc: nc, js: js, store: st, opts: opts}
}

// eraseWait bounds one wait for persist and fanout to pass a deletion;
// past it the batch is retried in place.
const eraseWait = 2 * time.Second

// Run consumes until ctx ends.
func (c *Erase) Run(ctx context.Context) error {
	r, err := newRunner(ctx, c.js, streams.ConsumerErase, c.opts)
	if err != nil {
		return err
	}
	er, err := streams.NewEraser(ctx, c.nc, c.js)
	if err != nil {
		return err
	}
	wm := streams.NewWatermark(c.js, 10*time.Millisecond)
	return r.run(ctx, func(ctx context.Context, batch []jetstream.Msg) error {
		return c.handle(ctx, r, er, wm, batch)
	})
}

func (c *Erase) handle(ctx context.Context, r *runner, er *streams.Eraser, wm *streams.Watermark, batch []jetstream.Msg) error {
	for _, m := range batch {
		src, _, err := r.source(m)
		if err != nil {
			r.deadLetter(ctx, m, err, 1)
			continue
		}
		d, err := streams.DecodeDeletion(m.Data())
		if err != nil || d.ConversationID == "" || d.Seq < 1 {
			r.deadLetter(ctx, m, fmt.Errorf("%w: deletion does not decode: %v", errPoison, err), 1)
			continue
		}
		if d.For != "everyone" {
			continue // the content stays for the others
		}
		wctx, cancel := context.WithTimeout(ctx, eraseWait)
		err = wm.Wait(wctx, src, streams.ConsumerPersist, streams.ConsumerFanout)
		cancel()
		if err != nil {
			return fmt.Errorf("erase %s: persist and fanout behind: %w: %w", d.MessageID, errTransient, err)
		}
		if err := c.erase(ctx, er, d, src); err != nil {
			return fmt.Errorf("erase %s: %w", d.MessageID, err)
		}
	}
	return nil
}

func (c *Erase) erase(ctx context.Context, er *streams.Eraser, d streams.Deletion, src uint64) error {
	msg, err := c.store.Message(ctx, d.ConversationID, d.Seq)
	if errors.Is(err, store.ErrNotFound) {
		return nil // never stored: nothing was fanned out either
	}
	if err != nil {
		return err
	}
	users, err := c.store.Participants(ctx, d.ConversationID)
	if err != nil {
		return err
	}
	var convSeq uint64
	var seqs []uint64
	group := msg.MessageType == schema.MessageTypeGroup
	for _, u := range users {
		copies, err := er.FindInboxCopies(ctx, u, d.MessageID, time.UnixMilli(msg.ServerTS), src, group)
		if err != nil {
			return fmt.Errorf("%w: %w", errTransient, err)
		}
		for _, cp := range copies {
			seqs = append(seqs, cp.Seq)
			convSeq = cp.Src
		}
	}
	if convSeq == 0 {
		if convSeq, err = er.FindConvMessage(ctx, d.ConversationID, d.Seq, src); err != nil {
			return fmt.Errorf("%w: %w", errTransient, err)
		}
	}
	if convSeq > 0 {
		if err := er.EraseConvMessage(ctx, d.ConversationID, d.Seq, convSeq); err != nil {
			if errors.Is(err, streams.ErrUnavailable) || errors.Is(err, streams.ErrStorage) || errors.Is(err, streams.ErrTimeout) {
				return fmt.Errorf("%w: %w", errTransient, err)
			}
			return err
		}
	}
	if err := er.EraseInbox(ctx, seqs); err != nil {
		return fmt.Errorf("%w: %w", errTransient, err)
	}
	return nil
}
