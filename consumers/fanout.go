package consumers

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/natter-chat/natter/schema"
	"github.com/natter-chat/natter/streams"
)

// ParticipantLister is what Fanout needs from the store.
type ParticipantLister interface {
	Participants(ctx context.Context, conversationID string) ([]string, error)
}

// Fanout turns each message and deletion of CONV into events in the
// inboxes of the users concerned: every participant for a message or a
// deletion for everyone, the caller for a deletion for them.
type Fanout struct {
	js    jetstream.JetStream
	store ParticipantLister
	opts  Options
}

// NewFanout returns the fanout consumer.
func NewFanout(js jetstream.JetStream, st ParticipantLister, opts Options) *Fanout {
	return &Fanout{js: js, store: st, opts: opts}
}

// Run consumes until ctx ends.
func (f *Fanout) Run(ctx context.Context) error {
	r, err := newRunner(ctx, f.js, streams.ConsumerFanout, f.opts)
	if err != nil {
		return err
	}
	w, err := newInboxWriter(ctx, f.js, streams.InboxMessages)
	if err != nil {
		return err
	}
	return r.run(ctx, func(ctx context.Context, batch []jetstream.Msg) error {
		evs, err := f.events(ctx, r, batch)
		if err != nil {
			return err
		}
		return w.publish(ctx, evs)
	})
}

func (f *Fanout) events(ctx context.Context, r *runner, batch []jetstream.Msg) ([]inboxEvent, error) {
	var evs []inboxEvent
	for _, m := range batch {
		src, redelivered, err := r.source(m)
		if err != nil {
			r.deadLetter(ctx, m, err, 1)
			continue
		}
		kind, _ := streams.ParseConvSubject(m.Subject())
		var users []string
		var data []byte
		switch kind {
		case streams.KindMessage:
			msg, err := streams.DecodeMessage(m.Data())
			if err != nil || msg.SenderID == "" {
				r.deadLetter(ctx, m, fmt.Errorf("%w: message does not decode: %v", errPoison, err), 1)
				continue
			}
			data, _ = json.Marshal(schema.MessageEvent{Type: schema.TypeMessage, Message: renderMessage(msg)})
			users = []string{msg.SenderID}
			if msg.RecipientID != msg.SenderID {
				users = append(users, msg.RecipientID)
			}
		case streams.KindDelete:
			d, err := streams.DecodeDeletion(m.Data())
			if err != nil || d.UserID == "" {
				r.deadLetter(ctx, m, fmt.Errorf("%w: deletion does not decode: %v", errPoison, err), 1)
				continue
			}
			data, _ = json.Marshal(schema.DeletedEvent{Type: schema.TypeDeleted, MessageID: d.MessageID,
				ConversationID: d.ConversationID, Seq: d.Seq, For: d.For})
			users = []string{d.UserID}
			if d.For == "everyone" {
				if users, err = f.store.Participants(ctx, d.ConversationID); err != nil {
					return nil, fmt.Errorf("fanout deletion of %s: %w", d.MessageID, err)
				}
			}
		default:
			continue // statuses are the receipts consumer's; membership records come with groups
		}
		for _, u := range users {
			evs = append(evs, inboxEvent{user: u, src: src, redelivered: redelivered, data: data})
		}
	}
	return evs, nil
}

// renderMessage is the client's view of a message record.
func renderMessage(m streams.MessageRecord) schema.Message {
	return schema.Message{MessageID: m.MessageID, ConversationID: m.ConversationID, Seq: m.Seq, SenderID: m.SenderID,
		RecipientID: m.RecipientID, MessageType: m.MessageType, Content: m.Content, ClientMessageID: m.ClientMessageID, ServerTS: m.ServerTS}
}
