package gateway

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/natter-chat/natter/schema"
	"github.com/natter-chat/natter/streams"
)

// Typing does not cross a block, in either direction. Frames on one
// connection arrive in order, so a typing event sent after the block is
// lifted, received first, proves the earlier one was dropped.
func TestTypingDoesNotCrossABlockEitherWay(t *testing.T) {
	n, _ := startNode(t, nodeOptions{})
	alice, bob := n.user("alice"), n.user("bob")
	ack := n.send(alice, bob, "c1")
	if ack.status != 201 {
		t.Fatalf("send: %d %s", ack.status, ack.raw)
	}
	conv := ack.body["conversation_id"].(string)
	wa, wb := n.dial(alice), n.dial(bob)

	for _, tc := range []struct {
		name                  string
		blocker, typer, other user
		typerWS, otherWS      *ws
	}{
		{"the blocker types", alice, alice, bob, wa, wb},
		{"the blocked types", alice, bob, alice, wb, wa},
	} {
		if r := n.do("PUT", "/v1/me/blocks/"+other(tc.blocker, alice, bob).id, tc.blocker.token, nil); r.status != 200 {
			t.Fatalf("%s: block: %d %s", tc.name, r.status, r.raw)
		}
		tc.typerWS.write(map[string]any{"type": "typing", "conversation_id": conv, "state": "composing"})
		// Frames of one connection are handled in order: the pong says the
		// typing frame was handled while the block stood.
		tc.typerWS.write(map[string]any{"type": "ping", "ref": tc.name})
		tc.typerWS.await(func(m map[string]any) bool { return m["type"] == "pong" && m["ref"] == tc.name })
		if r := n.do("DELETE", "/v1/me/blocks/"+other(tc.blocker, alice, bob).id, tc.blocker.token, nil); r.status != 200 {
			t.Fatalf("%s: unblock: %d %s", tc.name, r.status, r.raw)
		}
		tc.typerWS.write(map[string]any{"type": "typing", "conversation_id": conv, "state": "paused"})
		ev := tc.otherWS.await(isType("typing"))
		if ev["state"] != "paused" || ev["user_id"] != tc.typer.id {
			t.Fatalf("%s: %s got %v first, want only the typing sent after the unblock", tc.name, tc.other.name, ev)
		}
	}
}

func other(u, a, b user) user {
	if u.id == a.id {
		return b
	}
	return a
}

// A block hides presence and last seen both ways, over REST and in
// presence events.
func TestBlocksHidePresenceAndLastSeenBothWays(t *testing.T) {
	n, _ := startNode(t, nodeOptions{})
	alice, bob, carol := n.user("alice"), n.user("bob"), n.user("carol")
	n.send(alice, bob, "c1")
	wa := n.dial(alice)
	wb := n.dial(bob)
	presence := func(viewer, of user) map[string]any {
		t.Helper()
		r := n.do("GET", "/v1/users/"+of.id+"/presence", viewer.token, nil)
		if r.status != 200 {
			t.Fatalf("presence: %d %s", r.status, r.raw)
		}
		return r.body
	}
	if p := presence(carol, alice); p["status"] != "online" {
		t.Fatalf("control: carol sees alice %v, want online", p)
	}
	if r := n.do("PUT", "/v1/me/blocks/"+bob.id, alice.token, nil); r.status != 200 {
		t.Fatalf("block: %d", r.status)
	}
	if p := presence(bob, alice); p["status"] != "offline" || p["last_seen"] != nil {
		t.Errorf("blocked bob sees alice %v, want offline without last_seen", p)
	}
	if p := presence(alice, bob); p["status"] != "offline" || p["last_seen"] != nil {
		t.Errorf("alice (the blocker) sees bob %v, want offline without last_seen", p)
	}
	wb.write(map[string]any{"type": "presence.subscribe", "user_ids": []string{alice.id}})
	if ev := wb.await(isType("presence")); ev["status"] != "offline" {
		t.Errorf("blocked bob's presence event for alice: %v, want offline", ev)
	}
	// Last seen: alice disconnects; carol sees when, bob does not.
	_ = wa.conn.Close()
	eventually(t, "alice offline", func() bool { return presence(carol, alice)["last_seen"] != nil })
	if p := presence(bob, alice); p["last_seen"] != nil {
		t.Errorf("blocked bob sees alice's last seen: %v", p)
	}
	if r := n.do("DELETE", "/v1/me/blocks/"+bob.id, alice.token, nil); r.status != 200 {
		t.Fatalf("unblock: %d", r.status)
	}
	if p := presence(bob, alice); p["last_seen"] == nil {
		t.Errorf("after the unblock bob sees alice %v, want her last seen", p)
	}
}

