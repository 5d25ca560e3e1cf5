// Package client is a small Go client for natter's client contract
// (docs/protocol.md): the REST calls a person or a bot needs and the
// WebSocket event stream (Dial). The natter CLI is built on it.
//
// A Client holds one device's Session. Calls that need a token refresh it
// transparently when the server says it expired (401 token_expired),
// once, and report the rotated tokens through Options.OnRefresh so the
// caller can store them: the old refresh token stops working at once, and
// presenting a used one revokes the device, so refreshes are serialized.
//
// Errors the server answers with are *Error, carrying the contract's
// status and machine code; compare with errors.As or the Is* helpers.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Error is a refusal from the server: the contract's HTTP-like status
// and machine code (unauthorized, token_expired, not_found, ...).
type Error struct {
	Status  int
	Code    string
	Message string
	// RetryAfter is set for rate_limited.
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	return fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Message)
}

// Code returns the contract's machine code of err, or "" when err is not
// a refusal from the server.
func Code(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

// ErrNoSession is returned by calls that need a login when the Client has
// none.
var ErrNoSession = errors.New("not logged in")

// Session is one logged-in device: what a client keeps between runs.
type Session struct {
	UserID       string    `json:"user_id"`
	DeviceID     string    `json:"device_id"`
	AccessToken  string    `json:"access_token"`
	RefreshToken string    `json:"refresh_token"`
	ExpiresAt    time.Time `json:"expires_at"`
}

// Options configure a Client. The zero value works.
type Options struct {
	// HTTPClient makes the REST calls; nil means one with a 30 s timeout.
	HTTPClient *http.Client
	// Session is the device to act as; empty means none until Login.
	Session Session
	// OnRefresh is called, under the refresh lock, with the new session
	// after each refresh; an error is returned from the call that
	// refreshed (the new tokens are in use regardless).
	OnRefresh func(Session) error
	// Shared, if set, wraps each refresh of a session that other
	// processes use too (a CLI's stored credentials): it must hold a lock
	// across processes, call refresh with the session as stored now, and
	// store what refresh returns before it releases the lock. refresh
	// adopts a stored session another process has refreshed already, so
	// a refresh token is never presented twice.
	Shared func(ctx context.Context, refresh func(stored Session) (Session, error)) error
}

// Client calls one natter server as one device. Safe for concurrent use.
type Client struct {
	base      string
	http      *http.Client
	onRefresh func(Session) error
	shared    func(context.Context, func(Session) (Session, error)) error

	mu      sync.Mutex // guards sess; refreshMu is taken first when both are
	sess    Session
	refresh sync.Mutex // serializes refreshes
}

// New returns a client of the server at base (http://host:port).
func New(base string, opts Options) *Client {
	hc := opts.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	return &Client{base: strings.TrimRight(base, "/"), http: hc, sess: opts.Session, onRefresh: opts.OnRefresh, shared: opts.Shared}
}

// BaseURL is the server the client talks to.
func (c *Client) BaseURL() string { return c.base }

// Session returns the current session (after any refresh).
func (c *Client) Session() Session {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sess
}

func (c *Client) token() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sess.AccessToken
}

