package chat

import (
	"context"
	"encoding/json"

	"time"
	// Quiet hours name IANA zones: the binary carries the zone database,
	// so they work on hosts (containers) without /usr/share/zoneinfo.
	_ "time/tzdata"

	"github.com/natter-chat/natter/push"
	"github.com/natter-chat/natter/schema"
	"github.com/natter-chat/natter/store"
)

// Push holds the rules of push registration, mutes and quiet hours; the
// push worker (consumers.Push) reads what it stores.
type Push struct {
	st  Store
	now func() time.Time
}

func newPush(st Store) *Push { return &Push{st: st, now: time.Now} }

// maxPushToken bounds a device token: APNs tokens are 64 hex digits, FCM
// registration tokens about 160 characters; 4 KiB leaves room for any
// provider without letting a client store arbitrary blobs.
const maxPushToken = 4096

// PushRegistration is a device's push registration as the client sees it.
type PushRegistration struct {
	DeviceID string `json:"device_id"`
	Platform string `json:"platform"`
	Token    string `json:"token"`
}

// RegisterPush registers one of userID's own devices for push; another
// user's device, or a revoked one, is not found.
func (p *Push) RegisterPush(ctx context.Context, userID, deviceID string, reg PushRegistration) (PushRegistration, error) {
	if reg.Platform != store.PlatformIOS && reg.Platform != store.PlatformAndroid {
		return PushRegistration{}, badRequest(`platform must be "ios" or "android"`)
	}
	if err := validToken(reg.Token); err != nil {
		return PushRegistration{}, err
	}
	err := p.st.SetPushToken(ctx, store.PushToken{DeviceID: deviceID, UserID: userID, Platform: reg.Platform,
		Token: reg.Token, UpdatedAt: p.now().UnixMilli()})
	if err != nil {
		return PushRegistration{}, Translate(err, "device", RetryRequest)
	}
	return PushRegistration{DeviceID: deviceID, Platform: reg.Platform, Token: reg.Token}, nil
}

func validToken(tok string) error {
	if tok == "" || len(tok) > maxPushToken {
		return badRequest("token must be 1 to %d bytes", maxPushToken)
	}
	// Provider tokens are printable ASCII; anything else is not a token
	// and must not reach a provider's request.
	for i := 0; i < len(tok); i++ {
		if tok[i] <= ' ' || tok[i] > '~' {
			return badRequest("token must be printable ASCII without spaces")
		}
	}
	return nil
}

// UnregisterPush removes a device's registration.
func (p *Push) UnregisterPush(ctx context.Context, userID, deviceID string) error {
	return Translate(p.st.DeletePushToken(ctx, userID, deviceID), "device", RetryRequest)
}

// Mute is a conversation's mute as the client sees it. Until is nil for a
// mute without end (and for an unmuted conversation).
type Mute struct {
	ConversationID string `json:"conversation_id"`
	Muted          bool   `json:"muted"`
	Until          *int64 `json:"until"`
}

// SetMute mutes a conversation of userID until a time (ms since the
// epoch), or until unmuted when until is nil; 0 or a time already past
// unmutes (as the API has always described it). A conversation userID
// cannot see is not found.
func (p *Push) SetMute(ctx context.Context, userID, conversationID string, until *int64) (Mute, error) {
	if until != nil && *until < 0 {
		return Mute{}, badRequest("until must be ms since the epoch (0 or a past time unmutes), or left out to mute until unmuted")
	}
	if until != nil && *until <= p.now().UnixMilli() {
		return p.DeleteMute(ctx, userID, conversationID)
	}
	if _, err := p.st.Conversation(ctx, conversationID, userID); err != nil {
		return Mute{}, Translate(err, "conversation", RetryRequest)
	}
	end := int64(store.MuteForever)
	if until != nil {
		end = *until
	}
	if err := p.st.SetMute(ctx, userID, conversationID, end); err != nil {
		return Mute{}, Translate(err, "conversation", RetryRequest)
	}
	return Mute{ConversationID: conversationID, Muted: true, Until: until}, nil
}

// DeleteMute unmutes a conversation of userID.
func (p *Push) DeleteMute(ctx context.Context, userID, conversationID string) (Mute, error) {
	if _, err := p.st.Conversation(ctx, conversationID, userID); err != nil {
		return Mute{}, Translate(err, "conversation", RetryRequest)
	}
	if err := p.st.DeleteMute(ctx, userID, conversationID); err != nil {
		return Mute{}, Translate(err, "conversation", RetryRequest)
	}
	return Mute{ConversationID: conversationID}, nil
}

// QuietHours is a daily window without pushes, as the client sees it.
type QuietHours struct {
	Start string `json:"start"`
	End   string `json:"end"`
	TZ    string `json:"tz"`
}

// Notifications are a user's notification settings. QuietHours is nil
// when there are none.
type Notifications struct {
	QuietHours *QuietHours `json:"quiet_hours"`
}

// NotificationsUpdate is the body of a change: QuietHours must be given,
// as an object or as null (no quiet hours).
type NotificationsUpdate struct {
	QuietHours json.RawMessage `json:"quiet_hours"`
}

// Notifications returns userID's settings.
func (p *Push) Notifications(ctx context.Context, userID string) (Notifications, error) {
	q, err := p.st.QuietHours(ctx, userID)
	if err != nil {
		return Notifications{}, Translate(err, "user", RetryRequest)
	}
	if q == (store.QuietHours{}) {
		return Notifications{}, nil
	}
	return Notifications{QuietHours: &QuietHours{q.Start, q.End, q.TZ}}, nil
}

// SetNotifications changes userID's settings and returns them.
func (p *Push) SetNotifications(ctx context.Context, userID string, u NotificationsUpdate) (Notifications, error) {
	if len(u.QuietHours) == 0 {
		return Notifications{}, badRequest(`give quiet_hours: {"start": "22:00", "end": "07:00", "tz": "Europe/Berlin"}, or null for none`)
	}
	var q *QuietHours
	if err := schema.DecodeJSON(u.QuietHours, &q); err != nil {
		return Notifications{}, badRequest("quiet_hours must be an object with start, end and tz, or null")
	}
	var sq store.QuietHours
	if q != nil {
		if _, _, _, err := push.ParseQuietHours(q.Start, q.End, q.TZ); err != nil {
			return Notifications{}, badRequest("%v", err)
		}
		sq = store.QuietHours{Start: q.Start, End: q.End, TZ: q.TZ}
	}
	if err := p.st.SetQuietHours(ctx, userID, sq); err != nil {
		return Notifications{}, Translate(err, "user", RetryRequest)
	}
	return p.Notifications(ctx, userID)
}

// Online tells the push worker whether a user has a device connected.
// Today that is this node's sessions (a single node sees every
// connection); the KV presence registry will answer it cluster-wide.
func (r *Sessions) Online(_ context.Context, userID string) (bool, error) {
	online, _ := r.status(userID)
	return online, nil
}
