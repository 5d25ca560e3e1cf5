package e2e

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

// Accounts and devices.

func TestRefreshRotatesAndReuseRevokesDevice(t *testing.T) {
	t.Parallel()
	s := start(t)
	u := s.register("alice")
	d := s.login(u)
	other := s.login(u)
	ws, _ := s.connect(d, "")

	// A refresh gives new tokens for the same device.
	b := s.must(http.StatusOK, "POST", "/v1/auth/refresh", "", obj{"refresh_token": d.refresh})
	if str(b, "user_id") != u.id || str(b, "device_id") != d.deviceID {
		t.Fatalf("refresh answered another user or device: %v", b)
	}
	access1, refresh1 := str(b, "access_token"), str(b, "refresh_token")
	if access1 == "" || refresh1 == "" || refresh1 == d.refresh {
		t.Fatalf("refresh did not rotate the refresh token: %v", b)
	}
	s.must(http.StatusOK, "GET", "/v1/me/devices", access1, nil)

	// The new refresh token works once more.
	b = s.must(http.StatusOK, "POST", "/v1/auth/refresh", "", obj{"refresh_token": refresh1})
	access2, refresh2 := str(b, "access_token"), str(b, "refresh_token")
	s.must(http.StatusOK, "GET", "/v1/me/devices", access2, nil)

	// The first refresh token stopped working, and presenting it (a used
	// one) revokes the device: every token of it, and its open socket.
	wantError(t, s.do("POST", "/v1/auth/refresh", "", obj{"refresh_token": d.refresh}), http.StatusUnauthorized, "unauthorized")
	for name, tok := range map[string]string{"latest access token": access2, "first access token": d.access} {
		if r := s.do("GET", "/v1/me/devices", tok, nil); r.status != http.StatusUnauthorized {
			t.Errorf("after a used refresh token was presented, the device's %s still gets %d on GET /v1/me/devices, want 401 (contract: presenting a used one revokes the device): %s", name, r.status, r.raw)
		}
	}
	if r := s.do("POST", "/v1/auth/refresh", "", obj{"refresh_token": refresh2}); r.status != http.StatusUnauthorized {
		t.Errorf("the revoked device's latest refresh token still works: %d %s", r.status, r.raw)
	}
	if code := ws.waitClosedOrOpen(2 * time.Second); code != 4001 {
		t.Errorf("the revoked device's open WebSocket: close code %d (0 = still open), want 4001 (contract: revoked devices' connections close with 4001)", code)
	}
	// The user's other device is untouched.
	s.must(http.StatusOK, "GET", "/v1/me/devices", other.access, nil)
}

func TestDevicesListAndRevoke(t *testing.T) {
	t.Parallel()
	s := start(t)
	u := s.register("alice")
	d1, d2 := s.login(u), s.login(u)
	ws2, _ := s.connect(d2, "")
	ws1, _ := s.connect(d1, "")

	list := objs(s.must(http.StatusOK, "GET", "/v1/me/devices", d1.access, nil)["devices"])
	var ids []string
	for _, d := range list {
		ids = append(ids, str(d, "device_id"))
	}
	if !slices.Contains(ids, d1.deviceID) || !slices.Contains(ids, d2.deviceID) {
		t.Fatalf("devices %v do not hold both logins %s, %s", ids, d1.deviceID, d2.deviceID)
	}

	for _, d := range list {
		if want := str(d, "device_id") == d1.deviceID; d["current"] != want {
			t.Errorf("device %v: current should be %v for the caller %s", d, want, d1.deviceID)
		}
	}

	r := s.do("DELETE", "/v1/me/devices/"+d2.deviceID, d1.access, nil)
	if r.status/100 != 2 {
		t.Fatalf("DELETE device: %d %s", r.status, r.raw)
	}
	if code := ws2.waitClosed(time.Second); code != 4001 {
		t.Errorf("revoked device's socket closed with %d, want 4001", code)
	}
	wantError(t, s.do("GET", "/v1/me/devices", d2.access, nil), http.StatusUnauthorized, "unauthorized")
	wantError(t, s.do("POST", "/v1/auth/refresh", "", obj{"refresh_token": d2.refresh}), http.StatusUnauthorized, "unauthorized")
	if _, res, err := s.tryDial(d2.access, "", nil); err == nil || res == nil || res.StatusCode != http.StatusUnauthorized {
		t.Errorf("revoked device can still open a WebSocket (err %v)", err)
	}
	// The revoking device is unaffected.
	ws1.ping("still-here")
	for _, d := range objs(s.must(http.StatusOK, "GET", "/v1/me/devices", d1.access, nil)["devices"]) {
		if str(d, "device_id") == d2.deviceID {
			t.Errorf("revoked device still listed as active: %v", d)
		}
	}
	// Revoking again changes nothing and is not an error.
	if r := s.do("DELETE", "/v1/me/devices/"+d2.deviceID, d1.access, nil); r.status/100 != 2 {
		t.Errorf("revoking a revoked device again: %d %s", r.status, r.raw)
	}
	// Someone else's device: 404, and nothing revoked.
	_, bobs := s.newUser("bob", 1)
	wantError(t, s.do("DELETE", "/v1/me/devices/"+bobs[0].deviceID, d1.access, nil), http.StatusNotFound, "not_found")
	s.must(http.StatusOK, "GET", "/v1/me/devices", bobs[0].access, nil)
}

