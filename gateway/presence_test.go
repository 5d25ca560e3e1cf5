package gateway

import (
	"context"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/natter-chat/natter/chat"
	"github.com/natter-chat/natter/chat/auth"
	"github.com/natter-chat/natter/consumers"
	"github.com/natter-chat/natter/natsnode/natstest"
	"github.com/natter-chat/natter/store/sqlite"
	"github.com/natter-chat/natter/streams"
)

// A presence cluster: several chat cores and gateways, each with its own
// NATS connection (as separate processes would have), on one embedded
// NATS server and one store.
type presenceCluster struct {
	nodes []*clusterNode
}

type clusterNode struct {
	*testNode
	nc *nats.Conn
	// crash cuts the node off NATS (so it can neither write nor drop its
	// lease), then stops it: what kill -9 of a gateway looks like to the
	// others.
	crash func()
}

func startPresenceCluster(t *testing.T, n int, cc chat.Config, gc Config) *presenceCluster {
	t.Helper()
	srv := natstest.Start(t)
	_, js := srv.Connect()
	ctx := context.Background()
	if err := streams.Ensure(ctx, js, streams.Setup{
		Limits:   streams.Limits{Replicas: 1, ConvMaxAge: time.Hour, InboxMaxAge: time.Hour, MaxBytes: -1, DuplicateWindow: time.Minute},
		Tuning:   streams.ConsumerTuning{MaxAckPending: 1000, MaxDeliver: 3, AckWait: 5 * time.Second},
		TokenTTL: time.Hour,
	}); err != nil {
		t.Fatal(err)
	}
	sdb, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "natter.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	db := &faultyStore{DB: sdb}
	key, err := auth.LoadOrCreateKey(filepath.Join(t.TempDir(), "token.key"))
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	run := func(ctx context.Context, f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = f(ctx)
		}()
	}
	for _, c := range []interface{ Run(context.Context) error }{
		consumers.NewPersist(js, db, consumers.Options{MaxDeliver: 3}),
		consumers.NewFanout(js, db, consumers.Options{MaxDeliver: 3}),
		consumers.NewReceipts(js, db, consumers.Options{MaxDeliver: 3}),
	} {
		run(runCtx, c.Run)
	}
	pc := &presenceCluster{}
	var closers []func()
	for range n {
		nc, _ := srv.Connect()
		core, err := chat.New(ctx, cc, db, nc, auth.NewSigner(key, time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		coreCtx, stopCore := context.WithCancel(runCtx)
		run(coreCtx, core.Run)
		gw := New(gc, core)
		run(coreCtx, gw.Run)
		hs := httptest.NewServer(gw.Handler())
		var once sync.Once
		stop := func() {
			once.Do(func() {
				hs.CloseClientConnections()
				gw.Close()
				hs.Close()
				stopCore()
			})
		}
		closers = append(closers, stop)
		node := &clusterNode{testNode: &testNode{t: t, url: hs.URL, core: core, db: db}, nc: nc}
		node.crash = func() { nc.Close(); stop() }
		select {
		case <-core.RevocationsLoaded():
		case <-time.After(20 * time.Second):
			t.Fatal("revocations not loaded")
		}
		pc.nodes = append(pc.nodes, node)
	}
	t.Cleanup(func() {
		for _, c := range closers {
			c()
		}
		cancel()
		wg.Wait()
		_ = sdb.Close()
	})
	return pc
}

// login adds a device of an existing user.
func (n *testNode) login(u user) user {
	n.t.Helper()
	l := n.do("POST", "/v1/auth/login", "", map[string]string{"username": u.name, "password": "password123"})
	if l.status != 200 {
		n.t.Fatalf("login %s: %d %s", u.name, l.status, l.raw)
	}
	return user{id: u.id, name: u.name, token: l.body["access_token"].(string), device: l.body["device_id"].(string)}
}

func (n *testNode) presence(viewer user, of string) map[string]any {
	n.t.Helper()
	r := n.do("GET", "/v1/users/"+of+"/presence", viewer.token, nil)
	if r.status != 200 {
		n.t.Fatalf("presence of %s: %d %s", of, r.status, r.raw)
	}
	return r.body
}

func presenceOf(id, status string) func(map[string]any) bool {
	return func(m map[string]any) bool {
		return m["type"] == "presence" && m["user_id"] == id && m["status"] == status
	}
}

// closeClean ends a WebSocket with a close frame, as a client going away.
func (w *ws) closeClean() {
	_ = w.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	_ = w.conn.Close()
}

// quiet checks that no frame matching match arrives before a ping on the
// same connection is answered (frames are written in order).
func (w *ws) quiet(match func(map[string]any) bool, what string) {
	w.t.Helper()
	ref := "q" + time.Now().Format("150405.000000000")
	w.write(map[string]any{"type": "ping", "ref": ref})
	deadline := time.After(20 * time.Second)
	for {
		select {
		case m, ok := <-w.frames:
			if !ok {
				w.t.Fatal("connection closed while waiting")
			}
			if match(m) {
				w.t.Fatalf("%s: got %v", what, m)
			}
			if m["type"] == "pong" && m["ref"] == ref {
				return
			}
		case <-deadline:
			w.t.Fatal("timed out waiting for a pong")
		}
	}
}

// A user with devices on two nodes is online until both are gone; a
// clean close of the last shows offline at once, with last_seen, on
// every node, and subscribers on another node are told.
func TestPresenceAcrossTwoNodes(t *testing.T) {
	c := startPresenceCluster(t, 2, chat.Config{PresenceLease: 2 * time.Second}, Config{})
	a, b := c.nodes[0], c.nodes[1]
	alice := a.user("alice")
	bob := a.user("bobby")
	alice2 := b.login(alice)

	watcher := a.dial(bob)
	watcher.write(map[string]any{"type": "presence.subscribe", "user_ids": []string{alice.id}})
	if m := watcher.await(isType("presence")); m["status"] != "offline" {
		t.Fatalf("snapshot %v, want offline", m)
	}
	onA := a.dial(alice)
	watcher.await(presenceOf(alice.id, "online"))
	onB := b.dial(alice2)
	for _, n := range []*clusterNode{a, b} {
		eventually(t, "alice online on both nodes", func() bool { return n.presence(bob, alice.id)["status"] == "online" })
	}

	onA.closeClean()
	// Still online through node B: wait until A has written its change
	// (the node key no longer names A), then check both nodes.
	kv, err := streams.NewPresenceKV(context.Background(), mustJS(t, a.nc))
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "node A's entry gone from alice's key", func() bool {
		rec, _, err := kv.User(context.Background(), alice.id)
		return err == nil && len(rec.Nodes) == 1
	})
	for _, n := range []*clusterNode{a, b} {
		if p := n.presence(bob, alice.id); p["status"] != "online" {
			t.Fatalf("alice %v with a device still on node B", p)
		}
	}
	watcher.quiet(presenceOf(alice.id, "offline"), "offline while a device is on node B")

	before := time.Now().UnixMilli()
	onB.closeClean()
	m := watcher.await(presenceOf(alice.id, "offline"))
	if ls, _ := m["last_seen"].(float64); int64(ls) < before-1000 {
		t.Fatalf("offline event %v, want last_seen near %d", m, before)
	}
	for _, n := range []*clusterNode{a, b} {
		p := n.presence(bob, alice.id)
		if ls, _ := p["last_seen"].(float64); p["status"] != "offline" || int64(ls) < before-1000 {
			t.Fatalf("alice %v after her last device closed, want offline with last_seen", p)
		}
	}
}

