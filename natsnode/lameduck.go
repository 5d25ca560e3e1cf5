package natsnode

import (
	"context"
)

// LameDuck shuts a clustered server down gracefully, within ctx: it stops
// taking clients, hands its Raft leaderships (streams, consumers, the
// meta group) to the other nodes so they serve on without waiting out an
// election, stops JetStream, and closes the clients left (told by
// nats-server's lame-duck notice to reconnect to another node). A server
// that is not clustered has nothing to hand over and simply shuts down.
// Either way the server is down when LameDuck returns; safe to call
// twice, and with Shutdown.
func (n *Node) LameDuck(ctx context.Context) {
	if n.srv.JetStreamIsClustered() {
		done := make(chan struct{})
		go func() { // returns once the server is down, which the Shutdown below forces
			defer close(done)
			n.srv.LameDuckShutdown()
		}()
		select {
		case <-done:
		case <-ctx.Done():
		}
	}
	n.Shutdown()
}
