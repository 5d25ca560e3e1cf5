package streams

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
)

// InboxReader reads users' events from INBOX without a consumer: batched
// direct gets for replays, and core subscriptions to the republished
// copies for live events.
type InboxReader struct {
	nc   *nats.Conn
	repl replicated // replica.go
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
	var waited time.Time
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
			if past || upTo == 0 || last >= upTo {
				return last, nil
			}
			// A follower may be behind the leader (replica.go).
			if done, err := r.caughtUp(ctx, upTo, &waited); done || err != nil {
				return last, err
			}
		}
	}
}

// directGet sends one batched direct get and hands each message's data
// to fn. more reports whether the server said further events match.
func (r *InboxReader) directGet(ctx context.Context, subj string, req []byte, fn func(seq uint64, data []byte) error) (got int, more bool, err error) {
	return r.directGetMsgs(ctx, subj, req, func(m *nats.Msg, seq uint64) error { return fn(seq, m.Data) })
}