// A node that dies without a word (no lease drop, no key writes): its
// users read offline within the lease, and subscribers elsewhere are
// told, without anyone deleting their keys.
func TestPresenceNodeCrash(t *testing.T) {
	lease := 2 * time.Second
	c := startPresenceCluster(t, 2, chat.Config{PresenceLease: lease}, Config{})
	a, b := c.nodes[0], c.nodes[1]
	alice := b.user("alice")
	bob := a.user("bobby")
	b.dial(alice)
	watcher := a.dial(bob)
	watcher.write(map[string]any{"type": "presence.subscribe", "user_ids": []string{alice.id}})
	watcher.await(presenceOf(alice.id, "online"))

	crashed := time.Now()
	b.crash()
	watcher.await(presenceOf(alice.id, "offline"))
	if took := time.Since(crashed); took > lease+5*time.Second {
		t.Fatalf("offline after %v, lease %v", took, lease)
	}
	if p := a.presence(bob, alice.id); p["status"] != "offline" {
		t.Fatalf("alice %v after her node crashed", p)
	}
}

func mustJS(t *testing.T, nc *nats.Conn) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// A client that stops reading and answering pings, its socket open, is
// dropped after the presence timeout plus one heartbeat: offline then.
func TestPresenceSilentClient(t *testing.T) {
	c := startPresenceCluster(t, 1, chat.Config{}, Config{Heartbeat: 200 * time.Millisecond, PresenceTimeout: 300 * time.Millisecond})
	a := c.nodes[0]
	alice := a.user("alice")
	bob := a.user("bobby")
	url := "ws" + strings.TrimPrefix(a.url, "http") + "/v1/ws?access_token=" + alice.token
	conn, resp, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	defer conn.Close()
	// Never read: gorilla answers pings only while reading.
	eventually(t, "alice online", func() bool { return a.presence(bob, alice.id)["status"] == "online" })
	start := time.Now()
	eventually(t, "silent alice offline", func() bool { return a.presence(bob, alice.id)["status"] == "offline" })
	if took := time.Since(start); took < 300*time.Millisecond {
		t.Fatalf("dropped after %v, before the timeout", took)
	}

	// A client that keeps answering stays online past the same time.
	w := a.dial(alice)
	eventually(t, "alice online again", func() bool { return a.presence(bob, alice.id)["status"] == "online" })
	deadline := time.Now().Add(1500 * time.Millisecond)
	for time.Now().Before(deadline) {
		if p := a.presence(bob, alice.id); p["status"] != "online" {
			t.Fatalf("a reading client went %v", p)
		}
		time.Sleep(100 * time.Millisecond)
	}
	w.closeClean()
}

