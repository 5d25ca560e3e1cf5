package consumers

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// errTakeover ends a consume loop that must reset its consumer before it
// handles anything more.
var errTakeover = errors.New("took the pin over with earlier events in flight elsewhere")

// A pinned consumer's pin moves to another node when its holder dies or
// stalls for streams.PinnedTTL. What the old holder had delivered and not
// acked comes back only after the ack wait, while the new holder gets
// the events after it at once: a conversation's events would reach INBOX
// out of seq order. So the new holder, on its first batch, looks for
// unacked events below it and, when there are, resets the consumer to its
// ack floor: everything after the floor is delivered again, in stream
// order, to this runner (the pin stays), and handled idempotently.

// earlierInFlight reports whether events below first were delivered and
// not acked: the consumer's ack floor is below first's predecessor. A
// filtered consumer whose floor lags over events it never matched looks
// the same; the reset costs it a redelivery of what it had in hand.
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

// resetAfterTakeover resets the consumer to its ack floor. A reset that
// fails (no consumer leader for a moment) is logged and consuming goes
// on: the earlier events then come after the ack wait, out of order but
// neither lost nor doubled, as before this check.
func (r *runner) resetAfterTakeover(ctx context.Context) {
	if ctx.Err() != nil {
		return
	}
	stream := r.cons.CachedInfo().Stream
	if _, err := r.js.ResetConsumer(ctx, stream, r.name); err != nil {
		r.log.Warn("could not reset the consumer after a takeover; earlier events come after the ack wait",
			"err", fmt.Errorf("reset consumer %s to its ack floor: %w", r.name, err))
	}
}
