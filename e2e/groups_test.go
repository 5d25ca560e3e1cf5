package e2e

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// Groups as shared/protocol.md's section Groups promises them.

func groupSendBody(cmid, groupID, content string) obj {
	return obj{"client_message_id": cmid, "recipient_id": groupID, "message_type": "group",
		"content": content, "timestamp": time.Now().UnixMilli()}
}

// newGroup creates a group of d's user and members and checks the answer.
func (s *server) newGroup(d device, name string, members ...user) (groupID, conv string) {
	s.t.Helper()
	ids := []string{}
	for _, m := range members {
		ids = append(ids, m.id)
	}
	b := s.must(http.StatusCreated, "POST", "/v1/groups", d.access, obj{"name": name, "member_ids": ids})
	groupID, conv = str(b, "group_id"), str(b, "conversation_id")
	if groupID == "" || conv == "" || str(b, "name") != name || num(b, "member_count") != int64(len(members)+1) {
		s.t.Fatalf("create group: %v", b)
	}
	roles := groupRoles(b)
	if roles[d.id] != "admin" || len(roles) != len(members)+1 {
		s.t.Fatalf("create group: members %v, want %s admin and %d others", roles, d.name, len(members))
	}
	return groupID, conv
}

// groupRoles maps each member of a group answer to their role.
func groupRoles(b obj) map[string]string {
	out := map[string]string{}
	for _, m := range objs(b["members"]) {
		out[str(m, "user_id")] = str(m, "role")
	}
	return out
}

func (s *server) groupSend(d device, groupID, cmid, content string) obj {
	s.t.Helper()
	return s.must(http.StatusCreated, "POST", "/v1/messages", d.access, groupSendBody(cmid, groupID, content))
}

func isGroupEvent(change, userID string) func(obj) bool {
	return func(f obj) bool {
		return f["type"] == "group" && f["change"] == change && (userID == "" || f["user_id"] == userID)
	}
}

