package gateway

import (
	"fmt"
	"testing"
	"time"

	"github.com/natter-chat/natter/chat"
	"github.com/natter-chat/natter/streams"
)

// pingPong proves that every frame w wrote before was handled: frames of
// one connection are handled in order.
func (w *ws) pingPong(ref string) {
	w.t.Helper()
	w.write(map[string]any{"type": "ping", "ref": ref})
	w.await(func(m map[string]any) bool { return m["type"] == "pong" && m["ref"] == ref })
}

// awaitWithin is await with its own deadline.
func (w *ws) awaitWithin(d time.Duration, match func(map[string]any) bool) map[string]any {
	w.t.Helper()
	deadline := time.After(d)
	for {
		select {
		case m, ok := <-w.frames:
			if !ok {
				w.t.Fatal("connection closed while waiting")
			}
			if match(m) {
				return m
			}
		case <-deadline:
			w.t.Fatalf("timed out after %v waiting for a frame", d)
		}
	}
}

func TestReceiptsThatChangeNothingAreNotStored(t *testing.T) {
	n, _ := startNode(t, nodeOptions{})
	alice, bob := n.user("alice"), n.user("bob")
	m1, m2 := n.send(alice, bob, "c1"), n.send(alice, bob, "c2")
	conv := m1.body["conversation_id"].(string)
	id1, id2 := m1.body["message_id"].(string), m2.body["message_id"].(string)
	receipts := func() uint64 { return n.conv()(streams.ReceiptSubject(conv)) }
	wa, wb := n.dial(alice), n.dial(bob)

	wb.write(map[string]any{"type": "receipt", "message_id": id1, "status": "read"})
	ev := wa.await(isType("receipt"))
	if ev["message_id"] != id1 || ev["status"] != "read" {
		t.Fatalf("alice got %v, want read of %s", ev, id1)
	}
	if got := receipts(); got != 1 {
		t.Fatalf("%d status records after one read, want 1", got)
	}
	// 4,000 statuses that change nothing: read again, and delivered,
	// which read implies. Over REST too.
	for i := range 4000 {
		status := "read"
		if i%2 == 1 {
			status = "delivered"
		}
		wb.write(map[string]any{"type": "receipt", "message_id": id1, "status": status})
	}
	// Each status costs two store reads: on a loaded machine under -race
	// 4,000 of them take longer than await's 20 s.
	wb.write(map[string]any{"type": "ping", "ref": "after the repeats"})
	wb.awaitWithin(2*time.Minute, func(m map[string]any) bool { return m["type"] == "pong" && m["ref"] == "after the repeats" })
	for _, status := range []string{"read", "delivered"} {
		r := n.do("POST", "/v1/messages/"+id1+"/status", bob.token, map[string]any{"status": status, "timestamp": 1})
		if r.status != 200 || r.body["status"] != "read" {
			t.Fatalf("REST %s again: %d %s", status, r.status, r.raw)
		}
	}
	if got := receipts(); got != 1 {
		t.Fatalf("%d status records after 4,002 repeated statuses, want still 1", got)
	}
	// A status that moves forward is still stored and reaches the sender.
	wb.write(map[string]any{"type": "receipt", "message_id": id2, "status": "delivered"})
	ev = wa.await(isType("receipt"))
	if ev["message_id"] != id2 || ev["status"] != "delivered" {
		t.Fatalf("alice got %v, want delivered of %s", ev, id2)
	}
	if got := receipts(); got != 2 {
		t.Fatalf("%d status records after a new delivered, want 2", got)
	}
}

// flood writes frame (with a ref per copy) until an error frame answers
// one, and returns it; it fails when more than max copies pass.
func flood(t *testing.T, w *ws, frame map[string]any, max int, passed func(map[string]any) bool) map[string]any {
	t.Helper()
	for i := range max + 1 {
		f := map[string]any{}
		for k, v := range frame {
			f[k] = v
		}
		f["ref"] = fmt.Sprintf("%s-%d", frame["type"], i)
		w.write(f)
	}
	got := 0
	for {
		m := w.await(func(m map[string]any) bool { return m["type"] == "error" || passed(m) })
		if m["type"] == "error" {
			return m
		}
		if got++; got > max {
			t.Fatalf("%d %s frames passed, want a rate_limited error by %d", got, frame["type"], max)
		}
	}
}

