package gateway

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"sync"
)

// batchConn is the socket under a WebSocket. gorilla/websocket writes
// every frame with its own write syscall; between Hold and Flush,
// batchConn collects the frames instead and writes them at once, so a
// writer that finds several frames ready (an ack and the sender's own
// message event, or a burst of live events) pays one syscall for all of
// them. Frames stay whole WebSocket frames: the client sees exactly what
// it would see unbatched.
//
// Outside a batch every write goes straight to the socket (the upgrade
// answer, a pong from the reader goroutine), and an idle connection holds
// no buffer: buffers come from a pool and go back on Flush.
type batchConn struct {
	net.Conn

	mu      sync.Mutex
	holding bool
	buf     *[]byte // nil unless frames are waiting
}

// batchLimit is how much a batch collects before it is written anyway:
// a long replay becomes writes of about this size.
const batchLimit = 32 << 10

var batchBufs = sync.Pool{New: func() any { b := make([]byte, 0, batchLimit+4<<10); return &b }}

func (c *batchConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.holding {
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
		return c.Conn.Write(p)
	}
	if c.buf == nil {
		c.buf = batchBufs.Get().(*[]byte)
	}
	*c.buf = append(*c.buf, p...)
	if len(*c.buf) >= batchLimit {
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// Hold starts a batch: writes collect until Flush.
func (c *batchConn) Hold() {
	c.mu.Lock()
	c.holding = true
	c.mu.Unlock()
}

// Flush ends the batch and writes what it collected, under the write
// deadline last set on the connection (gorilla/websocket sets it before
// each frame).
func (c *batchConn) Flush() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.holding = false
	return c.flushLocked()
}

func (c *batchConn) flushLocked() error {
	if c.buf == nil {
		return nil
	}
	b := c.buf
	c.buf = nil
	_, err := c.Conn.Write(*b)
	if cap(*b) <= 2*batchLimit {
		*b = (*b)[:0]
		batchBufs.Put(b)
	}
	if err != nil {
		return fmt.Errorf("write batched frames: %w", err)
	}
	return nil
}

// batchingWriter hands gorilla/websocket's Upgrade a batchConn in place of
// the hijacked socket.
type batchingWriter struct {
	http.ResponseWriter
	conn *batchConn
}

func (w *batchingWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := w.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, fmt.Errorf("hijack: %T is not an http.Hijacker", w.ResponseWriter)
	}
	nc, brw, err := hj.Hijack()
	if err != nil {
		return nil, nil, err
	}
	w.conn = &batchConn{Conn: nc}
	return w.conn, brw, nil
}