func TestGroupRulesOverRESTAndWebSocket(t *testing.T) {
	s := start(t)
	_, ann := s.newUser("ann", 1)
	_, bob := s.newUser("bob", 1)
	_, cyd := s.newUser("cyd", 1)
	_, dan := s.newUser("dan", 1)
	a, b, c, d := ann[0], bob[0], cyd[0], dan[0]

	// Refusals that change nothing.
	wantError(t, s.do("POST", "/v1/groups", a.access, obj{"name": "", "member_ids": []string{b.id}}), 400, "bad_request")
	wantError(t, s.do("POST", "/v1/groups", a.access, obj{"name": strings.Repeat("é", 101)}), 400, "bad_request")
	wantError(t, s.do("POST", "/v1/groups", a.access, obj{"name": "x", "member_ids": []string{"nobody"}}), 404, "not_found")
	wantError(t, s.do("POST", "/v1/groups", "", obj{"name": "x"}), 401, "unauthorized")

	bws, _ := s.connect(b, "")
	group, conv := s.newGroup(a, strings.Repeat("é", 100), b.user, c.user)
	created := bws.waitFor("created event", isGroupEvent("created", ""))
	if created["group_id"] != group || created["by"] != a.id || str(created, "cursor") == "" || num(created, "ts") <= 0 {
		t.Fatalf("created event %v", created)
	}
	if _, ok := created["seq"]; ok {
		t.Fatalf("a group event carries a seq: %v", created)
	}

	// Reading: members only, 404 for anyone else and for unknown groups.
	if got := s.must(200, "GET", "/v1/groups/"+group, c.access, nil); num(got, "member_count") != 3 {
		t.Fatalf("get group: %v", got)
	}
	wantError(t, s.do("GET", "/v1/groups/"+group, d.access, nil), 404, "not_found")
	wantError(t, s.do("GET", "/v1/groups/NOSUCHGROUP", a.access, nil), 404, "not_found")
	wantError(t, s.do("GET", "/v1/conversations/"+conv+"/messages", d.access, nil), 404, "not_found")

	// Admin-only changes refused to a member, not_member for outsiders.
	wantError(t, s.do("POST", "/v1/groups/"+group+"/members", b.access, obj{"user_ids": []string{d.id}}), 403, "not_admin")
	wantError(t, s.do("PATCH", "/v1/groups/"+group, b.access, obj{"name": "mine"}), 403, "not_admin")
	wantError(t, s.do("PATCH", "/v1/groups/"+group+"/members/"+c.id, b.access, obj{"role": "admin"}), 403, "not_admin")
	wantError(t, s.do("DELETE", "/v1/groups/"+group+"/members/"+c.id, b.access, nil), 403, "not_admin")
	wantError(t, s.do("POST", "/v1/groups/"+group+"/members", d.access, obj{"user_ids": []string{d.id}}), 403, "not_member")
	wantError(t, s.do("POST", "/v1/messages", d.access, groupSendBody("d1", group, "let me in")), 403, "not_member")
	wantError(t, s.do("PATCH", "/v1/groups/"+group+"/members/"+c.id, a.access, obj{"role": "owner"}), 400, "bad_request")
	wantError(t, s.do("PATCH", "/v1/groups/"+group, a.access, obj{"name": strings.Repeat("x", 101)}), 400, "bad_request")
	if got := s.must(200, "GET", "/v1/groups/"+group, a.access, nil); num(got, "member_count") != 3 || str(got, "name") != strings.Repeat("é", 100) {
		t.Fatalf("refusals changed the group: %v", got)
	}

	// A non-member's send over WebSocket: 403 not_member, connection open.
	dws, _ := s.connect(d, "")
	f := groupSendBody("dws1", group, "still out")
	f["type"] = "send"
	dws.send(f)
	e := dws.waitFor("error", isType("error"))
	if num(e, "status") != 403 || e["code"] != "not_member" || e["ref"] != "dws1" {
		t.Fatalf("non-member send: %v", e)
	}

	// Sends by members reach every member, the sender's devices included.
	aws, _ := s.connect(a, "")
	ack := aws.groupSendWait(group, "a1", "hello group")
	if ack["conversation_id"] != conv || num(ack, "seq") != 1 {
		t.Fatalf("group ack %v", ack)
	}
	for _, ws := range []*wsClient{aws, bws} {
		m := ws.waitMessage("a1")
		if m["message_type"] != "group" || m["recipient_id"] != group || m["sender_id"] != a.id || m["conversation_id"] != conv {
			t.Fatalf("group message event %v", m)
		}
	}
	if got := s.groupSend(b, group, "b1", "hi from bob"); num(got, "seq") != 2 {
		t.Fatalf("bob's ack %v", got)
	}
	aws.waitMessage("b1")
	if dws.count(isType("message")) != 0 {
		t.Fatalf("a non-member got group messages: %s", dws.dump())
	}

	// Adding: member_added to every member and to the one added.
	got := s.must(200, "POST", "/v1/groups/"+group+"/members", a.access, obj{"user_ids": []string{d.id, b.id}})
	if num(got, "member_count") != 4 || groupRoles(got)[d.id] != "member" {
		t.Fatalf("add: %v", got)
	}
	for _, ws := range []*wsClient{aws, bws, dws} {
		ev := ws.waitFor("member_added", isGroupEvent("member_added", d.id))
		if ev["by"] != a.id || ev["group_id"] != group {
			t.Fatalf("member_added %v", ev)
		}
	}
	s.groupSend(d, group, "d2", "thanks for adding me")
	dws.waitMessage("d2")
	if h := s.history(d, conv); len(h) != 1 || h[0].Seq != 3 {
		t.Fatalf("dan, added at seq 3, reads %+v: want only seq 3", h)
	}

	// Roles and renames: admins only, each a group event.
	got = s.must(200, "PATCH", "/v1/groups/"+group+"/members/"+b.id, a.access, obj{"role": "admin"})
	if groupRoles(got)[b.id] != "admin" {
		t.Fatalf("role change: %v", got)
	}
	if ev := dws.waitFor("role_changed", isGroupEvent("role_changed", b.id)); ev["by"] != a.id {
		t.Fatalf("role_changed %v", ev)
	}
	got = s.must(200, "PATCH", "/v1/groups/"+group, b.access, obj{"name": "renamed"})
	if str(got, "name") != "renamed" {
		t.Fatalf("rename: %v", got)
	}
	dws.waitFor("renamed", isGroupEvent("renamed", ""))

	// The conversation list: type group, group_id, title, exact unread.
	sum := s.conversationSummary(c, conv)
	if sum["type"] != "group" || sum["group_id"] != group || sum["title"] != "renamed" || num(sum, "unread_count") != 3 || sum["peer_id"] != nil {
		t.Fatalf("cyd's conversation %v: want group, renamed, 3 unread", sum)
	}
	s.must(200, "POST", "/v1/messages/"+conv+"-2/status", c.access, obj{"status": "read", "timestamp": time.Now().UnixMilli()})
	if sum := s.conversationSummary(c, conv); num(sum, "unread_count") != 1 || num(sum, "last_read_seq") != 2 {
		t.Fatalf("after reading seq 2: %v", sum)
	}
	if sum := s.conversationSummary(d, conv); num(sum, "unread_count") != 0 {
		t.Fatalf("dan's unread counts messages from before he joined: %v", sum)
	}

	// Removing: the removed member hears of it and can read nothing more.
	cws, _ := s.connect(c, "")
	s.must(204, "DELETE", "/v1/groups/"+group+"/members/"+c.id, b.access, nil)
	if got := s.must(200, "GET", "/v1/groups/"+group, b.access, nil); num(got, "member_count") != 3 || groupRoles(got)[c.id] != "" {
		t.Fatalf("after removing cyd: %v", got)
	}
	if ev := cws.waitFor("member_removed", isGroupEvent("member_removed", c.id)); ev["by"] != b.id {
		t.Fatalf("member_removed %v", ev)
	}
	wantError(t, s.do("GET", "/v1/groups/"+group, c.access, nil), 404, "not_found")
	wantError(t, s.do("GET", "/v1/conversations/"+conv+"/messages", c.access, nil), 404, "not_found")
	wantError(t, s.do("POST", "/v1/messages", c.access, groupSendBody("c9", group, "am I out?")), 403, "not_member")
	list := s.must(200, "GET", "/v1/conversations", c.access, nil)
	for _, cv := range objs(list["conversations"]) {
		if cv["conversation_id"] == conv {
			t.Fatalf("a removed member still lists the group: %v", list)
		}
	}
	wantError(t, s.do("DELETE", "/v1/groups/"+group+"/members/"+c.id, b.access, nil), 404, "not_found")

	// The last admin leaving: the longest-standing member becomes admin.
	g2, _ := s.newGroup(a, "second", b.user)
	s.must(200, "POST", "/v1/groups/"+g2+"/members", a.access, obj{"user_ids": []string{c.id}})
	wantError(t, s.do("PATCH", "/v1/groups/"+g2+"/members/"+a.id, a.access, obj{"role": "member"}), 400, "bad_request")
	from := bws.mark()
	s.must(204, "DELETE", "/v1/groups/"+g2+"/members/"+a.id, a.access, nil)
	bws.waitFrom(from, "member_left", func(f obj) bool { return isGroupEvent("member_left", a.id)(f) && f["group_id"] == g2 })
	promo := bws.waitFrom(from, "promotion", func(f obj) bool { return isGroupEvent("role_changed", b.id)(f) && f["group_id"] == g2 })
	if promo["role"] != "admin" {
		t.Fatalf("promotion event %v", promo)
	}
	if roles := groupRoles(s.must(200, "GET", "/v1/groups/"+g2, c.access, nil)); roles[b.id] != "admin" || roles[c.id] != "member" || roles[a.id] != "" {
		t.Fatalf("after the last admin left: %v, want bob (longest-standing) admin", roles)
	}
}

