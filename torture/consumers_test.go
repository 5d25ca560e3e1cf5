//go:build torture

package torture

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/natter-chat/natter/internal/testnode"
	"github.com/natter-chat/natter/streams"
)

// TestConsumerFaults kills natter while persist and fanout are behind and
// at work: the test pauses both consumers through NATS while clients pour
// a burst in, resumes them one after the other, watches their ack floors
// and sends SIGKILL once both are working through their backlogs. After the restart it reconciles the CONV stream, the store
// (history) and the inboxes (the INBOX stream and every device's replay):
// nothing missing, nothing twice.
func TestConsumerFaults(t *testing.T) {
	f := newFigures(t, "consumer-faults")
	rounds := max(3, int(*duration/(20*time.Second)))
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(rounds)*2*time.Minute+5*time.Minute)
	defer cancel()
	node := testnode.Start(t, testnode.Options{NATS: true, Flags: []string{"--fsync", *fsyncMode, "--max-ack-pending", "1"}})
	rest := node.Client()
	defer rest.Close()
	view, err := dialNATS(node.NATSURL())
	if err != nil {
		t.Fatal(err)
	}
	defer view.Close()

	const users = 8
	clients, tokens := newPairs(ctx, t, node, rest, users, nil, "fault")
	making := &atomic.Bool{} // the bursts make the messages, not the ticks
	runCtx, stopClients := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Add(2)
		go func() { defer wg.Done(); c.run(runCtx) }()
		go func() {
			defer wg.Done()
			c.generate(runCtx, 5*time.Millisecond, making, func(string) string { return "unused" })
		}()
	}
	defer func() { stopClients(); wg.Wait() }()

	const perPhone = 400
	var (
		behindRounds            int
		persistLags, fanoutLags []string
		unackedAtKill           []string
		drains                  []time.Duration
	)
	for round := range rounds {
		// CONV's tail before the burst: the burst may be in before the
		// loop below first looks.
		start, err := view.lag(ctx, streams.ConsumerPersist)
		if err != nil {
			t.Fatal(err)
		}
		// Both consumers keep up with 8 senders even one event at a time,
		// so the test holds them back (JetStream's consumer pause, as an
		// operator would) while most of the burst comes in, lets them run,
		// and kills natter while both work through their backlogs.
		for _, name := range []string{streams.ConsumerPersist, streams.ConsumerFanout} {
			if _, err := view.js.PauseConsumer(ctx, streams.StreamConv, name, time.Now().Add(wait)); err != nil {
				t.Fatal(err)
			}
		}
		for _, c := range clients {
			c.burst(perPhone, func(cmid string) string {
				return fmt.Sprintf("round %d: %s %s", round, cmid, strings.Repeat("x", 200))
			})
		}
		// Persist is let go first (it is the slower one), fanout once
		// persist is at work; the kill comes when fanout is at work too.
		target := users * perPhone * 7 / 10
		var p, fo lag
		stage := 0 // 0: both paused, 1: persist running, 2: both running
		working := func(l lag) bool { return l.behind() >= 1 && (l.ackFloor > start.convLast || l.inFlight > 0) }
		resume := func(name string) {
			if _, err := view.js.ResumeConsumer(ctx, streams.StreamConv, name); err != nil {
				t.Fatal(err)
			}
			stage++
		}
	watch:
		for deadline := time.Now().Add(wait); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
			if p, err = view.lag(ctx, streams.ConsumerPersist); err != nil {
				t.Fatal(err)
			}
			if fo, err = view.lag(ctx, streams.ConsumerFanout); err != nil {
				t.Fatal(err)
			}
			switch {
			case stage == 0 && p.convLast-start.convLast >= uint64(target):
				resume(streams.ConsumerPersist)
			case stage == 1 && (working(p) || p.behind() == 0):
				resume(streams.ConsumerFanout)
			case stage == 2 && (working(fo) || fo.behind() == 0 || p.behind() == 0):
				break watch
			}
		}
		if stage < 2 {
			t.Fatalf("round %d: consumers not running 60 s after the burst (stage %d)", round, stage)
		}
		unacked := 0
		for _, c := range clients {
			unacked += c.outboxLen()
		}
		if round == 0 {
			// What an operator sees at that moment.
			if bin, err := testnode.Binary(); err == nil {
				out, err := exec.CommandContext(ctx, bin, "status", "--nats", node.NATSURL()).CombinedOutput()
				t.Logf("natter status just before kill -9 (%v):\n%s", err, out)
			}
		}
		if err := node.Kill9(); err != nil {
			t.Fatal(err)
		}
		persistLags = append(persistLags, fmt.Sprint(p.behind()))
		fanoutLags = append(fanoutLags, fmt.Sprint(fo.behind()))
		unackedAtKill = append(unackedAtKill, fmt.Sprint(unacked))
		if p.behind() > 0 && fo.behind() > 0 {
			behindRounds++
		}
		t.Logf("round %d: kill -9 with persist %d and fanout %d events behind, %d messages without an ack", round, p.behind(), fo.behind(), unacked)

		if err := node.Restart(ctx); err != nil {
			t.Fatal(err)
		}
		restarted := time.Now()
		// The clients resend what has no ack; wait until they are acked
		// and both consumers have caught up with CONV.
		if !eventually(2*wait, func() bool {
			for _, c := range clients {
				if c.outboxLen() > 0 {
					return false
				}
			}
			p, err1 := view.lag(ctx, streams.ConsumerPersist)
			fo, err2 := view.lag(ctx, streams.ConsumerFanout)
			return err1 == nil && err2 == nil && p.behind() == 0 && fo.behind() == 0
		}) {
			t.Fatalf("round %d: consumers not caught up %s after the restart", round, 2*wait)
		}
		drains = append(drains, time.Since(restarted))
	}
	f.add("fsync", *fsyncMode)
	f.add("rounds", rounds)
	f.add("messages_per_round", users*perPhone)
	f.add("persist_behind_at_kill", strings.Join(persistLags, ","))
	f.add("fanout_behind_at_kill", strings.Join(fanoutLags, ","))
	f.add("unacked_at_kill", strings.Join(unackedAtKill, ","))
	f.add("caught_up_after_restart_max", maxDuration(drains))
	f.goal("rounds_with_both_behind", behindRounds, fmt.Sprint(rounds))
	if behindRounds == 0 {
		t.Errorf("no round killed natter while both consumers were behind: the test proved nothing")
	}

	// Live delivery finishes, then the clients stop.
	l := collect(clients)
	eventually(wait, func() bool {
		for _, c := range clients {
			if !c.has(l.expectedFor(c.dev.ID)) {
				return false
			}
		}
		return true
	})
	stopClients()
	wg.Wait()
	l = collect(clients)

	h := verifyLoad(ctx, t, f, node, rest, clients, tokens, l)
	reconcile(ctx, t, f, view, l, h, clients)
}

