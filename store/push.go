package store

import (
	"context"
	"math"
)

// Push platforms.
const (
	PlatformIOS     = "ios"
	PlatformAndroid = "android"
)

// MuteForever is the Until of a mute without an end.
const MuteForever = math.MaxInt64

// PushToken is the push registration of one device.
type PushToken struct {
	DeviceID  string
	UserID    string
	Platform  string // PlatformIOS or PlatformAndroid
	Token     string
	UpdatedAt int64
}

// QuietHours is a user's daily window without pushes: from Start to End
// ("HH:MM", End before Start wraps past midnight) in the IANA zone TZ.
// The zero value is no quiet hours.
type QuietHours struct {
	Start string
	End   string
	TZ    string
}

// Push stores what the push worker needs besides messages: device
// tokens, conversation mutes and quiet hours. It lives on the user side
// of a store (store.Combine): none of it is conversation history.
type Push interface {
	// SetPushToken registers token for one of userID's active devices,
	// replacing the device's previous one. A token is registered on one
	// device at most: one phone that logged in again (a new device) gets
	// one push, not two, so the token leaves any other device.
	// ErrNotFound when the device is not userID's or is revoked.
	SetPushToken(ctx context.Context, t PushToken) error
	// DeletePushToken removes the device's registration; ErrNotFound
	// when the device is not userID's. No registration is not an error.
	DeletePushToken(ctx context.Context, userID, deviceID string) error
	// PushTokens lists the registrations of userID's active devices, in
	// device id order.
	PushTokens(ctx context.Context, userID string) ([]PushToken, error)
	// DropPushToken removes a registration the provider reported dead,
	// only while the device still has that token (a newer one stays).
	DropPushToken(ctx context.Context, deviceID, token string) error

	// SetMute mutes a conversation for userID until a time (ms since the
	// epoch, MuteForever for no end), replacing an earlier mute.
	SetMute(ctx context.Context, userID, conversationID string, until int64) error
	// DeleteMute unmutes; unmuting an unmuted conversation is not an error.
	DeleteMute(ctx context.Context, userID, conversationID string) error
	// MutedUntil returns the end of userID's mute of a conversation, 0
	// when it is not muted (an expired mute may still be returned).
	MutedUntil(ctx context.Context, userID, conversationID string) (int64, error)

	// SetQuietHours sets userID's quiet hours; the zero value clears them.
	// ErrNotFound for an unknown user.
	SetQuietHours(ctx context.Context, userID string, q QuietHours) error
	// QuietHours returns them, the zero value when none are set.
	QuietHours(ctx context.Context, userID string) (QuietHours, error)
}