// Deleting what is already deleted answers 200 and stores no further
// deletion record (which fanout would turn into another event each time).
func TestDeletingTwiceStoresOneDeletion(t *testing.T) {
	n, _ := startNode(t, nodeOptions{})
	alice, bob := n.user("alice"), n.user("bob")
	m1, m2 := n.send(alice, bob, "c1"), n.send(alice, bob, "c2")
	conv := m1.body["conversation_id"].(string)
	count := n.conv()
	for _, tc := range []struct {
		who   user
		id    string
		scope string
		want  uint64
	}{
		{alice, m1.body["message_id"].(string), "everyone", 1},
		{alice, m1.body["message_id"].(string), "everyone", 1},
		{bob, m1.body["message_id"].(string), "me", 1}, // gone for everyone already
		{bob, m2.body["message_id"].(string), "me", 2},
		{bob, m2.body["message_id"].(string), "me", 2},
		{alice, m2.body["message_id"].(string), "everyone", 3}, // hidden from bob only: still alice's to delete
		{alice, m2.body["message_id"].(string), "me", 3},
	} {
		r := n.do("DELETE", "/v1/messages/"+tc.id+"?for="+tc.scope, tc.who.token, nil)
		if r.status != 200 || r.body["deleted"] != true {
			t.Fatalf("%s deletes %s for %s: %d %s", tc.who.name, tc.id, tc.scope, r.status, r.raw)
		}
		if got := count(streams.DeleteSubject(conv)); got != tc.want {
			t.Fatalf("after %s deleted %s for %s: %d deletion records, want %d", tc.who.name, tc.id, tc.scope, got, tc.want)
		}
	}
}

func TestMePrivacyAndBlocksCanBeRead(t *testing.T) {
	n, _ := startNode(t, nodeOptions{})
	alice, bob, carol := n.user("alice"), n.user("bob"), n.user("carol")
	me := n.do("GET", "/v1/me", alice.token, nil)
	if me.status != 200 || me.body["user_id"] != alice.id || me.body["username"] != "alice" || me.body["device_id"] != alice.device {
		t.Fatalf("GET /v1/me: %d %s", me.status, me.raw)
	}
	p := n.do("GET", "/v1/me/privacy", alice.token, nil)
	if p.status != 200 || p.body["last_seen"] != "everyone" || p.body["online"] != "everyone" {
		t.Fatalf("default privacy: %d %s", p.status, p.raw)
	}
	if r := n.do("PUT", "/v1/me/privacy", alice.token, map[string]string{"online": "sometimes"}); r.status != 400 || r.code() != "bad_request" {
		t.Fatalf("a bad online value: %d %s", r.status, r.raw)
	}
	if p := n.do("GET", "/v1/me/privacy", alice.token, nil); p.body["online"] != "everyone" {
		t.Fatalf("a refused change changed privacy: %s", p.raw)
	}
	r := n.do("PUT", "/v1/me/privacy", alice.token, map[string]string{"last_seen": "nobody", "online": "same_as_last_seen"})
	if r.status != 200 || r.body["last_seen"] != "nobody" || r.body["online"] != "same_as_last_seen" {
		t.Fatalf("PUT privacy: %d %s", r.status, r.raw)
	}
	if p := n.do("GET", "/v1/me/privacy", alice.token, nil); p.body["last_seen"] != "nobody" || p.body["online"] != "same_as_last_seen" {
		t.Fatalf("GET after PUT: %s", p.raw)
	}
	// Online hidden as last seen is: bob reads alice offline while she is
	// connected; she sees herself online.
	n.dial(alice)
	if p := n.do("GET", "/v1/users/"+alice.id+"/presence", bob.token, nil); p.body["status"] != "offline" || p.body["last_seen"] != nil {
		t.Errorf("bob sees alice %s, want offline without last_seen", p.raw)
	}
	if p := n.do("GET", "/v1/users/"+alice.id+"/presence", alice.token, nil); p.body["status"] != "online" {
		t.Errorf("alice sees herself %s, want online", p.raw)
	}
	n.do("PUT", "/v1/me/privacy", alice.token, map[string]string{"online": "everyone"})
	if p := n.do("GET", "/v1/users/"+alice.id+"/presence", bob.token, nil); p.body["status"] != "online" {
		t.Errorf("with online everyone, bob sees alice %s, want online", p.raw)
	}

	if b := n.do("GET", "/v1/me/blocks", alice.token, nil); b.status != 200 || len(b.body["blocks"].([]any)) != 0 {
		t.Fatalf("no blocks yet: %d %s", b.status, b.raw)
	}
	n.do("PUT", "/v1/me/blocks/"+bob.id, alice.token, nil)
	n.do("PUT", "/v1/me/blocks/"+carol.id, alice.token, nil)
	n.do("PUT", "/v1/me/blocks/"+alice.id, bob.token, nil) // bob's block is not alice's
	b := n.do("GET", "/v1/me/blocks", alice.token, nil)
	got := map[string]bool{}
	for _, e := range b.body["blocks"].([]any) {
		got[e.(map[string]any)["user_id"].(string)] = true
	}
	if len(got) != 2 || !got[bob.id] || !got[carol.id] {
		t.Fatalf("alice's blocks: %s, want bob and carol", b.raw)
	}
}