// groupSendWait sends a group message frame and waits for its ack.
func (c *wsClient) groupSendWait(groupID, cmid, content string) obj {
	c.t.Helper()
	from := c.mark()
	f := groupSendBody(cmid, groupID, content)
	f["type"] = "send"
	c.send(f)
	a := c.waitFrom(from, "answer to "+cmid, func(f obj) bool {
		return (f["type"] == "ack" || f["type"] == "error") && f["ref"] == cmid
	})
	if a["type"] != "ack" {
		c.t.Fatalf("send %s: %v", cmid, a)
	}
	return a
}

// TestGroupMembershipCountsAsOfSeq: a removed member's replay from an old
// cursor shows nothing sequenced after the removal; a member added later
// reads from their joining on, history included, and so does one who
// comes back.
func TestGroupMembershipCountsAsOfSeq(t *testing.T) {
	s := start(t)
	_, ann := s.newUser("ann", 1)
	_, bob := s.newUser("bob", 1)
	_, cyd := s.newUser("cyd", 1)
	_, dan := s.newUser("dan", 1)
	a, b, c, d := ann[0], bob[0], cyd[0], dan[0]
	group, conv := s.newGroup(a, "as of seq", b.user, c.user)
	cws, synced := s.connect(c, "")
	old := str(synced, "cursor") // after the created event: synced covers it
	cws.close()

	s.groupSend(a, group, "m1", "before the removal")
	s.must(204, "DELETE", "/v1/groups/"+group+"/members/"+c.id, a.access, nil)
	s.groupSend(a, group, "m2", "after the removal")
	s.groupSend(b, group, "m3", "also after")

	evs, _ := s.catchUp(c, old)
	var seen []string
	for _, e := range evs {
		switch e["type"] {
		case "message":
			seen = append(seen, str(e, "client_message_id"))
		case "group":
			seen = append(seen, str(e, "change"))
		}
	}
	if want := []string{"m1", "member_removed"}; !slices.Equal(seen, want) {
		t.Fatalf("removed member's replay from an old cursor: %v, want %v", seen, want)
	}

	s.must(200, "POST", "/v1/groups/"+group+"/members", a.access, obj{"user_ids": []string{d.id}})
	if h := s.history(d, conv); len(h) != 0 {
		t.Fatalf("dan, added after seq 3, reads %+v", h)
	}
	s.groupSend(a, group, "m4", "welcome dan")
	if h := s.history(d, conv); len(h) != 1 || h[0].ClientMessageID != "m4" {
		t.Fatalf("dan's history %+v, want only m4", h)
	}
	// Paging never reaches before joining: a cursor at his first message
	// gives nothing older.
	page := s.must(200, "GET", "/v1/conversations/"+conv+"/messages?cursor=4", d.access, nil)
	if len(objs(page["messages"])) != 0 || page["next_cursor"] != nil {
		t.Fatalf("dan pages back before joining: %v", page)
	}
	// cyd comes back: messages from the return on, not those of the gap.
	s.must(200, "POST", "/v1/groups/"+group+"/members", a.access, obj{"user_ids": []string{c.id}})
	s.groupSend(b, group, "m5", "welcome back cyd")
	var got []string
	for _, m := range s.history(c, conv) {
		got = append(got, m.ClientMessageID)
	}
	if want := []string{"m5"}; !slices.Equal(got, want) {
		t.Fatalf("cyd back in the group reads %v, want %v", got, want)
	}
	evs, _ = s.catchUp(c, old)
	seen = seen[:0]
	for _, e := range evs {
		if e["type"] == "message" {
			seen = append(seen, str(e, "client_message_id"))
		}
	}
	if want := []string{"m1", "m5"}; !slices.Equal(seen, want) {
		t.Fatalf("cyd's messages across the gap: %v, want %v", seen, want)
	}
}

