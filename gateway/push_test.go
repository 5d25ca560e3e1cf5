package gateway

import (
	"context"
	"testing"
	"time"

	"github.com/natter-chat/natter/store"
)

// Push registration: only on the caller's own devices; a bad body is 400
// and changes nothing; DELETE removes it.
func TestPushRegistrationRules(t *testing.T) {
	n, _ := startNode(t, nodeOptions{})
	alice, bob := n.user("alice"), n.user("bob")
	ctx := context.Background()
	tokens := func(u user) []store.PushToken {
		t.Helper()
		ts, err := n.db.PushTokens(ctx, u.id)
		if err != nil {
			t.Fatal(err)
		}
		return ts
	}
	path := "/v1/me/devices/" + alice.device + "/push"
	r := n.do("PUT", path, alice.token, map[string]string{"platform": "ios", "token": "abc123"})
	if r.status != 204 {
		t.Fatalf("register: %d %s", r.status, r.raw)
	}
	if ts := tokens(alice); len(ts) != 1 || ts[0].Token != "abc123" || ts[0].Platform != "ios" || ts[0].DeviceID != alice.device {
		t.Fatalf("stored: %+v", ts)
	}
	for _, c := range []struct {
		name, path, token string
		body              any
		status            int
		code              string
	}{
		{"another user's device", "/v1/me/devices/" + bob.device + "/push", alice.token, map[string]string{"platform": "ios", "token": "x"}, 404, "not_found"},
		{"an unknown device", "/v1/me/devices/nope/push", alice.token, map[string]string{"platform": "ios", "token": "x"}, 404, "not_found"},
		{"a bad platform", path, alice.token, map[string]string{"platform": "windows", "token": "x"}, 400, "bad_request"},
		{"no token", path, alice.token, map[string]string{"platform": "android"}, 400, "bad_request"},
		{"a token with a space", path, alice.token, map[string]string{"platform": "android", "token": "a b"}, 400, "bad_request"},
		{"a token with a newline", path, alice.token, map[string]string{"platform": "android", "token": "a\nb"}, 400, "bad_request"},
		{"not JSON", path, alice.token, "[", 400, "bad_request"},
		{"no auth", path, "", map[string]string{"platform": "ios", "token": "x"}, 401, "unauthorized"},
	} {
		r := n.do("PUT", c.path, c.token, c.body)
		if r.status != c.status || r.code() != c.code {
			t.Errorf("%s: %d %s, want %d %s", c.name, r.status, r.raw, c.status, c.code)
		}
	}
	if r := n.do("DELETE", "/v1/me/devices/"+bob.device+"/push", alice.token, nil); r.status != 404 {
		t.Errorf("delete on bob's device: %d %s", r.status, r.raw)
	}
	if ts := tokens(alice); len(ts) != 1 || ts[0].Token != "abc123" {
		t.Fatalf("refused requests changed alice's registration: %+v", ts)
	}
	if ts := tokens(bob); len(ts) != 0 {
		t.Fatalf("bob got a registration: %+v", ts)
	}
	if r := n.do("DELETE", path, alice.token, nil); r.status != 204 {
		t.Fatalf("delete: %d %s", r.status, r.raw)
	}
	if ts := tokens(alice); len(ts) != 0 {
		t.Fatalf("after delete: %+v", ts)
	}
}

