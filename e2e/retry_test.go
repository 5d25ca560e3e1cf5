package e2e

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"
)

// sameMessage checks that a retry's answer is the original's.
func sameMessage(t *testing.T, what string, retry, orig obj) {
	t.Helper()
	if retry["message_id"] != orig["message_id"] || num(retry, "seq") != num(orig, "seq") || retry["duplicate"] != true ||
		retry["conversation_id"] != orig["conversation_id"] || retry["client_message_id"] != orig["client_message_id"] ||
		num(retry, "server_ts") != num(orig, "server_ts") {
		t.Errorf("%s: %v, want the original %v with duplicate:true", what, retry, orig)
	}
}

func TestRetriesAreExactlyOnce(t *testing.T) {
	t.Parallel()
	s := start(t)
	alice, as := s.newUser("alice", 2)
	bob, bs := s.newUser("bob", 1)
	a1, _ := s.connect(as[0], "")
	b1, _ := s.connect(bs[0], "")
	conv := s.conversation(as[0], bob)

	orig := a1.sendWait(bob, "once", "original content")
	if orig["duplicate"] != false || num(orig, "seq") != 1 {
		t.Fatalf("first send: %v", orig)
	}
	// Same client_message_id, other content, every transport and device.
	sameMessage(t, "WebSocket retry", a1.sendWait(bob, "once", "changed content"), orig)
	sameMessage(t, "REST retry", s.sendREST(as[0], bob, "once", "other content"), orig)
	sameMessage(t, "REST retry from the sender's other device", s.sendREST(as[1], bob, "once", "third content"), orig)
	// Back-to-back on one connection, before anything is persisted.
	a1.sendMsg(bob, "twice", "x")
	a1.sendMsg(bob, "twice", "y")
	acks := a1.waitN("two acks for twice", 2, func(f obj) bool { return f["type"] == "ack" && f["ref"] == "twice" })
	if acks[0]["duplicate"] != false || num(acks[0], "seq") != 2 {
		t.Errorf("first of two back-to-back sends: %v", acks[0])
	}
	sameMessage(t, "back-to-back retry", acks[1], acks[0])

	// A retry addressed elsewhere is still the original message.
	_, cs := s.newUser("carol", 1)
	carol := cs[0].user
	sameMessage(t, "retry to another recipient", s.sendREST(as[0], carol, "once", "to carol"), orig)
	a1.sendMsg(bob, "moved", "to bob")
	a1.sendMsg(carol, "moved", "to carol, at once")
	moved := a1.waitN("two answers for moved", 2, func(f obj) bool { return f["ref"] == "moved" })
	if moved[0]["type"] != "ack" || num(moved[0], "seq") != 3 || moved[0]["duplicate"] != false {
		t.Errorf("first send of moved: %v, want seq 3 to bob", moved[0])
	}
	sameMessage(t, "immediate retry to another recipient", moved[1], moved[0])

	// The same client_message_id from two devices at once: one message.
	var wg sync.WaitGroup
	answers := make([]resp, 2)
	for i := range answers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			answers[i], _ = s.tryDo("POST", "/v1/messages", as[i].access, sendBody("racing", bob.id, fmt.Sprintf("from device %d", i)))
		}()
	}
	wg.Wait()
	if a, b := answers[0], answers[1]; a.status != http.StatusCreated || b.status != http.StatusCreated ||
		a.body["message_id"] != b.body["message_id"] || num(a.body, "seq") != 4 || num(b.body, "seq") != 4 ||
		(a.body["duplicate"] == b.body["duplicate"]) {
		t.Errorf("two devices sending racing at once: %s and %s, want one message (seq 4), one duplicate", a.raw, b.raw)
	}

	// The same client_message_id from another sender is another message.
	if r := s.sendREST(bs[0], alice, "once", "bob's own"); r["duplicate"] != false || num(r, "seq") != 5 {
		t.Errorf("bob reusing alice's client_message_id: %v, want a new message with seq 5", r)
	}
	// Retries took no seq.
	if ack := a1.sendWait(bob, "next", "next"); num(ack, "seq") != 6 {
		t.Errorf("next message after retries: seq %d, want 6", num(ack, "seq"))
	}
	h := s.history(as[0], conv)
	if len(h) != 6 || h[5].Content != "original content" {
		t.Errorf("history has %d messages, want 6, the first with its original content: %v", len(h), h)
	}
	if h := s.history(cs[0], s.conversation(cs[0], alice)); len(h) != 0 {
		t.Errorf("carol's conversation with alice has %d messages, want none: every send to her was a retry", len(h))
	}
	b1.waitMessage("next")
	for _, id := range []string{"once", "twice", "moved", "racing"} {
		n := b1.count(func(f obj) bool {
			return f["type"] == "message" && f["client_message_id"] == id && f["sender_id"] == alice.id
		})
		if n != 1 {
			t.Errorf("bob received %d message events for %s, want 1", n, id)
		}
	}
}