func TestEveryFrameKindIsRateLimited(t *testing.T) {
	n, _ := startNode(t, nodeOptions{chat: chat.Config{RateLimit: true}})
	alice, bob := n.user("alice"), n.user("bob")
	m1 := n.send(alice, bob, "c1")
	conv, id1 := m1.body["conversation_id"].(string), m1.body["message_id"].(string)
	wa := n.dial(alice)
	never := func(map[string]any) bool { return false }
	for _, tc := range []struct {
		frame  map[string]any
		burst  int
		passed func(map[string]any) bool
	}{
		{map[string]any{"type": "ping"}, 30, isType("pong")},
		{map[string]any{"type": "presence.subscribe", "user_ids": []string{bob.id}}, 20, isType("presence")},
		{map[string]any{"type": "presence.unsubscribe", "user_ids": []string{bob.id}}, 0, never},
		{map[string]any{"type": "typing", "conversation_id": conv, "state": "paused"}, 10, never},
		{map[string]any{"type": "no such frame"}, 0, never},
		{map[string]any{"type": "receipt", "message_id": id1, "status": "read"}, 200, never},
		{map[string]any{"type": "send", "client_message_id": "flood", "recipient_id": bob.id, "message_type": "user", "content": "x", "timestamp": 1}, 100, isType("ack")},
	} {
		typ := tc.frame["type"]
		e := flood(t, wa, tc.frame, max(tc.burst, 300), tc.passed)
		if typ == "no such frame" || typ == "receipt" {
			// The first answers are bad_request (unknown type) and
			// forbidden (alice sent it): refusals count too.
			for e["code"] != "rate_limited" {
				e = wa.await(isType("error"))
			}
		}
		ra, _ := e["retry_after_ms"].(float64)
		if e["code"] != "rate_limited" || e["status"] != float64(429) || ra <= 0 {
			t.Fatalf("%s flood: %v, want status 429 rate_limited with retry_after_ms", typ, e)
		}
	}
	// The connection stays open: once the wait is over, a ping is answered.
	time.Sleep(time.Second)
	wa.pingPong("still open")

	// Deletions are REST calls, limited per user.
	limited := false
	for range 300 {
		r := n.do("DELETE", "/v1/messages/"+id1+"?for=me", alice.token, nil)
		if r.status == 429 {
			if r.code() != "rate_limited" || r.header.Get("Retry-After") == "" {
				t.Fatalf("delete flood: %d %s, want 429 rate_limited with Retry-After", r.status, r.raw)
			}
			limited = true
			break
		}
	}
	if !limited {
		t.Fatal("300 deletions in a row were not rate-limited")
	}
}

func TestRateLimitOffLimitsNoFrame(t *testing.T) {
	n, _ := startNode(t, nodeOptions{})
	alice, bob := n.user("alice"), n.user("bob")
	conv := n.send(alice, bob, "c1").body["conversation_id"].(string)
	wa := n.dial(alice)
	for i := range 500 {
		wa.write(map[string]any{"type": "typing", "conversation_id": conv, "state": "paused"})
		wa.write(map[string]any{"type": "presence.subscribe", "user_ids": []string{bob.id}})
		wa.write(map[string]any{"type": "ping", "ref": fmt.Sprint(i)})
	}
	for i := range 500 {
		m := wa.await(func(m map[string]any) bool { return m["type"] == "pong" || m["type"] == "error" })
		if m["type"] == "error" || m["ref"] != fmt.Sprint(i) {
			t.Fatalf("with limits off, frame %d answered %v", i, m)
		}
	}
}

func TestRepeatedComposingIsForwardedOnceAWhile(t *testing.T) {
	n, _ := startNode(t, nodeOptions{})
	alice, bob := n.user("alice"), n.user("bob")
	conv := n.send(alice, bob, "c1").body["conversation_id"].(string)
	wa, wb := n.dial(alice), n.dial(bob)
	typing := func(state string) {
		wa.write(map[string]any{"type": "typing", "conversation_id": conv, "state": state})
	}

	// Drain bob's frames into a list until the typing that says state.
	until := func(state string) (composing int) {
		for {
			m := wb.await(isType("typing"))
			if m["state"] == state && state == "paused" {
				return composing
			}
			if m["state"] == "composing" {
				if composing++; state == "composing" {
					return composing
				}
			}
		}
	}
	for range 50 {
		typing("composing")
	}
	typing("paused")
	if got := until("paused"); got != 1 {
		t.Fatalf("50 composing in a row reached bob %d times, want once", got)
	}
	// After a pause the next composing goes at once.
	typing("composing")
	until("composing")
	// Within the window repeats are dropped; after it one goes again,
	// which keeps the indicator alive for bob.
	start := time.Now()
	for time.Since(start) < chatTypingRefresh+500*time.Millisecond {
		typing("composing")
		time.Sleep(100 * time.Millisecond)
	}
	typing("paused")
	if got := until("paused"); got < 1 || got > 2 {
		t.Fatalf("composing every 100 ms for %v reached bob %d times, want 1 or 2 (one refresh per window)", time.Since(start).Round(time.Millisecond), got)
	}
}

// chatTypingRefresh mirrors chat's coalescing window (3 s).
const chatTypingRefresh = 3 * time.Second
