package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// inbound holds every field the bench reads from a server frame; which are
// set depends on Type. (An error frame's numeric "status" is not read: it
// would clash with the ack's string "status", and Code says it all.)
type inbound struct {
	Type            string `json:"type"`
	Ref             string `json:"ref"`
	Code            string `json:"code"`
	Message         string `json:"message"` // an error's text
	ClientMessageID string `json:"client_message_id"`
	ConversationID  string `json:"conversation_id"`
	Seq             int64  `json:"seq"`
	SenderID        string `json:"sender_id"`
	Cursor          string `json:"cursor"`
	HeartbeatMS     int64  `json:"heartbeat_ms"`
	// presence events: user_id and status (a string there, a number in
	// errors, so it stays raw)
	UserID string          `json:"user_id"`
	Status json.RawMessage `json:"status"`
}

// sendFrame is the WebSocket frame of a send: messageType is "user" or
// "group", timestamp the client time in Unix milliseconds.
func sendFrame(cmid, recipientID, messageType, content string, timestamp int64) []byte {
	b, _ := json.Marshal(struct { // strings and an int: cannot fail
		Type            string `json:"type"`
		ClientMessageID string `json:"client_message_id"`
		RecipientID     string `json:"recipient_id"`
		MessageType     string `json:"message_type"`
		Content         string `json:"content"`
		Timestamp       int64  `json:"timestamp"`
	}{"send", cmid, recipientID, messageType, content, timestamp})
	return b
}

var pingFrame = []byte(`{"type":"ping"}`)

const (
	// sendQueue bounds the frames queued per connection; Send blocks
	// beyond it, which is the back-pressure the open-loop scheduler turns
	// into latency. Small, as 50k idle connections each hold one.
	sendQueue = 64
	// readLimit is the largest frame read: twice the server's default.
	readLimit        = 2 << 20
	writeTimeout     = 10 * time.Second
	handshakeTimeout = 30 * time.Second
	// closeWait is how long Close waits for the server's close frame, so
	// that the server closes TCP first and keeps the TIME_WAIT: churn
	// would run out of client ports otherwise.
	closeWait = time.Second
)

var errConnClosed = errors.New("connection closed")

// dialer opens natter WebSockets, spreading them over source addresses.
type dialer struct {
	life context.Context // the connections end when it does
	// wsURLs are the nodes' WebSocket endpoints: one, or one per node of
	// a cluster (--nodes).
	wsURLs   []url.URL
	dialers  []*websocket.Dialer
	next     atomic.Uint64
	nextNode atomic.Uint64
	errs     *ErrorCounts
}

// newDialer dials the WebSocket endpoints of the natters at bases (one
// node, or each node of a cluster); the connections it opens end at the
// latest when life does. With sourceIPs > 1 connection k binds to
// 127.0.0.(1 + k mod sourceIPs): one source address has about 28k
// ephemeral ports towards one server port.
func newDialer(life context.Context, bases []*url.URL, sourceIPs int, errs *ErrorCounts) *dialer {
	d := &dialer{life: life, errs: errs}
	for _, base := range bases {
		u := *base.JoinPath("/v1/ws")
		u.Scheme = "ws"
		if base.Scheme == "https" {
			u.Scheme = "wss"
		}
		d.wsURLs = append(d.wsURLs, u)
	}
	pool := &sync.Pool{} // write buffers only while writing: idle connections hold none
	for k := range max(sourceIPs, 1) {
		nd := &net.Dialer{Timeout: handshakeTimeout}
		if sourceIPs > 1 {
			nd.LocalAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(1+k))}
		}
		d.dialers = append(d.dialers, &websocket.Dialer{
			NetDialContext:   nd.DialContext,
			HandshakeTimeout: handshakeTimeout,
			ReadBufferSize:   2048,
			WriteBufferSize:  2048,
			WriteBufferPool:  pool,
		})
	}
	return d
}

// nextDialer returns the dialer for the next connection, for callers that
// open plain WebSockets (raw-ws-echo).
func (d *dialer) nextDialer() *websocket.Dialer {
	return d.dialers[(d.next.Add(1)-1)%uint64(len(d.dialers))]
}

// Conn is one natter WebSocket. Its reader goroutine passes every frame to
// the handler; its writer goroutine writes what Send queues. Both stop when
// the connection ends: on Close, when its dialer's life ends, or when the
// server closes it (counted as an error "close_CODE" or "conn_lost").
type Conn struct {
	ws     *websocket.Conn
	handle func(f *inbound, at time.Time)
	errs   *ErrorCounts

	out     chan []byte
	synced  chan struct{} // closed once the synced frame was read
	sync    inbound       // the synced frame; set before synced is closed
	syncAt  time.Time
	done    chan struct{} // closed when the reader stopped
	readErr error         // why it stopped; set before done is closed

	closing   atomic.Bool // the bench ends it: a close is no error
	stopCtx   func() bool
	closeOnce sync.Once
	wg        sync.WaitGroup
}

