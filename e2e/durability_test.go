package e2e

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/natter-chat/natter/internal/testnode"
)

// msgKey identifies a message: (conversation_id, seq).
type msgKey struct {
	conv string
	seq  int64
}

func TestKill9WhileSendingLosesNothingAcked(t *testing.T) {
	t.Parallel()
	s := start(t)
	const (
		senders = 4
		perSend = 200
	)
	users := make([]user, senders)
	sendDevs := make([]device, senders)
	recvDevs := make([]device, senders)
	for i := range users {
		var ds []device
		users[i], ds = s.newUser(fmt.Sprintf("user%d", i), 2)
		sendDevs[i], recvDevs[i] = ds[0], ds[1]
	}
	// Sender i writes alternately to user i^1 and user (i+2)%4, so each
	// of the four conversations has two concurrent senders.
	target := func(i, k int) user {
		if k%2 == 0 {
			return users[i^1]
		}
		return users[(i+2)%senders]
	}
	sendWS := make([]*wsClient, senders)
	recvWS := make([]*wsClient, senders)
	for i := range users {
		sendWS[i], _ = s.connect(sendDevs[i], "")
		recvWS[i], _ = s.connect(recvDevs[i], "")
	}
	beforeToken := sendDevs[0].access

	// Open loop: each sender writes a frame every 2 ms whatever the acks.
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for i := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(2 * time.Millisecond)
			defer tick.Stop()
			for k := range perSend {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				f := sendBody(fmt.Sprintf("s%d-%d", i, k), target(i, k).id, fmt.Sprintf("message %d from sender %d", k, i))
				f["type"] = "send"
				if sendWS[i].trySend(f) != nil {
					return // the server is gone
				}
			}
		}()
	}
	acks := func() int {
		n := 0
		for _, c := range sendWS {
			n += c.count(isType("ack"))
		}
		return n
	}
	eventually(t, "a third of the messages acknowledged", func() bool { return acks() >= senders*perSend/3 })
	s.kill9()
	close(stop)
	wg.Wait()

	// What each sender holds an ack for.
	acked := map[string]obj{} // client_message_id -> ack
	for _, c := range sendWS {
		for _, f := range c.snapshot() {
			if f["type"] == "ack" {
				acked[str(f, "client_message_id")] = f
			}
		}
	}
	t.Logf("%d of %d messages acknowledged before kill -9", len(acked), senders*perSend)
	if len(acked) == senders*perSend {
		t.Log("every message was acknowledged before the kill; the crash hit no send in flight")
	}

	// What each device processed before the crash, and its last cursor.
	type seen struct {
		dev    device
		before []obj
		cursor string
	}
	var devs []seen
	for i := range users {
		for _, p := range []struct {
			d device
			c *wsClient
		}{{sendDevs[i], sendWS[i]}, {recvDevs[i], recvWS[i]}} {
			sn := seen{dev: p.d}
			for _, f := range p.c.snapshot() {
				if durable(f) {
					sn.before = append(sn.before, f)
					sn.cursor = str(f, "cursor")
				}
				if f["type"] == "synced" && sn.cursor == "" {
					sn.cursor = str(f, "cursor")
				}
			}
			devs = append(devs, sn)
		}
	}

	s.restart()
	recovered := time.Now()
	waitServing(t, s, sendDevs[0].access)
	t.Logf("serving history %s after /healthz answered", time.Since(recovered).Round(time.Millisecond))

	// Accounts and tokens survived: an old access token works, and so
	// does a login.
	s.must(http.StatusOK, "GET", "/v1/me/devices", beforeToken, nil)
	s.login(users[0])

	// History: every acked message, seq 1..N without gaps or doubles.
	convs := map[string]bool{}
	for _, a := range acked {
		convs[str(a, "conversation_id")] = true
	}
	inHistory := map[msgKey]testnode.Message{}
	for conv := range convs {
		var viewer device
		for i := range users {
			if s.conversation(sendDevs[i], users[i^1]) == conv || s.conversation(sendDevs[i], users[(i+2)%senders]) == conv {
				viewer = sendDevs[i]
				break
			}
		}
		h := s.history(viewer, conv)
		seqs := make([]int64, 0, len(h))
		ids := map[string]int{}
		for _, m := range h {
			seqs = append(seqs, m.Seq)
			inHistory[msgKey{conv, m.Seq}] = m
			ids[m.SenderID+"/"+m.ClientMessageID]++
		}
		slices.Sort(seqs)
		for i, q := range seqs {
			if q != int64(i+1) {
				t.Errorf("conversation %s: seqs are not 1..%d without gaps or doubles: position %d holds %d", conv, len(seqs), i, q)
				break
			}
		}
		for id, n := range ids {
			if n > 1 {
				t.Errorf("conversation %s: message %s stored %d times", conv, id, n)
			}
		}
	}
	for cmid, a := range acked {
		m, ok := inHistory[msgKey{str(a, "conversation_id"), num(a, "seq")}]
		if !ok {
			t.Errorf("acked message %s (seq %d) lost after kill -9", cmid, num(a, "seq"))
			continue
		}
		if m.ClientMessageID != cmid || m.MessageID != a["message_id"] {
			t.Errorf("acked %s as %v, history holds %v there", cmid, a["message_id"], m)
		}
	}

	// Every device resumes from its last cursor: each acked message of its
	// user exactly once overall, each conversation in seq order.
	for _, sn := range devs {
		ws, _ := s.connect(sn.dev, sn.cursor)
		ws.name = sn.dev.label() + " after restart"
		after, _ := untilSynced(ws)
		count := map[msgKey]int{}
		lastSeq := map[string]int64{}
		for _, e := range append(slices.Clone(sn.before), after...) {
			if e["type"] != "message" {
				continue
			}
			k := msgKey{str(e, "conversation_id"), num(e, "seq")}
			count[k]++
			if k.seq <= lastSeq[k.conv] {
				t.Errorf("%s: conversation %s: seq %d after seq %d", ws.name, k.conv, k.seq, lastSeq[k.conv])
			}
			lastSeq[k.conv] = max(lastSeq[k.conv], k.seq)
		}
		for k, n := range count {
			if n > 1 {
				t.Errorf("%s: message %s/%d received %d times", ws.name, k.conv, k.seq, n)
			}
		}
		missing := 0
		for _, a := range acked {
			m := inHistory[msgKey{str(a, "conversation_id"), num(a, "seq")}]
			if m.SenderID != sn.dev.id && m.RecipientID != sn.dev.id {
				continue
			}
			if count[msgKey{str(a, "conversation_id"), num(a, "seq")}] == 0 {
				missing++
			}
		}
		if missing > 0 {
			t.Errorf("%s: %d acked messages never delivered across the crash", ws.name, missing)
		}
		ws.close()
	}
	// And the conversations go on from the last seq.
	last := map[string]int64{}
	for k := range inHistory {
		last[k.conv] = max(last[k.conv], k.seq)
	}
	r := s.sendREST(sendDevs[0], users[1], "after-restart", "still here")
	if want := last[str(r, "conversation_id")] + 1; num(r, "seq") != want {
		t.Errorf("first message after restart has seq %d, want %d", num(r, "seq"), want)
	}
}

