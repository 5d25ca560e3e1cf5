package gateway

import "sync/atomic"

// counters are the gateway's own figures, kept with atomics so the hot
// path pays one add; metrics reads them at scrape time.
type counters struct {
	websockets   atomic.Int64  // open WebSocket sessions
	longPolls    atomic.Int64  // long-polls waiting now
	natsSessions atomic.Int64  // open NATS-native sessions
	wsFrames     atomic.Uint64 // frames written to WebSockets (events and answers)
	polled       atomic.Uint64 // events answered to long-polls
}

// Stats is a snapshot of the gateway's counters.
type Stats struct {
	WebSockets, LongPolls, NATSSessions int64
	// WSFrames counts every frame written to a WebSocket (events,
	// acks, errors, pongs); PolledEvents the events long-polls answered.
	WSFrames, PolledEvents uint64
}

// Stats reads the counters.
func (g *Gateway) Stats() Stats {
	return Stats{WebSockets: g.counters.websockets.Load(), LongPolls: g.counters.longPolls.Load(), NATSSessions: g.counters.natsSessions.Load(),
		WSFrames: g.counters.wsFrames.Load(), PolledEvents: g.counters.polled.Load()}
}
