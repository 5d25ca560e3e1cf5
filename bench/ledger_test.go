package bench

import (
	"sync"
	"testing"
	"time"
)

// testFlow is a sealed ledger with one flow a→b of 10 messages due every
// 10 ms from start, the first 2 being warmup.
func testFlow(t *testing.T) (*Ledger, *Flow, time.Time) {
	t.Helper()
	start := time.Unix(1000, 0)
	l := NewLedger("run1", &ErrorCounts{})
	f := l.AddFlow("a", []string{"b"}, Schedule{Start: start, Interval: 10 * time.Millisecond, Count: 10}, 2)
	l.Seal()
	return l, f, start
}

func msg(l *Ledger, f *Flow, i int) *inbound {
	return &inbound{Type: "message", ClientMessageID: l.MessageID(f, i), ConversationID: "c1", Seq: int64(i + 1), SenderID: f.sender}
}

func TestLedgerCountsAndLatency(t *testing.T) {
	l, f, _ := testFlow(t)
	b, a := &Receiver{UserID: "b"}, &Receiver{UserID: "a"}
	for i := range 10 {
		l.Sent(f, i)
	}
	// Acks 5 ms after each due time, except message 5, acked 200 ms late
	// (a stall: latency counts from the due time, not from the send).
	for i := range 10 {
		at := f.sched.At(i).Add(5 * time.Millisecond)
		if i == 5 {
			at = f.sched.At(i).Add(200 * time.Millisecond)
		}
		l.OnAck(l.MessageID(f, i), at)
		l.OnMessage(a, msg(l, f, i), at) // the sender's own copy
		l.OnMessage(b, msg(l, f, i), at.Add(time.Millisecond))
	}
	if !l.Settled() {
		t.Fatal("not settled with everything acked and delivered")
	}
	all, measured := l.Tally(nil, false), l.Tally(nil, true)
	if want := (Tally{Sent: 10, Acked: 10, Delivered: 10}); all != want {
		t.Errorf("tally = %v, want %v", all, want)
	}
	if want := (Tally{Sent: 8, Acked: 8, Delivered: 8}); measured != want {
		t.Errorf("measured tally = %v, want %v", measured, want)
	}
	if l.Duplicates() != 0 {
		t.Errorf("duplicates = %d: the sender's own copy is not one", l.Duplicates())
	}
	ack, dlv := l.Ack.Summary(), l.Delivery.Summary()
	if ack.Count != 8 || dlv.Count != 8 {
		t.Errorf("latencies counted %d acks, %d deliveries: want 8 each (warmup excluded)", ack.Count, dlv.Count)
	}
	if ack.Max != 200 || dlv.Max != 201 {
		t.Errorf("max latency ack %v, delivery %v ms: want 200 and 201, from the due time", ack.Max, dlv.Max)
	}
	if !near(ack.P50, 5) || !near(dlv.P50, 6) {
		t.Errorf("p50 ack %v, delivery %v ms: want 5 and 6", ack.P50, dlv.P50)
	}
}

func TestLedgerLossAndRefusal(t *testing.T) {
	l, f, _ := testFlow(t)
	b := &Receiver{UserID: "b"}
	now := time.Unix(2000, 0)
	for i := range 10 {
		l.Sent(f, i)
	}
	for i := range 8 { // 8 and 9 get no ack
		l.OnAck(l.MessageID(f, i), now)
	}
	for i := range 6 { // 6 and 7 acked, never delivered: lost
		l.OnMessage(b, msg(l, f, i), now)
	}
	l.OnError(l.MessageID(f, 9), "rate_limited", "slow down") // 9 refused; 8 stays unanswered
	if l.Settled() || l.Answered() {
		t.Fatal("settled with messages outstanding")
	}
	got := l.Tally(nil, false)
	want := Tally{Sent: 10, Acked: 8, Failed: 1, Unacked: 1, Delivered: 6, Lost: 2}
	if got != want {
		t.Errorf("tally = %v, want %v", got, want)
	}
	if e := l.Errors.Snapshot(); e["rate_limited"] != 1 {
		t.Errorf("errors = %v, want rate_limited: 1", e)
	}
	// The late delivery of 6 is no longer lost.
	l.OnMessage(b, msg(l, f, 6), now)
	if got := l.Tally(nil, false); got.Lost != 1 || got.Delivered != 7 {
		t.Errorf("after a late delivery: %v, want lost 1 delivered 7", got)
	}
}

func TestLedgerDuplicates(t *testing.T) {
	l, f, _ := testFlow(t)
	a, b, b2 := &Receiver{UserID: "a"}, &Receiver{UserID: "b"}, &Receiver{UserID: "b"}
	now := time.Unix(2000, 0)
	for i := range 3 {
		l.Sent(f, i)
		l.OnAck(l.MessageID(f, i), now)
		l.OnMessage(b, msg(l, f, i), now)
		l.OnMessage(a, msg(l, f, i), now)
	}
	check := func(step string, want int64) {
		t.Helper()
		if got := l.Duplicates(); got != want {
			t.Fatalf("%s: %d duplicates, want %d", step, got, want)
		}
	}
	check("distinct deliveries", 0)
	l.OnMessage(b, msg(l, f, 1), now) // same (conversation, seq) again
	check("redelivered seq", 1)
	l.OnMessage(a, msg(l, f, 1), now) // also on the sender's device
	check("redelivered to the sender", 2)
	again := msg(l, f, 2)
	again.Seq = 99 // the server stored message 2 twice
	l.OnMessage(b, again, now)
	check("same message, new seq", 3)
	l.OnMessage(b2, msg(l, f, 0), now) // another device of b: a new connection...
	check("second device", 4)          // ...but the message already reached b
	if got := l.Tally(nil, false); got.Delivered != 3 || got.Lost != 0 {
		t.Errorf("duplicates changed the deliveries: %v", got)
	}
	// Same seq in another conversation is no duplicate.
	other := msg(l, f, 1)
	other.ConversationID = "c2"
	l.OnMessage(b, other, now)
	check("other conversation", 5) // message 1 reached b already, though
}

