package streams

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"
)

// InboxReader reads users' events from INBOX without a consumer: batched
// direct gets for replays, and core subscriptions to the republished
// copies for live events.
type InboxReader struct {
	nc *nats.Conn
}

// NewInboxReader reads INBOX over nc.
func NewInboxReader(nc *nats.Conn) *InboxReader { return &InboxReader{nc: nc} }

// Subscribe delivers the republished copies of user's stored events and
// user's ephemeral events to ch (see DeliverFilter and Delivered).
func (r *InboxReader) Subscribe(user string, ch chan *nats.Msg) (*nats.Subscription, error) {
	sub, err := r.nc.ChanSubscribe(DeliverFilter(user), ch)
	if err != nil {
		return nil, fmt.Errorf("subscribe to events of %s: %w: %v", user, ErrUnavailable, err)
	}
	return sub, nil
}

// Wake returns a channel that receives when user gets any event, and a
// stop function: what a long-poll waits on.
func (r *InboxReader) Wake(user string) (<-chan *nats.Msg, func(), error) {
	ch := make(chan *nats.Msg, 1)
	sub, err := r.nc.ChanSubscribe(DeliverFilter(user), ch)
	if err != nil {
		return nil, nil, fmt.Errorf("subscribe to events of %s: %w: %v", user, ErrUnavailable, err)
	}
	return ch, func() { _ = sub.Unsubscribe() }, nil
}

// Delivered reads a delivered copy's cursor and the cursor of the
// previous event on the same inbox subject. stored is false for an
// ephemeral event (typing), which has neither.
func Delivered(m *nats.Msg) (seq, prev uint64, stored bool, err error) {
	h := m.Header.Get(nats.JSSequence)
	if h == "" {
		return 0, 0, false, nil
	}
	if seq, err = strconv.ParseUint(h, 10, 64); err != nil {
		return 0, 0, true, fmt.Errorf("delivered event with %s %q: %w", nats.JSSequence, h, err)
	}
	prev, _ = strconv.ParseUint(m.Header.Get(nats.JSLastSequence), 10, 64)
	return seq, prev, true, nil
}

// scanBatch is how many events one direct-get request asks for.
const scanBatch = 256

// directGetRequest is JetStream's batched direct get: the events of one
// user after a sequence, in order, up to an optional sequence.
type directGetRequest struct {
	Seq      uint64 `json:"seq"`
	NextFor  string `json:"next_by_subj"`
	Batch    int    `json:"batch"`
	UpToSeq  uint64 `json:"up_to_seq,omitempty"`
	MaxBytes int    `json:"max_bytes,omitempty"`
}

// Scan calls fn for each of user's events with a cursor in
// (after, upTo] (upTo 0: up to the newest), oldest first, at most limit
// events (0: no limit). It returns the cursor of the last event passed
// to fn, or after when there was none.
func (r *InboxReader) Scan(ctx context.Context, user string, after, upTo uint64, limit int, fn func(seq uint64, data []byte) error) (uint64, error) {
	last, n := after, 0
	subj := "$JS.API.DIRECT.GET." + StreamInbox
	for {
		if upTo > 0 && last >= upTo {
			return last, nil
		}
		batch := scanBatch
		if limit > 0 {
			batch = min(batch, limit-n)
			if batch == 0 {
				return last, nil
			}
		}
		req, _ := json.Marshal(directGetRequest{Seq: last + 1, NextFor: InboxFilter(user), Batch: batch, UpToSeq: upTo, MaxBytes: 4 << 20})
		past := false
		got, more, err := r.directGet(ctx, subj, req, func(seq uint64, data []byte) error {
			// nats-server honours up_to_seq only for multi_last requests,
			// so the bound is enforced here.
			if upTo > 0 && seq > upTo {
				past = true
				return nil
			}
			last = seq
			n++
			return fn(seq, data)
		})
		if err != nil {
			return last, err
		}
		if got == 0 || !more || past {
			return last, nil
		}
	}
}

// directGet sends one batched direct get and hands each message to fn.
// more reports whether the server said further events match.
func (r *InboxReader) directGet(ctx context.Context, subj string, req []byte, fn func(seq uint64, data []byte) error) (got int, more bool, err error) {
	inbox := r.nc.NewRespInbox()
	sub, err := r.nc.SubscribeSync(inbox)
	if err != nil {
		return 0, false, fmt.Errorf("direct get: subscribe: %w: %v", ErrUnavailable, err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := r.nc.PublishRequest(subj, inbox, req); err != nil {
		return 0, false, fmt.Errorf("direct get: %w: %v", ErrUnavailable, err)
	}
	for {
		m, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			return got, false, fmt.Errorf("direct get: %w: %v", ErrUnavailable, err)
		}
		switch status := m.Header.Get("Status"); status {
		case "":
		case "404": // nothing (more) matches
			return got, false, nil
		case "204": // end of batch
			pending, _ := strconv.ParseUint(m.Header.Get("Nats-Num-Pending"), 10, 64)
			return got, pending > 0, nil
		default:
			return got, false, fmt.Errorf("direct get: %w: status %s %s", ErrUnavailable, status, m.Header.Get("Description"))
		}
		seq, err := strconv.ParseUint(m.Header.Get(nats.JSSequence), 10, 64)
		if err != nil {
			return got, false, fmt.Errorf("direct get reply without %s: %w", nats.JSSequence, err)
		}
		got++
		if err := fn(seq, m.Data); err != nil {
			return got, false, err
		}
	}
}
