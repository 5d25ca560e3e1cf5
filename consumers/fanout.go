package consumers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
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
//
// A group message with at least Queue.Threshold members goes to the
// fanout queue instead (fanout_queue.go), one item per partition of its
// members, written into the inboxes by FanoutWorkers. Once a
// conversation has items queued, its later events are queued too until
// none is left, so a member never gets them out of order.
type Fanout struct {
	js    jetstream.JetStream
	store ParticipantLister
	opts  Options
	q     QueueOptions
	// queued holds the conversations that may have items in the queue
	// (this consumer's own state: one instance runs at a time).
	queued map[string]bool
}

// QueueOptions decide which fanouts go through the queue.
type QueueOptions struct {
	// Threshold is the least members of a group whose messages are
	// queued; 0 queues nothing.
	Threshold int
	// Partitions is how many partitions the members are spread over
	// (FanoutWorkers must run as many); default 4.
	Partitions int
}

func (q QueueOptions) withDefaults() QueueOptions {
	if q.Partitions <= 0 {
		q.Partitions = 4
	}
	return q
}

// NewFanout returns the fanout consumer, queueing nothing.
func NewFanout(js jetstream.JetStream, st ParticipantLister, opts Options) *Fanout {
	return NewFanoutQueued(js, st, opts, QueueOptions{})
}

// NewFanoutQueued returns the fanout consumer that queues large groups as q says.
func NewFanoutQueued(js jetstream.JetStream, st ParticipantLister, opts Options, q QueueOptions) *Fanout {
	return &Fanout{js: js, store: st, opts: opts, q: q.withDefaults(), queued: map[string]bool{}}
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
	w.shared = true
	qs := streams.NewFanoutQueueState(f.js)
	pending, err := qs.QueuedConversations(ctx)
	if err != nil {
		return fmt.Errorf("fanout: %w", err)
	}
	for _, c := range pending {
		f.queued[c] = true
	}
	return r.run(ctx, func(ctx context.Context, batch []jetstream.Msg) error {
		evs, items, err := f.events(ctx, r, qs, batch)
		if err != nil {
			return err
		}
		// Direct events first: a worker must not write a later event
		// before them (see inboxWriter).
		if err := w.publish(ctx, evs); err != nil {
			return err
		}
		return f.enqueue(ctx, items)
	})
}

// fanoutItem is an item to queue and its subject.
type fanoutItem struct {
	subject, msgID string
	item           streams.FanoutItem
}

func (f *Fanout) events(ctx context.Context, r *runner, qs *streams.FanoutQueueState, batch []jetstream.Msg) ([]inboxEvent, []fanoutItem, error) {
	var evs []inboxEvent
	var items []fanoutItem
	inBatch := map[string]bool{}
	for _, m := range batch {
		src, redelivered, err := r.source(m)
		if err != nil {
			r.deadLetter(ctx, m, err, 1)
			continue
		}
		var ts time.Time
		if md, err := m.Metadata(); err == nil {
			ts = md.Timestamp
		}
		kind, conv := streams.ParseConvSubject(m.Subject())
		var users []string
		var data []byte
		large := false
		switch kind {
		case streams.KindMessage:
			msg, err := streams.DecodeMessage(m.Data())
			if err != nil || msg.SenderID == "" {
				r.deadLetter(ctx, m, fmt.Errorf("%w: message does not decode: %v", errPoison, err), 1)
				continue
			}
			data, _ = json.Marshal(schema.MessageEvent{Type: schema.TypeMessage, Message: renderMessage(msg)})
			users = []string{msg.SenderID}
			if msg.MessageType == schema.MessageTypeGroup {
				if users, err = groupMessageUsers(ctx, f.store, msg); errors.Is(err, errPoison) {
					r.deadLetter(ctx, m, err, 1)
					continue
				} else if err != nil {
					return nil, nil, err
				}
				large = f.q.Threshold > 0 && len(users) >= f.q.Threshold
			} else if msg.RecipientID != msg.SenderID {
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
					return nil, nil, fmt.Errorf("fanout deletion of %s: %w", d.MessageID, err)
				}
			}
		case streams.KindMembership:
			if users, data, err = membershipEvent(ctx, f.store, m.Data()); errors.Is(err, errPoison) {
				r.deadLetter(ctx, m, err, 1)
				continue
			} else if err != nil {
				return nil, nil, err
			}
		default:
			continue // statuses are the receipts consumer's
		}
		queue := large || inBatch[conv]
		if !queue && f.queued[conv] {
			// Items of this conversation may still wait: follow them.
			if queue, err = qs.Pending(ctx, conv); err != nil {
				return nil, nil, fmt.Errorf("fanout %s: %w: %w", m.Subject(), errTransient, err)
			}
			if !queue {
				delete(f.queued, conv)
			}
		}
		if queue {
			inBatch[conv] = true
			items = append(items, f.items(conv, src, ts, redelivered, users, data)...)
			continue
		}
		for _, u := range users {
			evs = append(evs, inboxEvent{user: u, src: src, ts: ts, redelivered: redelivered, data: data})
		}
	}
	for conv := range inBatch {
		f.queued[conv] = true
	}
	return evs, items, nil
}

// items splits one event for users into one queue item per partition.
func (f *Fanout) items(conv string, src uint64, ts time.Time, redelivered bool, users []string, data []byte) []fanoutItem {
	parts := map[int][]string{}
	for _, u := range users {
		p := streams.FanoutPartition(u, f.q.Partitions)
		parts[p] = append(parts[p], u)
	}
	out := make([]fanoutItem, 0, len(parts))
	for p := range f.q.Partitions {
		if len(parts[p]) == 0 {
			continue
		}
		out = append(out, fanoutItem{
			subject: streams.FanoutSubject(p, conv),
			msgID:   "q:" + strconv.FormatUint(src, 10) + ":" + strconv.Itoa(p),
			item: streams.FanoutItem{V: 1, Src: src, TS: ts.UnixMilli(), Conv: conv, Users: parts[p],
				Kind: streams.InboxMessages, Event: data, MaybeDone: redelivered},
		})
	}
	return out
}

// enqueue stores items in order and waits for every acknowledgement.
func (f *Fanout) enqueue(ctx context.Context, items []fanoutItem) error {
	futures := make([]jetstream.PubAckFuture, 0, len(items))
	for _, it := range items {
		m := nats.NewMsg(it.subject)
		m.Data, _ = json.Marshal(it.item)
		m.Header.Set(jetstream.MsgIDHeader, it.msgID)
		fut, err := f.js.PublishMsgAsync(m)
		if err != nil {
			return fmt.Errorf("queue fanout of %d for %s: %w: %w", it.item.Src, it.item.Conv, errTransient, err)
		}
		futures = append(futures, fut)
	}
	for _, fut := range futures {
		select {
		case <-fut.Ok():
		case err := <-fut.Err():
			return fmt.Errorf("queue fanout on %s: %w: %w", fut.Msg().Subject, errTransient, err)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// renderMessage is the client's view of a message record.
func renderMessage(m streams.MessageRecord) schema.Message {
	return schema.Message{MessageID: m.MessageID, ConversationID: m.ConversationID, Seq: m.Seq, SenderID: m.SenderID,
		RecipientID: m.RecipientID, MessageType: m.MessageType, Content: m.Content, ClientMessageID: m.ClientMessageID, ServerTS: m.ServerTS}
}
