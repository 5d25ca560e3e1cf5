// Package gorush sends natter's notifications through a gorush server
// (github.com/appleboy/gorush, v1.22): POST /api/push with
// {"notifications": [...]}, one notification per device, in gorush's own
// field names. Build is exported so that compat/gorush can decode what it
// produces with gorush's own types and checks.
package gorush

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/natter-chat/natter/push"
	"github.com/natter-chat/natter/store"
)

// gorush's platform numbers (core.PlatFormIos, core.PlatFormAndroid).
const (
	PlatformIOS     = 1
	PlatformAndroid = 2
)

// MaxPerRequest is gorush's default core.max_notification: a request with
// more notifications is refused with 400.
const MaxPerRequest = 100

// Request is the body of POST /api/push.
type Request struct {
	Notifications []Notification `json:"notifications"`
}

// Notification is one element of Request, with gorush's field names.
type Notification struct {
	ID         string            `json:"notif_id,omitempty"`
	Tokens     []string          `json:"tokens"`
	Platform   int               `json:"platform"`
	Title      string            `json:"title,omitempty"`
	Message    string            `json:"message,omitempty"`
	Badge      *int              `json:"badge,omitempty"`
	ThreadID   string            `json:"thread-id,omitempty"`
	CollapseID string            `json:"collapse_id,omitempty"`
	Priority   string            `json:"priority,omitempty"`
	Sound      string            `json:"sound,omitempty"`
	Data       map[string]string `json:"data,omitempty"`
}

// Build renders ns as one gorush request, one notification per device.
// A notification of an unknown platform is an error.
func Build(ns []push.Notification) (Request, error) {
	req := Request{Notifications: make([]Notification, 0, len(ns))}
	for _, n := range ns {
		g := Notification{ID: n.ID, Tokens: []string{n.Token}, Title: n.Title, Message: n.Body,
			ThreadID: n.ThreadID, CollapseID: n.CollapseID, Priority: n.Priority, Data: n.Data}
		badge := n.Badge
		g.Badge = &badge
		switch n.Platform {
		case store.PlatformIOS:
			g.Platform = PlatformIOS
			g.Sound = "default"
		case store.PlatformAndroid:
			g.Platform = PlatformAndroid
		default:
			return Request{}, fmt.Errorf("gorush: notification %s: unknown platform %q", n.ID, n.Platform)
		}
		req.Notifications = append(req.Notifications, g)
	}
	return req, nil
}

// Response is gorush's answer to a push: {"success": "ok", "counts": N}.
type Response struct {
	Success string `json:"success"`
	Counts  int    `json:"counts"`
}

// Client posts to one gorush server.
type Client struct {
	endpoint string
	http     *http.Client
}

// New returns a client of the gorush server at base (http://host:port);
// each request gives up after timeout.
func New(base string, timeout time.Duration) (*Client, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("gorush url %q: want http(s)://host:port", base)
	}
	return &Client{endpoint: strings.TrimSuffix(u.String(), "/") + "/api/push", http: &http.Client{Timeout: timeout}}, nil
}

// Send posts ns in requests of at most MaxPerRequest. gorush accepts or
// refuses a request as a whole, so every notification of a request shares
// its result. A 200 means gorush took them (it queues them for APNs and
// FCM); anything else, or no answer in time, is retried by the caller.
func (c *Client) Send(ctx context.Context, ns []push.Notification) []push.Result {
	out := make([]push.Result, 0, len(ns))
	for len(ns) > 0 {
		n := min(len(ns), MaxPerRequest)
		err := c.post(ctx, ns[:n])
		out = append(out, push.Fail(n, err)...)
		ns = ns[n:]
	}
	return out
}

func (c *Client) post(ctx context.Context, ns []push.Notification) error {
	req, err := Build(ns)
	if err != nil {
		return err
	}
	body, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("gorush: encode: %w", err)
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, c.endpoint, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("gorush: %w", err)
	}
	hr.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(hr)
	if err != nil {
		return fmt.Errorf("gorush: post %d notifications: %w", len(ns), err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("gorush: post %d notifications: %s: %s", len(ns), resp.Status, bytes.TrimSpace(raw[:min(len(raw), 300)]))
	}
	var r Response
	if err := json.Unmarshal(raw, &r); err != nil || r.Success != "ok" {
		return errors.New("gorush: post: answer is not {\"success\": \"ok\"}: " + string(raw[:min(len(raw), 300)]))
	}
	return nil
}
