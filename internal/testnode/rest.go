package testnode

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// The client's view of the contract (shared/protocol.md), written here
// rather than imported from the server so a change of the server's wire
// types that breaks clients breaks these tests too.

// User is a registered account.
type User struct {
	ID, Name, Password string
}

// Device is one login of a user.
type Device struct {
	User
	DeviceID, Access, Refresh string
}

// SendRequest is the body of POST /v1/messages and the fields of a send
// frame.
type SendRequest struct {
	ClientMessageID string `json:"client_message_id"`
	RecipientID     string `json:"recipient_id"`
	MessageType     string `json:"message_type"`
	Content         string `json:"content"`
	Timestamp       int64  `json:"timestamp"`
	SenderID        string `json:"sender_id,omitempty"`
}

// NewSend is a 1:1 send request stamped now.
func NewSend(cmid, recipientID, content string) SendRequest {
	return SendRequest{ClientMessageID: cmid, RecipientID: recipientID, MessageType: "user", Content: content,
		Timestamp: time.Now().UnixMilli()}
}

// Ack answers a send.
type Ack struct {
	ClientMessageID string `json:"client_message_id"`
	MessageID       string `json:"message_id"`
	ConversationID  string `json:"conversation_id"`
	Seq             int64  `json:"seq"`
	ServerTS        int64  `json:"server_ts"`
	Status          string `json:"status"`
	Duplicate       bool   `json:"duplicate"`
}

// Message is a history entry.
type Message struct {
	MessageID       string `json:"message_id"`
	ConversationID  string `json:"conversation_id"`
	Seq             int64  `json:"seq"`
	SenderID        string `json:"sender_id"`
	RecipientID     string `json:"recipient_id"`
	MessageType     string `json:"message_type"`
	Content         string `json:"content"`
	ClientMessageID string `json:"client_message_id"`
	ServerTS        int64  `json:"server_ts"`
	Status          string `json:"status"`
	Deleted         bool   `json:"deleted"`
}

// ClientOptions configure a REST client.
type ClientOptions struct {
	// SourceIP is the local address to connect from (any 127.x.y.z works
	// on Linux loopback), so tests can act as several client addresses.
	SourceIP string
	// Timeout bounds each request when its ctx has no earlier deadline;
	// 90 s when zero (a long-poll waits up to 60 s).
	Timeout time.Duration
}

// Client calls a node's REST API.
type Client struct {
	base string
	http *http.Client
}

// NewClient returns a client of the gateway at base (http://host:port).
func NewClient(base string, opts ClientOptions) *Client {
	if opts.Timeout <= 0 {
		opts.Timeout = 90 * time.Second
	}
	dialer := &net.Dialer{Timeout: 10 * time.Second}
	if opts.SourceIP != "" {
		dialer.LocalAddr = &net.TCPAddr{IP: net.ParseIP(opts.SourceIP)}
	}
	tr := &http.Transport{DialContext: dialer.DialContext, MaxIdleConnsPerHost: 64, IdleConnTimeout: 30 * time.Second}
	return &Client{base: strings.TrimSuffix(base, "/"), http: &http.Client{Timeout: opts.Timeout, Transport: tr}}
}

// Close releases the client's idle connections.
func (c *Client) Close() { c.http.CloseIdleConnections() }

// Response is one HTTP answer.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// Decode unmarshals the body into v.
func (r *Response) Decode(v any) error {
	if err := json.Unmarshal(r.Body, v); err != nil {
		return fmt.Errorf("decode %d answer %q: %w", r.Status, truncate(r.Body, 200), err)
	}
	return nil
}

// Error is the contract's error body, zero when there is none.
func (r *Response) Error() (code, message string) {
	var b struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	_ = json.Unmarshal(r.Body, &b)
	return b.Error.Code, b.Error.Message
}

// ErrorCode is the code of the error body.
func (r *Response) ErrorCode() string {
	code, _ := r.Error()
	return code
}

func (r *Response) String() string { return fmt.Sprintf("%d %s", r.Status, truncate(r.Body, 300)) }

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}

// StatusError is an answer other than the one wanted.
type StatusError struct {
	Method, Path string
	Want         int
	Got          *Response
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("%s %s: got %s, want %d", e.Method, e.Path, e.Got, e.Want)
}

