package e2e

import (
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/natter-chat/natter/push/gorush/gorushtest"
)

// pushes waits until g accepted n notifications and returns them.
func pushes(t *testing.T, g *gorushtest.Server, n int) []gorushtest.Notification {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		got := g.Notifications()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d pushes after %s, want %d: %+v", len(got), wait, n, got)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func pushTexts(ns []gorushtest.Notification) []string {
	var out []string
	for _, n := range ns {
		out = append(out, n.Tokens[0]+" "+n.Message)
	}
	return out
}

// The contract's push promises, end to end through a gorush stand-in:
// one push per registered device of an offline user, with the event's
// cursor; none while a device is connected; gorush down across a kill -9,
// then up: delivered late, once.
func TestPushThroughGorush(t *testing.T) {
	g, err := gorushtest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	// Collapsing is TestPushRules'; here every message counts.
	s := start(t, "--push-gorush-url", g.URL(), "--push-collapse", "1ms")
	_, as := s.newUser("alice", 1)
	bob, bs := s.newUser("bob", 2)
	carol, cs := s.newUser("carol", 1)
	a := as[0]
	// bob's first device registers both of his devices.
	s.must(http.StatusNoContent, "PUT", "/v1/me/devices/"+bs[0].deviceID+"/push", bs[0].access, obj{"platform": "ios", "token": "bob-iphone"})
	s.must(http.StatusNoContent, "PUT", "/v1/me/devices/"+bs[1].deviceID+"/push", bs[0].access, obj{"platform": "android", "token": "bob-pixel"})
	s.must(http.StatusNoContent, "PUT", "/v1/me/devices/"+cs[0].deviceID+"/push", cs[0].access, obj{"platform": "android", "token": "carol-phone"})
	wantError(t, s.do("PUT", "/v1/me/devices/"+cs[0].deviceID+"/push", bs[0].access, obj{"platform": "ios", "token": "stolen"}), 404, "not_found")

	s.sendREST(a, bob, "m1", "first")
	got := pushes(t, g, 2)
	c, synced := s.connect(bs[0], "")
	cursor := str(synced, "cursor")
	for _, n := range got {
		if n.Title != "alice" || n.Message != "first" || n.Data["cursor"] != cursor || n.Data["message_id"] == "" {
			t.Errorf("push %+v: want title alice, message first, cursor %s", n, cursor)
		}
	}
	if tokens := []string{got[0].Tokens[0], got[1].Tokens[0]}; !slices.Contains(tokens, "bob-iphone") || !slices.Contains(tokens, "bob-pixel") {
		t.Fatalf("pushed to %q, want bob's two phones", tokens)
	}

	// bob connected: none for him; carol offline: hers comes.
	s.sendREST(a, bob, "m2", "while bob is online")
	c.waitMessage("m2")
	s.sendREST(a, carol, "m3", "sentinel 1")
	got = pushes(t, g, 3)
	if want := []string{"bob-iphone first", "bob-pixel first", "carol-phone sentinel 1"}; !sameSet(pushTexts(got), want) || len(got) != 3 {
		t.Fatalf("pushes %q, want %q", pushTexts(got), want)
	}
	c.close()
	deadline := time.Now().Add(wait)
	for s.must(http.StatusOK, "GET", "/v1/users/"+bob.id+"/presence", a.access, nil)["status"] != "offline" {
		if time.Now().After(deadline) {
			t.Fatal("bob still online after closing his connection")
		}
		time.Sleep(20 * time.Millisecond)
	}

	// gorush down; the message waits; natter is killed and restarted;
	// gorush comes back: the push arrives, once per device.
	g.Down()
	s.sendREST(a, bob, "m4", "late")
	s.waitLog("retrying batch", 1)
	s.kill9()
	s.restart()
	if err := g.Up(); err != nil {
		t.Fatal(err)
	}
	pushes(t, g, 5)
	s.sendREST(a, carol, "m5", "sentinel 2")
	got = pushes(t, g, 6)
	want := []string{"bob-iphone first", "bob-pixel first", "carol-phone sentinel 1", "bob-iphone late", "bob-pixel late", "carol-phone sentinel 2"}
	if !sameSet(pushTexts(got), want) || len(got) != len(want) {
		t.Fatalf("pushes %q, want %q", pushTexts(got), want)
	}
	if err := g.Bad(); err != nil {
		t.Fatalf("gorush would have refused natter's requests: %v", err)
	}
	// Since the restart gorush took at least the two late pushes and the
	// last sentinel: the metrics count them.
	waitMetric(t, "http://"+s.addr, "natter_push_total", map[string]string{"provider": "gorush", "result": "ok"}, "at least 3", func(v float64) bool { return v >= 3 })
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
