//go:build torture

package torture

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/natter-chat/natter/internal/testnode"
)

// crashUsers is how many users the crash loop drives; each has two
// devices, a phone that sends and reads and a laptop that reads.
const crashUsers = 12

// TestCrashLoop kills natter with SIGKILL every 5 to 15 s while clients
// send in an open loop (a message per tick whatever the acks), resend
// what has no ack on every new connection and reconnect with their
// cursor. Then it reads everything back: history, every device's live
// log, and every device's replay from its first cursor.
func TestCrashLoop(t *testing.T) {
	f := newFigures(t, "crash-loop")
	ctx, cancel := context.WithTimeout(context.Background(), *duration+10*time.Minute)
	defer cancel()
	node := testnode.Start(t, testnode.Options{Flags: []string{"--fsync", *fsyncMode}})
	rest := node.Client()
	defer rest.Close()

	svc := &service{}
	clients, tokens := newPairs(ctx, t, node, rest, crashUsers, svc, "crash")
	f.add("fsync", *fsyncMode)
	f.add("users", crashUsers)
	f.add("connections", len(clients))
	f.add("load_time", *duration)
	f.add("rate_offered_per_s", *loadRate)

	making := &atomic.Bool{}
	making.Store(true)
	runCtx, stopClients := context.WithCancel(ctx)
	var wg sync.WaitGroup
	interval := time.Duration(float64(crashUsers) / *loadRate * float64(time.Second))
	for _, c := range clients {
		wg.Add(2)
		go func() { defer wg.Done(); c.run(runCtx) }()
		go func() {
			defer wg.Done()
			c.generate(runCtx, interval, making, func(cmid string) string { return "torture message " + cmid })
		}()
	}
	defer func() { stopClients(); wg.Wait() }()
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go svc.watch(watchCtx)

	// The killer: kill -9 5 to 15 s after the previous kill, once the
	// clients have been served again since.
	var restarts, recoveries []time.Duration
	loadEnd := time.Now().Add(*duration)
	lastKill := time.Now()
	for {
		next := lastKill.Add(5*time.Second + rand.N(10*time.Second))
		if next.After(loadEnd) {
			break
		}
		time.Sleep(time.Until(next))
		lastKill = time.Now()
		if err := node.Kill9(); err != nil {
			t.Fatal(err)
		}
		if err := node.Restart(ctx); err != nil {
			t.Fatalf("restart after kill -9: %v", err)
		}
		restarts = append(restarts, time.Since(lastKill))
		killedAt := lastKill.UnixNano()
		if !eventually(2*wait, func() bool { return svc.last.Load() > killedAt }) {
			t.Fatalf("no send acknowledged within %s of a restart", 2*wait)
		}
		recoveries = append(recoveries, time.Duration(svc.last.Load()-killedAt))
	}
	time.Sleep(time.Until(loadEnd))
	making.Store(false)
	f.add("crashes", len(restarts))
	f.add("restart_to_healthz_max", maxDuration(restarts))
	f.add("kill_to_first_ack_mean", meanDuration(recoveries))
	f.add("kill_to_first_ack_max", maxDuration(recoveries))

	// Drain: every message made gets its ack.
	if !eventually(2*wait, func() bool {
		for _, c := range clients {
			if c.outboxLen() > 0 {
				return false
			}
		}
		return true
	}) {
		n := 0
		for _, c := range clients {
			n += c.outboxLen()
		}
		t.Errorf("%d messages still without an ack %s after the load stopped", n, 2*wait)
	}
	stopWatch()
	f.goal("longest_without_service", time.Duration(svc.longest.Load()), "")

	// Live delivery: every device gets every message it takes part in.
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
	verifyLoad(ctx, t, f, node, rest, clients, tokens, l)
}

// newPairs registers n users with a phone and a laptop each and returns
// their clients (phone, laptop, phone, ...), connected once for their
// first cursor, and each user's phone token. User i writes to users i+1
// and i+n/2, so some conversations have one sender and others two.
func newPairs(ctx context.Context, t *testing.T, node *testnode.Node, rest *testnode.Client, n int, svc *service, prefix string) ([]*loadClient, map[string]string) {
	t.Helper()
	users := make([]testnode.User, n)
	devs := make([][]testnode.Device, n)
	for i := range users {
		var err error
		if users[i], devs[i], err = rest.NewUser(ctx, fmt.Sprintf("%s%d", prefix, i), password, 2); err != nil {
			t.Fatal(err)
		}
	}
	tokens := map[string]string{}
	var clients []*loadClient
	for i, u := range users {
		tokens[u.ID] = devs[i][0].Access
		peers := []testnode.User{users[(i+1)%n], users[(i+n/2)%n]}
		clients = append(clients,
			newLoadClient(fmt.Sprintf("%s%d-phone", prefix, i), node, devs[i][0], peers, svc),
			newLoadClient(fmt.Sprintf("%s%d-laptop", prefix, i), node, devs[i][1], nil, svc))
	}
	for _, c := range clients {
		if err := c.connect(ctx); err != nil {
			t.Fatal(err)
		}
	}
	return clients, tokens
}