// presence.subscribe: a snapshot, then an event on every change, none
// after presence.unsubscribe; unknown users 404; the per-connection cap.
func TestPresenceSubscribeChangesUnsubscribe(t *testing.T) {
	c := startPresenceCluster(t, 1, chat.Config{MaxPresenceSubscriptions: 2}, Config{})
	a := c.nodes[0]
	alice, bob, carol, dave := a.user("alice"), a.user("bobby"), a.user("carol"), a.user("daved")
	w := a.dial(bob)
	w.write(map[string]any{"type": "presence.subscribe", "ref": "s1", "user_ids": []string{alice.id, "01JDQ40A2C4E6G8J0K2M4P6R8T"}})
	if m := w.await(isType("error")); m["status"] != float64(404) || m["ref"] != "s1" {
		t.Fatalf("unknown user: %v, want 404", m)
	}
	w.quiet(isType("presence"), "a refused subscribe sent a snapshot")

	w.write(map[string]any{"type": "presence.subscribe", "user_ids": []string{alice.id, carol.id}})
	for range 2 {
		if m := w.await(isType("presence")); m["status"] != "offline" || m["last_seen"] != nil {
			t.Fatalf("snapshot %v, want offline, never seen", m)
		}
	}
	w.write(map[string]any{"type": "presence.subscribe", "ref": "s3", "user_ids": []string{dave.id}})
	if m := w.await(isType("error")); m["status"] != float64(400) || m["ref"] != "s3" {
		t.Fatalf("third user over a cap of 2: %v, want 400", m)
	}

	ac := a.dial(alice)
	w.await(presenceOf(alice.id, "online"))
	ac.closeClean()
	if m := w.await(presenceOf(alice.id, "offline")); m["last_seen"] == nil {
		t.Fatalf("offline event %v without last_seen", m)
	}
	cc := a.dial(carol)
	w.await(presenceOf(carol.id, "online"))

	w.write(map[string]any{"type": "presence.unsubscribe", "user_ids": []string{alice.id}})
	w.quiet(isType("presence"), "unsubscribe") // the unsubscribe is handled before the ping
	// A control connection sees alice's change; bob, unsubscribed, does not.
	ctl := a.dial(dave)
	ctl.write(map[string]any{"type": "presence.subscribe", "user_ids": []string{alice.id}})
	ctl.await(isType("presence"))
	a.dial(alice)
	ctl.await(presenceOf(alice.id, "online"))
	w.quiet(presenceOf(alice.id, "online"), "an event after unsubscribe")
	// Carol is still watched; unsubscribing freed room under the cap.
	cc.closeClean()
	w.await(presenceOf(carol.id, "offline"))
	w.write(map[string]any{"type": "presence.subscribe", "ref": "s4", "user_ids": []string{dave.id}})
	w.await(presenceOf(dave.id, "online"))
}