func TestLedgerIgnoresForeignFrames(t *testing.T) {
	l, f, _ := testFlow(t)
	b := &Receiver{UserID: "b"}
	now := time.Unix(2000, 0)
	l.Sent(f, 0)
	for k, id := range []string{"", "run2.0.0", "run1.0", "run1.1.0", "run1.0.10", "run1.0.-1", "run1.x.0", "run10.0.0"} {
		l.OnAck(id, now)
		l.OnMessage(b, &inbound{Type: "message", ClientMessageID: id, ConversationID: "c", Seq: int64(k + 1), SenderID: "a"}, now)
	}
	forged := msg(l, f, 0)
	forged.SenderID = "mallory" // right id, wrong sender
	forged.Seq = 50
	l.OnMessage(b, forged, now)
	if got := l.Tally(nil, false); got != (Tally{Sent: 1, Unacked: 1}) {
		t.Errorf("foreign frames changed the tally: %v", got)
	}
	if l.Unknown() != 17 {
		t.Errorf("unknown = %d, want 17", l.Unknown())
	}
	l.OnMessage(&Receiver{UserID: "carol"}, msg(l, f, 0), now)
	if e := l.Errors.Snapshot(); e["misdelivered"] != 1 {
		t.Errorf("a message at a third user's device: errors %v, want misdelivered", e)
	}
}

func TestLedgerBeforeSeal(t *testing.T) {
	l := NewLedger("run1", &ErrorCounts{})
	f := l.AddFlow("a", []string{"b"}, Schedule{Start: time.Now(), Interval: time.Millisecond, Count: 1}, 0)
	l.OnAck(l.MessageID(f, 0), time.Now())
	if l.Unknown() != 1 || l.Tally(nil, false).Acked != 0 {
		t.Fatal("an ack before Seal was accounted")
	}
	l.Seal()
	defer func() {
		if recover() == nil {
			t.Error("AddFlow after Seal did not panic")
		}
	}()
	l.AddFlow("a", []string{"b"}, Schedule{Count: 1}, 0)
}

// A flow with several recipients (a group) owes each of them a delivery.
func TestLedgerSeveralRecipients(t *testing.T) {
	l := NewLedger("g", &ErrorCounts{})
	f := l.AddFlow("a", []string{"b", "c", "d"}, Schedule{Start: time.Unix(1000, 0), Interval: time.Millisecond, Count: 4}, 0)
	l.Seal()
	now := time.Unix(2000, 0)
	rs := map[string]*Receiver{"b": {UserID: "b"}, "c": {UserID: "c"}, "d": {UserID: "d"}}
	for i := range 4 {
		l.Sent(f, i)
		l.OnAck(l.MessageID(f, i), now)
		for _, u := range []string{"b", "c", "d"} {
			if u == "d" && i == 3 {
				continue // d misses the last one
			}
			l.OnMessage(rs[u], msg(l, f, i), now)
		}
	}
	want := Tally{Sent: 4, Acked: 4, Delivered: 11, Lost: 1}
	if got := l.Tally(f, false); got != want {
		t.Errorf("tally = %v, want %v", got, want)
	}
	if l.Settled() {
		t.Error("settled with a delivery missing")
	}
}

func TestLedgerConcurrent(t *testing.T) {
	l := NewLedger("r", &ErrorCounts{})
	var flows []*Flow
	for range 4 {
		flows = append(flows, l.AddFlow("a", []string{"b"}, Schedule{Start: time.Now(), Interval: time.Microsecond, Count: 500}, 100))
	}
	l.Seal()
	var wg sync.WaitGroup
	for _, f := range flows {
		wg.Go(func() { // the sender's connection
			for i := range 500 {
				l.Sent(f, i)
				l.OnAck(l.MessageID(f, i), time.Now())
			}
		})
		wg.Go(func() { // the recipient's
			r := &Receiver{UserID: "b"}
			for i := range 500 {
				l.OnMessage(r, &inbound{ClientMessageID: l.MessageID(f, i), ConversationID: "c" + l.MessageID(f, 0), Seq: int64(i + 1), SenderID: "a"}, time.Now())
			}
		})
	}
	wg.Wait()
	if got, want := l.Tally(nil, false), (Tally{Sent: 2000, Acked: 2000, Delivered: 2000}); got != want {
		t.Fatalf("tally = %v, want %v", got, want)
	}
	if got := l.Tally(nil, true); got.Sent != 1600 {
		t.Fatalf("measured sent = %d, want 1600", got.Sent)
	}
	if !l.Settled() || l.Ack.Summary().Count != 1600 || l.Delivery.Summary().Count != 1600 {
		t.Fatal("live counters or latencies disagree with the tally")
	}
}

func TestSeqSet(t *testing.T) {
	var s seqSet
	for _, c := range []struct {
		conv string
		seq  int64
		dup  bool
	}{
		{"a", 1, false}, {"a", 2, false}, {"a", 1, true}, {"b", 1, false}, {"a", 640, false}, {"a", 640, true},
		{"a", 0, false}, {"a", 0, false}, {"a", -3, false}, // outside the contract: never a duplicate
		{"a", maxBitSeq + 5, false}, {"a", maxBitSeq + 5, true}, {"b", maxBitSeq + 5, false},
	} {
		if got := s.add(c.conv, c.seq); got != c.dup {
			t.Errorf("add(%s, %d) = %v, want %v", c.conv, c.seq, got, c.dup)
		}
	}
}