func TestUsersAndConversationIDs(t *testing.T) {
	t.Parallel()
	s := start(t)
	alice, as := s.newUser("alice", 1)
	bob, bs := s.newUser("bob", 1)
	for _, path := range []string{"/v1/users/" + bob.id, "/v1/users/by-username/bob"} {
		status, b := s.doJSON("GET", path, as[0].access, nil)
		if status != http.StatusOK || str(b, "user_id") != bob.id || str(b, "username") != "bob" {
			t.Errorf("GET %s = %d %v, want 200 and bob", path, status, b)
		}
	}
	c1 := s.conversation(as[0], bob)
	c2 := s.conversation(bs[0], alice)
	if c1 == "" || c1 != c2 {
		t.Errorf("POST /v1/conversations: alice got %q, bob got %q; want one id for both", c1, c2)
	}
	if again := s.conversation(as[0], bob); again != c1 {
		t.Errorf("second POST /v1/conversations gave %q, want %q", again, c1)
	}
	self := s.conversation(as[0], alice)
	if self == "" || self == c1 {
		t.Errorf("self conversation id %q, want its own id (not %q)", self, c1)
	}
	// Created before the first message, it is in both lists.
	if c := s.conversationSummary(bs[0], c1); str(c, "peer_id") != alice.id || str(c, "type") != "user" {
		t.Errorf("bob's list entry: %v", c)
	}
}

// Sending and receiving.

func TestSendFansOutToEveryDevice(t *testing.T) {
	t.Parallel()
	s := start(t)
	alice, as := s.newUser("alice", 2)
	bob, bs := s.newUser("bob", 2)
	conv := s.conversation(as[0], bob)
	a1, _ := s.connect(as[0], "")
	a2, _ := s.connect(as[1], "")
	b1, _ := s.connect(bs[0], "")
	b2, _ := s.connect(bs[1], "")
	all := []*wsClient{a1, a2, b1, b2}

	// Over WebSocket, with an explicit ref.
	f := sendBody("m-ws", bob.id, "hello over ws")
	f["type"], f["ref"] = "send", "my-ref-1"
	a1.send(f)
	ack := a1.waitFor("ack", func(f obj) bool { return f["type"] == "ack" || f["type"] == "error" })
	if ack["type"] != "ack" || ack["ref"] != "my-ref-1" || ack["client_message_id"] != "m-ws" || num(ack, "seq") != 1 ||
		num(ack, "server_ts") <= 0 || ack["duplicate"] != false || ack["status"] != "sent" || str(ack, "message_id") == "" ||
		ack["conversation_id"] != conv {
		t.Fatalf("ack = %v", ack)
	}
	for _, c := range all {
		m := c.waitMessage("m-ws")
		if str(m, "cursor") == "" || m["message_id"] != ack["message_id"] || m["conversation_id"] != conv || num(m, "seq") != 1 ||
			m["sender_id"] != alice.id || m["recipient_id"] != bob.id || m["message_type"] != "user" ||
			m["content"] != "hello over ws" || num(m, "server_ts") != num(ack, "server_ts") {
			t.Errorf("%s got message event %v", c.name, m)
		}
	}

	// Over REST: 201 with the ack's fields.
	r := s.sendREST(bs[0], alice, "m-rest", "hello over rest")
	if num(r, "seq") != 2 || r["conversation_id"] != conv || r["duplicate"] != false || r["client_message_id"] != "m-rest" || r["status"] != "sent" {
		t.Fatalf("REST ack = %v", r)
	}
	for _, c := range all {
		if m := c.waitMessage("m-rest"); m["message_id"] != r["message_id"] || m["content"] != "hello over rest" {
			t.Errorf("%s got %v", c.name, m)
		}
	}
	// The ref defaults to the client_message_id.
	if ack := a1.sendWait(bob, "m-noref", "x"); ack["ref"] != "m-noref" {
		t.Errorf("ack without ref: %v", ack)
	}
	for _, c := range all {
		c.waitMessage("m-noref")
		for _, id := range []string{"m-ws", "m-rest", "m-noref"} {
			if n := c.count(func(f obj) bool { return f["type"] == "message" && f["client_message_id"] == id }); n != 1 {
				t.Errorf("%s got %d message events for %s, want 1", c.name, n, id)
			}
		}
	}
}

