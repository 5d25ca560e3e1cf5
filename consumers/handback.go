package consumers

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// pinHeader carries, on each message of a pinned consumer (cluster mode),
// the id JetStream gave the pinned puller.
const pinHeader = "Nats-Pin-Id"

// notePin remembers the pin id a message came with.
func (r *runner) notePin(m jetstream.Msg) {
	if h := m.Headers(); h != nil {
		if id := h.Get(pinHeader); id != "" && id != r.pinID.Load() {
			r.pinID.Store(id)
			r.pinMoved.Store(true)
		}
	}
}

// handBackPin, when this runner stops while it holds its consumer's pin
// (a drained node on a cluster), unpins it so another node's runner
// takes over at once instead of after streams.PinnedTTL, with what this
// one nak'd first in line. A pin held by another node is left alone:
// moving it would let a third node overtake that one's events in hand.
func (r *runner) handBackPin() {
	id, _ := r.pinID.Load().(string)
	if id == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	info, err := r.cons.Info(ctx)
	if err != nil {
		return
	}
	for _, g := range info.PriorityGroups {
		if g.PinnedClientID != id {
			continue
		}
		s, err := r.js.Stream(ctx, info.Stream)
		if err == nil {
			err = s.UnpinConsumer(ctx, r.name, g.Group)
		}
		if err != nil {
			r.log.Debug("hand back pin", "err", err)
		} else {
			r.log.Info("handed the consumer's pin to the other nodes")
		}
	}
}
