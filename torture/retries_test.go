//go:build torture

package torture

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/natter-chat/natter/internal/testnode"
	"github.com/natter-chat/natter/streams"
)

// TestRetries resends messages with the same client_message_id after a
// dropped ack (the socket closed right after the send), after kill -9 and
// SIGTERM, after JetStream's duplicate window (1 s here), and all at once
// from several connections: each message exists once, and every retry
// is answered with the original's ids.
func TestRetries(t *testing.T) {
	f := newFigures(t, "retries")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	d := startDuo(ctx, t, testnode.Options{Flags: []string{"--duplicate-window", "1s", "--fsync", *fsyncMode}})
	node, rest, as, bob, bs := d.node, d.rest, d.as, d.bob, d.bs
	bobFirst := firstCursor(ctx, t, node, bs[0])
	dial := func() *testnode.WS {
		t.Helper()
		ws, _, err := node.Dial(ctx, as[0].Access, testnode.DialOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return ws
	}
	orig := map[string]testnode.Ack{} // the first ack each cmid got
	mismatch, answers := 0, 0
	var examples []string
	// sameAsOriginal checks a retry's answer against the first ack of its
	// cmid (or records it as the first).
	sameAsOriginal := func(what string, a testnode.Ack) {
		answers++
		o, ok := orig[a.ClientMessageID]
		if !ok {
			orig[a.ClientMessageID] = a
			return
		}
		if !a.Duplicate || a.MessageID != o.MessageID || a.Seq != o.Seq || a.ServerTS != o.ServerTS || a.ConversationID != o.ConversationID {
			mismatch++
			if len(examples) < 5 {
				examples = append(examples, fmt.Sprintf("%s %s: %+v, original %+v", what, a.ClientMessageID, a, o))
			}
		}
	}
	wsRetry := func(ws *testnode.WS, what, cmid string) {
		t.Helper()
		ans, err := ws.Request(ctx, cmid, sendFrame(testnode.NewSend(cmid, bob.ID, "retry of "+cmid)))
		if err != nil || ans.Type != "ack" {
			t.Fatalf("%s %s: %s %v", what, cmid, ans.Raw, err)
		}
		sameAsOriginal(what, ans.Ack())
	}
	restRetry := func(what, cmid string) {
		t.Helper()
		a, err := rest.Send(ctx, as[0].Access, testnode.NewSend(cmid, bob.ID, "REST retry of "+cmid))
		if err != nil {
			t.Fatalf("%s %s: %v", what, cmid, err)
		}
		sameAsOriginal(what, a)
	}
	sendNow := func(ws *testnode.WS, cmids []string) {
		t.Helper()
		for _, c := range cmids {
			if err := ws.SendMessage(ctx, testnode.NewSend(c, bob.ID, "original "+c)); err != nil {
				t.Fatal(err)
			}
		}
	}

	// 1. Dropped acks: the socket closes right after the send frame.
	const drops = 100
	var dropped []string
	for i := range drops {
		ws := dial()
		if _, err := ws.WaitSynced(ctx); err != nil {
			t.Fatal(err)
		}
		cmid := fmt.Sprint("drop-", i)
		dropped = append(dropped, cmid)
		sendNow(ws, []string{cmid})
		if i%2 == 1 {
			time.Sleep(time.Duration(rand.N(2000)) * time.Microsecond)
		}
		ws.Close()
	}
	ws := dial()
	storedBefore := 0
	for _, c := range dropped {
		wsRetry(ws, "retry after a dropped ack", c)
		if orig[c].Duplicate {
			storedBefore++
		}
	}
	for _, c := range dropped {
		restRetry("REST retry after a dropped ack", c)
	}
	ws.Close()
	f.add("dropped_acks", drops)
	f.add("dropped_stored_before_retry", storedBefore)
	f.add("dropped_created_by_retry", drops-storedBefore)

	// 2. Restarts: acked messages, and messages in flight when the
	// process dies (kill -9, then SIGTERM).
	restarts, inflightStored, inflightTotal := 0, 0, 0
	for _, stop := range []struct {
		name string
		do   func() error
	}{
		{"kill -9", node.Kill9},
		{"SIGTERM", func() error { return node.Term(ctx) }},
	} {
		ws := dial()
		var acked, inflight []string
		for i := range 50 {
			c := fmt.Sprintf("%s-acked-%d", stop.name, i)
			acked = append(acked, c)
			wsRetry(ws, "first send", c)
		}
		for i := range 50 {
			inflight = append(inflight, fmt.Sprintf("%s-inflight-%d", stop.name, i))
		}
		// Stop the process in the middle of the stream of sends: once a
		// few of them are acked, with the rest in flight.
		from := ws.Len()
		sendNow(ws, inflight)
		if _, err := ws.WaitN(ctx, from, 5, testnode.IsType("ack")); err != nil {
			t.Fatal(err)
		}
		if err := stop.do(); err != nil {
			t.Fatalf("%s: %v", stop.name, err)
		}
		ws.Close()
		ackedBeforeStop := map[string]bool{}
		for _, fr := range ws.Frames(from) {
			if fr.Type == "ack" {
				sameAsOriginal("ack before "+stop.name, fr.Ack())
				ackedBeforeStop[fr.ClientMessageID] = true
			}
		}
		if err := node.Restart(ctx); err != nil {
			t.Fatal(err)
		}
		restarts++
		ws = dial()
		for _, c := range append(acked, inflight...) {
			wsRetry(ws, "retry after "+stop.name, c)
		}
		for _, c := range inflight {
			inflightTotal++
			if ackedBeforeStop[c] || orig[c].Duplicate {
				inflightStored++
			}
		}
		for _, c := range append(acked, inflight...) {
			restRetry("REST retry after "+stop.name, c)
		}
		ws.Close()
	}

	// 3. After the duplicate window: JetStream no longer knows the
	// cmids; the store does. Waiting out the window is the point.
	time.Sleep(1500 * time.Millisecond)
	ws = dial()
	for c := range orig {
		wsRetry(ws, "retry after the duplicate window", c)
	}
	ws.Close()
	windowRetries := len(orig)

	// 4. The same new cmids from two sockets and REST at once.
	const racing = 50
	socks := []*testnode.WS{dial(), dial()}
	var mu sync.Mutex
	var raceAnswers []testnode.Ack
	var wg sync.WaitGroup
	for i := range racing {
		c := fmt.Sprint("race-", i)
		for _, s := range socks {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ans, err := s.Request(ctx, c, sendFrame(testnode.NewSend(c, bob.ID, "racing "+c)))
				if err != nil || ans.Type != "ack" {
					t.Errorf("racing %s: %s %v", c, ans.Raw, err)
					return
				}
				mu.Lock()
				raceAnswers = append(raceAnswers, ans.Ack())
				mu.Unlock()
			}()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			a, err := rest.Send(ctx, as[0].Access, testnode.NewSend(c, bob.ID, "racing over REST "+c))
			if err != nil {
				t.Errorf("racing %s over REST: %v", c, err)
				return
			}
			mu.Lock()
			raceAnswers = append(raceAnswers, a)
			mu.Unlock()
		}()
	}
	wg.Wait()
	// Per cmid: exactly one fresh answer, and every other one the same
	// message with duplicate:true.
	byCmid := map[string][]testnode.Ack{}
	for _, a := range raceAnswers {
		byCmid[a.ClientMessageID] = append(byCmid[a.ClientMessageID], a)
	}
	racingFresh := 0
	for c, all := range byCmid {
		var fresh []testnode.Ack
		for _, a := range all {
			if !a.Duplicate {
				fresh = append(fresh, a)
			}
		}
		if len(fresh) != 1 {
			racingFresh++
			t.Errorf("%s: %d answers with duplicate:false, want exactly 1: %+v", c, len(fresh), all)
			continue
		}
		orig[c] = fresh[0]
		for _, a := range all {
			if a.Duplicate {
				sameAsOriginal("racing retry", a)
			}
		}
	}
	for _, s := range socks {
		s.Close()
	}

	// Read back: history and bob's replay hold each cmid once, at the
	// original's place.
	var conv string
	for _, a := range orig {
		conv = a.ConversationID
		break
	}
	h, err := rest.History(ctx, as[0].Access, conv)
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	bySeq := map[int64]bool{}
	var top int64
	moved := 0
	for _, m := range h {
		count[m.ClientMessageID]++
		bySeq[m.Seq] = true
		top = max(top, m.Seq)
		if o, ok := orig[m.ClientMessageID]; ok && o.MessageID != m.MessageID {
			moved++
		}
	}
	dupes, missing, gaps := 0, 0, 0
	for c := range orig {
		switch count[c] {
		case 0:
			missing++
		case 1:
		default:
			dupes += count[c] - 1
		}
	}
	for s := int64(1); s <= top; s++ {
		if !bySeq[s] {
			gaps++
		}
	}
	frames, err := replay(ctx, node, bs[0], bobFirst)
	if err != nil {
		t.Fatal(err)
	}
	delivered := map[string]int{}
	for _, e := range framesToEvents(frames) {
		delivered[e.cmid]++
		if o, ok := orig[e.cmid]; ok && o.MessageID != e.messageID {
			moved++
		}
	}
	deliveredTwice, undelivered := 0, 0
	for c := range orig {
		switch n := delivered[c]; {
		case n == 0:
			undelivered++
		case n > 1:
			deliveredTwice += n - 1
		}
	}
	f.add("restarts", restarts)
	f.add("in_flight_at_stop", inflightTotal)
	f.add("in_flight_stored_before_stop", inflightStored)
	f.add("retries_after_window", windowRetries)
	f.add("racing_cmids", racing)
	f.add("messages", len(orig))
	f.add("retry_answers", answers)
	f.expect("retries_not_answered_with_original", mismatch, 0)
	f.expect("racing_cmids_not_exactly_one_fresh_ack", racingFresh, 0)
	f.expect("duplicated_in_history", dupes, 0)
	f.expect("missing_from_history", missing, 0)
	f.expect("ids_in_history_or_replay_differ_from_ack", moved, 0)
	f.expect("seq_gaps", gaps, 0)
	f.expect("delivered_twice_to_bob", deliveredTwice, 0)
	f.expect("never_delivered_to_bob", undelivered, 0)
	if len(examples) > 0 {
		t.Logf("examples: %q", examples)
	}
}