// Privacy and blocks apply to events as to REST, and a hidden change
// sends nothing at all (not even an unchanged "offline").
func TestPresenceEventsPrivacyAndBlocks(t *testing.T) {
	c := startPresenceCluster(t, 1, chat.Config{}, Config{})
	a := c.nodes[0]
	alice, bob, carol := a.user("alice"), a.user("bobby"), a.user("carol")
	if r := a.do("PUT", "/v1/me/privacy", alice.token, map[string]string{"last_seen": "nobody"}); r.status != 200 {
		t.Fatal(r.status, string(r.raw))
	}
	if r := a.do("PUT", "/v1/me/privacy", carol.token, map[string]string{"last_seen": "contacts", "online": "same_as_last_seen"}); r.status != 200 {
		t.Fatal(r.status, string(r.raw))
	}
	w := a.dial(bob)
	w.write(map[string]any{"type": "presence.subscribe", "user_ids": []string{alice.id, carol.id}})
	w.await(presenceOf(alice.id, "offline"))
	w.await(presenceOf(carol.id, "offline"))

	// alice: online visible, last_seen never.
	ac := a.dial(alice)
	w.await(presenceOf(alice.id, "online"))
	ac.closeClean()
	if m := w.await(presenceOf(alice.id, "offline")); m["last_seen"] != nil {
		t.Fatalf("last_seen %v shown against alice's nobody", m)
	}
	if p := a.presence(bob, alice.id); p["last_seen"] != nil {
		t.Fatalf("REST shows last_seen %v against alice's nobody", p)
	}
	// carol hides everything from non-contacts: no event at all.
	ctl := a.dial(carol)
	eventually(t, "carol online to herself", func() bool { return a.presence(carol, carol.id)["status"] == "online" })
	w.quiet(func(m map[string]any) bool { return m["type"] == "presence" && m["user_id"] == carol.id }, "carol's hidden change")
	if p := a.presence(bob, carol.id); p["status"] != "offline" {
		t.Fatalf("REST shows carol %v to a non-contact", p)
	}
	ctl.closeClean()
	// Once bob is a contact, carol's changes show, with last_seen.
	if r := a.send(bob, carol, "c1"); r.status != 201 {
		t.Fatal(r.status, string(r.raw))
	}
	eventually(t, "bob a contact of carol", func() bool {
		ok, err := a.db.SharesConversation(context.Background(), bob.id, carol.id)
		return err == nil && ok
	})
	ctl = a.dial(carol)
	w.await(presenceOf(carol.id, "online"))
	ctl.closeClean()
	if m := w.await(presenceOf(carol.id, "offline")); m["last_seen"] == nil {
		t.Fatalf("a contact gets %v without last_seen", m)
	}

	// A block, either way, hides everything from then on.
	if r := a.do("PUT", "/v1/me/blocks/"+bob.id, carol.token, nil); r.status != 200 {
		t.Fatal(r.status, string(r.raw))
	}
	// The block itself shows at once: last_seen goes.
	if m := w.await(presenceOf(carol.id, "offline")); m["last_seen"] != nil {
		t.Fatalf("after a block: %v", m)
	}
	other := a.dial(bob)
	other.write(map[string]any{"type": "presence.subscribe", "user_ids": []string{carol.id}})
	if m := other.await(isType("presence")); m["status"] != "offline" || m["last_seen"] != nil {
		t.Fatalf("blocked snapshot %v, want offline without last_seen", m)
	}
	a.dial(carol)
	eventually(t, "carol online to herself", func() bool { return a.presence(carol, carol.id)["status"] == "online" })
	w.quiet(func(m map[string]any) bool { return m["type"] == "presence" && m["user_id"] == carol.id }, "a blocked user's change")
	other.quiet(func(m map[string]any) bool { return m["type"] == "presence" && m["user_id"] == carol.id }, "a blocked user's change")
	if p := a.presence(bob, carol.id); p["status"] != "offline" || p["last_seen"] != nil {
		t.Fatalf("REST shows blocked carol %v", p)
	}
}

