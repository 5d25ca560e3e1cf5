package consumers

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// A pinned consumer's pin moves to another node when its holder dies,
// stalls for streams.PinnedTTL or drains. What the old holder had
// delivered and not acked comes back only after the ack wait, while the
// new holder gets the events after it at once: a conversation's events
// would reach INBOX out of seq order. So the new holder, on its first
// batch, looks for unacked events below it and, when there are, resets
// the consumer to its ack floor in place: the pull requests stay, the pin
// stays, and everything after the floor is delivered again, to this
// runner, in stream order. A reset restarts the consumer's delivery
// sequence at 1, so what arrives with a delivery sequence above 1 before
// the first redelivery was sent before the reset and is dropped: the
// reset took it out of the pending set, and it comes again.
//
// The first redelivery may never reach this runner: the pin can move to
// another node before it is sent, and that node gets it. Dropping then
// lasts only until a message comes under another pin than the reset's
// (it was sent after the reset, and the takeover check runs again), and
// at most for what can have been in flight at the reset. Without those
// bounds a runner given the pin back dropped everything, unacked, until
// MaxDeliver ended it: persist stalled in CI's rolling restart.

// earlierInFlight reports whether events below first were delivered and
// not acked: the consumer's ack floor is below first's predecessor. A
// filtered consumer whose floor lags over events it never matched (a
// fanout queue partition) looks the same; the reset then costs it a
// redelivery of what it had in hand.
func (r *runner) earlierInFlight(ctx context.Context, first jetstream.Msg) bool {
	md, err := first.Metadata()
	if err != nil {
		return false
	}
	info, err := r.cons.Info(ctx)
	if err != nil {
		r.log.Warn("took the pin over; cannot tell what is in flight elsewhere", "err", err)
		return false
	}
	if info.AckFloor.Stream+1 >= md.Sequence.Stream {
		return false
	}
	// Up to what was delivered, effects may have happened already: the
	// reset's redeliveries count as first deliveries.
	r.deliveredBefore = max(r.deliveredBefore, info.Delivered.Stream)
	r.log.Info("took the pin over with earlier events in flight elsewhere: redelivering from the ack floor",
		"ack_floor", info.AckFloor.Stream, "first_here", md.Sequence.Stream, "pending", info.NumAckPending)
	return true
}

// resetToAckFloor resets the consumer and reports whether it did. One
// that fails (no consumer leader for a moment) is logged and the batch
// is handled as it is: the earlier events then come after the ack wait,
// out of order but neither lost nor doubled.
func (r *runner) resetToAckFloor(ctx context.Context) bool {
	stream := r.cons.CachedInfo().Stream
	if _, err := r.js.ResetConsumer(ctx, stream, r.name); err != nil {
		r.log.Warn("could not reset the consumer after a takeover; earlier events come after the ack wait",
			"err", fmt.Errorf("reset consumer %s to its ack floor: %w", r.name, err))
		return false
	}
	r.afterReset, r.droppedAfterReset = true, 0
	r.resetPin, _ = r.pinID.Load().(string)
	return true
}

// dropBeforeReset removes, after a reset, the events delivered before it,
// up to the first one delivered after it: the first redelivery (delivery
// sequence 1), one under another pin, or one past what can have been in
// flight at the reset.
func (r *runner) dropBeforeReset(batch []jetstream.Msg) []jetstream.Msg {
	if !r.afterReset {
		return batch
	}
	for i, m := range batch {
		if r.sentAfterReset(m) {
			r.afterReset = false
			if r.droppedAfterReset > 0 {
				r.log.Info("dropped what was delivered before the reset", "events", r.droppedAfterReset)
			}
			return batch[:copy(batch, batch[i:])]
		}
		r.droppedAfterReset++
	}
	return batch[:0]
}

// sentAfterReset reports whether m was delivered after the reset, or
// must be taken as such: at most the runner's channel (a batch) and its
// outstanding pulls (two batches each) were on their way when it was made.
func (r *runner) sentAfterReset(m jetstream.Msg) bool {
	if md, err := m.Metadata(); err == nil && md.Sequence.Consumer == 1 {
		return true
	}
	if h := m.Headers(); h != nil && h.Get(pinHeader) != r.resetPin {
		return true
	}
	if r.droppedAfterReset >= 5*r.opts.BatchSize {
		r.log.Warn("no redelivery after the reset among what was in flight; handling from here", "dropped", r.droppedAfterReset)
		return true
	}
	return false
}
