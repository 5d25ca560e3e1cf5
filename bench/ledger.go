package bench

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Ledger accounts for every message of a run: which were sent, acked,
// refused and delivered to each recipient, how late, and which deliveries
// were duplicates. Connections report what they read from their reader
// goroutines; it is safe for concurrent use once its flows are added.
type Ledger struct {
	runID  string
	flows  []*Flow     // added before Seal, read-only after
	sealed atomic.Bool // set by Seal; frames before it name no flow

	// Ack and Delivery hold the send→ack and send→delivery latencies of
	// the measured (post-warmup) messages, from their due time.
	Ack      *Recorder
	Delivery *Recorder
	Errors   *ErrorCounts

	// Live counters for progress and draining; Tally is the exact account.
	sent, acked, failed atomic.Int64
	delivered, expected atomic.Int64 // deliveries made; acked messages × recipients
	duplicates, unknown atomic.Int64
}

// NewLedger returns an empty ledger whose client_message_ids start with
// runID (which must not contain a dot).
func NewLedger(runID string, errs *ErrorCounts) *Ledger {
	return &Ledger{runID: runID, Ack: NewRecorder(), Delivery: NewRecorder(), Errors: errs}
}

// Message states of a Flow.
const (
	msgSent uint8 = 1 << iota
	msgAcked
	msgFailed
)

// Flow is the messages one sender sends to a fixed set of recipients (the
// peer of a 1:1 conversation, or the other members of a group); message i
// is send i of its schedule.
type Flow struct {
	id          int
	sender      string
	recipients  []string
	sched       Schedule
	measureFrom int // messages before it are warmup: not in rates or latencies
	// class, when set, records this flow's measured deliveries besides
	// the ledger's Delivery (a mix's 1:1 and group shares).
	class *Recorder

	mu        sync.Mutex
	state     []uint8  // per message: msg* bits
	delivered []uint64 // bit i*len(recipients)+r: message i reached recipient r
}

// AddFlow registers the messages sender will send to recipients on sched;
// those from index measureFrom on count in rates and latencies. Flows are
// added from one goroutine, before Seal.
func (l *Ledger) AddFlow(sender string, recipients []string, sched Schedule, measureFrom int) *Flow {
	if l.sealed.Load() {
		panic("bench: Ledger.AddFlow after Seal")
	}
	n := sched.Count * len(recipients)
	f := &Flow{
		id:          len(l.flows),
		sender:      sender,
		recipients:  slices.Clone(recipients),
		sched:       sched,
		measureFrom: min(max(measureFrom, 0), sched.Count),
		state:       make([]uint8, sched.Count),
		delivered:   make([]uint64, (n+63)/64),
	}
	l.flows = append(l.flows, f)
	return f
}

// Seal ends the adding of flows: from now on the ledger accounts for the
// frames connections report (before, it counts them as unknown), which may
// be read by any goroutine.
func (l *Ledger) Seal() { l.sealed.Store(true) }

// RecordAlso makes f's measured deliveries count in r too; call it
// before Seal.
func (f *Flow) RecordAlso(r *Recorder) { f.class = r }

// Schedule is when f's messages are due.
func (f *Flow) Schedule() Schedule { return f.sched }

// MessageID is the client_message_id of message i of f.
func (l *Ledger) MessageID(f *Flow, i int) string {
	return l.runID + "." + strconv.Itoa(f.id) + "." + strconv.Itoa(i)
}

// lookup finds the flow and index a client_message_id of this run names.
func (l *Ledger) lookup(cmid string) (*Flow, int, bool) {
	rest, ok := strings.CutPrefix(cmid, l.runID+".")
	if !ok || !l.sealed.Load() {
		return nil, 0, false
	}
	fs, is, ok := strings.Cut(rest, ".")
	if !ok {
		return nil, 0, false
	}
	fi, err1 := strconv.Atoi(fs)
	i, err2 := strconv.Atoi(is)
	if err1 != nil || err2 != nil || fi < 0 || fi >= len(l.flows) || i < 0 || i >= l.flows[fi].sched.Count {
		return nil, 0, false
	}
	return l.flows[fi], i, true
}