// composing turns into paused by itself without a refresh; a refresh
// keeps it; a blocked participant gets no typing at all.
func TestTypingExpires(t *testing.T) {
	ttl := 600 * time.Millisecond
	c := startPresenceCluster(t, 1, chat.Config{TypingTTL: ttl}, Config{})
	a := c.nodes[0]
	alice, bob, carol := a.user("alice"), a.user("bobby"), a.user("carol")
	r := a.send(alice, bob, "m1")
	if r.status != 201 {
		t.Fatal(r.status, string(r.raw))
	}
	conv := r.body["conversation_id"].(string)
	wb := a.dial(bob)
	wa := a.dial(alice)
	typing := func(state string) func(map[string]any) bool {
		return func(m map[string]any) bool {
			return m["type"] == "typing" && m["conversation_id"] == conv && m["user_id"] == alice.id && m["state"] == state
		}
	}
	wa.write(map[string]any{"type": "typing", "conversation_id": conv, "state": "composing"})
	wb.await(typing("composing"))
	start := time.Now()
	wb.await(typing("paused"))
	if took := time.Since(start); took < ttl/2 {
		t.Fatalf("paused after %v, before the %v expiry", took, ttl)
	}
	// Refreshed composing stays composing until the refreshes stop.
	wa.write(map[string]any{"type": "typing", "conversation_id": conv, "state": "composing"})
	wb.await(typing("composing"))
	refreshUntil := time.Now().Add(3 * ttl)
	for time.Now().Before(refreshUntil) {
		time.Sleep(ttl / 3)
		wa.write(map[string]any{"type": "typing", "conversation_id": conv, "state": "composing"})
	}
	wb.quiet(typing("paused"), "paused while refreshed")
	wb.await(typing("paused"))

	// An explicit paused is sent once, and no expiry follows it.
	wa.write(map[string]any{"type": "typing", "conversation_id": conv, "state": "composing"})
	wb.await(typing("composing"))
	wa.write(map[string]any{"type": "typing", "conversation_id": conv, "state": "paused"})
	wb.await(typing("paused"))

	// Blocked: carol and alice share a conversation, carol blocks alice.
	r = a.send(alice, carol, "m2")
	if r.status != 201 {
		t.Fatal(r.status, string(r.raw))
	}
	conv2 := r.body["conversation_id"].(string)
	if r := a.do("PUT", "/v1/me/blocks/"+alice.id, carol.token, nil); r.status != 200 {
		t.Fatal(r.status, string(r.raw))
	}
	wc := a.dial(carol)
	wa.write(map[string]any{"type": "typing", "conversation_id": conv2, "state": "composing"})
	// An expiry would come after ttl: wait past it on carol's side.
	time.Sleep(2 * ttl)
	wc.quiet(isType("typing"), "typing from a blocked user")
}

// An HTTP-only device: its polls keep it online, it types over REST,
// subscribes to presence over REST and gets typing and presence events
// in its polls; it goes offline once it stops polling.
func TestLongPollSession(t *testing.T) {
	c := startPresenceCluster(t, 1, chat.Config{PollIdle: 500 * time.Millisecond}, Config{})
	a := c.nodes[0]
	alice, bob := a.user("alice"), a.user("bobby")
	r := a.send(bob, alice, "m1")
	if r.status != 201 {
		t.Fatal(r.status, string(r.raw))
	}
	conv := r.body["conversation_id"].(string)
	first := a.do("GET", "/v1/events", alice.token, nil)
	cur := first.body["cursor"].(string)
	if p := a.presence(bob, alice.id); p["status"] != "online" {
		t.Fatalf("a polling device reads %v", p)
	}
	sub := a.do("POST", "/v1/presence/subscribe", alice.token, map[string]any{"user_ids": []string{bob.id}})
	if sub.status != 200 {
		t.Fatal(sub.status, string(sub.raw))
	}
	snaps := sub.body["presence"].([]any)
	if len(snaps) != 1 || snaps[0].(map[string]any)["status"] != "offline" {
		t.Fatalf("snapshot %v, want bob offline", sub.body)
	}
	if r := a.do("POST", "/v1/presence/subscribe", alice.token, map[string]any{"user_ids": []string{"01JDQ40A2C4E6G8J0K2M4P6R8T"}}); r.status != 404 {
		t.Fatalf("unknown user: %d %s", r.status, r.raw)
	}

	wb := a.dial(bob)
	// bob's WebSocket shows up in alice's poll as a presence event.
	poll := func() []map[string]any {
		t.Helper()
		r := a.do("GET", "/v1/events?timeout=10&cursor="+cur, alice.token, nil)
		if r.status != 200 {
			t.Fatal(r.status, string(r.raw))
		}
		cur = r.body["cursor"].(string)
		var out []map[string]any
		for _, e := range r.body["events"].([]any) {
			out = append(out, e.(map[string]any))
		}
		return out
	}
	pollFor := func(match func(map[string]any) bool, what string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			for _, e := range poll() {
				if match(e) {
					return
				}
			}
		}
		t.Fatalf("no %s in alice's polls", what)
	}
	pollFor(presenceOf(bob.id, "online"), "bob online")
	wb.write(map[string]any{"type": "typing", "conversation_id": conv, "state": "composing"})
	pollFor(func(m map[string]any) bool {
		return m["type"] == "typing" && m["user_id"] == bob.id && m["state"] == "composing"
	}, "bob's typing")

	// alice types over REST; bob's WebSocket gets it.
	if r := a.do("POST", "/v1/conversations/"+conv+"/typing", alice.token, map[string]string{"state": "composing"}); r.status != 204 {
		t.Fatal(r.status, string(r.raw))
	}
	wb.await(func(m map[string]any) bool {
		return m["type"] == "typing" && m["user_id"] == alice.id && m["state"] == "composing"
	})
	if r := a.do("POST", "/v1/conversations/"+conv+"/typing", alice.token, map[string]string{"state": "dancing"}); r.status != 400 {
		t.Fatalf("bad state: %d", r.status)
	}
	if r := a.do("POST", "/v1/conversations/nope/typing", alice.token, map[string]string{"state": "paused"}); r.status != 404 {
		t.Fatalf("unknown conversation: %d", r.status)
	}
	if r := a.do("POST", "/v1/presence/unsubscribe", alice.token, map[string]any{"user_ids": []string{bob.id}}); r.status != 204 {
		t.Fatal(r.status, string(r.raw))
	}

	// bob watches alice: when she stops polling she goes offline.
	wb.write(map[string]any{"type": "presence.subscribe", "user_ids": []string{alice.id}})
	wb.await(presenceOf(alice.id, "online"))
	start := time.Now()
	wb.await(presenceOf(alice.id, "offline"))
	if took := time.Since(start); took < 250*time.Millisecond {
		t.Fatalf("offline %v after the last poll, before the idle time", took)
	}
}

