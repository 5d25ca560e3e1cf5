package consumers

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/natter-chat/natter/streams"
)

// inboxEvent is one event for one user, derived from CONV message src.
type inboxEvent struct {
	user string
	src  uint64
	// ts is when src was stored in CONV (zero: unknown); the event was
	// published after it.
	ts time.Time
	// redelivered is true when the source was delivered before: the
	// event may already be in the inbox.
	redelivered bool
	data        []byte
}

// inboxWriter publishes one kind of inbox event.
//
// The receipts writer is the only writer of natter.inbox.*.r and
// publishes in CONV order, so after a crash an event is already present
// exactly when the user's last event of this kind has Natter-Src >= its
// source.
//
// natter.inbox.*.m has two: fanout, in CONV order, and the fanout queue's
// workers (queued), each in CONV order too but behind fanout. Fanout
// queues a batch's items only after that batch's direct events are
// stored, so a last event at or past the source still proves fanout's
// event present (shared); a lower one proves nothing, and neither does
// anything for a worker. Those cases rely on Nats-Msg-Id while the
// duplicate window surely covers the first publish (it came after ts),
// and beyond it look for the event itself (InboxReader.HasEvent).
type inboxWriter struct {
	js    jetstream.JetStream
	inbox jetstream.Stream
	kind  string
	// shared: queue workers write this kind too. queued: this is one.
	shared, queued bool
	read           *streams.InboxReader
	// dedupe is how long after its source an event's Nats-Msg-Id surely
	// still dedupes: three quarters of INBOX's duplicate window, the rest
	// a margin for clocks on a cluster.
	dedupe time.Duration
	// onPublish is FanoutWorkers.onPublish.
	onPublish func(n int)
}

func newInboxWriter(ctx context.Context, js jetstream.JetStream, kind string) (*inboxWriter, error) {
	s, err := js.Stream(ctx, streams.StreamInbox)
	if err != nil {
		return nil, fmt.Errorf("open inbox stream: %w", err)
	}
	return &inboxWriter{js: js, inbox: s, kind: kind, read: streams.NewInboxReader(js.Conn()),
		dedupe: s.CachedInfo().Config.Duplicates * 3 / 4}, nil
}

// publish stores evs in order and waits for every acknowledgement.
func (w *inboxWriter) publish(ctx context.Context, evs []inboxEvent) error {
	lastSrc := map[string]uint64{}
	futures := make([]jetstream.PubAckFuture, 0, len(evs))
	acked := 0
	for _, ev := range evs {
		subj := streams.InboxSubject(ev.user, w.kind)
		if ev.redelivered {
			present, err := w.present(ctx, subj, ev, lastSrc)
			if err != nil {
				return err
			}
			if present {
				continue // published before the crash
			}
		}
		m := nats.NewMsg(subj)
		m.Data = ev.data
		src := strconv.FormatUint(ev.src, 10)
		m.Header.Set(streams.HeaderSource, src)
		m.Header.Set(jetstream.MsgIDHeader, w.kind+":"+src+":"+ev.user)
		f, err := w.js.PublishMsgAsync(m)
		if err != nil {
			return fmt.Errorf("publish %s event to %s: %w: %w", w.kind, ev.user, errTransient, err)
		}
		futures = append(futures, f)
		if w.onPublish != nil {
			w.onPublish(len(futures))
		}
		// Keep at most maxInFlight unacknowledged: past nats.go's async
		// limit (4,000 per connection, shared by every writer on it) a
		// publish fails and the whole batch would be retried.
		for len(futures)-acked >= maxInFlight {
			if err := awaitPub(ctx, futures[acked]); err != nil {
				return err
			}
			acked++
		}
	}
	for _, f := range futures[acked:] {
		if err := awaitPub(ctx, f); err != nil {
			return err
		}
	}
	return nil
}

// maxInFlight bounds one writer's unacknowledged publishes.
const maxInFlight = 512

func awaitPub(ctx context.Context, f jetstream.PubAckFuture) error {
	select {
	case <-f.Ok():
		return nil
	case err := <-f.Err():
		return fmt.Errorf("publish to %s: %w: %w", f.Msg().Subject, errTransient, err)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// present reports whether a redelivered event is surely in the inbox
// already (false lets Nats-Msg-Id decide); lastSrc caches last sources.
func (w *inboxWriter) present(ctx context.Context, subj string, ev inboxEvent, lastSrc map[string]uint64) (bool, error) {
	if !w.queued {
		last, ok := lastSrc[ev.user]
		if !ok {
			var err error
			if last, err = w.lastSource(ctx, subj); err != nil {
				return false, err
			}
			lastSrc[ev.user] = last
		}
		if last >= ev.src || !w.shared {
			return last >= ev.src, nil
		}
	}
	if !ev.ts.IsZero() && time.Since(ev.ts) < w.dedupe {
		return false, nil
	}
	found, err := w.read.HasEvent(ctx, ev.user, w.kind, ev.src, ev.ts)
	if err != nil {
		return false, fmt.Errorf("%w: %w", errTransient, err)
	}
	return found, nil
}

func (w *inboxWriter) lastSource(ctx context.Context, subject string) (uint64, error) {
	m, err := w.inbox.GetLastMsgForSubject(ctx, subject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read last event of %s: %w: %w", subject, errTransient, err)
	}
	n, _ := strconv.ParseUint(m.Header.Get(streams.HeaderSource), 10, 64)
	return n, nil
}
