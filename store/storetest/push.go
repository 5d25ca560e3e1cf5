package storetest

import (
	"slices"
	"testing"

	"github.com/natter-chat/natter/store"
)

// pushTests are the conformance tests of store.Push.
var pushTests = []struct {
	name string
	fn   func(t *testing.T, s store.Store)
}{
	{"PushTokens", testPushTokens},
	{"PushTokenMovesBetweenDevices", testPushTokenMoves},
	{"Mutes", testMutes},
	{"QuietHours", testQuietHours},
}

func device(t *testing.T, s store.Store, id, userID string) {
	t.Helper()
	ok(t, s.CreateDevice(t.Context(), store.Device{ID: id, UserID: userID, Name: id, CreatedAt: 1}, "refresh-"+id))
}

func tokens(t *testing.T, s store.Store, userID string) []string {
	t.Helper()
	ts, err := s.PushTokens(t.Context(), userID)
	ok(t, err)
	out := []string{}
	for _, p := range ts {
		if p.UserID != userID {
			t.Fatalf("%s's tokens include %+v", userID, p)
		}
		out = append(out, p.DeviceID+"="+p.Platform+":"+p.Token)
	}
	return out
}

func wantTokens(t *testing.T, s store.Store, userID string, want ...string) {
	t.Helper()
	if want == nil {
		want = []string{}
	}
	if got := tokens(t, s, userID); !slices.Equal(got, want) {
		t.Fatalf("%s's tokens %q, want %q", userID, got, want)
	}
}

func testPushTokens(t *testing.T, s store.Store) {
	ctx := t.Context()
	a, b := user(t, s, "alice"), user(t, s, "bob")
	device(t, s, "d-a1", a)
	device(t, s, "d-a2", a)
	device(t, s, "d-b1", b)
	wantTokens(t, s, a)

	ok(t, s.SetPushToken(ctx, store.PushToken{DeviceID: "d-a2", UserID: a, Platform: store.PlatformAndroid, Token: "fcm-1", UpdatedAt: 5}))
	ok(t, s.SetPushToken(ctx, store.PushToken{DeviceID: "d-a1", UserID: a, Platform: store.PlatformIOS, Token: "apns-1", UpdatedAt: 5}))
	wantTokens(t, s, a, "d-a1=ios:apns-1", "d-a2=android:fcm-1")
	// Registering again replaces the device's token.
	ok(t, s.SetPushToken(ctx, store.PushToken{DeviceID: "d-a1", UserID: a, Platform: store.PlatformIOS, Token: "apns-2", UpdatedAt: 6}))
	wantTokens(t, s, a, "d-a1=ios:apns-2", "d-a2=android:fcm-1")

	// Another user's device, an unknown one: not found, nothing changes.
	wantErr(t, s.SetPushToken(ctx, store.PushToken{DeviceID: "d-b1", UserID: a, Platform: store.PlatformIOS, Token: "x", UpdatedAt: 7}), store.ErrNotFound)
	wantErr(t, s.SetPushToken(ctx, store.PushToken{DeviceID: "d-none", UserID: a, Platform: store.PlatformIOS, Token: "x", UpdatedAt: 7}), store.ErrNotFound)
	wantErr(t, s.DeletePushToken(ctx, a, "d-b1"), store.ErrNotFound)
	wantTokens(t, s, b)

	// A dead token is dropped only while the device still has it.
	ok(t, s.DropPushToken(ctx, "d-a1", "apns-1"))
	wantTokens(t, s, a, "d-a1=ios:apns-2", "d-a2=android:fcm-1")
	ok(t, s.DropPushToken(ctx, "d-a1", "apns-2"))
	wantTokens(t, s, a, "d-a2=android:fcm-1")

	ok(t, s.DeletePushToken(ctx, a, "d-a2"))
	ok(t, s.DeletePushToken(ctx, a, "d-a2")) // already gone: fine
	wantTokens(t, s, a)

	// A revoked device gets no push and cannot register.
	ok(t, s.SetPushToken(ctx, store.PushToken{DeviceID: "d-a1", UserID: a, Platform: store.PlatformIOS, Token: "apns-3", UpdatedAt: 8}))
	ok(t, s.RevokeDevice(ctx, a, "d-a1", 9))
	wantTokens(t, s, a)
	wantErr(t, s.SetPushToken(ctx, store.PushToken{DeviceID: "d-a1", UserID: a, Platform: store.PlatformIOS, Token: "apns-4", UpdatedAt: 10}), store.ErrNotFound)
}