// burst makes n messages at once; the generator writes them on its next
// tick, back to back.
func (c *loadClient) burst(n int, content func(cmid string) string) {
	if len(c.peers) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for range n {
		cmid := fmt.Sprintf("%s-%d", c.name, c.made)
		c.made++
		to := c.peers[c.made%len(c.peers)]
		c.to[cmid] = to.ID
		c.outbox = append(c.outbox, &pending{req: testnode.NewSend(cmid, to.ID, content(cmid))})
	}
}

// reconcile compares the CONV stream with the store and the inboxes as
// the streams hold them: every message in CONV is in the store and in
// the inbox of each participant, once.
func reconcile(ctx context.Context, t *testing.T, f *figures, view *natsView, l ledger, h historyCheck, clients []*loadClient) {
	t.Helper()
	conv, err := view.read(ctx, streams.StreamConv, streams.MsgSubject("*"))
	if err != nil {
		t.Fatalf("read CONV: %v", err)
	}
	var examples []string
	note := func(format string, args ...any) {
		if len(examples) < 10 {
			examples = append(examples, fmt.Sprintf(format, args...))
		}
	}
	inConv := map[msgKey]stored{}
	convDup := 0
	byCmid := map[string]int{}
	for _, m := range conv {
		k := msgKey{m.ConversationID, m.Seq}
		if _, ok := inConv[k]; ok {
			convDup++
			note("CONV holds %s/%d twice", k.conv, k.seq)
		}
		inConv[k] = m
		if byCmid[m.SenderID+"/"+m.ClientMessageID]++; byCmid[m.SenderID+"/"+m.ClientMessageID] == 2 {
			convDup++
			note("CONV holds %s/%s twice", m.SenderID, m.ClientMessageID)
		}
	}
	f.add("conv_messages", len(conv))
	f.expect("duplicated_in_conv", convDup, 0)
	notInConv := 0
	for id, a := range l.acks {
		if m, ok := inConv[msgKey{a.ConversationID, a.Seq}]; !ok || m.MessageID != a.MessageID {
			notInConv++
			note("acked %s is not in CONV", id)
		}
	}
	f.expect("acked_missing_from_conv", notInConv, 0)
	notStored := 0
	for k, m := range inConv {
		if s, ok := h.byKey[k]; !ok || s.MessageID != m.MessageID || s.ClientMessageID != m.ClientMessageID {
			notStored++
			note("CONV message %s/%d is not in the store", k.conv, k.seq)
		}
	}
	f.expect("conv_missing_from_store", notStored, 0)
	f.expect("store_not_in_conv", len(h.byKey)-(len(inConv)-notStored), 0)

	// The inbox of every user: each CONV message of theirs once.
	users := map[string]bool{}
	for _, c := range clients {
		users[c.dev.ID] = true
	}
	missing, dup, foreign, events := 0, 0, 0, 0
	for u := range users {
		evs, err := view.read(ctx, streams.StreamInbox, streams.InboxSubject(u, streams.InboxMessages))
		if err != nil {
			t.Fatalf("read the inbox of %s: %v", u, err)
		}
		events += len(evs)
		got := map[msgKey]int{}
		for _, e := range evs {
			k := msgKey{e.ConversationID, e.Seq}
			if got[k]++; got[k] == 2 {
				dup++
				note("inbox of %s holds %s/%d twice", u, k.conv, k.seq)
			}
			if m, ok := inConv[k]; !ok || m.MessageID != e.MessageID {
				foreign++
				note("inbox of %s holds %s/%d, which CONV does not", u, k.conv, k.seq)
			}
		}
		for k, m := range inConv {
			if (m.SenderID == u || m.RecipientID == u) && got[k] == 0 {
				missing++
				note("inbox of %s lacks %s/%d", u, k.conv, k.seq)
			}
		}
	}
	f.add("inbox_events", events)
	f.expect("conv_missing_from_inboxes", missing, 0)
	f.expect("duplicated_in_inboxes", dup, 0)
	f.expect("inbox_events_not_in_conv", foreign, 0)
	dead, err := view.streamMsgs(ctx, streams.StreamDeadLetter)
	if err != nil {
		t.Fatal(err)
	}
	f.expect("dead_lettered", int(dead), 0)
	if t.Failed() {
		t.Logf("reconcile examples:\n  %s", strings.Join(slices.Clip(examples), "\n  "))
	}
}
