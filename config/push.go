package config

import (
	"errors"
	"flag"
	"fmt"
	"net/url"
	"time"
)

// Push content modes.
const (
	PushContentPreview = "preview"
	PushContentHidden  = "hidden"
)

// Push configures notifications to offline phones. With no provider set
// (the default) natter sends none and runs no push worker.
type Push struct {
	// GorushURL is a gorush server (http://host:port) that natter posts
	// every notification to.
	GorushURL string
	// APNs direct, token-based (.p8) auth: the key file, its key id, the
	// team id and the app's bundle id (the topic). APNsURL overrides
	// Apple's production endpoint (tests, or the sandbox).
	APNsKey    string
	APNsKeyID  string
	APNsTeamID string
	APNsTopic  string
	APNsURL    string
	// FCMCredentials is a Google service account JSON file for FCM HTTP
	// v1. FCMURL overrides the FCM endpoint (tests).
	FCMCredentials string
	FCMURL         string
	// Collapse: at most one push per user and conversation per Collapse
	// (default 10 s).
	Collapse time.Duration
	// Content is "preview" (the default: the message's text) or "hidden"
	// (a generic text).
	Content string
	// Timeout bounds one request to a provider (default 10 s).
	Timeout time.Duration
}

// DefaultPush returns the push defaults: no provider.
func DefaultPush() Push {
	return Push{Collapse: 10 * time.Second, Content: PushContentPreview, Timeout: 10 * time.Second}
}

// Enabled reports whether any provider is configured.
func (p Push) Enabled() bool {
	return p.GorushURL != "" || p.APNsKey != "" || p.FCMCredentials != ""
}

// RegisterFlags binds the push flags.
func (p *Push) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&p.GorushURL, "push-gorush-url", p.GorushURL, "gorush server (http://host:port) to send pushes through; off when empty")
	fs.StringVar(&p.APNsKey, "push-apns-key", p.APNsKey, "APNs auth key file (.p8) for pushes to iOS directly, without gorush")
	fs.StringVar(&p.APNsKeyID, "push-apns-key-id", p.APNsKeyID, "key id of --push-apns-key")
	fs.StringVar(&p.APNsTeamID, "push-apns-team-id", p.APNsTeamID, "Apple developer team id of --push-apns-key")
	fs.StringVar(&p.APNsTopic, "push-apns-topic", p.APNsTopic, "the iOS app's bundle id (apns-topic)")
	fs.StringVar(&p.APNsURL, "push-apns-url", p.APNsURL, "APNs endpoint (default Apple's production one; https://api.sandbox.push.apple.com for development builds)")
	fs.StringVar(&p.FCMCredentials, "push-fcm-credentials", p.FCMCredentials, "Google service account JSON for pushes to Android through FCM HTTP v1 directly, without gorush")
	fs.StringVar(&p.FCMURL, "push-fcm-url", p.FCMURL, "FCM endpoint (default Google's)")
	fs.DurationVar(&p.Collapse, "push-collapse", p.Collapse, "at most one push per user and conversation in this interval")
	fs.StringVar(&p.Content, "push-content", p.Content, `"preview" (the message's text) or "hidden" (a generic text) in pushes`)
	fs.DurationVar(&p.Timeout, "push-timeout", p.Timeout, "longest wait for one push request")
}

// Validate reports every invalid push setting.
func (p Push) Validate() error {
	var errs []error
	if p.GorushURL != "" {
		if u, err := url.Parse(p.GorushURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("--push-gorush-url must be http(s)://host:port, not %q", p.GorushURL))
		}
	}
	if p.APNsKey != "" && (p.APNsKeyID == "" || p.APNsTeamID == "" || p.APNsTopic == "") {
		errs = append(errs, errors.New("--push-apns-key needs --push-apns-key-id, --push-apns-team-id and --push-apns-topic"))
	}
	if p.GorushURL != "" && (p.APNsKey != "" || p.FCMCredentials != "") {
		errs = append(errs, errors.New("--push-gorush-url sends to both platforms: give it, or --push-apns-key / --push-fcm-credentials, not both"))
	}
	if p.Collapse < 0 {
		errs = append(errs, errors.New("--push-collapse must not be negative"))
	}
	if p.Content != PushContentPreview && p.Content != PushContentHidden {
		errs = append(errs, fmt.Errorf(`--push-content must be "preview" or "hidden", not %q`, p.Content))
	}
	if p.Timeout < 100*time.Millisecond {
		errs = append(errs, errors.New("--push-timeout must be at least 100ms"))
	}
	return errors.Join(errs...)
}