// verifyLoad reads back what the clients were acked: the history of
// every conversation, every device's live log, and every device's replay
// from its first cursor; it records the figures and fails the test on any
// loss, duplicate, reordering or gap.
func verifyLoad(ctx context.Context, t *testing.T, f *figures, node *testnode.Node, rest *testnode.Client, clients []*loadClient, tokens map[string]string, l ledger) historyCheck {
	t.Helper()
	f.add("sent", l.made)
	f.add("frames_written", l.written)
	f.add("acked", len(l.acks))
	f.add("acks_duplicate_true", l.dupAcks)
	f.add("connections_opened", l.connects)
	f.add("connections_closed_by", fmtCounts(l.closes))
	f.add("send_errors_retried", fmtCounts(l.retryable))
	f.add("connects_refused_before_synced", fmtCounts(l.connRefused))
	f.expect("acks_differing_on_retry", l.ackMismatch, 0)
	f.expect("sends_refused", sum(l.refused), 0)
	if len(l.refused) > 0 {
		t.Errorf("sends refused for good: %v", l.refused)
	}

	h, err := checkHistory(ctx, rest, l, tokens)
	if err != nil {
		t.Fatal(err)
	}
	f.add("conversations", h.conversations)
	f.add("stored", h.stored)

	var live, rep deliveryCheck
	lostInReplay := map[msgKey]bool{}
	for _, c := range clients {
		want := l.expectedFor(c.dev.ID)
		c.mu.Lock()
		evs := slices.Clone(c.events)
		first := c.firstCursor
		c.mu.Unlock()
		live.add(checkDelivery(c.name+" live", evs, want))

		frames, err := replay(ctx, node, c.dev, first)
		if err != nil {
			t.Fatalf("%s: replay from its first cursor: %v", c.name, err)
		}
		revs := framesToEvents(frames)
		rep.add(checkDelivery(c.name+" replay", revs, want))
		got := map[msgKey]event{}
		for _, e := range revs {
			got[e.key] = e
			if m, ok := h.byKey[e.key]; ok && m.MessageID != e.messageID {
				rep.examples = append(rep.examples, fmt.Sprintf("%s replay: %s/%d is %s, history says %s", c.name, e.key.conv, e.key.seq, e.messageID, m.MessageID))
				rep.outOfOrder++
			}
		}
		for k := range want {
			if _, ok := got[k]; !ok {
				lostInReplay[k] = true
			}
		}
	}
	lost := map[msgKey]bool{}
	for _, a := range l.acks {
		k := msgKey{a.ConversationID, a.Seq}
		if _, ok := h.byKey[k]; !ok || lostInReplay[k] {
			lost[k] = true
		}
	}
	examples := append(append(append([]string(nil), h.examples...), live.examples...), rep.examples...)
	f.expect("acked_but_lost", len(lost), 0)
	f.expect("acked_missing_from_history", h.lost, 0)
	f.expect("acked_missing_from_a_replay", len(lostInReplay), 0)
	f.expect("acked_but_different_in_history", h.mismatched, 0)
	f.expect("stored_but_never_sent", h.phantoms, 0)
	f.expect("duplicated", h.duplicates+live.duplicates+rep.duplicates, 0)
	f.expect("out_of_order", live.outOfOrder+rep.outOfOrder+len(l.orderErrors), 0)
	f.expect("seq_gaps", h.gaps, 0)
	f.expect("delivery_skips", live.skipped+rep.skipped, 0)
	f.expect("live_never_delivered", live.missing, 0)
	if t.Failed() {
		t.Logf("examples:\n  %s", strings.Join(append(examples, l.orderErrors...), "\n  "))
	}
	return h
}

func fmtCounts(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s×%d", strings.ReplaceAll(k, " ", "_"), m[k])
	}
	return strings.Join(parts, ",")
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func maxDuration(ds []time.Duration) time.Duration {
	var m time.Duration
	for _, d := range ds {
		m = max(m, d)
	}
	return m
}

func meanDuration(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	var s time.Duration
	for _, d := range ds {
		s += d
	}
	return s / time.Duration(len(ds))
}
