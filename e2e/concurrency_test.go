package e2e

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
)

func TestConcurrentSendersGetGapFreeSeqs(t *testing.T) {
	t.Parallel()
	s := start(t)
	const (
		perUser = 4
		each    = 50
	)
	alice, as := s.newUser("alice", perUser)
	bob, bs := s.newUser("bob", perUser)
	type sender struct {
		ws *wsClient
		to user
		id string
	}
	var senders []sender
	for i := range perUser {
		a, _ := s.connect(as[i], "")
		b, _ := s.connect(bs[i], "")
		senders = append(senders, sender{a, bob, fmt.Sprintf("a%d", i)}, sender{b, alice, fmt.Sprintf("b%d", i)})
	}
	total := len(senders) * each

	// Every sender pipelines its 50 sends at once, all together.
	var wg sync.WaitGroup
	for _, sd := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range each {
				f := sendBody(fmt.Sprintf("%s-%03d", sd.id, k), sd.to.id, "concurrent")
				f["type"] = "send"
				if err := sd.ws.trySend(f); err != nil {
					t.Errorf("%s: %v", sd.id, err)
					return
				}
			}
		}()
	}
	wg.Wait()

	seen := map[int64]string{}
	conv := ""
	for _, sd := range senders {
		acks := sd.ws.waitN(sd.id+" acks", each, func(f obj) bool { return f["type"] == "ack" || f["type"] == "error" })
		var last int64
		for k, a := range acks {
			if a["type"] != "ack" {
				t.Fatalf("%s: %v", sd.id, a)
			}
			// Sends on one connection to one conversation: seq in send order.
			if want := fmt.Sprintf("%s-%03d", sd.id, k); a["client_message_id"] != want {
				t.Errorf("%s: ack %d is for %v, want %s", sd.id, k, a["client_message_id"], want)
			}
			seq := num(a, "seq")
			if seq <= last {
				t.Errorf("%s: seq %d after %d: not in send order", sd.id, seq, last)
			}
			last = seq
			if prev, dup := seen[seq]; dup {
				t.Errorf("seq %d given to %s and %v", seq, prev, a["client_message_id"])
			}
			seen[seq] = str(a, "client_message_id")
			conv = str(a, "conversation_id")
		}
	}
	for q := int64(1); q <= int64(total); q++ {
		if _, ok := seen[q]; !ok {
			t.Errorf("no message got seq %d", q)
		}
	}
	if len(seen) != total {
		t.Errorf("%d distinct seqs, want %d", len(seen), total)
	}
	// A page is at most 100 messages whatever the limit asked for.
	page := s.must(http.StatusOK, "GET", "/v1/conversations/"+conv+"/messages?limit=1000", as[0].access, nil)
	if ms := objs(page["messages"]); len(ms) != 100 || num(ms[0], "seq") != int64(total) || page["next_cursor"] == nil {
		t.Errorf("limit=1000: %d messages, next_cursor %v; want 100 from seq %d and a cursor", len(ms), page["next_cursor"], total)
	}
	h := s.history(as[0], conv)
	if len(h) != total {
		t.Errorf("history has %d messages, want %d", len(h), total)
	}
	for _, m := range h {
		if seen[m.Seq] != m.ClientMessageID {
			t.Errorf("history seq %d holds %v, the ack said %s", m.Seq, m.ClientMessageID, seen[m.Seq])
		}
	}
	// Every device receives all 400, each once, in seq order.
	for _, sd := range senders {
		evs := sd.ws.waitN(sd.id+" message events", total, isMessageIn(conv))
		for i, e := range evs {
			if num(e, "seq") != int64(i+1) {
				t.Errorf("%s: message event %d has seq %d: not in seq order or not exactly once", sd.id, i, num(e, "seq"))
				break
			}
		}
		if len(evs) != total {
			t.Errorf("%s received %d message events, want %d", sd.id, len(evs), total)
		}
	}
}

func TestSendsOnOneConnectionKeepTheirOrder(t *testing.T) {
	t.Parallel()
	s := start(t)
	_, as := s.newUser("alice", 1)
	bob, bs := s.newUser("bob", 1)
	a, _ := s.connect(as[0], "")
	// Another writer in the same conversation at the same time.
	done := make(chan struct{})
	go func() {
		defer close(done)
		for k := range 30 {
			if _, err := s.tryDo("POST", "/v1/messages", bs[0].access, sendBody(fmt.Sprintf("other-%d", k), as[0].id, "x")); err != nil {
				return
			}
		}
	}()
	const n = 100
	for k := range n {
		a.sendMsg(bob, fmt.Sprintf("o-%03d", k), fmt.Sprintf("%d", k))
	}
	acks := a.waitN("acks", n, func(f obj) bool { return f["type"] == "ack" || f["type"] == "error" })
	var last int64
	for k, ack := range acks {
		if want := fmt.Sprintf("o-%03d", k); ack["type"] != "ack" || ack["client_message_id"] != want {
			t.Fatalf("answer %d is %v, want the ack of %s", k, ack, want)
		}
		if num(ack, "seq") <= last {
			t.Errorf("%s got seq %d after %d", ack["client_message_id"], num(ack, "seq"), last)
		}
		last = num(ack, "seq")
	}
	<-done
}