// TestGroupAggregateReceipts: with three members the sender gets one
// delivered when both others have the message and one read when both
// read it, without user_id; a read first is not preceded by a delivered.
// Message info gives the sender each member's times, and nobody else
// anything.
func TestGroupAggregateReceipts(t *testing.T) {
	s := start(t)
	_, ann := s.newUser("ann", 1)
	_, bob := s.newUser("bob", 2)
	_, cyd := s.newUser("cyd", 1)
	a, b, c := ann[0], bob[0], cyd[0]
	group, conv := s.newGroup(a, "receipts", b.user, c.user)
	aws, _ := s.connect(a, "")
	bother, _ := s.connect(bob[1], "")
	ack := aws.groupSendWait(group, "r1", "did you get it?")
	id := str(ack, "message_id")
	isReceipt := func(status string) func(obj) bool {
		return func(f obj) bool { return f["type"] == "receipt" && f["message_id"] == id && f["status"] == status }
	}
	status := func(d device, msgID, st string) {
		t.Helper()
		s.must(200, "POST", "/v1/messages/"+msgID+"/status", d.access, obj{"status": st, "timestamp": time.Now().UnixMilli()})
	}

	status(b, id, "delivered")
	own := bother.waitFor("bob's own receipt", isReceipt("delivered"))
	if own["user_id"] != b.id {
		t.Fatalf("bob's other device got %v, want his receipt with user_id", own)
	}
	status(c, id, "delivered")
	agg := aws.waitFor("aggregate delivered", isReceipt("delivered"))
	if _, ok := agg["user_id"]; ok || agg["conversation_id"] != conv || num(agg, "seq") != 1 || str(agg, "cursor") == "" {
		t.Fatalf("aggregate delivered %v: want no user_id", agg)
	}
	status(b, id, "read")
	status(c, id, "read")
	aws.waitFor("aggregate read", isReceipt("read"))

	// Read first: no separate delivered.
	ack2 := aws.groupSendWait(group, "r2", "and this one?")
	id2 := str(ack2, "message_id")
	status(b, id2, "read")
	status(c, id2, "read")
	aws.waitFor("aggregate read of r2", func(f obj) bool { return f["type"] == "receipt" && f["message_id"] == id2 })

	// Message info, the sender's alone.
	info := s.must(200, "GET", "/v1/messages/"+id+"/receipts", a.access, nil)
	rs := objs(info["receipts"])
	if len(rs) != 2 {
		t.Fatalf("message info %v: want bob and cyd", info)
	}
	for _, r := range rs {
		if u := str(r, "user_id"); u != b.id && u != c.id || num(r, "delivered_at") <= 0 || num(r, "read_at") < num(r, "delivered_at") {
			t.Fatalf("message info entry %v", r)
		}
	}
	wantError(t, s.do("GET", "/v1/messages/"+id+"/receipts", b.access, nil), 404, "not_found")
	wantError(t, s.do("GET", "/v1/messages/"+conv+"-99/receipts", a.access, nil), 404, "not_found")

	// Exactly one aggregate per change reached the sender.
	receipts := func() []string {
		var out []string
		for _, f := range aws.snapshot() {
			if f["type"] == "receipt" {
				if _, ok := f["user_id"]; ok {
					out = append(out, "with user_id")
				}
				out = append(out, str(f, "message_id")+":"+str(f, "status"))
			}
		}
		return out
	}
	if want := []string{id + ":delivered", id + ":read", id2 + ":read"}; !slices.Equal(receipts(), want) {
		t.Fatalf("sender's receipts %v, want %v", receipts(), want)
	}

	// A direct message's info: the peer.
	d := s.sendREST(a, b.user, "direct1", "just us")
	did := str(d, "message_id")
	status(b, did, "read")
	info = s.must(200, "GET", "/v1/messages/"+did+"/receipts", a.access, nil)
	if rs := objs(info["receipts"]); len(rs) != 1 || str(rs[0], "user_id") != b.id || num(rs[0], "read_at") <= 0 {
		t.Fatalf("direct message info %v", info)
	}
	wantError(t, s.do("GET", "/v1/messages/"+did+"/receipts", c.access, nil), 404, "not_found")
}

