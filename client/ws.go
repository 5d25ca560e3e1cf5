package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// Event is one frame from the server, every event type in one struct:
// Type says which fields are set (docs/protocol.md, "Receiving"). Raw is
// the frame as received. Durable events carry Cursor; "synced" carries
// the cursor of the last replayed event.
type Event struct {
	Type   string `json:"type"`
	Cursor string `json:"cursor,omitempty"`

	// message, receipt, deleted
	MessageID       string `json:"message_id,omitempty"`
	ConversationID  string `json:"conversation_id,omitempty"`
	Seq             int64  `json:"seq,omitempty"`
	SenderID        string `json:"sender_id,omitempty"`
	RecipientID     string `json:"recipient_id,omitempty"`
	MessageType     string `json:"message_type,omitempty"`
	Content         string `json:"content,omitempty"`
	ClientMessageID string `json:"client_message_id,omitempty"`
	ServerTS        int64  `json:"server_ts,omitempty"`
	// Status is a receipt's or presence's status; an error frame's
	// numeric status is in ErrorStatus.
	Status      string `json:"-"`
	ErrorStatus int    `json:"-"`
	// receipt, presence; typing and deleted
	UserID string `json:"user_id,omitempty"`
	TS     int64  `json:"ts,omitempty"`
	For    string `json:"for,omitempty"`
	State  string `json:"state,omitempty"`
	// group
	GroupID string `json:"group_id,omitempty"`
	Change  string `json:"change,omitempty"`
	By      string `json:"by,omitempty"`
	// presence
	LastSeen int64 `json:"last_seen,omitempty"`
	// synced
	HeartbeatMS int64 `json:"heartbeat_ms,omitempty"`
	// ack, error, pong
	Ref          string `json:"ref,omitempty"`
	Code         string `json:"code,omitempty"`
	Message      string `json:"message,omitempty"`
	RetryAfterMS int64  `json:"retry_after_ms,omitempty"`
	Duplicate    bool   `json:"duplicate,omitempty"`

	Raw json.RawMessage `json:"-"`
}

// UnmarshalJSON decodes a frame; "status" is a string in receipts and
// presence, a number in error frames.
func (e *Event) UnmarshalJSON(b []byte) error {
	type plain Event
	var v struct {
		*plain
		Status json.RawMessage `json:"status"`
	}
	v.plain = (*plain)(e)
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	if len(v.Status) > 0 && v.Status[0] == '"' {
		return json.Unmarshal(v.Status, &e.Status)
	}
	if len(v.Status) > 0 && string(v.Status) != "null" {
		return json.Unmarshal(v.Status, &e.ErrorStatus)
	}
	return nil
}

// Durable says whether the event is stored and carries a cursor to keep.
func (e Event) Durable() bool { return e.Cursor != "" && e.Type != "synced" }

// WebSocket close codes of the contract.
const (
	CloseGoingAway      = 1001
	ClosePolicy         = 1008
	CloseUnauthorized   = 4001
	CloseTokenExpired   = 4002
	CloseCursorExpired  = 4010
	CloseTooSlowToRead  = 4029
	defaultReadDeadline = 60 * time.Second
)

// CloseCode is the WebSocket close code in err (0 when err is not a close).
func CloseCode(err error) int {
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		return ce.Code
	}
	return 0
}

// Conn is one WebSocket connection. Read from one goroutine; Send and
// Close from any.
type Conn struct {
	ws   *websocket.Conn
	wmu  sync.Mutex
	once sync.Once

	// silence is how long Read waits for anything (a frame or a server
	// ping) before it calls the connection dead: set from synced's
	// heartbeat_ms, read only by the reader and the ping handler it runs.
	silence time.Duration
}