// setState sets bit on message i and reports whether it was newly set.
func (f *Flow) setState(i int, bit uint8) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.state[i]&bit != 0 {
		return false
	}
	f.state[i] |= bit
	return true
}

// deliver marks message i delivered to recipient r and reports whether it
// is the first time.
func (f *Flow) deliver(i, r int) bool {
	b := i*len(f.recipients) + r
	f.mu.Lock()
	defer f.mu.Unlock()
	w, m := b/64, uint64(1)<<(b%64)
	if f.delivered[w]&m != 0 {
		return false
	}
	f.delivered[w] |= m
	return true
}

// Sent records that message i of f was handed to its connection.
func (l *Ledger) Sent(f *Flow, i int) {
	if f.setState(i, msgSent) {
		l.sent.Add(1)
	}
}

// OnAck records an ack read at time at.
func (l *Ledger) OnAck(cmid string, at time.Time) {
	f, i, ok := l.lookup(cmid)
	if !ok {
		l.unknown.Add(1)
		return
	}
	if !f.setState(i, msgAcked) {
		return // a repeated ack is not a second message
	}
	l.acked.Add(1)
	l.expected.Add(int64(len(f.recipients)))
	if i >= f.measureFrom {
		l.Ack.Record(at.Sub(f.sched.At(i)))
	}
}

// OnError records an error frame; when its ref names a message of this run
// (a send's ref defaults to its client_message_id) that message failed.
func (l *Ledger) OnError(ref, code, text string) {
	l.Errors.Note(code, text)
	if f, i, ok := l.lookup(ref); ok && f.setState(i, msgFailed) {
		l.failed.Add(1)
	}
}

// Receiver is what the ledger keeps about one connection: whose it is and
// which (conversation_id, seq) it has received. Only its connection's
// reader goroutine may use it.
type Receiver struct {
	UserID string
	seen   seqSet
}

// OnMessage records a message event that r's connection read at time at.
// A (conversation_id, seq) that r already had, or a message that already
// reached r's user, is a duplicate. The sender's own devices get the event
// too; those copies are checked for duplicates but are not deliveries.
func (l *Ledger) OnMessage(r *Receiver, ev *inbound, at time.Time) {
	if r.seen.add(ev.ConversationID, ev.Seq) {
		l.duplicates.Add(1)
		return
	}
	f, i, ok := l.lookup(ev.ClientMessageID)
	if !ok || ev.SenderID != f.sender {
		l.unknown.Add(1)
		return
	}
	ri := slices.Index(f.recipients, r.UserID)
	if ri < 0 {
		if r.UserID != f.sender {
			l.Errors.Add("misdelivered")
		}
		return
	}
	if !f.deliver(i, ri) {
		l.duplicates.Add(1)
		return
	}
	l.delivered.Add(1)
	if i >= f.measureFrom {
		l.Delivery.Record(at.Sub(f.sched.At(i)))
		if f.class != nil {
			f.class.Record(at.Sub(f.sched.At(i)))
		}
	}
}

// Settled reports whether every sent message was answered and every acked
// one delivered to all its recipients: nothing is in flight any more.
func (l *Ledger) Settled() bool {
	return l.sent.Load() == l.acked.Load()+l.failed.Load() && l.delivered.Load() >= l.expected.Load()
}

// Answered reports whether every sent message was acked or refused.
func (l *Ledger) Answered() bool {
	return l.sent.Load() == l.acked.Load()+l.failed.Load()
}

// Live is a cheap running count for progress lines.
type Live struct {
	Sent, Acked, Delivered, Duplicates int64
}

// Live returns the running counts of the whole run.
func (l *Ledger) Live() Live {
	return Live{
		Sent:       l.sent.Load(),
		Acked:      l.acked.Load(),
		Delivered:  l.delivered.Load(),
		Duplicates: l.duplicates.Load(),
	}
}

// Tally is an exact account of messages.
type Tally struct {
	Sent   int64 // messages handed to a connection
	Acked  int64 // messages acked
	Failed int64 // messages answered by an error frame
	// Unacked were sent but neither acked nor refused.
	Unacked int64
	// Delivered counts deliveries: (message, recipient) pairs.
	Delivered int64
	// Lost counts deliveries owed and not made: an acked message that
	// did not reach one of its recipients.
	Lost int64
}