// Do sends a request with an optional bearer token. body may be nil,
// []byte or string (sent as is), or anything else (sent as JSON).
func (c *Client) Do(ctx context.Context, method, path, token string, body any) (*Response, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	case string:
		rd = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, err
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	return &Response{Status: res.StatusCode, Header: res.Header, Body: raw}, nil
}

// Call sends a request that must answer want and decodes the answer into
// out (when not nil). Another status is a *StatusError.
func (c *Client) Call(ctx context.Context, want int, method, path, token string, body, out any) error {
	r, err := c.Do(ctx, method, path, token, body)
	if err != nil {
		return err
	}
	if r.Status != want {
		return &StatusError{Method: method, Path: path, Want: want, Got: r}
	}
	if out != nil {
		return r.Decode(out)
	}
	return nil
}

// Register creates an account.
func (c *Client) Register(ctx context.Context, username, password string) (User, error) {
	var b struct {
		UserID   string `json:"user_id"`
		Username string `json:"username"`
	}
	if err := c.Call(ctx, http.StatusCreated, "POST", "/v1/auth/register", "",
		map[string]string{"username": username, "password": password}, &b); err != nil {
		return User{}, err
	}
	if b.UserID == "" || b.Username != username {
		return User{}, fmt.Errorf("register %s: answer %+v", username, b)
	}
	return User{ID: b.UserID, Name: username, Password: password}, nil
}

// Login adds a device to u.
func (c *Client) Login(ctx context.Context, u User, deviceName string) (Device, error) {
	var b struct {
		UserID       string `json:"user_id"`
		DeviceID     string `json:"device_id"`
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
	}
	if err := c.Call(ctx, http.StatusOK, "POST", "/v1/auth/login", "",
		map[string]string{"username": u.Name, "password": u.Password, "device_name": deviceName}, &b); err != nil {
		return Device{}, err
	}
	if b.UserID != u.ID || b.DeviceID == "" || b.AccessToken == "" || b.RefreshToken == "" {
		return Device{}, fmt.Errorf("login %s: answer %+v", u.Name, b)
	}
	return Device{User: u, DeviceID: b.DeviceID, Access: b.AccessToken, Refresh: b.RefreshToken}, nil
}

// NewUser registers username and logs in devices devices.
func (c *Client) NewUser(ctx context.Context, username, password string, devices int) (User, []Device, error) {
	u, err := c.Register(ctx, username, password)
	if err != nil {
		return User{}, nil, err
	}
	ds := make([]Device, devices)
	for i := range ds {
		if ds[i], err = c.Login(ctx, u, fmt.Sprintf("%s-%d", username, i)); err != nil {
			return User{}, nil, err
		}
	}
	return u, ds, nil
}

// Send posts a message; the answer is 201 with the ack.
func (c *Client) Send(ctx context.Context, token string, req SendRequest) (Ack, error) {
	var a Ack
	err := c.Call(ctx, http.StatusCreated, "POST", "/v1/messages", token, req, &a)
	return a, err
}

// Conversation returns the 1:1 conversation id of the token's user and
// peerID.
func (c *Client) Conversation(ctx context.Context, token, peerID string) (string, error) {
	var b struct {
		ConversationID string `json:"conversation_id"`
	}
	if err := c.Call(ctx, http.StatusOK, "POST", "/v1/conversations", token, map[string]string{"peer_id": peerID}, &b); err != nil {
		return "", err
	}
	return b.ConversationID, nil
}

// History returns every message of a conversation, newest first,
// following next_cursor to the oldest.
func (c *Client) History(ctx context.Context, token, conversationID string) ([]Message, error) {
	var all []Message
	cursor := ""
	for {
		q := "?limit=100"
		if cursor != "" {
			q += "&cursor=" + url.QueryEscape(cursor)
		}
		var page struct {
			Messages   []Message `json:"messages"`
			NextCursor *string   `json:"next_cursor"`
		}
		if err := c.Call(ctx, http.StatusOK, "GET", "/v1/conversations/"+url.PathEscape(conversationID)+"/messages"+q, token, nil, &page); err != nil {
			return all, err
		}
		all = append(all, page.Messages...)
		if page.NextCursor == nil {
			return all, nil
		}
		if *page.NextCursor == "" || *page.NextCursor == cursor {
			return all, fmt.Errorf("history of %s: bad next_cursor %q", conversationID, *page.NextCursor)
		}
		cursor = *page.NextCursor
	}
}