// A store that cannot write (a full disk) makes a registration, a login
// and the first send of a new conversation answer 503 unavailable with
// Retry-After, each told what to retry, never 500.
func TestStoreUnavailableAnswers503Everywhere(t *testing.T) {
	n, _ := startNode(t, nodeOptions{})
	alice, bob := n.user("alice"), n.user("bob")
	n.db.full.Store(true)
	for _, tc := range []struct {
		name   string
		r      answer2
		sendID bool // told to retry with the same client_message_id
	}{
		{"register", n.do("POST", "/v1/auth/register", "", map[string]string{"username": "carol", "password": "password123"}), false},
		{"login", n.do("POST", "/v1/auth/login", "", map[string]string{"username": "alice", "password": "password123"}), false},
		{"first send to a new peer", n.send(alice, bob, "c1"), true},
		{"conversation", n.do("POST", "/v1/conversations", alice.token, map[string]string{"peer_id": bob.id}), false},
	} {
		if tc.r.status != http.StatusServiceUnavailable || tc.r.code() != schema.CodeUnavailable || tc.r.header.Get("Retry-After") == "" {
			t.Errorf("%s on a full disk: %d %s (Retry-After %q), want 503 unavailable with Retry-After", tc.name, tc.r.status, tc.r.raw, tc.r.header.Get("Retry-After"))
		}
		if strings.Contains(tc.r.message(), "client_message_id") != tc.sendID {
			t.Errorf("%s: message %q; names client_message_id: want %v", tc.name, tc.r.message(), tc.sendID)
		}
		if strings.Contains(tc.r.message(), "injected") {
			t.Errorf("%s: the cause leaked to the client: %q", tc.name, tc.r.message())
		}
	}
	n.db.full.Store(false)
	if r := n.send(alice, bob, "c1"); r.status != 201 || r.body["duplicate"] != false {
		t.Fatalf("the refused send, retried with room: %d %s", r.status, r.raw)
	}
}

// /readyz names what is missing; nothing authenticated is served until
// the revocations are loaded.
func TestReadinessAndStartup(t *testing.T) {
	n, start := startNode(t, nodeOptions{holdCore: true})
	if r := n.do("GET", "/healthz", "", nil); r.status != 200 {
		t.Fatalf("healthz: %d", r.status)
	}
	r := n.do("GET", "/readyz", "", nil)
	if r.status != 503 || !strings.Contains(string(r.raw), "revocations") {
		t.Fatalf("readyz before revocations load: %d %s", r.status, r.raw)
	}
	if r := n.do("GET", "/v1/me", "any-token", nil); r.status != 503 || r.code() != "unavailable" || r.header.Get("Retry-After") == "" {
		t.Fatalf("an authenticated call before revocations load: %d %s", r.status, r.raw)
	}
	start()
	eventually(t, "ready", func() bool { return n.do("GET", "/readyz", "", nil).status == 200 })
	alice := n.user("alice")
	if r := n.do("GET", "/v1/me", alice.token, nil); r.status != 200 {
		t.Fatalf("after start: %d %s", r.status, r.raw)
	}

	n2, _ := startNode(t, nodeOptions{readyFail: errNotReady})
	r = n2.do("GET", "/readyz", "", nil)
	if r.status != 503 || !strings.Contains(string(r.raw), "injected") || r.code() != "unavailable" {
		t.Fatalf("readyz with a failing check: %d %s", r.status, r.raw)
	}
}

var errNotReady = errorString("store not answering")

type errorString string

func (e errorString) Error() string { return string(e) }