func TestHistoryPagingAndConversationList(t *testing.T) {
	t.Parallel()
	s := start(t)
	alice, as := s.newUser("alice", 1)
	bob, bs := s.newUser("bob", 2)
	carol, cs := s.newUser("carol", 1)
	conv := s.conversation(as[0], bob)
	for i := 1; i <= 5; i++ {
		s.sendREST(as[0], bob, fmt.Sprintf("h%d", i), fmt.Sprintf("message number %d", i))
	}
	path := "/v1/conversations/" + conv + "/messages"

	page := func(q string) ([]int64, *string) {
		t.Helper()
		b := s.must(http.StatusOK, "GET", path+q, bs[0].access, nil)
		var seqs []int64
		for _, m := range objs(b["messages"]) {
			seqs = append(seqs, num(m, "seq"))
		}
		next, isStr := b["next_cursor"].(string)
		if !isStr && b["next_cursor"] != nil {
			t.Fatalf("next_cursor %v is neither a string nor null", b["next_cursor"])
		}
		if isStr {
			return seqs, &next
		}
		return seqs, nil
	}
	seqs, next := page("?limit=2")
	if !slices.Equal(seqs, []int64{5, 4}) || next == nil {
		t.Fatalf("first page %v next %v, want [5 4] and a cursor", seqs, next)
	}
	seqs, next = page("?limit=2&cursor=" + url.QueryEscape(*next))
	if !slices.Equal(seqs, []int64{3, 2}) || next == nil {
		t.Fatalf("second page %v next %v, want [3 2] and a cursor", seqs, next)
	}
	seqs, next = page("?limit=2&cursor=" + url.QueryEscape(*next))
	if !slices.Equal(seqs, []int64{1}) || next != nil {
		t.Fatalf("last page %v next %v, want [1] and null", seqs, next)
	}
	// A page that ends exactly at the oldest message has no next cursor;
	// one that ends just above it has one.
	if seqs, next = page("?limit=5"); !slices.Equal(seqs, []int64{5, 4, 3, 2, 1}) || next != nil {
		t.Errorf("limit=5: %v next %v, want all five and null", seqs, next)
	}
	if seqs, next = page("?limit=4"); len(seqs) != 4 || next == nil {
		t.Errorf("limit=4: %v next %v, want four and a cursor", seqs, next)
	}
	if seqs, next = page(""); len(seqs) != 5 || next != nil {
		t.Errorf("default limit: %v next %v", seqs, next)
	}
	h := s.history(bs[0], conv)
	if m := at(h, 0); m.Content != "message number 5" || m.SenderID != alice.id || m.RecipientID != bob.id ||
		m.ClientMessageID != "h5" || m.Status != "sent" || m.MessageID == "" || m.ServerTS <= 0 ||
		m.MessageType != "user" || m.ConversationID != conv {
		t.Errorf("history entry %v", m)
	}
	// An empty conversation.
	empty := s.conversation(cs[0], bob)
	b := s.must(http.StatusOK, "GET", "/v1/conversations/"+empty+"/messages", cs[0].access, nil)
	if len(objs(b["messages"])) != 0 || b["next_cursor"] != nil {
		t.Errorf("empty conversation history: %v", b)
	}

	// Carol's empty conversation is not in bob's list until bob opens it
	// too (a stranger cannot put herself into his list).
	if l := objs(s.must(http.StatusOK, "GET", "/v1/conversations", bs[0].access, nil)["conversations"]); len(l) != 1 || l[0]["conversation_id"] != conv {
		t.Fatalf("bob's list before he opens carol's empty conversation: %v, want alice's alone", l)
	}
	if again := s.conversation(bs[0], carol); again != empty {
		t.Fatalf("bob opening carol's conversation: %s, want %s", again, empty)
	}

	// The list, most recent first: carol's conversation was created after
	// alice's last message.
	b = s.must(http.StatusOK, "GET", "/v1/conversations", bs[0].access, nil)
	list := objs(b["conversations"])
	if len(list) != 2 || list[0]["conversation_id"] != empty || list[1]["conversation_id"] != conv || b["next_cursor"] != nil {
		t.Fatalf("bob's list: %v", b)
	}
	c := list[1]
	if c["type"] != "user" || c["peer_id"] != alice.id || c["title"] != "alice" || num(c, "last_seq") != 5 ||
		!strings.HasPrefix("message number 5", str(c, "last_message_preview")) || str(c, "last_message_preview") == "" ||
		num(c, "last_message_at") <= 0 || num(c, "last_read_seq") != 0 || num(c, "unread_count") != 5 {
		t.Errorf("bob's entry for alice: %v", c)
	}
	if c := list[0]; c["peer_id"] != carol.id || num(c, "last_seq") != 0 || num(c, "unread_count") != 0 {
		t.Errorf("bob's entry for carol: %v", c)
	}
	if c := s.conversationSummary(as[0], conv); num(c, "unread_count") != 0 || c["peer_id"] != bob.id || num(c, "last_seq") != 5 {
		t.Errorf("alice's own messages count as unread for her: %v", c)
	}
	// Paging the list.
	b = s.must(http.StatusOK, "GET", "/v1/conversations?limit=1", bs[0].access, nil)
	next2, _ := b["next_cursor"].(string)
	if len(objs(b["conversations"])) != 1 || next2 == "" {
		t.Fatalf("list limit=1: %v", b)
	}
	b = s.must(http.StatusOK, "GET", "/v1/conversations?limit=1&cursor="+url.QueryEscape(next2), bs[0].access, nil)
	if l := objs(b["conversations"]); len(l) != 1 || at(l, 0)["conversation_id"] != conv || b["next_cursor"] != nil {
		t.Errorf("list page 2: %v", b)
	}

	// A read on bob's other device moves unread_count on this one.
	msgs := s.history(bs[1], conv) // newest first
	s.must(http.StatusOK, "POST", "/v1/messages/"+at(msgs, 2).MessageID+"/status", bs[1].access, obj{"status": "read", "timestamp": time.Now().UnixMilli()})
	eventually(t, "unread_count 2 and last_read_seq 3 after a read of seq 3 on the other device", func() bool {
		c := s.conversationSummary(bs[0], conv)
		return num(c, "unread_count") == 2 && num(c, "last_read_seq") == 3
	})
	ws, _ := s.connect(bs[1], "")
	ws.send(obj{"type": "receipt", "message_id": at(msgs, 0).MessageID, "status": "read", "ref": "rd"})
	eventually(t, "unread_count 0 after a read over WebSocket", func() bool {
		return num(s.conversationSummary(bs[0], conv), "unread_count") == 0
	})
	// A new message from alice moves her conversation to the top again.
	s.sendREST(as[0], bob, "h6", "six")
	if l := objs(s.must(http.StatusOK, "GET", "/v1/conversations", bs[0].access, nil)["conversations"]); at(l, 0)["conversation_id"] != conv || num(at(l, 0), "unread_count") != 1 {
		t.Errorf("after a new message: %v", l)
	}
}

