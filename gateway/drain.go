package gateway

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/natter-chat/natter/chat"
	"github.com/natter-chat/natter/schema"
)

// A graceful drain (SIGTERM) has two steps. StartDrain turns the node
// away from new work: /readyz answers 503 "draining", long-polls answer
// what they have at once, and every session finishes the frame it is
// handling (a send that was published gets its ack), then gets 1001
// (reconnect, elsewhere). Cut, at the drain timeout, closes whatever is
// still open. Drain does both, waiting for the sessions in between.

// drainer holds the two steps' signals (each closes once) and the
// WebSocket and NATS sessions open when the drain began.
type drainer struct {
	startOnce, cutOnce sync.Once
	draining, cut      chan struct{}
	sessions           []*session // set once by StartDrain
}

func newDrainer() drainer {
	return drainer{draining: make(chan struct{}), cut: make(chan struct{})}
}

// errDraining answers a frame or a request that arrives during a drain:
// nothing was done, the client sends it again once reconnected.
var errDraining = chat.Unavailable(errors.New("draining"), time.Second,
	"the server is shutting down: reconnect, elsewhere if you can", chat.RetryRequest)

// Draining reports whether StartDrain was called.
func (g *Gateway) Draining() bool {
	select {
	case <-g.drain.draining:
		return true
	default:
		return false
	}
}

// StartDrain begins a graceful drain and returns at once: /readyz says
// "draining", new sessions are refused, waiting long-polls answer, and
// every open session is told to go away once its frame in hand is
// answered. Safe to call twice.
func (g *Gateway) StartDrain() {
	g.drain.startOnce.Do(func() {
		close(g.drain.draining)
		for _, s := range g.core.Sessions.Shutdown() {
			if ws, ok := s.(*session); ok { // long-poll sessions end at once
				g.drain.sessions = append(g.drain.sessions, ws)
			}
		}
	})
}

// Drain runs StartDrain and waits until every session has ended or ctx
// ends; then it cuts what is left (Cut) and waits for it. It reports how
// many sessions were still open at the cut.
func (g *Gateway) Drain(ctx context.Context) (cut int) {
	g.StartDrain()
	for _, s := range g.drain.sessions {
		select {
		case <-s.done:
		case <-ctx.Done():
			cut++
		}
	}
	g.Cut()
	return cut
}

// Cut closes every connection still open after StartDrain without waiting
// for its client, and waits for the sessions to end. Safe to call twice.
func (g *Gateway) Cut() {
	g.StartDrain()
	g.drain.cutOnce.Do(func() { close(g.drain.cut) })
	g.wg.Wait()
}

// frameGate counts the frames a session is handling and refuses new ones
// once closed, so a drain knows when the last answer is queued.
type frameGate struct {
	mu     sync.Mutex
	n      int
	closed bool
	idle   chan struct{} // made by close; closed when n reaches 0
}

// begin admits a frame; false once the gate is closed.
func (f *frameGate) begin() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return false
	}
	f.n++
	return true
}

// end marks an admitted frame handled (its answer queued).
func (f *frameGate) end() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n--; f.n == 0 && f.closed {
		close(f.idle)
	}
}

// close refuses new frames; the channel closes once none is in hand.
// Called once (session.goingAway).
func (f *frameGate) close() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	f.idle = make(chan struct{})
	if f.n == 0 {
		close(f.idle)
	}
	return f.idle
}

// shut says whether close was called: the session is being drained.
func (f *frameGate) shut() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.closed
}

// goingAway ends the session for a drain: the frame in hand is answered
// (with the session's context still live, so a send completes), frames
// after it are refused, then the writer sends what is queued and 1001.
func (s *session) goingAway() {
	s.awayOnce.Do(func() {
		idle := s.frames.close()
		go func() { // ends with the session at the latest (quit)
			select {
			case <-idle:
			case <-s.cfg.cut:
			case <-s.quit:
			}
			s.close(closeGoingAway, "server shutting down: reconnect")
		}()
	})
}

// refuse answers a frame that arrived during the drain.
func (s *session) refuse(raw []byte) {
	f, _ := schema.DecodeFrame(raw)
	s.enqueue(errorFrame(errDraining, f.Ref))
}

// awaitClientClose, after the writer sent its close frame, gives a
// WebSocket client time to answer with its own close (RFC 6455's closing
// handshake): a drain's 1001 until the drain's cut, any other close (a
// 1001 for a failed subscribe included) for closeHandshakeWait. Until
// then the reader reads on, so nothing the client still sends sits
// unread when the socket closes: that close would be a TCP reset, which
// loses the close frame and the last answers before the client reads
// them. A failed write or the client's own close has nothing to wait
// for, nor do NATS sessions (no handshake).
func (s *session) awaitClientClose() {
	if _, ok := s.conn.(*websocket.Conn); !ok || s.closeCode == closeTooSlow || s.closeCode == closeNormal {
		return
	}
	if s.closeCode == closeGoingAway && s.cfg.cut != nil && s.frames.shut() {
		select {
		case <-s.readDone:
		case <-s.cfg.cut:
		}
		return
	}
	t := time.NewTimer(closeHandshakeWait)
	defer t.Stop()
	select {
	case <-s.readDone:
	case <-t.C:
	}
}

// closeHandshakeWait bounds the wait for a client's close outside a drain
// (revoked, token expired, refused): long enough for a client busy
// reading what came before the close frame.
const closeHandshakeWait = 2 * time.Second
