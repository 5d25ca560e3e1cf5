package consumers

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/natter-chat/natter/streams"
)

// inboxEvent is one event for one user, derived from CONV message src.
type inboxEvent struct {
	user string
	src  uint64
	// redelivered is true when the source was delivered before: the
	// event may already be in the inbox.
	redelivered bool
	data        []byte
}

// inboxWriter publishes one kind of inbox event. It is the only writer of
// natter.inbox.*.<kind> and publishes in CONV order, so after a crash an
// event is already present exactly when the user's last event of this
// kind has Natter-Src >= its source.
type inboxWriter struct {
	js    jetstream.JetStream
	inbox jetstream.Stream
	kind  string
}

func newInboxWriter(ctx context.Context, js jetstream.JetStream, kind string) (*inboxWriter, error) {
	s, err := js.Stream(ctx, streams.StreamInbox)
	if err != nil {
		return nil, fmt.Errorf("open inbox stream: %w", err)
	}
	return &inboxWriter{js: js, inbox: s, kind: kind}, nil
}

// publish stores evs in order and waits for every acknowledgement.
func (w *inboxWriter) publish(ctx context.Context, evs []inboxEvent) error {
	lastSrc := map[string]uint64{}
	futures := make([]jetstream.PubAckFuture, 0, len(evs))
	for _, ev := range evs {
		subj := streams.InboxSubject(ev.user, w.kind)
		if ev.redelivered {
			last, ok := lastSrc[ev.user]
			if !ok {
				var err error
				if last, err = w.lastSource(ctx, subj); err != nil {
					return err
				}
				lastSrc[ev.user] = last
			}
			if last >= ev.src {
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
	}
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return fmt.Errorf("publish to %s: %w: %w", f.Msg().Subject, errTransient, err)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
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