func TestReceipts(t *testing.T) {
	t.Parallel()
	s := start(t)
	_, as := s.newUser("alice", 2)
	bob, bs := s.newUser("bob", 2)
	a1, _ := s.connect(as[0], "")
	a2, _ := s.connect(as[1], "")
	b1, _ := s.connect(bs[0], "")
	b2, _ := s.connect(bs[1], "")
	var ids []string
	for i := 1; i <= 3; i++ {
		ids = append(ids, str(a1.sendWait(bob, fmt.Sprintf("r%d", i), "text"), "message_id"))
	}
	conv := s.conversation(as[0], bob)
	isReceipt := func(seq int64, status string) func(obj) bool {
		return func(f obj) bool { return f["type"] == "receipt" && num(f, "seq") == seq && f["status"] == status }
	}

	// bob reads message 2 first, over WebSocket.
	b1.send(obj{"type": "receipt", "message_id": ids[1], "status": "read", "ref": "rcpt-1"})
	for _, c := range []*wsClient{a1, a2, b2} {
		e := c.waitFor("read receipt for seq 2", isReceipt(2, "read"))
		if e["message_id"] != ids[1] || e["conversation_id"] != conv || e["user_id"] != bob.id || str(e, "cursor") == "" || num(e, "ts") <= 0 {
			t.Errorf("%s: receipt %v", c.name, e)
		}
	}
	// Delivered for message 1 changes nothing (read covers it): no event.
	s.must(http.StatusOK, "POST", "/v1/messages/"+ids[0]+"/status", bs[1].access, obj{"status": "delivered", "timestamp": time.Now().UnixMilli()})
	// Delivered for message 3 is a change.
	s.must(http.StatusOK, "POST", "/v1/messages/"+ids[2]+"/status", bs[1].access, obj{"status": "delivered", "timestamp": time.Now().UnixMilli()})
	for _, c := range []*wsClient{a1, a2, b1} {
		c.waitFor("delivered receipt for seq 3", isReceipt(3, "delivered"))
	}
	// The sender sees read for 1 (covered by the read of 2), read for 2,
	// delivered for 3.
	eventually(t, "history statuses read, read, delivered", func() bool {
		h := s.history(as[0], conv)
		return at(h, 2).Status == "read" && at(h, 1).Status == "read" && at(h, 0).Status == "delivered"
	})
	// Backwards moves change nothing: read 1 (covered), delivered 2.
	s.must(http.StatusOK, "POST", "/v1/messages/"+ids[0]+"/status", bs[0].access, obj{"status": "read", "timestamp": time.Now().UnixMilli()})
	b1.send(obj{"type": "receipt", "message_id": ids[1], "status": "delivered"})
	s.must(http.StatusOK, "POST", "/v1/messages/"+ids[2]+"/status", bs[0].access, obj{"status": "read", "timestamp": time.Now().UnixMilli()})
	for _, c := range []*wsClient{a1, a2} {
		c.waitFor("read receipt for seq 3", isReceipt(3, "read"))
		var got []string
		for _, f := range c.snapshot() {
			if f["type"] == "receipt" {
				got = append(got, fmt.Sprintf("%s:%d", f["status"], num(f, "seq")))
			}
		}
		if !slices.Equal(got, []string{"read:2", "delivered:3", "read:3"}) {
			t.Errorf("%s receipts %v, want [read:2 delivered:3 read:3] (one per change, none invented)", c.name, got)
		}
	}
	eventually(t, "history status of seq 3 read", func() bool { return at(s.history(as[1], conv), 0).Status == "read" })

	// Only a recipient may set a status.
	wantError(t, s.do("POST", "/v1/messages/"+ids[0]+"/status", as[0].access, obj{"status": "read", "timestamp": 1}), http.StatusForbidden, "forbidden")
	a1.send(obj{"type": "receipt", "message_id": ids[0], "status": "read", "ref": "mine"})
	if e := a1.waitFor("error for mine", func(f obj) bool { return f["ref"] == "mine" }); e["type"] != "error" || num(e, "status") != 403 || e["code"] != "forbidden" {
		t.Errorf("sender's own receipt frame answered %v, want error 403 forbidden", e)
	}
	a1.ping("after-403")
}

