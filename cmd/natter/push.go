package main

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/natter-chat/natter/config"
	"github.com/natter-chat/natter/consumers"
	"github.com/natter-chat/natter/metrics"
	"github.com/natter-chat/natter/push"
	"github.com/natter-chat/natter/push/gorush"
	"github.com/natter-chat/natter/store"
	"github.com/natter-chat/natter/streams"
)

// pushSender builds the sender the push flags name: gorush for both
// platforms, or APNs and FCM directly.
func pushSender(ctx context.Context, cfg config.Push) (push.Sender, error) {
	if cfg.GorushURL != "" {
		c, err := gorush.New(cfg.GorushURL, cfg.Timeout)
		if err != nil {
			return nil, err
		}
		return push.ByPlatform{IOS: c, Android: c}, nil
	}
	var by push.ByPlatform
	if cfg.APNsKey != "" {
		s, err := apnsSender(cfg)
		if err != nil {
			return nil, err
		}
		by.IOS = s
	}
	if cfg.FCMCredentials != "" {
		s, err := fcmSender(ctx, cfg)
		if err != nil {
			return nil, err
		}
		by.Android = s
	}
	return by, nil
}

// newPushWorker declares the push worker's consumer and bucket and
// returns it, or nil when no provider is configured.
func newPushWorker(ctx context.Context, cfg config.Server, js jetstream.JetStream, setup streams.Setup, st consumers.PushStore,
	presence consumers.Presence, cursor func(user string, seq uint64) string, m *metrics.Metrics, opts consumers.Options) (*consumers.Push, error) {
	if !cfg.Push.Enabled() {
		return nil, nil
	}
	sender, err := pushSender(ctx, cfg.Push)
	if err != nil {
		return nil, fmt.Errorf("push: %w", err)
	}
	if err := streams.EnsurePush(ctx, js, setup); err != nil {
		return nil, err
	}
	if m != nil {
		sender = countedSender{s: sender, m: m, gorush: cfg.Push.GorushURL != ""}
	}
	return consumers.NewPush(js, st, presence, sender, consumers.PushOptions{Options: opts,
		Collapse: cfg.Push.Collapse, HideContent: cfg.Push.Content == config.PushContentHidden, Cursor: cursor}), nil
}

// countedSender counts every notification's result in natter_push_total,
// by provider: gorush, or apns and fcm when natter talks to them itself.
type countedSender struct {
	s      push.Sender
	m      *metrics.Metrics
	gorush bool
}

func (c countedSender) Send(ctx context.Context, ns []push.Notification) []push.Result {
	res := c.s.Send(ctx, ns)
	for i, r := range res {
		provider := "gorush"
		if !c.gorush {
			provider = "fcm"
			if i < len(ns) && ns[i].Platform == store.PlatformIOS {
				provider = "apns"
			}
		}
		result := "ok"
		switch {
		case r.Dead:
			result = "dead_token"
		case r.Err != nil:
			result = "failed"
		}
		c.m.Pushed(provider, result)
	}
	return res
}