func TestMuteRules(t *testing.T) {
	n, _ := startNode(t, nodeOptions{})
	alice, bob, carol := n.user("alice"), n.user("bob"), n.user("carol")
	ack := n.send(alice, bob, "m1")
	conv, _ := ack.body["conversation_id"].(string)
	if ack.status != 201 || conv == "" {
		t.Fatalf("send: %d %s", ack.status, ack.raw)
	}
	ctx := context.Background()
	muted := func(u user) int64 {
		t.Helper()
		until, err := n.db.MutedUntil(ctx, u.id, conv)
		if err != nil {
			t.Fatal(err)
		}
		return until
	}
	path := "/v1/conversations/" + conv + "/mute"
	r := n.do("PUT", path, bob.token, map[string]any{})
	if r.status != 204 || muted(bob) != store.MuteForever {
		t.Fatalf("mute for good: %d %s", r.status, r.raw)
	}
	until := time.Now().Add(time.Hour).UnixMilli()
	r = n.do("PUT", path, bob.token, map[string]any{"until": until})
	if r.status != 204 || muted(bob) != until {
		t.Fatalf("mute until: %d %s", r.status, r.raw)
	}
	for _, c := range []struct {
		name, path, token string
		body              any
		status            int
	}{
		{"a conversation carol is not in", path, carol.token, map[string]any{}, 404},
		{"an unknown conversation", "/v1/conversations/nope/mute", bob.token, map[string]any{}, 404},
		{"until negative", path, bob.token, map[string]any{"until": -1}, 400},
		{"until not an integer", path, bob.token, map[string]any{"until": "soon"}, 400},
		{"until a fraction", path, bob.token, map[string]any{"until": 1.5}, 400},
	} {
		if r := n.do("PUT", c.path, c.token, c.body); r.status != c.status {
			t.Errorf("%s: %d %s, want %d", c.name, r.status, r.raw, c.status)
		}
	}
	if r := n.do("DELETE", path, carol.token, nil); r.status != 404 {
		t.Errorf("carol unmutes: %d %s", r.status, r.raw)
	}
	if muted(bob) != until {
		t.Fatalf("refused requests changed bob's mute: %d", muted(bob))
	}
	if r := n.do("DELETE", path, bob.token, nil); r.status != 204 || muted(bob) != 0 {
		t.Fatalf("unmute: %d %s", r.status, r.raw)
	}
	// A past until unmutes too.
	n.do("PUT", path, bob.token, map[string]any{})
	if r := n.do("PUT", path, bob.token, map[string]any{"until": 0}); r.status != 204 || muted(bob) != 0 {
		t.Fatalf("until 0: %d %s", r.status, r.raw)
	}
}

func TestQuietHoursRules(t *testing.T) {
	n, _ := startNode(t, nodeOptions{})
	alice := n.user("alice")
	r := n.do("GET", "/v1/me/notifications", alice.token, nil)
	if r.status != 200 || r.body["quiet_hours"] != nil {
		t.Fatalf("default: %d %s", r.status, r.raw)
	}
	qh := map[string]any{"start": "22:00", "end": "07:00", "tz": "Europe/Berlin"}
	r = n.do("PUT", "/v1/me/notifications", alice.token, map[string]any{"quiet_hours": qh})
	got, _ := r.body["quiet_hours"].(map[string]any)
	if r.status != 200 || got["start"] != "22:00" || got["end"] != "07:00" || got["tz"] != "Europe/Berlin" {
		t.Fatalf("set: %d %s", r.status, r.raw)
	}
	for name, body := range map[string]any{
		"no quiet_hours":  map[string]any{},
		"a bad start":     map[string]any{"quiet_hours": map[string]any{"start": "24:00", "end": "07:00", "tz": "UTC"}},
		"a bad end":       map[string]any{"quiet_hours": map[string]any{"start": "22:00", "end": "7:00", "tz": "UTC"}},
		"minutes over 59": map[string]any{"quiet_hours": map[string]any{"start": "22:60", "end": "07:00", "tz": "UTC"}},
		"start = end":     map[string]any{"quiet_hours": map[string]any{"start": "07:00", "end": "07:00", "tz": "UTC"}},
		"an unknown tz":   map[string]any{"quiet_hours": map[string]any{"start": "22:00", "end": "07:00", "tz": "Mars/Olympus"}},
		"Local":           map[string]any{"quiet_hours": map[string]any{"start": "22:00", "end": "07:00", "tz": "Local"}},
		"no tz":           map[string]any{"quiet_hours": map[string]any{"start": "22:00", "end": "07:00"}},
		"a string":        map[string]any{"quiet_hours": "22-7"},
	} {
		if r := n.do("PUT", "/v1/me/notifications", alice.token, body); r.status != 400 || r.code() != "bad_request" {
			t.Errorf("%s: %d %s, want 400 bad_request", name, r.status, r.raw)
		}
	}
	r = n.do("GET", "/v1/me/notifications", alice.token, nil)
	if got, _ := r.body["quiet_hours"].(map[string]any); got["tz"] != "Europe/Berlin" {
		t.Fatalf("refused changes changed the settings: %s", r.raw)
	}
	r = n.do("PUT", "/v1/me/notifications", alice.token, map[string]any{"quiet_hours": nil})
	if r.status != 200 || r.body["quiet_hours"] != nil {
		t.Fatalf("clear: %d %s", r.status, r.raw)
	}
	if r := n.do("GET", "/v1/me/notifications", alice.token, nil); r.body["quiet_hours"] != nil {
		t.Fatalf("after clearing: %s", r.raw)
	}
}