func TestDeleteForMeAndForEveryone(t *testing.T) {
	t.Parallel()
	s := start(t)
	_, as := s.newUser("alice", 2)
	bob, bs := s.newUser("bob", 2)
	a1, aSynced := s.connect(as[0], "")
	a2, _ := s.connect(as[1], "")
	b1, synced := s.connect(bs[0], "")
	b2, _ := s.connect(bs[1], "")
	// Cursors are per user: each replays from their own.
	oldCursor := str(synced, "cursor")
	aliceOld := str(aSynced, "cursor")
	conv := s.conversation(as[0], bob)
	m1 := str(a1.sendWait(bob, "d1", "secret one"), "message_id")
	m2 := str(a1.sendWait(bob, "d2", "secret two"), "message_id")
	a1.sendWait(bob, "d3", "three")
	for _, c := range []*wsClient{a1, a2, b1, b2} {
		c.waitMessage("d3")
	}
	isDeleted := func(id, scope string) func(obj) bool {
		return func(f obj) bool { return f["type"] == "deleted" && f["message_id"] == id && f["for"] == scope }
	}

	// bob deletes message 1 for himself.
	s.must(http.StatusOK, "DELETE", "/v1/messages/"+m1+"?for=me", bs[0].access, nil)
	for _, c := range []*wsClient{b1, b2} {
		e := c.waitFor("deleted for me", isDeleted(m1, "me"))
		if e["conversation_id"] != conv || num(e, "seq") != 1 || str(e, "cursor") == "" {
			t.Errorf("%s: %v", c.name, e)
		}
	}
	if hb := s.history(bs[1], conv); !at(hb, 2).Deleted || at(hb, 2).Content != "" || at(hb, 2).Seq != 1 {
		t.Errorf("bob's history after delete for me: %v, want a tombstone without content", at(hb, 2))
	}
	if ha := s.history(as[0], conv); at(ha, 2).Deleted || at(ha, 2).Content != "secret one" {
		t.Errorf("alice's history after bob deleted for himself: %v, want the message", at(ha, 2))
	}

	// Only the sender may delete for everyone; a refusal changes nothing.
	wantError(t, s.do("DELETE", "/v1/messages/"+m2+"?for=everyone", bs[0].access, nil), http.StatusForbidden, "forbidden")
	if hb := s.history(bs[0], conv); at(hb, 1).Content != "secret two" {
		t.Errorf("refused delete changed the message: %v", at(hb, 1))
	}
	s.must(http.StatusOK, "DELETE", "/v1/messages/"+m2+"?for=everyone", as[1].access, nil)
	for _, c := range []*wsClient{a1, a2, b1, b2} {
		e := c.waitFor("deleted for everyone", isDeleted(m2, "everyone"))
		if e["conversation_id"] != conv || num(e, "seq") != 2 {
			t.Errorf("%s: %v", c.name, e)
		}
	}
	// alice's devices never heard of bob's own deletion.
	for _, c := range []*wsClient{a1, a2} {
		if n := c.count(isDeleted(m1, "me")); n != 0 {
			t.Errorf("%s got bob's delete-for-me event", c.name)
		}
	}
	for _, d := range []device{as[0], bs[0]} {
		h := s.history(d, conv)
		if len(h) != 3 || !at(h, 1).Deleted || at(h, 1).Content != "" || at(h, 1).Seq != 2 {
			t.Errorf("%s's history after delete for everyone: %v", d.name, h)
		}
	}
	if c := s.conversationSummary(bs[0], conv); strings.Contains(str(c, "last_message_preview"), "secret") {
		t.Errorf("preview shows deleted content: %v", c)
	}

	// A replay from before the messages never carries deleted content.
	replayed := func(d device, cursor string) map[string]obj {
		t.Helper()
		ws := s.dial(d.access, cursor)
		ws.name = d.label() + " replay"
		ws.waitType("synced")
		out := map[string]obj{}
		for _, f := range ws.snapshot() {
			if f["type"] == "message" || f["type"] == "deleted" && f["for"] == "everyone" {
				out[str(f, "type")+":"+str(f, "message_id")] = f
			}
		}
		ws.close()
		return out
	}
	// The message event itself was erased from INBOX (or, before the
	// erasure has run, it is replayed without its content); the deleted
	// event stays either way.
	rb, ra := replayed(bs[1], oldCursor), replayed(as[0], aliceOld)
	for name, r := range map[string]map[string]obj{"bob": rb, "alice": ra} {
		if m, ok := r["message:"+m2]; ok && (str(m, "content") != "" || m["deleted"] != true) {
			t.Errorf("WebSocket replay to %s carries message 2 deleted for everyone: %v", name, m)
		}
		if _, ok := r["deleted:"+m2]; !ok {
			t.Errorf("WebSocket replay to %s lacks the deleted event of message 2", name)
		}
	}
	if m := ra["message:"+m1]; m["content"] != "secret one" {
		t.Errorf("replay to alice lost message 1, which only bob deleted: %v", m)
	}
	lp := s.must(http.StatusOK, "GET", "/v1/events?timeout=0&cursor="+url.QueryEscape(oldCursor), bs[0].access, nil)
	for _, e := range objs(lp["events"]) {
		if e["type"] == "message" && e["message_id"] == m2 && str(e, "content") != "" {
			t.Errorf("long-poll replay carries message 2 deleted for everyone: %v", e)
		}
	}
	t.Run("delete for me is not replayed to the deleter", func(t *testing.T) {
		// The contract: "A replay never carries the content of a message
		// deleted before it." bob deleted message 1 (for himself) before
		// this replay.
		if m := rb["message:"+m1]; str(m, "content") != "" {
			t.Errorf("WebSocket replay to bob carries the content of message 1, which bob deleted for himself before the replay: %v", m)
		}
		for _, e := range objs(lp["events"]) {
			if e["type"] == "message" && e["message_id"] == m1 && str(e, "content") != "" {
				t.Errorf("long-poll replay to bob carries the content of message 1, which bob deleted for himself: %v", e)
			}
		}
	})
}