// waitServing checks that a restarted server serves at once (GET
// /healthz answered 200: it "accepts clients"): the conversation list
// (which waits for the store) and the event position (the synced barrier,
// which waits for fanout too). Otherwise it reports the bug and waits up
// to 90 s, so the caller can go on checking durability.
func waitServing(t *testing.T, s *server, token string) {
	t.Helper()
	began := time.Now()
	ready := func() resp {
		if r := s.do("GET", "/v1/conversations", token, nil); r.status != http.StatusOK {
			return r
		}
		return s.do("GET", "/v1/events", token, nil)
	}
	r := ready()
	if r.status == http.StatusOK {
		return
	}
	t.Errorf("right after a restart after kill -9 (/healthz answered 200), a read answered %d %s after %s; "+
		"history, the conversation list, long-poll and WebSocket connects (synced) stay unavailable until the consumers' ack wait (30 s) redelivers what the killed process had in flight",
		r.status, strings.TrimSpace(string(r.raw)), time.Since(began).Round(time.Millisecond))
	deadline := time.Now().Add(90 * time.Second)
	for r.status != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatalf("still %d after 90 s: %s", r.status, r.raw)
		}
		time.Sleep(200 * time.Millisecond)
		r = ready()
	}
	t.Logf("reads answered 200 only %s after the restart", time.Since(began).Round(time.Second))
}