// do sends one request and decodes a 2xx answer into out (when not nil).
// token is sent as the bearer token when not empty.
func (c *Client) do(ctx context.Context, method, path, token string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("%s %s: encode: %w", method, path, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(res.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	if res.StatusCode >= 300 {
		return decodeError(res, raw)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
	}
	return nil
}

// decodeError reads the contract's error body, or makes one from the
// status when the body is not one (a proxy in between).
func decodeError(res *http.Response, raw []byte) *Error {
	var body struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	e := &Error{Status: res.StatusCode}
	if json.Unmarshal(raw, &body) == nil && body.Error.Code != "" {
		e.Code, e.Message = body.Error.Code, body.Error.Message
	} else {
		e.Code, e.Message = "http_"+strconv.Itoa(res.StatusCode), strings.TrimSpace(string(raw))
	}
	if s, err := strconv.Atoi(res.Header.Get("Retry-After")); err == nil {
		e.RetryAfter = time.Duration(s) * time.Second
	}
	return e
}

// authed makes a call as the session's device, refreshing the access
// token once if the server says it expired.
func (c *Client) authed(ctx context.Context, method, path string, body, out any) error {
	tok := c.token()
	if tok == "" {
		return ErrNoSession
	}
	err := c.do(ctx, method, path, tok, body, out)
	if Code(err) != "token_expired" {
		return err
	}
	if err := c.refreshFrom(ctx, tok); err != nil {
		return err
	}
	return c.do(ctx, method, path, c.token(), body, out)
}

// Refresh trades the refresh token for new tokens now.
func (c *Client) Refresh(ctx context.Context) error { return c.refreshFrom(ctx, c.token()) }

// refreshFrom refreshes unless another call already replaced the access
// token stale, so concurrent calls that all saw it expire use the
// refresh token once.
func (c *Client) refreshFrom(ctx context.Context, stale string) error {
	c.refresh.Lock()
	defer c.refresh.Unlock()
	if c.Session().AccessToken != stale {
		return nil
	}
	var next Session
	refresh := func(cur Session) (Session, error) {
		if cur.AccessToken != stale && cur.AccessToken != "" {
			next = cur // refreshed by another process meanwhile
			return cur, nil
		}
		if cur.RefreshToken == "" {
			return cur, ErrNoSession
		}
		var t tokens
		if err := c.do(ctx, http.MethodPost, "/v1/auth/refresh", "", map[string]string{"refresh_token": cur.RefreshToken}, &t); err != nil {
			return cur, fmt.Errorf("refresh the access token: %w", err)
		}
		next = t.session()
		if next.UserID == "" {
			next.UserID = cur.UserID
		}
		if next.DeviceID == "" {
			next.DeviceID = cur.DeviceID
		}
		return next, nil
	}
	var err error
	if c.shared != nil {
		err = c.shared(ctx, refresh)
	} else {
		_, err = refresh(c.Session())
	}
	if next.AccessToken != "" {
		c.mu.Lock()
		c.sess = next
		c.mu.Unlock()
	}
	if err != nil {
		return err
	}
	if c.onRefresh != nil {
		if err := c.onRefresh(next); err != nil {
			return fmt.Errorf("store the refreshed tokens: %w", err)
		}
	}
	return nil
}

type tokens struct {
	UserID       string `json:"user_id"`
	DeviceID     string `json:"device_id"`
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	ExpiresIn    int64  `json:"expires_in"`
}

func (t tokens) session() Session {
	return Session{UserID: t.UserID, DeviceID: t.DeviceID, AccessToken: t.AccessToken, RefreshToken: t.RefreshToken,
		ExpiresAt: time.Now().Add(time.Duration(t.ExpiresIn) * time.Second)}
}

// User is an account's public view.
type User struct {
	UserID   string `json:"user_id"`
	Username string `json:"username"`
}

// Me is the caller: user and device.
type Me struct {
	UserID   string `json:"user_id"`
	Username string `json:"username"`
	DeviceID string `json:"device_id"`
}

// Register creates an account; it does not log in.
func (c *Client) Register(ctx context.Context, username, password string) (User, error) {
	var u User
	err := c.do(ctx, http.MethodPost, "/v1/auth/register", "", map[string]string{"username": username, "password": password}, &u)
	return u, err
}

// Login logs in as a new device and makes it the client's session.
func (c *Client) Login(ctx context.Context, username, password, deviceName string) (Session, error) {
	body := map[string]string{"username": username, "password": password}
	if deviceName != "" {
		body["device_name"] = deviceName
	}
	var t tokens
	if err := c.do(ctx, http.MethodPost, "/v1/auth/login", "", body, &t); err != nil {
		return Session{}, err
	}
	s := t.session()
	c.mu.Lock()
	c.sess = s
	c.mu.Unlock()
	return s, nil
}

// Me says who the session is.
func (c *Client) Me(ctx context.Context) (Me, error) {
	var m Me
	err := c.authed(ctx, http.MethodGet, "/v1/me", nil, &m)
	return m, err
}

// RevokeDevice revokes one of the caller's devices (its tokens stop
// working at once); the session's own DeviceID logs out.
func (c *Client) RevokeDevice(ctx context.Context, deviceID string) error {
	return c.authed(ctx, http.MethodDelete, "/v1/me/devices/"+url.PathEscape(deviceID), nil, nil)
}

// User looks a user up by id.
func (c *Client) User(ctx context.Context, userID string) (User, error) {
	var u User
	err := c.authed(ctx, http.MethodGet, "/v1/users/"+url.PathEscape(userID), nil, &u)
	return u, err
}

// UserByName looks a user up by username.
func (c *Client) UserByName(ctx context.Context, username string) (User, error) {
	var u User
	err := c.authed(ctx, http.MethodGet, "/v1/users/by-username/"+url.PathEscape(username), nil, &u)
	return u, err
}