func TestPprofOnlyWhenAskedFor(t *testing.T) {
	off, _ := startNode(t, nodeOptions{})
	if r := off.do("GET", "/debug/pprof/", "", nil); r.status != 404 {
		t.Errorf("pprof without --pprof: %d, want 404", r.status)
	}
	on, _ := startNode(t, nodeOptions{gateway: Config{Pprof: true}})
	if r := on.do("GET", "/debug/pprof/", "", nil); r.status != 200 {
		t.Errorf("pprof with --pprof: %d, want 200", r.status)
	}
}

// A cursor past the newest event was never issued: 400 bad_request (and
// close 1008 over WebSocket), not 410, which would send the client to
// resync from history for nothing.
func TestAFutureCursorIsABadRequest(t *testing.T) {
	n, _ := startNode(t, nodeOptions{})
	alice, bob := n.user("alice"), n.user("bob")
	n.send(alice, bob, "c1")
	poll := n.do("GET", "/v1/events?timeout=0", alice.token, nil)
	cur := poll.body["cursor"].(string)
	// Decimal cursors (natter's first format) are still read; this one is
	// past anything the node ever had.
	future := "1000000000"
	r := n.do("GET", "/v1/events?timeout=0&cursor="+future, alice.token, nil)
	if r.status != 400 || r.code() != schema.CodeBadRequest {
		t.Fatalf("long-poll with a future cursor: %d %s, want 400 bad_request", r.status, r.raw)
	}
	if r := n.do("GET", "/v1/events?timeout=0&cursor="+cur, alice.token, nil); r.status != 200 {
		t.Fatalf("the current cursor: %d %s", r.status, r.raw)
	}
	url := "ws" + strings.TrimPrefix(n.url, "http") + "/v1/ws?access_token=" + alice.token + "&cursor=" + future
	conn, resp, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	var e map[string]any
	if err := conn.ReadJSON(&e); err != nil || e["type"] != "error" || e["status"] != 400.0 || e["code"] != "bad_request" {
		t.Fatalf("WebSocket with a future cursor: %v %v, want error 400 bad_request", e, err)
	}
	_, _, err = conn.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != closePolicy {
		t.Fatalf("WebSocket with a future cursor closed with %v, want %d", err, closePolicy)
	}
}

// Every answer carries nosniff; authenticated answers and the auth answers
// that carry tokens are never cached.
func TestSecurityHeaders(t *testing.T) {
	n, _ := startNode(t, nodeOptions{})
	alice := n.user("alice")
	cases := []struct {
		name    string
		r       answer2
		noStore bool
	}{
		{"healthz", n.do("GET", "/healthz", "", nil), false},
		{"unknown path", n.do("GET", "/nope", "", nil), false},
		{"me", n.do("GET", "/v1/me", alice.token, nil), true},
		{"me without token", n.do("GET", "/v1/me", "", nil), true},
		{"login", n.do("POST", "/v1/auth/login", "", map[string]string{"username": "alice", "password": "wrong-password"}), true},
		{"refresh", n.do("POST", "/v1/auth/refresh", "", map[string]string{"refresh_token": "x"}), true},
	}
	for _, tc := range cases {
		if got := tc.r.header.Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("%s: X-Content-Type-Options %q, want nosniff", tc.name, got)
		}
		if got := tc.r.header.Get("Cache-Control"); tc.noStore && got != "no-store" {
			t.Errorf("%s: Cache-Control %q, want no-store", tc.name, got)
		}
	}
}

// Refresh needs no token, so it is limited per address like login: an
// anonymous flood of refreshes gets 429 with Retry-After, and off is off.
func TestRefreshIsRateLimitedPerAddress(t *testing.T) {
	for _, on := range []bool{true, false} {
		n, _ := startNode(t, nodeOptions{gateway: Config{RateLimit: on, AuthBurst: 3, AuthRate: 0.001}})
		var limited answer2
		for i := 0; i < 10; i++ {
			r := n.do("POST", "/v1/auth/refresh", "", map[string]string{"refresh_token": "r1.bogus"})
			if r.status == 429 {
				limited = r
				break
			}
		}
		if on && (limited.status != 429 || limited.code() != schema.CodeRateLimited || limited.header.Get("Retry-After") == "") {
			t.Errorf("10 refreshes with burst 3: no 429 rate_limited with Retry-After (last %d %s)", limited.status, limited.raw)
		}
		if !on && limited.status == 429 {
			t.Errorf("refresh limited with --rate-limit off: %s", limited.raw)
		}
	}
}
