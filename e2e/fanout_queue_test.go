package e2e

import (
	"fmt"
	"slices"
	"testing"
)

// TestLargeGroupThroughTheFanoutQueue: with --fanout-queue-threshold 3 a
// group of four fans out through the work queue. Every member gets each
// message once and in seq order, live and in replay; the sync barrier
// covers the queue (a replay right after the acks holds every message);
// 1:1 messages sent meanwhile arrive too; and once the group has shrunk
// below the threshold its messages still come after the queued ones.
func TestLargeGroupThroughTheFanoutQueue(t *testing.T) {
	s := start(t, "--fanout-queue-threshold", "3", "--fanout-partitions", "2")
	_, ann := s.newUser("ann", 1)
	_, bob := s.newUser("bob", 1)
	_, cyd := s.newUser("cyd", 1)
	_, dan := s.newUser("dan", 1)
	a, b, c, d := ann[0], bob[0], cyd[0], dan[0]
	group, conv := s.newGroup(a, "queued", b.user, c.user, d.user)

	bws, _ := s.connect(b, "")
	cws, _ := s.connect(c, "")
	dcursor := str(s.must(200, "GET", "/v1/events", d.access, nil), "cursor")
	var want []string
	for i := range 6 {
		cmid := fmt.Sprintf("q%d", i)
		s.groupSend(a, group, cmid, "to four members")
		want = append(want, cmid)
		s.sendREST(a, b.user, fmt.Sprintf("direct%d", i), "1:1 meanwhile")
	}
	// dan replays at once: the barrier waits for the queue.
	evs, _ := s.catchUp(d, dcursor)
	if got := groupMessages(evs, conv); !slices.Equal(got, want) {
		t.Fatalf("dan's replay right after the acks: %v, want %v", got, want)
	}
	for _, ws := range []*wsClient{bws, cws} {
		ws.waitMessage("q5")
		if got := groupMessages(ws.snapshot(), conv); !slices.Equal(got, want) {
			t.Fatalf("%s live: %v, want %v", ws.name, got, want)
		}
	}
	bws.waitMessage("direct5")

	// Two leave: two members are under the threshold, and the next
	// message must still come after the queued ones.
	s.must(204, "DELETE", "/v1/groups/"+group+"/members/"+c.id, a.access, nil)
	s.must(204, "DELETE", "/v1/groups/"+group+"/members/"+d.id, a.access, nil)
	s.groupSend(a, group, "small", "two members now")
	want = append(want, "small")
	bws.waitMessage("small")
	if got := groupMessages(bws.snapshot(), conv); !slices.Equal(got, want) {
		t.Fatalf("bob live after the group shrank: %v, want %v", got, want)
	}
	if got := groupMessages(cws.snapshot(), conv); slices.Contains(got, "small") {
		t.Fatalf("cyd, removed, got %v", got)
	}
	if h := s.history(a, conv); len(h) != len(want) {
		t.Fatalf("ann's history has %d messages, want %d", len(h), len(want))
	}
}

// groupMessages are the client_message_ids of conv's message events in frames.
func groupMessages(frames []obj, conv string) []string {
	var out []string
	for _, f := range frames {
		if f["type"] == "message" && f["conversation_id"] == conv {
			out = append(out, str(f, "client_message_id"))
		}
	}
	return out
}

// TestQueuedFanoutSurvivesKill9: natter is killed with SIGKILL while the
// fanout queue's workers write a 40-member group's messages, half of the
// members offline; after the restart every member has every message
// exactly once and in order, live or in replay.
func TestQueuedFanoutSurvivesKill9(t *testing.T) {
	s := start(t, "--fanout-queue-threshold", "10")
	ds := s.manyUsers("queued", 40, true)
	var ids []string
	for _, d := range ds[1:] {
		ids = append(ids, d.id)
	}
	b := s.must(201, "POST", "/v1/groups", ds[0].access, obj{"name": "forty", "member_ids": ids})
	group, conv := str(b, "group_id"), str(b, "conversation_id")
	online := map[string]*wsClient{}
	cursors := map[string]string{}
	for i, d := range ds {
		if i%2 == 0 {
			ws, synced := s.connect(d, "")
			online[d.id], cursors[d.id] = ws, str(synced, "cursor")
			continue
		}
		cursors[d.id] = str(s.must(200, "GET", "/v1/events", d.access, nil), "cursor")
	}
	var want []string
	for i := range 10 {
		cmid := fmt.Sprintf("k%d", i)
		s.groupSend(ds[0], group, cmid, "during the crash")
		want = append(want, cmid)
	}
	s.kill9()
	s.restart()
	for _, d := range ds {
		cursor := cursors[d.id]
		var got []string
		if ws := online[d.id]; ws != nil {
			for _, f := range ws.snapshot() {
				if durable(f) {
					cursor = str(f, "cursor")
				}
			}
			got = groupMessages(ws.snapshot(), conv)
		}
		evs, _ := s.catchUp(d, cursor)
		got = append(got, groupMessages(evs, conv)...)
		if !slices.Equal(got, want) {
			t.Fatalf("%s got %v, want %v once each", d.name, got, want)
		}
	}
}
