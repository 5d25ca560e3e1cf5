package testnode

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// Frame is one server frame. The common fields of every frame type are
// decoded; Raw holds the frame as received. Status is a number in error
// frames and a string in acks and receipts, so it stays raw: see
// ErrorStatus and StatusText.
type Frame struct {
	Type            string          `json:"type"`
	Ref             string          `json:"ref"`
	Cursor          string          `json:"cursor"`
	ClientMessageID string          `json:"client_message_id"`
	MessageID       string          `json:"message_id"`
	ConversationID  string          `json:"conversation_id"`
	Seq             int64           `json:"seq"`
	SenderID        string          `json:"sender_id"`
	RecipientID     string          `json:"recipient_id"`
	Content         string          `json:"content"`
	ServerTS        int64           `json:"server_ts"`
	Duplicate       bool            `json:"duplicate"`
	Code            string          `json:"code"`
	Message         string          `json:"message"`
	RetryAfterMS    int64           `json:"retry_after_ms"`
	UserID          string          `json:"user_id"`
	RawStatus       json.RawMessage `json:"status"`
	Raw             []byte          `json:"-"`
	// At is when the frame was read.
	At time.Time `json:"-"`
}

// ErrorStatus is the HTTP-like status of an error frame, 0 otherwise.
func (f Frame) ErrorStatus() int {
	n, _ := strconv.Atoi(string(f.RawStatus))
	return n
}

// StatusText is the status of an ack, receipt or presence frame.
func (f Frame) StatusText() string {
	var s string
	_ = json.Unmarshal(f.RawStatus, &s)
	return s
}

// Ack converts an ack frame.
func (f Frame) Ack() Ack {
	return Ack{ClientMessageID: f.ClientMessageID, MessageID: f.MessageID, ConversationID: f.ConversationID, Seq: f.Seq,
		ServerTS: f.ServerTS, Status: f.StatusText(), Duplicate: f.Duplicate}
}

// Durable reports whether the frame is a durable event (it has a cursor).
func (f Frame) Durable() bool { return f.Cursor != "" && f.Type != "synced" }

// Predicates for Wait.

// IsType matches frames of one type.
func IsType(typ string) func(Frame) bool { return func(f Frame) bool { return f.Type == typ } }

// Answers matches the ack or error frame carrying ref.
func Answers(ref string) func(Frame) bool {
	return func(f Frame) bool { return (f.Type == "ack" || f.Type == "error") && f.Ref == ref }
}

// ErrClosed is returned by waits on a connection that ended.
var ErrClosed = errors.New("websocket closed")

// DialOptions configure a WebSocket connection.
type DialOptions struct {
	// Cursor resumes after this event (the cursor query parameter).
	Cursor string
	// Header adds handshake headers (Origin, Authorization).
	Header http.Header
	// TokenInHeader sends the token as Authorization: Bearer instead of
	// the access_token query parameter.
	TokenInHeader bool
	// ReadBuffer fixes the socket's receive buffer (SO_RCVBUF) in bytes.
	// Linux otherwise grows the buffer of a client that does not read to
	// megabytes, which hides a slow reader from the server for that long.
	ReadBuffer int
	// NoRead starts no reader: the client reads nothing until
	// StartReading, like a stalled device.
	NoRead bool
	// SourceIP is the local address to connect from.
	SourceIP string
	// HandshakeTimeout bounds the upgrade; 30 s when zero.
	HandshakeTimeout time.Duration
}

// WS is one WebSocket connection. A reader goroutine appends every frame
// to a log; Wait and friends look through it without consuming, so
// several waits can match the same frames. Close stops the reader.
type WS struct {
	conn *websocket.Conn

	wmu sync.Mutex // serializes writes

	mu        sync.Mutex
	frames    []Frame
	changed   chan struct{} // closed and replaced on every new frame and at the end
	done      chan struct{} // closed when the reader has ended
	reading   bool
	closeCode int
	closeText string
	readErr   error
}

// Dial opens a WebSocket to the node as the holder of token.
func (n *Node) Dial(ctx context.Context, token string, opts DialOptions) (*WS, *http.Response, error) {
	return Dial(ctx, WSURL(n.Addr(), token, opts), token, opts)
}