func TestSelfChat(t *testing.T) {
	t.Parallel()
	s := start(t)
	alice, as := s.newUser("alice", 2)
	a1, _ := s.connect(as[0], "")
	a2, _ := s.connect(as[1], "")
	conv := s.conversation(as[0], alice)
	ack := a1.sendWait(alice, "note-1", "note to self")
	if ack["conversation_id"] != conv || num(ack, "seq") != 1 {
		t.Fatalf("self ack %v, want conversation %s seq 1", ack, conv)
	}
	r := s.sendREST(as[1], alice, "note-2", "second note")
	if num(r, "seq") != 2 {
		t.Fatalf("second self message seq %v", r["seq"])
	}
	for _, c := range []*wsClient{a1, a2} {
		c.waitMessage("note-2")
		for _, id := range []string{"note-1", "note-2"} {
			if n := c.count(func(f obj) bool { return f["type"] == "message" && f["client_message_id"] == id }); n != 1 {
				t.Errorf("%s got %d events for %s, want exactly 1", c.name, n, id)
			}
		}
	}
	h := s.history(as[1], conv)
	if len(h) != 2 || at(h, 1).Content != "note to self" || at(h, 1).SenderID != alice.id || at(h, 1).RecipientID != alice.id {
		t.Errorf("self history %v", h)
	}
	c := s.conversationSummary(as[0], conv)
	if c["peer_id"] != alice.id || c["title"] != "alice" || num(c, "last_seq") != 2 || num(c, "unread_count") != 0 {
		t.Errorf("self conversation entry %v", c)
	}
}