func (t *Tally) add(o Tally) {
	t.Sent += o.Sent
	t.Acked += o.Acked
	t.Failed += o.Failed
	t.Unacked += o.Unacked
	t.Delivered += o.Delivered
	t.Lost += o.Lost
}

// minus is t without the messages of o, a subset of t's.
func (t Tally) minus(o Tally) Tally {
	return Tally{
		Sent:      t.Sent - o.Sent,
		Acked:     t.Acked - o.Acked,
		Failed:    t.Failed - o.Failed,
		Unacked:   t.Unacked - o.Unacked,
		Delivered: t.Delivered - o.Delivered,
		Lost:      t.Lost - o.Lost,
	}
}

// tally accounts for messages [lo, hi) of f.
func (f *Flow) tally(lo, hi int) Tally {
	f.mu.Lock()
	defer f.mu.Unlock()
	var t Tally
	nr := len(f.recipients)
	for i := lo; i < hi; i++ {
		s := f.state[i]
		if s&msgSent != 0 {
			t.Sent++
		}
		acked := s&msgAcked != 0
		if acked {
			t.Acked++
		}
		if s&msgFailed != 0 {
			t.Failed++
		}
		if s&msgSent != 0 && s&(msgAcked|msgFailed) == 0 {
			t.Unacked++
		}
		for r := range nr {
			b := i*nr + r
			if f.delivered[b/64]&(1<<(b%64)) != 0 {
				t.Delivered++
			} else if acked {
				t.Lost++
			}
		}
	}
	return t
}

// Tally accounts for the messages of f, or of every flow when f is nil:
// all of them, or only the measured ones (after warmup).
func (l *Ledger) Tally(f *Flow, measured bool) Tally {
	flows := l.flows
	if f != nil {
		flows = []*Flow{f}
	}
	var t Tally
	for _, f := range flows {
		lo := 0
		if measured {
			lo = f.measureFrom
		}
		t.add(f.tally(lo, f.sched.Count))
	}
	return t
}

// Duplicates is the number of duplicate deliveries seen so far.
func (l *Ledger) Duplicates() int64 { return l.duplicates.Load() }

// Unknown is the number of acks and events that named no message of this
// run (e.g. left over from an earlier run against the same server).
func (l *Ledger) Unknown() int64 { return l.unknown.Load() }

// seqSet is the set of (conversation_id, seq) one connection received.
type seqSet struct {
	convs map[string][]uint64  // bit seq of each conversation, seq < maxBitSeq
	large map[convSeq]struct{} // the rest, so a wild seq costs no memory
}

type convSeq struct {
	conv string
	seq  int64
}

// maxBitSeq bounds the bitset of one conversation to 2 MiB.
const maxBitSeq = 1 << 24

// add inserts (conv, seq) and reports whether it was already there. A seq
// below 1 is outside the contract and never counts as a duplicate.
func (s *seqSet) add(conv string, seq int64) bool {
	if seq < 1 {
		return false
	}
	if seq >= maxBitSeq {
		k := convSeq{conv, seq}
		if _, ok := s.large[k]; ok {
			return true
		}
		if s.large == nil {
			s.large = make(map[convSeq]struct{})
		}
		s.large[k] = struct{}{}
		return false
	}
	if s.convs == nil {
		s.convs = make(map[string][]uint64)
	}
	bits := s.convs[conv]
	w, m := int(seq/64), uint64(1)<<(seq%64)
	if w >= len(bits) {
		bits = append(bits, make([]uint64, w+1-len(bits))...)
		s.convs[conv] = bits
	}
	if bits[w]&m != 0 {
		return true
	}
	bits[w] |= m
	return false
}

// String renders a tally for logs.
func (t Tally) String() string {
	return fmt.Sprintf("sent %d acked %d failed %d unacked %d delivered %d lost %d",
		t.Sent, t.Acked, t.Failed, t.Unacked, t.Delivered, t.Lost)
}