func testPushTokenMoves(t *testing.T, s store.Store) {
	ctx := t.Context()
	a, b := user(t, s, "alice"), user(t, s, "bob")
	device(t, s, "d-a1", a)
	device(t, s, "d-a2", a)
	device(t, s, "d-b1", b)
	ok(t, s.SetPushToken(ctx, store.PushToken{DeviceID: "d-a1", UserID: a, Platform: store.PlatformIOS, Token: "phone", UpdatedAt: 1}))
	// The same phone logged in again (a new device): one registration.
	ok(t, s.SetPushToken(ctx, store.PushToken{DeviceID: "d-a2", UserID: a, Platform: store.PlatformIOS, Token: "phone", UpdatedAt: 2}))
	wantTokens(t, s, a, "d-a2=ios:phone")
	// The phone changed hands: it leaves alice.
	ok(t, s.SetPushToken(ctx, store.PushToken{DeviceID: "d-b1", UserID: b, Platform: store.PlatformIOS, Token: "phone", UpdatedAt: 3}))
	wantTokens(t, s, a)
	wantTokens(t, s, b, "d-b1=ios:phone")
}

func testMutes(t *testing.T, s store.Store) {
	ctx := t.Context()
	a, b := user(t, s, "alice"), user(t, s, "bob")
	muted := func(u, conv string, want int64) {
		t.Helper()
		got, err := s.MutedUntil(ctx, u, conv)
		ok(t, err)
		if got != want {
			t.Fatalf("%s's mute of %s: %d, want %d", u, conv, got, want)
		}
	}
	muted(a, "c1", 0)
	ok(t, s.SetMute(ctx, a, "c1", 1000))
	muted(a, "c1", 1000)
	muted(b, "c1", 0) // per user
	muted(a, "c2", 0) // per conversation
	ok(t, s.SetMute(ctx, a, "c1", store.MuteForever))
	muted(a, "c1", store.MuteForever)
	ok(t, s.DeleteMute(ctx, a, "c1"))
	muted(a, "c1", 0)
	ok(t, s.DeleteMute(ctx, a, "c1"))
	wantErr(t, s.SetMute(ctx, "u-nobody", "c1", 5), store.ErrNotFound)
}

func testQuietHours(t *testing.T, s store.Store) {
	ctx := t.Context()
	a := user(t, s, "alice")
	q, err := s.QuietHours(ctx, a)
	ok(t, err)
	if q != (store.QuietHours{}) {
		t.Fatalf("quiet hours before any: %+v", q)
	}
	want := store.QuietHours{Start: "22:00", End: "07:00", TZ: "Europe/Berlin"}
	ok(t, s.SetQuietHours(ctx, a, want))
	q, err = s.QuietHours(ctx, a)
	ok(t, err)
	if q != want {
		t.Fatalf("quiet hours %+v, want %+v", q, want)
	}
	want = store.QuietHours{Start: "01:30", End: "02:45", TZ: "UTC"}
	ok(t, s.SetQuietHours(ctx, a, want))
	if q, _ = s.QuietHours(ctx, a); q != want {
		t.Fatalf("quiet hours %+v, want %+v", q, want)
	}
	ok(t, s.SetQuietHours(ctx, a, store.QuietHours{}))
	if q, _ = s.QuietHours(ctx, a); q != (store.QuietHours{}) {
		t.Fatalf("quiet hours after clearing: %+v", q)
	}
	wantErr(t, s.SetQuietHours(ctx, "u-nobody", want), store.ErrNotFound)
}