// WSURL is the /v1/ws URL of the gateway at addr (host:port) with the
// token (unless it goes in a header) and cursor.
func WSURL(addr, token string, opts DialOptions) string {
	q := url.Values{}
	if token != "" && !opts.TokenInHeader {
		q.Set("access_token", token)
	}
	if opts.Cursor != "" {
		q.Set("cursor", opts.Cursor)
	}
	u := "ws://" + addr + "/v1/ws"
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	return u
}

// Dial opens a WebSocket at rawURL. token is used only with
// opts.TokenInHeader. On a refused upgrade it returns the handshake
// response with its body read into the error.
func Dial(ctx context.Context, rawURL, token string, opts DialOptions) (*WS, *http.Response, error) {
	if opts.HandshakeTimeout <= 0 {
		opts.HandshakeTimeout = 30 * time.Second
	}
	nd := &net.Dialer{Timeout: opts.HandshakeTimeout}
	if opts.SourceIP != "" {
		nd.LocalAddr = &net.TCPAddr{IP: net.ParseIP(opts.SourceIP)}
	}
	d := websocket.Dialer{
		HandshakeTimeout: opts.HandshakeTimeout,
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := nd.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			if opts.ReadBuffer > 0 {
				if err := c.(*net.TCPConn).SetReadBuffer(opts.ReadBuffer); err != nil {
					c.Close()
					return nil, err
				}
			}
			return c, nil
		},
	}
	h := http.Header{}
	for k, v := range opts.Header {
		h[k] = v
	}
	if opts.TokenInHeader && token != "" {
		h.Set("Authorization", "Bearer "+token)
	}
	conn, res, err := d.DialContext(ctx, rawURL, h)
	if err != nil {
		if res != nil {
			// Read the refusal into the error and give it back in
			// res.Body, so callers can check the contract's error body.
			body, _ := io.ReadAll(io.LimitReader(res.Body, 64<<10))
			res.Body.Close()
			res.Body = io.NopCloser(bytes.NewReader(body))
			err = fmt.Errorf("%w (HTTP %d: %s)", err, res.StatusCode, truncate(body, 512))
		}
		return nil, res, err
	}
	w := &WS{conn: conn, changed: make(chan struct{}), done: make(chan struct{})}
	if !opts.NoRead {
		w.StartReading()
	}
	return w, res, nil
}

// StartReading starts the reader of a connection dialed with NoRead; it
// does nothing if the reader runs already.
func (w *WS) StartReading() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.reading {
		return
	}
	w.reading = true
	go w.readLoop()
}

// Next reads one frame itself, within ctx, on a connection dialed with
// NoRead whose reader has not started (a stalled client reading its
// first frame); the frame is added to the log like the reader's.
func (w *WS) Next(ctx context.Context) (Frame, error) {
	w.mu.Lock()
	reading := w.reading
	w.mu.Unlock()
	if reading {
		return Frame{}, errors.New("next: the reader runs already")
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(30 * time.Second)
	}
	_ = w.conn.SetReadDeadline(deadline)
	defer w.conn.SetReadDeadline(time.Time{})
	_, raw, err := w.conn.ReadMessage()
	if err != nil {
		return Frame{}, fmt.Errorf("read a frame: %w", err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	f := w.record(raw)
	return f, nil
}

// record appends a received frame to the log and wakes the waits; w.mu
// must be held.
func (w *WS) record(raw []byte) Frame {
	f := Frame{Type: "<not json>"}
	_ = json.Unmarshal(raw, &f)
	f.Raw, f.At = raw, time.Now()
	w.frames = append(w.frames, f)
	close(w.changed)
	w.changed = make(chan struct{})
	return f
}

func (w *WS) readLoop() {
	defer close(w.done)
	for {
		_, raw, err := w.conn.ReadMessage()
		w.mu.Lock()
		if err != nil {
			w.readErr = err
			w.closeCode = websocket.CloseAbnormalClosure
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				w.closeCode, w.closeText = ce.Code, ce.Text
			}
			close(w.changed)
			w.changed = make(chan struct{})
		} else {
			w.record(raw)
		}
		w.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// Send writes v as a JSON text frame (or v itself when it is []byte),
// within ctx's deadline.
func (w *WS) Send(ctx context.Context, v any) error {
	b, ok := v.([]byte)
	if !ok {
		var err error
		if b, err = json.Marshal(v); err != nil {
			return err
		}
	}
	w.wmu.Lock()
	defer w.wmu.Unlock()
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(30 * time.Second)
	}
	_ = w.conn.SetWriteDeadline(deadline)
	return w.conn.WriteMessage(websocket.TextMessage, b)
}

// SendMessage writes a send frame; its ref is the client_message_id.
func (w *WS) SendMessage(ctx context.Context, req SendRequest) error {
	return w.Send(ctx, struct {
		Type string `json:"type"`
		SendRequest
	}{"send", req})
}

// Len is the number of frames received so far: Wait(ctx, w.Len(), ...)
// looks only at frames that arrive later.
func (w *WS) Len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.frames)
}