func sendFrame(r testnode.SendRequest) any {
	return struct {
		Type string `json:"type"`
		testnode.SendRequest
	}{"send", r}
}

// firstCursor connects d once and returns its synced cursor: the point
// from which a replay holds everything that follows.
func firstCursor(ctx context.Context, t *testing.T, node *testnode.Node, d testnode.Device) string {
	t.Helper()
	ws, _, err := node.Dial(ctx, d.Access, testnode.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	s, err := ws.WaitSynced(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return s.Cursor
}

// TestRetryAfterWindowWhilePersistLags retries messages after JetStream's
// duplicate window (1 s) while persist has not stored them (it is paused
// through NATS, as by an operator or a slow disk): neither JetStream nor
// the store knows them, so the retry must wait for persist and answer
// the original instead of creating a second message.
func TestRetryAfterWindowWhilePersistLags(t *testing.T) {
	f := newFigures(t, "retry-while-persist-lags")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	d := startDuo(ctx, t, testnode.Options{NATS: true, Flags: []string{"--duplicate-window", "1s"}})
	node, rest, view, as, bob, bs := d.node, d.rest, d.view, d.as, d.bob, d.bs
	if !eventually(30*time.Second, func() bool { return strings.Contains(node.Log(), "dedupe filter loaded") }) {
		t.Fatal("natter never logged that its dedupe filter loaded")
	}
	if _, err := view.js.PauseConsumer(ctx, streams.StreamConv, streams.ConsumerPersist, time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	const n = 20
	acks := make([]testnode.Ack, n)
	var err error
	for i := range acks {
		if acks[i], err = rest.Send(ctx, as[0].Access, testnode.NewSend(fmt.Sprint("lag-", i), bob.ID, "before the window ran out")); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(1500 * time.Millisecond) // JetStream forgets the ids
	resumed := make(chan error, 1)
	go func() {
		time.Sleep(time.Second)
		_, err := view.js.ResumeConsumer(ctx, streams.StreamConv, streams.ConsumerPersist)
		resumed <- err
	}()
	began := time.Now()
	same, fresh := 0, 0
	for i, orig := range acks {
		a, err := rest.Send(ctx, as[0].Access, testnode.NewSend(fmt.Sprint("lag-", i), bob.ID, "retried after the window"))
		if err != nil {
			t.Fatalf("retry %d: %v", i, err)
		}
		if a.MessageID == orig.MessageID && a.Seq == orig.Seq && a.Duplicate {
			same++
		} else {
			fresh++
		}
	}
	if err := <-resumed; err != nil {
		t.Fatal(err)
	}
	f.add("retries", n)
	f.add("first_retries_waited", time.Since(began).Round(time.Millisecond))
	f.expect("retries_answered_with_original", same, n)
	f.expect("retries_that_created_a_message", fresh, 0)
	h, err := rest.History(ctx, bs[0].Access, acks[0].ConversationID)
	if err != nil {
		t.Fatal(err)
	}
	f.expect("messages_in_history", len(h), n)
}
