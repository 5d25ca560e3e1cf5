// Package fcm sends natter's Android notifications to Firebase Cloud
// Messaging directly (HTTP v1, OAuth with a service account) with the
// Firebase Admin SDK's messaging client.
package fcm

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"time"

	firebase "firebase.google.com/go/v4"
	"firebase.google.com/go/v4/messaging"
	"google.golang.org/api/option"

	"github.com/natter-chat/natter/push"
)

// Config names the service account and, for tests, the endpoint.
type Config struct {
	// CredentialsFile is a Google service account JSON key; its
	// project_id is the Firebase project.
	CredentialsFile string
	// Endpoint overrides FCM's (https://fcm.googleapis.com/v1).
	Endpoint string
	// Timeout bounds one push (default 10 s).
	Timeout time.Duration
}

// Sender pushes through FCM. Safe for concurrent use.
type Sender struct {
	client  *messaging.Client
	timeout time.Duration
}

// New reads the credentials and returns a sender; tokens are fetched on
// the first push.
func New(ctx context.Context, cfg Config) (*Sender, error) {
	raw, err := os.ReadFile(cfg.CredentialsFile)
	if err != nil {
		return nil, fmt.Errorf("fcm: credentials: %w", err)
	}
	var sa struct {
		ProjectID string `json:"project_id"`
	}
	if err := json.Unmarshal(raw, &sa); err != nil || sa.ProjectID == "" {
		return nil, fmt.Errorf("fcm: credentials %s: not a service account key with a project_id", cfg.CredentialsFile)
	}
	opts := []option.ClientOption{option.WithCredentialsJSON(raw)}
	if cfg.Endpoint != "" {
		opts = append(opts, option.WithEndpoint(cfg.Endpoint))
	}
	app, err := firebase.NewApp(ctx, &firebase.Config{ProjectID: sa.ProjectID}, opts...)
	if err != nil {
		return nil, fmt.Errorf("fcm: %w", err)
	}
	c, err := app.Messaging(ctx)
	if err != nil {
		return nil, fmt.Errorf("fcm: %w", err)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	return &Sender{client: c, timeout: cfg.Timeout}, nil
}

const parallel = 16

// Send pushes each notification; a token FCM calls UNREGISTERED is Dead.
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
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	prio := "high"
	if n.Priority == push.PriorityNormal {
		prio = "normal"
	}
	badge := n.Badge
	_, err := s.client.Send(ctx, &messaging.Message{
		Token:        n.Token,
		Notification: &messaging.Notification{Title: n.Title, Body: n.Body},
		Data:         n.Data,
		Android: &messaging.AndroidConfig{CollapseKey: n.CollapseID, Priority: prio,
			Notification: &messaging.AndroidNotification{Tag: n.ThreadID, NotificationCount: &badge}},
	})
	switch {
	case err == nil:
		return push.Result{}
	case messaging.IsUnregistered(err):
		return push.Result{Err: fmt.Errorf("fcm: %v: %w", err, push.ErrDeadToken), Dead: true}
	}
	return push.Result{Err: fmt.Errorf("fcm: push %s: %w", n.ID, err)}
}