// Frames returns the frames received from index from on.
func (w *WS) Frames(from int) []Frame {
	w.mu.Lock()
	defer w.mu.Unlock()
	if from >= len(w.frames) {
		return nil
	}
	return append([]Frame(nil), w.frames[from:]...)
}

// Wait returns the first frame at or after index from that matches, and
// its index.
func (w *WS) Wait(ctx context.Context, from int, match func(Frame) bool) (Frame, int, error) {
	var (
		f   Frame
		idx int
	)
	err := w.waitLoop(ctx, func(frames []Frame) bool {
		for i := from; i < len(frames); i++ {
			if match(frames[i]) {
				f, idx = frames[i], i
				return true
			}
		}
		return false
	})
	return f, idx, err
}

// WaitN waits until n frames at or after from match and returns them.
func (w *WS) WaitN(ctx context.Context, from, n int, match func(Frame) bool) ([]Frame, error) {
	var got []Frame
	err := w.waitLoop(ctx, func(frames []Frame) bool {
		got = got[:0]
		for i := from; i < len(frames); i++ {
			if match(frames[i]) {
				got = append(got, frames[i])
			}
		}
		return len(got) >= n
	})
	return got, err
}

// WaitSynced waits for the synced frame of the connection.
func (w *WS) WaitSynced(ctx context.Context) (Frame, error) {
	f, _, err := w.Wait(ctx, 0, IsType("synced"))
	return f, err
}

// Request sends v (a frame carrying ref) and waits for the frame that
// answers it: an ack or error with that ref.
func (w *WS) Request(ctx context.Context, ref string, v any) (Frame, error) {
	from := w.Len()
	if err := w.Send(ctx, v); err != nil {
		return Frame{}, err
	}
	f, _, err := w.Wait(ctx, from, func(f Frame) bool { return f.Ref == ref })
	return f, err
}

// waitLoop calls done with the frames so far until it returns true, the
// connection ends (ErrClosed) or ctx ends.
func (w *WS) waitLoop(ctx context.Context, done func([]Frame) bool) error {
	for {
		w.mu.Lock()
		ok := done(w.frames)
		changed, ended := w.changed, w.readErr != nil
		code, text, n := w.closeCode, w.closeText, len(w.frames)
		w.mu.Unlock()
		if ok {
			return nil
		}
		if ended {
			return fmt.Errorf("%w (code %d %q) after %d frames", ErrClosed, code, text, n)
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("no such frame among %d: %w", n, ctx.Err())
		}
	}
}

// Done is closed when the reader has ended (the connection is over).
func (w *WS) Done() <-chan struct{} { return w.done }

// CloseCode is the close code received (1006 when the connection ended
// without a close frame) and its text; code is 0 while it is open.
func (w *WS) CloseCode() (int, string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.closeCode, w.closeText
}

// WaitClosed waits for the connection to end and returns its close code.
func (w *WS) WaitClosed(ctx context.Context) (int, error) {
	select {
	case <-w.done:
		code, _ := w.CloseCode()
		return code, nil
	case <-ctx.Done():
		return 0, fmt.Errorf("connection still open: %w", ctx.Err())
	}
}

// Close closes the connection at once (no close handshake) and waits for
// the reader to end. Safe to call twice.
func (w *WS) Close() error {
	err := w.conn.Close()
	w.mu.Lock()
	reading := w.reading
	w.mu.Unlock()
	if reading {
		<-w.done
	}
	return err
}

// CloseGracefully sends a close frame with code, then closes.
func (w *WS) CloseGracefully(code int) error {
	w.wmu.Lock()
	_ = w.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, ""), time.Now().Add(time.Second))
	w.wmu.Unlock()
	return w.Close()
}