// manyUsers registers n users named prefix0... and logs each in once,
// four at a time (each costs an argon2 hash and a check).
func (s *server) manyUsers(prefix string, n int, login bool) []device {
	s.t.Helper()
	out := make([]device, n)
	errs := make(chan error, n)
	next := make(chan int)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				name := fmt.Sprintf("%s%d", prefix, i)
				r, err := s.tryDo("POST", "/v1/auth/register", "", obj{"username": name, "password": password})
				if err == nil && r.status != http.StatusCreated {
					err = fmt.Errorf("register %s: %d %s", name, r.status, r.raw)
				}
				if err != nil {
					errs <- err
					continue
				}
				out[i].user = user{id: str(r.body, "user_id"), name: name}
				if !login {
					continue
				}
				r, err = s.tryDo("POST", "/v1/auth/login", "", obj{"username": name, "password": password})
				if err == nil && r.status != http.StatusOK {
					err = fmt.Errorf("login %s: %d %s", name, r.status, r.raw)
				}
				if err != nil {
					errs <- err
					continue
				}
				out[i].deviceID, out[i].access = str(r.body, "device_id"), str(r.body, "access_token")
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	close(errs)
	for err := range errs {
		s.t.Fatal(err)
	}
	return out
}

// TestGroupOf500 fills a group to the cap, has two admins race for the
// 500th seat (one wins, one gets 409 group_full), then kills natter with
// SIGKILL while it fans out messages to 500 members, half of them
// offline: after the restart every member has every message exactly
// once, live or in replay.
func TestGroupOf500(t *testing.T) {
	if testing.Short() {
		t.Skip("1,002 argon2 hashes for 501 accounts: skipped with -short")
	}
	s := start(t)
	began := time.Now()
	ds := s.manyUsers("member", 501, true)
	t.Logf("501 users registered and logged in in %s", time.Since(began).Round(time.Millisecond))
	ann, bob := ds[0], ds[1]
	var ids []string
	for _, d := range ds[1:499] {
		ids = append(ids, d.id)
	}
	b := s.must(http.StatusCreated, "POST", "/v1/groups", ann.access, obj{"name": "five hundred", "member_ids": ids})
	group, conv := str(b, "group_id"), str(b, "conversation_id")
	if num(b, "member_count") != 499 {
		t.Fatalf("created with %d members, want 499", num(b, "member_count"))
	}
	s.must(200, "PATCH", "/v1/groups/"+group+"/members/"+bob.id, ann.access, obj{"role": "admin"})
	wantError(t, s.do("POST", "/v1/groups/"+group+"/members", ann.access, obj{"user_ids": []string{ds[499].id, ds[500].id}}), 409, "group_full")

	// The race for the last seat.
	var wg sync.WaitGroup
	answers := make([]resp, 2)
	startRace := make(chan struct{})
	for i, admin := range []device{ann, bob} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-startRace
			r, err := s.tryDo("POST", "/v1/groups/"+group+"/members", admin.access, obj{"user_ids": []string{ds[499+i].id}})
			if err != nil {
				t.Error(err)
			}
			answers[i] = r
		}()
	}
	close(startRace)
	wg.Wait()
	statuses := []int{answers[0].status, answers[1].status}
	slices.Sort(statuses)
	if !slices.Equal(statuses, []int{200, 409}) {
		t.Fatalf("racing for the 500th seat: %d %s / %d %s; want one 200 and one 409", answers[0].status, answers[0].raw, answers[1].status, answers[1].raw)
	}
	for _, r := range answers {
		if r.status == 409 {
			wantError(t, r, 409, "group_full")
		}
	}
	info := s.must(200, "GET", "/v1/groups/"+group, ann.access, nil)
	if num(info, "member_count") != 500 || len(objs(info["members"])) != 500 {
		t.Fatalf("after the race: %d members, want 500", num(info, "member_count"))
	}
	var members []device
	for _, d := range ds {
		if _, ok := groupRoles(info)[d.id]; ok {
			members = append(members, d)
		}
	}

	// Half online over WebSocket, half offline with a cursor to resume.
	online := map[string]*wsClient{}
	cursors := map[string]string{}
	for i, d := range members {
		if i%2 == 0 {
			ws, synced := s.connect(d, "")
			online[d.id], cursors[d.id] = ws, str(synced, "cursor")
			continue
		}
		r := s.must(200, "GET", "/v1/events", d.access, nil)
		cursors[d.id] = str(r, "cursor")
	}
	const sends = 5
	sent := time.Now()
	for i := range sends {
		s.groupSend(ann, group, fmt.Sprintf("k%d", i), "during the crash")
	}
	s.kill9()
	t.Logf("killed %s after the first of %d sends to 500 members", time.Since(sent).Round(time.Millisecond), sends)
	s.restart()
	began = time.Now()

	var mu sync.Mutex
	bad := map[string][]string{}
	check := func(d device) {
		var got []string
		cursor := cursors[d.id]
		if ws := online[d.id]; ws != nil {
			for _, f := range ws.snapshot() {
				if durable(f) {
					cursor = str(f, "cursor")
					if f["type"] == "message" && f["conversation_id"] == conv {
						got = append(got, str(f, "client_message_id"))
					}
				}
			}
		}
		evs, _ := s.catchUp(d, cursor)
		for _, f := range evs {
			if f["type"] == "message" && f["conversation_id"] == conv {
				got = append(got, str(f, "client_message_id"))
			}
		}
		if want := []string{"k0", "k1", "k2", "k3", "k4"}; !slices.Equal(got, want) {
			mu.Lock()
			bad[d.name] = got
			mu.Unlock()
		}
	}
	next := make(chan device)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for d := range next {
				check(d)
			}
		}()
	}
	for _, d := range members {
		next <- d
	}
	close(next)
	wg.Wait()
	t.Logf("restarted; %d members checked in %s", len(members), time.Since(began).Round(time.Millisecond))
	if len(bad) > 0 {
		n := 0
		for name, got := range bad {
			if n++; n <= 5 {
				t.Errorf("%s got %v, want k0..k4 once each", name, got)
			}
		}
		t.Fatalf("%d of %d members did not get every message exactly once", len(bad), len(members))
	}
}