// The server pings a client that only answers pongs every heartbeat, and
// skips its pings while the client sends frames itself (it is alive,
// and its read deadline moves with every frame).
func TestHeartbeatPingsOnlyQuietClients(t *testing.T) {
	hb := 100 * time.Millisecond
	c := startPresenceCluster(t, 1, chat.Config{}, Config{Heartbeat: hb, PresenceTimeout: 2 * time.Second})
	a := c.nodes[0]
	alice := a.user("alice")
	dial := func() (*websocket.Conn, *atomic.Int64) {
		url := "ws" + strings.TrimPrefix(a.url, "http") + "/v1/ws?access_token=" + alice.token
		conn, resp, err := websocket.DefaultDialer.Dial(url, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		t.Cleanup(func() { _ = conn.Close() })
		var pings atomic.Int64
		conn.SetPingHandler(func(data string) error {
			pings.Add(1)
			return conn.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
		})
		go func() {
			for {
				if _, _, err := conn.ReadMessage(); err != nil {
					return
				}
			}
		}()
		return conn, &pings
	}
	talker, talkerPings := dial()
	_, quietPings := dial()
	var wmu sync.Mutex
	until := time.Now().Add(15 * hb)
	for time.Now().Before(until) {
		wmu.Lock()
		if err := talker.WriteMessage(websocket.TextMessage, []byte(`{"type":"ping"}`)); err != nil {
			t.Fatal(err)
		}
		wmu.Unlock()
		time.Sleep(hb / 4)
	}
	eventually(t, "pings to the quiet client", func() bool { return quietPings.Load() >= 5 })
	// Scheduling on a loaded machine may let one heartbeat pass without
	// a frame; a ping every heartbeat would be 15.
	if n := talkerPings.Load(); n > 3 {
		t.Fatalf("the server pinged a client that talks %d times in 15 heartbeats", n)
	}
	if p := a.presence(alice, alice.id); p["status"] != "online" {
		t.Fatalf("alice %v", p)
	}
}

// The heartbeat ping, in its exact short form and in any other, gets its
// pong (the short form skips decoding).
func TestPingForms(t *testing.T) {
	c := startPresenceCluster(t, 1, chat.Config{}, Config{})
	a := c.nodes[0]
	w := a.dial(a.user("alice"))
	for _, f := range []string{`{"type":"ping"}`, `{"type": "ping"}`, `{"type":"ping","ref":"r1"}`} {
		if err := w.conn.WriteMessage(websocket.TextMessage, []byte(f)); err != nil {
			t.Fatal(err)
		}
		m := w.await(isType("pong"))
		if want := map[bool]any{true: "r1", false: nil}[strings.Contains(f, "r1")]; m["ref"] != want {
			t.Fatalf("%s answered %v", f, m)
		}
	}
}