// Dial opens the event stream, resuming after cursor ("" for none: the
// server then sends synced at once). An expired access token is
// refreshed once. A refusal at the upgrade is an *Error.
func (c *Client) Dial(ctx context.Context, cursor string) (*Conn, error) {
	tok := c.token()
	if tok == "" {
		return nil, ErrNoSession
	}
	conn, err := c.dial(ctx, cursor, tok)
	if Code(err) == "token_expired" {
		if err := c.refreshFrom(ctx, tok); err != nil {
			return nil, err
		}
		conn, err = c.dial(ctx, cursor, c.token())
	}
	return conn, err
}

func (c *Client) dial(ctx context.Context, cursor, token string) (*Conn, error) {
	u, err := url.Parse(c.base + "/v1/ws")
	if err != nil {
		return nil, fmt.Errorf("websocket URL: %w", err)
	}
	u.Scheme = strings.Replace(u.Scheme, "http", "ws", 1)
	if cursor != "" {
		u.RawQuery = url.Values{"cursor": {cursor}}.Encode()
	}
	d := websocket.Dialer{HandshakeTimeout: 20 * time.Second, Proxy: http.ProxyFromEnvironment}
	ws, res, err := d.DialContext(ctx, u.String(), http.Header{"Authorization": {"Bearer " + token}})
	if err != nil {
		if res != nil {
			raw, _ := io.ReadAll(io.LimitReader(res.Body, 64<<10))
			res.Body.Close()
			return nil, decodeError(res, raw)
		}
		return nil, fmt.Errorf("connect to %s: %w", u.Host, err)
	}
	conn := &Conn{ws: ws, silence: defaultReadDeadline}
	ws.SetPingHandler(func(data string) error {
		_ = ws.SetReadDeadline(time.Now().Add(conn.silence))
		err := ws.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(10*time.Second))
		if errors.Is(err, websocket.ErrCloseSent) {
			return nil
		}
		return err
	})
	return conn, nil
}

// Read returns the next frame. An error ends the connection: a close from
// the server (CloseCode tells which), silence longer than two heartbeats,
// or a network failure.
func (c *Conn) Read() (Event, error) {
	_ = c.ws.SetReadDeadline(time.Now().Add(c.silence))
	_, raw, err := c.ws.ReadMessage()
	if err != nil {
		return Event{}, err
	}
	var ev Event
	if err := json.Unmarshal(raw, &ev); err != nil {
		return Event{}, fmt.Errorf("decode frame %.100q: %w", raw, err)
	}
	ev.Raw = raw
	if ev.Type == "synced" && ev.HeartbeatMS > 0 {
		c.silence = 2*time.Duration(ev.HeartbeatMS)*time.Millisecond + 10*time.Second
	}
	return ev, nil
}

// Send writes one client frame (any JSON value).
func (c *Conn) Send(frame any) error {
	b, err := json.Marshal(frame)
	if err != nil {
		return fmt.Errorf("encode frame: %w", err)
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.ws.SetWriteDeadline(time.Now().Add(20 * time.Second))
	return c.ws.WriteMessage(websocket.TextMessage, b)
}

// SendMessage sends a message frame; its ack (or error) arrives on Read
// with Ref set to the client_message_id.
func (c *Conn) SendMessage(req SendRequest) error {
	if req.MessageType == "" {
		req.MessageType = TypeUser
	}
	if req.Timestamp == 0 {
		req.Timestamp = time.Now().UnixMilli()
	}
	return c.Send(struct {
		Type string `json:"type"`
		SendRequest
	}{"send", req})
}

// Receipt marks a message (and every earlier one) delivered or read.
func (c *Conn) Receipt(messageID, status string) error {
	return c.Send(map[string]string{"type": "receipt", "message_id": messageID, "status": status})
}

// Typing tells the conversation's other participants "composing" or
// "paused".
func (c *Conn) Typing(conversationID, state string) error {
	return c.Send(map[string]string{"type": "typing", "conversation_id": conversationID, "state": state})
}

// Close closes the connection with a normal close frame. Safe to call
// twice and concurrently with Read, which then returns an error.
func (c *Conn) Close() error {
	var err error
	c.once.Do(func() {
		_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
		err = c.ws.Close()
	})
	return err
}
