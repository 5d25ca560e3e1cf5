// Package apns sends natter's iOS notifications to Apple's push service
// directly (HTTP/2 over TLS, token-based .p8 auth) with
// github.com/sideshow/apns2.
package apns

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/sideshow/apns2"
	"github.com/sideshow/apns2/payload"
	"github.com/sideshow/apns2/token"

	"github.com/natter-chat/natter/push"
)

// Config names the key and the app.
type Config struct {
	// KeyFile is the .p8 auth key; KeyID and TeamID identify it.
	KeyFile string
	KeyID   string
	TeamID  string
	// Topic is the app's bundle id.
	Topic string
	// Host defaults to Apple's production endpoint.
	Host string
	// Timeout bounds one push (default 10 s).
	Timeout time.Duration
	// RootCAs overrides the system's roots (tests).
	RootCAs *x509.CertPool
}

// Sender pushes through APNs. Safe for concurrent use.
type Sender struct {
	client *apns2.Client
	topic  string
}

// New loads the key and returns a sender; nothing connects until the
// first push.
func New(cfg Config) (*Sender, error) {
	key, err := token.AuthKeyFromFile(cfg.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("apns: key %s: %w", cfg.KeyFile, err)
	}
	if cfg.KeyID == "" || cfg.TeamID == "" || cfg.Topic == "" {
		return nil, fmt.Errorf("apns: key id, team id and topic are required")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	c := apns2.NewTokenClient(&token.Token{AuthKey: key, KeyID: cfg.KeyID, TeamID: cfg.TeamID}).Production()
	if cfg.Host != "" {
		c.Host = cfg.Host
	}
	// net/http's own HTTP/2 (APNs requires it), with the roots given.
	c.HTTPClient = &http.Client{Timeout: cfg.Timeout, Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: cfg.RootCAs, MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2: true,
		MaxConnsPerHost:   4,
	}}
	return &Sender{client: c, topic: cfg.Topic}, nil
}

// parallel bounds concurrent requests: HTTP/2 multiplexes them on one
// connection.
const parallel = 16

// Send pushes each notification; a token APNs calls gone (410,
// Unregistered, BadDeviceToken, DeviceTokenNotForTopic) is Dead.
func (s *Sender) Send(ctx context.Context, ns []push.Notification) []push.Result {
	out := make([]push.Result, len(ns))
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	for i := range ns {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			out[i] = s.send(ctx, ns[i])
		}()
	}
	wg.Wait()
	return out
}

func (s *Sender) send(ctx context.Context, n push.Notification) push.Result {
	p := payload.NewPayload().AlertTitle(n.Title).AlertBody(n.Body).Badge(n.Badge).Sound("default").ThreadID(n.ThreadID)
	for k, v := range n.Data {
		p.Custom(k, v)
	}
	prio := apns2.PriorityHigh
	if n.Priority == push.PriorityNormal {
		prio = apns2.PriorityLow
	}
	collapse := n.CollapseID
	if len(collapse) > 64 { // APNs' limit for apns-collapse-id
		collapse = collapse[:64]
	}
	resp, err := s.client.PushWithContext(ctx, &apns2.Notification{DeviceToken: n.Token, Topic: s.topic, Payload: p,
		CollapseID: collapse, Priority: prio, PushType: apns2.PushTypeAlert})
	if err != nil {
		return push.Result{Err: fmt.Errorf("apns: push %s: %w", n.ID, err)}
	}
	if resp.Sent() {
		return push.Result{}
	}
	switch {
	case resp.StatusCode == http.StatusGone, resp.Reason == apns2.ReasonUnregistered,
		resp.Reason == apns2.ReasonBadDeviceToken, resp.Reason == apns2.ReasonDeviceTokenNotForTopic:
		return push.Result{Err: fmt.Errorf("apns: %d %s: %w", resp.StatusCode, resp.Reason, push.ErrDeadToken), Dead: true}
	}
	return push.Result{Err: fmt.Errorf("apns: push %s: %d %s", n.ID, resp.StatusCode, resp.Reason)}
}