// Dial opens a WebSocket with token, from cursor unless it is empty, and
// starts its goroutines; ctx bounds the opening only. handle runs on the
// reader goroutine with the time the frame was read; it must not keep f,
// block, or call Close. On a cluster the nodes take turns.
func (d *dialer) Dial(ctx context.Context, token, cursor string, handle func(f *inbound, at time.Time)) (*Conn, error) {
	return d.DialAt(ctx, int(d.nextNode.Add(1)-1), token, cursor, handle)
}

// DialAt is Dial to node i mod the number of nodes: account i of a
// scenario goes to node i mod N, so both ends of a pair (accounts 2k and
// 2k+1) are on different nodes of a cluster.
func (d *dialer) DialAt(ctx context.Context, i int, token, cursor string, handle func(f *inbound, at time.Time)) (*Conn, error) {
	u := d.wsURLs[i%len(d.wsURLs)]
	q := url.Values{"access_token": {token}}
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	u.RawQuery = q.Encode()
	ws, resp, err := d.nextDialer().DialContext(ctx, u.String(), nil)
	if err != nil {
		code := "dial"
		if resp != nil {
			code = responseCode(resp.StatusCode, resp.Body)
			resp.Body.Close()
		}
		d.errs.Note(code, err.Error())
		return nil, fmt.Errorf("open websocket: %s: %w", code, err)
	}
	ws.SetReadLimit(readLimit)
	c := &Conn{
		ws:     ws,
		handle: handle,
		errs:   d.errs,
		out:    make(chan []byte, sendQueue),
		synced: make(chan struct{}),
		done:   make(chan struct{}),
	}
	c.stopCtx = context.AfterFunc(d.life, func() {
		c.closing.Store(true)
		ws.NetConn().Close()
	})
	c.wg.Add(2)
	go c.read()
	go c.write()
	return c, nil
}

func (c *Conn) read() {
	defer c.wg.Done()
	defer close(c.done)
	var f inbound
	for {
		_, data, err := c.ws.ReadMessage()
		at := time.Now()
		if err != nil {
			c.readErr = err
			if !c.closing.Load() {
				c.errs.Note(closeCode(err), err.Error())
			}
			return
		}
		f = inbound{}
		if err := json.Unmarshal(data, &f); err != nil {
			c.errs.Note("bad_frame", err.Error())
			continue
		}
		if f.Type == "synced" && c.syncAt.IsZero() {
			c.sync, c.syncAt = f, at
			close(c.synced)
		}
		if c.handle != nil {
			c.handle(&f, at)
		}
	}
}

func (c *Conn) write() {
	defer c.wg.Done()
	for {
		select {
		case b := <-c.out:
			_ = c.ws.SetWriteDeadline(time.Now().Add(writeTimeout))
			if err := c.ws.WriteMessage(websocket.TextMessage, b); err != nil {
				if !c.closing.Load() {
					c.errs.Note("write", err.Error())
				}
				c.ws.NetConn().Close() // and the reader stops
				return
			}
		case <-c.done:
			return
		}
	}
}

// Send queues frame b, waiting while the queue is full.
func (c *Conn) Send(ctx context.Context, b []byte) error {
	select {
	case c.out <- b:
		return nil
	case <-c.done:
		return errConnClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}

// TrySend queues frame b unless the queue is full or the connection ended.
func (c *Conn) TrySend(b []byte) bool {
	select {
	case <-c.done:
		return false
	default:
	}
	select {
	case c.out <- b:
		return true
	default:
		return false
	}
}

// WaitSynced waits for the synced frame and returns it with the time it
// was read.
func (c *Conn) WaitSynced(ctx context.Context) (inbound, time.Time, error) {
	select {
	case <-c.synced:
		return c.sync, c.syncAt, nil
	case <-c.done:
		return inbound{}, time.Time{}, fmt.Errorf("connection ended before synced: %w", c.readErr)
	case <-ctx.Done():
		return inbound{}, time.Time{}, ctx.Err()
	}
}

// Done is closed when the connection has ended.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Close ends the connection with a close handshake and waits for its
// goroutines. Safe to call more than once and concurrently.
func (c *Conn) Close() {
	c.closeOnce.Do(func() {
		c.closing.Store(true)
		c.stopCtx()
		msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")
		if c.ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(closeWait)) == nil {
			t := time.NewTimer(closeWait)
			select {
			case <-c.done:
			case <-t.C:
			}
			t.Stop()
		}
		c.ws.Close()
	})
	c.wg.Wait()
}

// closeCode names why a connection the bench did not end has ended.
func closeCode(err error) string {
	if ce, ok := errors.AsType[*websocket.CloseError](err); ok {
		return "close_" + strconv.Itoa(ce.Code)
	}
	return "conn_lost"
}

// responseCode names a refused HTTP request: the error code of natter's
// error body when there is one, else http_STATUS.
func responseCode(status int, body io.Reader) string {
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	if body != nil && json.NewDecoder(io.LimitReader(body, 4096)).Decode(&e) == nil && e.Error.Code != "" {
		return e.Error.Code
	}
	return "http_" + strconv.Itoa(status)
}