func TestBlocks(t *testing.T) {
	t.Parallel()
	s := start(t)
	alice, as := s.newUser("alice", 1)
	bob, bs := s.newUser("bob", 1)
	a1, _ := s.connect(as[0], "")
	conv := s.conversation(as[0], bob)
	s.sendREST(as[0], bob, "before", "hi")

	s.must(http.StatusOK, "PUT", "/v1/me/blocks/"+bob.id, as[0].access, nil)
	// Either way, either transport.
	wantError(t, s.do("POST", "/v1/messages", bs[0].access, sendBody("b-1", alice.id, "hey")), http.StatusForbidden, "blocked")
	wantError(t, s.do("POST", "/v1/messages", as[0].access, sendBody("a-1", bob.id, "hey")), http.StatusForbidden, "blocked")
	a1.sendMsg(bob, "a-2", "hey")
	if e := a1.waitFor("answer", func(f obj) bool { return f["ref"] == "a-2" }); e["type"] != "error" || num(e, "status") != 403 || e["code"] != "blocked" {
		t.Errorf("blocked WS send answered %v", e)
	}
	a1.ping("alive")

	s.must(http.StatusOK, "DELETE", "/v1/me/blocks/"+bob.id, as[0].access, nil)
	// Refused sends took no seq; the same client_message_ids now work.
	if r := s.sendREST(bs[0], alice, "b-1", "hey"); num(r, "seq") != 2 || r["duplicate"] != false {
		t.Errorf("after unblock: %v, want seq 2 and not a duplicate", r)
	}
	if ack := a1.sendWait(bob, "a-2", "hey"); num(ack, "seq") != 3 {
		t.Errorf("after unblock: %v, want seq 3", ack)
	}
	s.must(http.StatusOK, "PUT", "/v1/me/blocks/"+bob.id, as[0].access, nil)
	wantError(t, s.do("POST", "/v1/conversations", bs[0].access, obj{"peer_id": alice.id}), http.StatusForbidden, "blocked")
	s.must(http.StatusOK, "DELETE", "/v1/me/blocks/"+bob.id, as[0].access, nil)
	// A block by the other side counts as well.
	s.must(http.StatusOK, "PUT", "/v1/me/blocks/"+alice.id, bs[0].access, nil)
	wantError(t, s.do("POST", "/v1/messages", as[0].access, sendBody("a-3", bob.id, "hey")), http.StatusForbidden, "blocked")
	s.must(http.StatusOK, "DELETE", "/v1/me/blocks/"+alice.id, bs[0].access, nil)
	if r := s.sendREST(as[0], bob, "a-3", "hey"); num(r, "seq") != 4 {
		t.Errorf("after the second unblock: %v, want seq 4", r)
	}
	if h := s.history(as[0], conv); len(h) != 4 {
		t.Errorf("history has %d messages, want 4", len(h))
	}
}

