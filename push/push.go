// Package push is what natter sends to phones, independent of the
// provider: a Notification per device, a Sender that delivers a batch of
// them and says, per notification, whether it went out, must be retried
// or hit a dead token. Providers live in sub-packages: push/gorush (a
// gorush server's REST API), push/apns (Apple, HTTP/2, token auth) and
// push/fcm (Firebase Cloud Messaging HTTP v1). consumers.Push decides who
// gets what; this package only carries it.
package push

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/natter-chat/natter/store"
)

// Priorities, as gorush, APNs and FCM name them.
const (
	PriorityHigh   = "high"
	PriorityNormal = "normal"
)

// Data keys every notification carries for the app.
const (
	DataConversationID = "conversation_id"
	DataMessageID      = "message_id"
	DataCursor         = "cursor"
)

// Notification is one push to one device.
type Notification struct {
	// ID is unique per (message, device): notif_id in gorush, and what
	// the worker records once it was sent, so it never goes twice.
	ID       string
	DeviceID string
	Platform string // store.PlatformIOS or store.PlatformAndroid
	Token    string
	Title    string
	Body     string
	// Badge is the user's unread count.
	Badge int
	// ThreadID groups a conversation's notifications on the device;
	// CollapseID lets a newer one replace an older one.
	ThreadID   string
	CollapseID string
	Priority   string
	// Data holds DataConversationID, DataMessageID and DataCursor.
	Data map[string]string
}

// Result is what became of one notification.
type Result struct {
	// Err is nil once the provider accepted it. Otherwise it is worth
	// retrying unless Dead is set.
	Err error
	// Dead: the provider says the token will never work again (APNs 410
	// or BadDeviceToken, FCM UNREGISTERED): drop it, do not retry.
	Dead bool
}

// ErrDeadToken marks the error of a Result with Dead set.
var ErrDeadToken = errors.New("device token is no longer valid")

// Sender delivers notifications. Send returns one Result per notification,
// in order; it never returns fewer.
type Sender interface {
	Send(ctx context.Context, ns []Notification) []Result
}

// Fail is the result of every notification when a whole request failed.
func Fail(n int, err error) []Result {
	out := make([]Result, n)
	for i := range out {
		out[i].Err = err
	}
	return out
}

// ByPlatform sends iOS notifications through IOS and Android ones through
// Android (one of them may be the same sender, e.g. gorush for both). A
// platform without a sender fails its notifications.
type ByPlatform struct {
	IOS     Sender
	Android Sender
}

// Send splits ns by platform and puts the results back in order.
func (b ByPlatform) Send(ctx context.Context, ns []Notification) []Result {
	if b.IOS != nil && b.IOS == b.Android {
		return b.IOS.Send(ctx, ns)
	}
	out := make([]Result, len(ns))
	for _, p := range []struct {
		platform string
		s        Sender
	}{{store.PlatformIOS, b.IOS}, {store.PlatformAndroid, b.Android}} {
		var idx []int
		var part []Notification
		for i, n := range ns {
			if n.Platform == p.platform {
				idx = append(idx, i)
				part = append(part, n)
			}
		}
		if len(part) == 0 {
			continue
		}
		var rs []Result
		if p.s == nil {
			rs = Fail(len(part), fmt.Errorf("no push provider for %s: %w", p.platform, ErrNoProvider))
		} else {
			rs = p.s.Send(ctx, part)
		}
		for j, i := range idx {
			out[i] = rs[j]
		}
	}
	for i := range out {
		if out[i] == (Result{}) && ns[i].Platform != store.PlatformIOS && ns[i].Platform != store.PlatformAndroid {
			out[i].Err = fmt.Errorf("unknown platform %q: %w", ns[i].Platform, ErrNoProvider)
		}
	}
	return out
}

// ErrNoProvider: no sender is configured for a platform. Retrying does not
// help; the worker drops such notifications.
var ErrNoProvider = errors.New("no push provider")

// Quiet hours: ParseQuietHours validates them, InQuietHours applies them.

// ParseQuietHours checks quiet hours and returns their start and end in
// minutes after midnight and their zone. Start and end are "HH:MM" (24 h)
// and differ; tz is an IANA zone name ("Europe/Berlin", "UTC").
func ParseQuietHours(start, end, tz string) (from, to int, loc *time.Location, err error) {
	if from, err = clockMinutes("start", start); err != nil {
		return 0, 0, nil, err
	}
	if to, err = clockMinutes("end", end); err != nil {
		return 0, 0, nil, err
	}
	if from == to {
		return 0, 0, nil, errors.New("quiet_hours start and end must differ")
	}
	// LoadLocation also takes "" (UTC) and "Local" (the server's zone),
	// neither of which is a zone a client means; it reads files, so no
	// path tricks either.
	if tz == "" || tz == "Local" || len(tz) > 64 || tz[0] == '/' || containsDotDot(tz) {
		return 0, 0, nil, fmt.Errorf(`quiet_hours tz must be an IANA time zone such as "Europe/Berlin"`)
	}
	if loc, err = time.LoadLocation(tz); err != nil {
		return 0, 0, nil, fmt.Errorf(`quiet_hours tz %q is not an IANA time zone such as "Europe/Berlin"`, tz)
	}
	return from, to, loc, nil
}

func containsDotDot(s string) bool {
	for i := 0; i+1 < len(s); i++ {
		if s[i] == '.' && s[i+1] == '.' {
			return true
		}
	}
	return false
}

func clockMinutes(field, s string) (int, error) {
	bad := fmt.Errorf(`quiet_hours %s must be "HH:MM" between "00:00" and "23:59"`, field)
	if len(s) != 5 || s[2] != ':' {
		return 0, bad
	}
	for i, c := range []byte(s) {
		if i != 2 && (c < '0' || c > '9') {
			return 0, bad
		}
	}
	h := int(s[0]-'0')*10 + int(s[1]-'0')
	m := int(s[3]-'0')*10 + int(s[4]-'0')
	if h > 23 || m > 59 {
		return 0, bad
	}
	return h*60 + m, nil
}

// InQuietHours reports whether t falls in the quiet hours q (the zero
// value: never). Quiet hours that no longer parse (a zone gone from the
// database) are ignored rather than silencing a user for good.
func InQuietHours(q store.QuietHours, t time.Time) bool {
	if q == (store.QuietHours{}) {
		return false
	}
	from, to, loc, err := ParseQuietHours(q.Start, q.End, q.TZ)
	if err != nil {
		return false
	}
	lt := t.In(loc)
	m := lt.Hour()*60 + lt.Minute()
	if from < to {
		return m >= from && m < to
	}
	return m >= from || m < to // wraps past midnight
}