func TestRetryAfterKill9(t *testing.T) {
	t.Parallel()
	s := start(t)
	_, as := s.newUser("alice", 1)
	bob, bs := s.newUser("bob", 1)
	a1, _ := s.connect(as[0], "")
	orig := a1.sendWait(bob, "crash-1", "before the crash")
	s.kill9()
	s.restart()
	waitServing(t, s, as[0].access)

	a1, _ = s.connect(as[0], "")
	sameMessage(t, "WebSocket retry after kill -9", a1.sendWait(bob, "crash-1", "retried"), orig)
	sameMessage(t, "REST retry after kill -9", s.sendREST(as[0], bob, "crash-1", "retried again"), orig)
	if r := s.sendREST(as[0], bob, "crash-2", "new"); num(r, "seq") != num(orig, "seq")+1 || r["duplicate"] != false {
		t.Errorf("new message after restart: %v, want seq %d", r, num(orig, "seq")+1)
	}
	if h := s.history(bs[0], str(orig, "conversation_id")); len(h) != 2 {
		t.Errorf("history has %d messages, want 2", len(h))
	}
}

func TestRetryAfterDuplicateWindow(t *testing.T) {
	t.Parallel()
	s := start(t, "--duplicate-window", "1s")
	_, as := s.newUser("alice", 1)
	bob, _ := s.newUser("bob", 1)
	// The retries below must meet the dedupe filter, not the store reads
	// it answers "maybe" with while loading.
	s.waitLog("dedupe filter loaded", 1)
	a1, _ := s.connect(as[0], "")
	orig := a1.sendWait(bob, "late-1", "first")
	// Waiting out JetStream's dedupe window is the point of this test.
	time.Sleep(1500 * time.Millisecond)
	sameMessage(t, "WebSocket retry after the window", a1.sendWait(bob, "late-1", "again"), orig)
	sameMessage(t, "REST retry after the window", s.sendREST(as[0], bob, "late-1", "again"), orig)
	if ack := a1.sendWait(bob, "late-2", "new"); num(ack, "seq") != 2 {
		t.Errorf("new message after late retries: seq %d, want 2", num(ack, "seq"))
	}

	// After the window and a crash too.
	s.kill9()
	s.restart()
	waitServing(t, s, as[0].access)
	s.waitLog("dedupe filter loaded", 2) // reloaded from the store
	sameMessage(t, "REST retry after the window and kill -9", s.sendREST(as[0], bob, "late-1", "once more"), orig)
	if r := s.sendREST(as[0], bob, "late-3", "new"); num(r, "seq") != 3 {
		t.Errorf("new message after restart: seq %d, want 3", num(r, "seq"))
	}
	if st := s.do("GET", "/v1/conversations/"+str(orig, "conversation_id")+"/messages", as[0].access, nil); st.status != http.StatusOK || len(objs(st.body["messages"])) != 3 {
		t.Errorf("history: %d %s, want 3 messages", st.status, st.raw)
	}
}