// The status answer is the caller's resulting status (docs/protocol.md,
// Status and receipts: "The answer's status is the caller's resulting
// status for the message").
func TestStatusAnswerIsTheResultingStatus(t *testing.T) {
	t.Parallel()
	s := start(t)
	_, as := s.newUser("alice", 1)
	bob, bs := s.newUser("bob", 1)
	var stale []string
	for i := 1; i <= 20; i++ {
		id := str(s.sendREST(as[0], bob, fmt.Sprintf("s%d", i), "x"), "message_id")
		st := s.must(http.StatusOK, "POST", "/v1/messages/"+id+"/status", bs[0].access, obj{"status": "read", "timestamp": time.Now().UnixMilli()})
		if st["status"] != "read" || st["message_id"] != id || num(st, "seq") != int64(i) {
			stale = append(stale, fmt.Sprintf("seq %d answered %v", i, st["status"]))
		}
	}
	if len(stale) > 0 {
		t.Errorf("POST /v1/messages/{id}/status {status: read} answered a status other than read in %d of 20 tries (%v): the answer is not the state after the status was applied", len(stale), stale)
	}
}

// Typing is ephemeral: it reaches the other participant's devices live,
// carries no cursor, is never replayed, and outsiders can neither send
// nor see it.
func TestTyping(t *testing.T) {
	t.Parallel()
	s := start(t)
	alice, as := s.newUser("alice", 2)
	bob, bs := s.newUser("bob", 1)
	_, cs := s.newUser("carol", 1)
	first := s.sendREST(as[0], bob, "t-0", "hi")
	conv := str(first, "conversation_id")
	a1, _ := s.connect(as[0], "")
	b1, synced := s.connect(bs[0], "")
	c1, _ := s.connect(cs[0], "")

	a1.send(obj{"type": "typing", "conversation_id": conv, "state": "composing"})
	ev := b1.waitType("typing")
	if ev["conversation_id"] != conv || ev["user_id"] != alice.id || ev["state"] != "composing" || ev["cursor"] != nil {
		t.Errorf("bob got typing event %v, want composing by alice in %s without a cursor", ev, conv)
	}
	a1.send(obj{"type": "typing", "conversation_id": conv, "state": "paused"})
	b1.waitFor("typing paused", func(f obj) bool { return f["type"] == "typing" && f["state"] == "paused" })

	// Bad state, and a conversation that is not carol's.
	a1.send(obj{"type": "typing", "ref": "bad", "conversation_id": conv, "state": "shouting"})
	if e := a1.waitFor("error bad", func(f obj) bool { return f["ref"] == "bad" }); e["type"] != "error" || num(e, "status") != 400 {
		t.Errorf("typing with state shouting: %v, want error 400", e)
	}
	c1.send(obj{"type": "typing", "ref": "nosy", "conversation_id": conv, "state": "composing"})
	if e := c1.waitFor("error nosy", func(f obj) bool { return f["ref"] == "nosy" }); e["type"] != "error" || num(e, "status") != 404 {
		t.Errorf("carol typing in alice and bob's conversation: %v, want error 404", e)
	}
	// A stored event after the typing ones still arrives, with its cursor;
	// then a resume from bob's first cursor replays it and no typing.
	s.sendREST(as[0], bob, "t-1", "after typing")
	if m := b1.waitMessage("t-1"); str(m, "cursor") == "" {
		t.Errorf("message after typing has no cursor: %v", m)
	}
	b2, _ := s.connect(bs[0], str(synced, "cursor"))
	b2.waitMessage("t-1")
	for _, c := range []*wsClient{b2, c1} {
		if n := c.count(isType("typing")); n != 0 {
			t.Errorf("%s got %d typing events, want none", c.name, n)
		}
	}
	if n := a1.count(isType("typing")); n != 0 {
		t.Errorf("alice's own device got %d of her typing events, want none", n)
	}
}
