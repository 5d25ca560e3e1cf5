package e2e

import (
	"net/http"
	"strconv"
	"testing"
	"time"
)

// poller is an HTTP-only device: it long-polls /v1/events and keeps what
// it got, durable and ephemeral events alike.
type poller struct {
	s      *server
	d      device
	cursor string
	events []obj
}

func (s *server) poller(d device) *poller {
	s.t.Helper()
	b := s.must(http.StatusOK, "GET", "/v1/events", d.access, nil)
	return &poller{s: s, d: d, cursor: str(b, "cursor")}
}

// poll does one long-poll of up to timeout seconds.
func (p *poller) poll(timeout int) []obj {
	p.s.t.Helper()
	b := p.s.must(http.StatusOK, "GET", "/v1/events?timeout="+strconv.Itoa(timeout)+"&cursor="+p.cursor, p.d.access, nil)
	p.cursor = str(b, "cursor")
	got := objs(b["events"])
	p.events = append(p.events, got...)
	return got
}

// pollFor polls until an event matches.
func (p *poller) pollFor(what string, match func(obj) bool) obj {
	p.s.t.Helper()
	for _, e := range p.events {
		if match(e) {
			return e
		}
	}
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		for _, e := range p.poll(5) {
			if match(e) {
				return e
			}
		}
	}
	p.s.t.Fatalf("%s: no %s in its polls after %v; got %v", p.d.label(), what, wait, p.events)
	return nil
}

func presenceIs(id, status string) func(obj) bool {
	return func(f obj) bool { return f["type"] == "presence" && f["user_id"] == id && f["status"] == status }
}

func typingIs(conv, id, state string) func(obj) bool {
	return func(f obj) bool {
		return f["type"] == "typing" && f["conversation_id"] == conv && f["user_id"] == id && f["state"] == state
	}
}

// A long-poll-only client and a WebSocket client hold a conversation with
// messages, typing and presence both ways. The server drops a WebSocket
// silent for the presence timeout plus a heartbeat: 2 s here, so that a
// loaded machine's pauses do not drop bob's (1 s did, in CI).
func TestLongPollClientTalksToWebSocketClient(t *testing.T) {
	const timeout = time.Second
	s := start(t, "--heartbeat-interval", "1s", "--presence-timeout", timeout.String())
	alice, ad := s.newUser("alice", 1)
	bob, bd := s.newUser("bob", 1)
	conv := s.conversation(ad[0], bob)
	lp := s.poller(ad[0]) // alice: HTTP only

	// alice watches bob over REST: offline, never seen.
	b := s.must(http.StatusOK, "POST", "/v1/presence/subscribe", ad[0].access, obj{"user_ids": []string{bob.id}})
	if ps := objs(b["presence"]); len(ps) != 1 || ps[0]["status"] != "offline" || ps[0]["last_seen"] != nil {
		t.Fatalf("snapshot %v, want bob offline, never seen", b)
	}
	ws, _ := s.connect(bd[0], "")
	lp.pollFor("bob online", presenceIs(bob.id, "online"))
	// bob sees alice online: her polls count.
	ws.send(obj{"type": "presence.subscribe", "user_ids": []string{alice.id}})
	ws.waitFor("alice online", presenceIs(alice.id, "online"))

	// Messages both ways.
	s.sendREST(ad[0], bob, "a1", "hi bob")
	ws.waitMessage("a1")
	ws.sendWait(alice, "b1", "hi alice")
	lp.pollFor("message b1", func(f obj) bool { return f["type"] == "message" && f["client_message_id"] == "b1" })

	// Typing both ways.
	ws.send(obj{"type": "typing", "conversation_id": conv, "state": "composing"})
	lp.pollFor("bob composing", typingIs(conv, bob.id, "composing"))
	lp.pollFor("bob's composing expires", typingIs(conv, bob.id, "paused"))
	s.must(http.StatusNoContent, "POST", "/v1/conversations/"+conv+"/typing", ad[0].access, obj{"state": "composing"})
	ws.waitFor("alice composing", typingIs(conv, alice.id, "composing"))

	// bob leaves: alice's poll says so, with last_seen.
	_ = ws.ws.Close()
	off := lp.pollFor("bob offline", presenceIs(bob.id, "offline"))
	lastPoll := time.Now()
	if num(off, "last_seen") == 0 {
		t.Fatalf("offline event %v without last_seen", off)
	}

	// alice stops polling: a watcher sees her go offline after the
	// presence timeout plus one heartbeat.
	ws2, _ := s.connect(bd[0], "")
	ws2.send(obj{"type": "presence.subscribe", "user_ids": []string{alice.id}})
	ws2.waitFor("alice online", presenceIs(alice.id, "online"))
	ws2.waitFor("alice offline", presenceIs(alice.id, "offline"))
	if took := time.Since(lastPoll); took < timeout {
		t.Fatalf("alice offline %v after her last poll, before the timeout", took)
	}
}

// After kill -9 the node's users read offline within the lease after the
// restart, though nobody closed their connections or deleted their keys.
func TestPresenceAfterKill9(t *testing.T) {
	lease := 2 * time.Second
	s := start(t, "--presence-lease", lease.String())
	alice, ad := s.newUser("alice", 1)
	_, bd := s.newUser("bob", 1)
	s.connect(ad[0], "")
	path := "/v1/users/" + alice.id + "/presence"
	deadline := time.Now().Add(wait)
	for str(s.must(http.StatusOK, "GET", path, bd[0].access, nil), "status") != "online" {
		if time.Now().After(deadline) {
			t.Fatal("alice never online")
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.kill9()
	s.restart()
	restarted := time.Now()
	for {
		p := s.must(http.StatusOK, "GET", path, bd[0].access, nil)
		if str(p, "status") == "offline" {
			if num(p, "last_seen") == 0 {
				t.Fatalf("offline after a crash without last_seen: %v", p)
			}
			break
		}
		if time.Since(restarted) > lease+5*time.Second {
			t.Fatalf("alice still %v %v after the restart (lease %v)", p, time.Since(restarted), lease)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
