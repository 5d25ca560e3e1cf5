package consumers

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/natter-chat/natter/store"
	"github.com/natter-chat/natter/streams"
)

// MessageWriter is what Persist needs from the store.
type MessageWriter interface {
	SaveMessages(ctx context.Context, msgs []store.Message) error
	DeleteForEveryone(ctx context.Context, conversationID string, seq int64) error
	DeleteForUser(ctx context.Context, conversationID string, seq int64, userID string) error
}

// Persist writes every message and deletion of CONV to the store, in
// batches, idempotently on (conversation, seq).
type Persist struct {
	js    jetstream.JetStream
	store MessageWriter
	opts  Options
}

// NewPersist returns the persistence consumer.
func NewPersist(js jetstream.JetStream, st MessageWriter, opts Options) *Persist {
	return &Persist{js: js, store: st, opts: opts}
}

// persistLinger lets a store transaction carry more messages: a commit
// costs as much as tens of inserts (at 1,000 msg/s commits are 8 % of the
// server's CPU with 2 ms). Nobody waits on persist but REST readers of
// what they just wrote (read-your-writes), for whom 10 ms is invisible;
// delivery does not (docs/benchmarks.md section 21: 10 ms took 3-10 %
// less server CPU per delivery than 2 ms in five pairs of runs).
const persistLinger = 10 * time.Millisecond

// Run consumes until ctx ends.
func (p *Persist) Run(ctx context.Context) error {
	opts := p.opts
	if opts.Linger == 0 {
		opts.Linger = persistLinger
	}
	r, err := newRunner(ctx, p.js, streams.ConsumerPersist, opts)
	if err != nil {
		return err
	}
	return r.run(ctx, func(ctx context.Context, batch []jetstream.Msg) error {
		return p.handle(ctx, r, batch)
	})
}

func (p *Persist) handle(ctx context.Context, r *runner, batch []jetstream.Msg) error {
	var pending []store.Message
	flush := func() error {
		if len(pending) == 0 {
			return nil
		}
		if err := p.store.SaveMessages(ctx, pending); err != nil {
			return fmt.Errorf("persist %d messages: %w", len(pending), err)
		}
		pending = pending[:0]
		return nil
	}
	for _, m := range batch {
		kind, _ := streams.ParseConvSubject(m.Subject())
		switch kind {
		case streams.KindMessage:
			msg, err := streams.DecodeMessage(m.Data())
			if err != nil || msg.ConversationID == "" || msg.Seq < 1 {
				r.deadLetter(ctx, m, fmt.Errorf("%w: message does not decode: %v", errPoison, err), 1)
				continue
			}
			pending = append(pending, store.Message{
				ID: msg.MessageID, ConversationID: msg.ConversationID, Seq: msg.Seq,
				SenderID: msg.SenderID, RecipientID: msg.RecipientID, MessageType: msg.MessageType,
				Content: msg.Content, ClientMessageID: msg.ClientMessageID, ServerTS: msg.ServerTS,
			})
		case streams.KindDelete:
			d, err := streams.DecodeDeletion(m.Data())
			if err != nil || d.ConversationID == "" {
				r.deadLetter(ctx, m, fmt.Errorf("%w: deletion does not decode: %v", errPoison, err), 1)
				continue
			}
			// A deletion may follow its message in the same batch.
			if err := flush(); err != nil {
				return err
			}
			if d.For == "everyone" {
				err = p.store.DeleteForEveryone(ctx, d.ConversationID, d.Seq)
			} else {
				err = p.store.DeleteForUser(ctx, d.ConversationID, d.Seq, d.UserID)
			}
			if err != nil {
				return fmt.Errorf("persist deletion of %s: %w", d.MessageID, err)
			}
		}
	}
	return flush()
}
