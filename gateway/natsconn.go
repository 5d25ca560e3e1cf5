package gateway

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nats-io/nats.go"
)

// natsConn is a session's connection over NATS: frames the client
// publishes to the session's frames subject are read, what the session
// writes is published to the client's inbox. It gives a NATS-native
// client the WebSocket session's behaviour exactly (replay, synced, live
// events with gap repair, answers by ref, heartbeats).
type natsConn struct {
	nc    *nats.Conn
	inbox string

	frames chan []byte
	closed chan struct{}
	once   sync.Once

	mu       sync.Mutex
	deadline time.Time
	wake     chan struct{} // a new deadline
}

// natsFrameQueue is how many client frames wait for the session's reader;
// past it frames are refused (the client is sending faster than natter
// answers it).
const natsFrameQueue = 64

func newNATSConn(nc *nats.Conn, inbox string) *natsConn {
	return &natsConn{nc: nc, inbox: inbox, frames: make(chan []byte, natsFrameQueue),
		closed: make(chan struct{}), wake: make(chan struct{}, 1)}
}

var errNATSSessionClosed = errors.New("nats session closed")

// deliver queues a frame from the client.
func (c *natsConn) deliver(data []byte) {
	select {
	case c.frames <- data:
	case <-c.closed:
	default:
		b, _ := json.Marshal(map[string]any{"type": "error", "status": 429, "code": "rate_limited",
			"message": "too many frames waiting: wait for the answers", "retry_after_ms": 100})
		_ = c.nc.Publish(c.inbox, b)
	}
}

func (c *natsConn) NextReader() (int, io.Reader, error) {
	for {
		c.mu.Lock()
		d := c.deadline
		c.mu.Unlock()
		var timeout <-chan time.Time
		var t *time.Timer
		if !d.IsZero() {
			t = time.NewTimer(time.Until(d))
			timeout = t.C
		}
		var f []byte
		var err error
		select {
		case f = <-c.frames:
		case <-c.closed:
			err = errNATSSessionClosed
		case <-timeout:
			// Silent past the heartbeat: the session ends as a WebSocket
			// whose client stopped answering pings does.
			err = errors.New("nats session: no frame within the heartbeat")
		case <-c.wake:
		}
		if t != nil {
			t.Stop()
		}
		switch {
		case err != nil:
			return 0, nil, err
		case f != nil:
			return websocket.TextMessage, bytes.NewReader(f), nil
		}
	}
}

func (c *natsConn) WriteMessage(_ int, data []byte) error {
	select {
	case <-c.closed:
		return errNATSSessionClosed
	default:
	}
	return c.nc.Publish(c.inbox, data)
}

// WriteControl: pings have no NATS form (the client pings with frames);
// a close is published as a "closed" frame with the WebSocket close code.
func (c *natsConn) WriteControl(messageType int, data []byte, _ time.Time) error {
	if messageType != websocket.CloseMessage {
		return nil
	}
	code, reason := 1000, ""
	if len(data) >= 2 {
		code, reason = int(binary.BigEndian.Uint16(data)), string(data[2:])
	}
	b, _ := json.Marshal(map[string]any{"type": "closed", "code": code, "reason": reason})
	return c.nc.Publish(c.inbox, b)
}

func (c *natsConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	c.deadline = t
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return nil
}

func (c *natsConn) SetWriteDeadline(time.Time) error { return nil }

// SetPongHandler: a NATS-native client's ping frames are frames, and
// every frame read moves the deadline.
func (c *natsConn) SetPongHandler(func(string) error) {}

// SetReadLimit: NATS bounds payloads itself (max_payload); the session
// refuses frames over its read limit with 413.
func (c *natsConn) SetReadLimit(int64) {}

func (c *natsConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return nil
}
