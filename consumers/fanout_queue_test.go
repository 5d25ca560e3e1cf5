package consumers

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/natter-chat/natter/natsnode/natstest"
	"github.com/natter-chat/natter/schema"
	"github.com/natter-chat/natter/store"
	"github.com/natter-chat/natter/store/sqlite"
	"github.com/natter-chat/natter/streams"
)

// queueRig is a real embedded NATS with natter's streams and the fanout
// queue, and a real SQLite store with users u000.. and groups of them.
type queueRig struct {
	t   *testing.T
	srv *natstest.Server
	js  jetstream.JetStream
	db  *sqlite.DB
	// seq is the next seq of each conversation.
	seq map[string]int64
}

func newQueueRig(t *testing.T, users int, dupWindow time.Duration, partitions int) *queueRig {
	t.Helper()
	srv := natstest.Start(t)
	_, js := srv.Connect()
	ensureStreams(t, js, dupWindow)
	ctx := context.Background()
	if err := streams.EnsureFanoutQueue(ctx, js, streams.Setup{
		Limits: streams.Limits{Replicas: 1, DuplicateWindow: dupWindow},
		Tuning: streams.ConsumerTuning{MaxAckPending: 100, MaxDeliver: 5, AckWait: time.Second},
	}, partitions); err != nil {
		t.Fatal(err)
	}
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "natter.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	for i := range users {
		u := userName(i)
		if err := db.CreateUser(ctx, store.User{ID: u, Username: u, PasswordHash: "x"}); err != nil {
			t.Fatal(err)
		}
	}
	return &queueRig{t: t, srv: srv, js: js, db: db, seq: map[string]int64{}}
}

func userName(i int) string { return fmt.Sprintf("u%03d", i) }

// group creates group id of users u000..u<n-1> and returns its conversation.
func (r *queueRig) group(id string, n int) string {
	r.t.Helper()
	conv := schema.GroupConversationID(id)
	var members []store.Member
	for i := range n {
		role := store.RoleMember
		if i == 0 {
			role = store.RoleAdmin
		}
		members = append(members, store.Member{UserID: userName(i), Role: role, JoinedSeq: 1, JoinedAt: 1})
	}
	if err := r.db.CreateGroup(context.Background(), store.Group{ID: id, ConversationID: conv, Name: id, CreatedBy: userName(0), CreatedAt: 1}, members); err != nil {
		r.t.Fatal(err)
	}
	r.seq[conv] = 1
	return conv
}

// direct creates the conversation of two users.
func (r *queueRig) direct(a, b string) string {
	r.t.Helper()
	conv := schema.DirectConversationID(a, b)
	if err := r.db.EnsureDirect(context.Background(), conv, a, b, 1); err != nil {
		r.t.Fatal(err)
	}
	r.seq[conv] = 1
	return conv
}

// send publishes the next message of conv from sender to recipient and
// returns its CONV sequence.
func (r *queueRig) send(conv, sender, recipient, messageType string) uint64 {
	r.t.Helper()
	seq := r.seq[conv]
	r.seq[conv]++
	rec, _ := json.Marshal(streams.MessageRecord{V: streams.RecordVersion, MessageID: schema.MessageID(conv, seq),
		ConversationID: conv, Seq: seq, SenderID: sender, RecipientID: recipient, MessageType: messageType,
		Content: fmt.Sprint("m", seq), ClientMessageID: fmt.Sprint(conv, seq), ServerTS: time.Now().UnixMilli()})
	ack, err := r.js.Publish(context.Background(), streams.MsgSubject(conv), rec)
	if err != nil {
		r.t.Fatal(err)
	}
	return ack.Sequence
}

// run runs c on its own connection (as another process would) until the
// test ends or the returned stop is called (safe twice).
func (r *queueRig) run(c func(js jetstream.JetStream) interface{ Run(context.Context) error }) (stop func(), nc *nats.Conn) {
	nc, js := r.srv.Connect()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c(js).Run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			r.t.Logf("consumer stopped: %v", err)
		}
	}
	r.t.Cleanup(stop)
	return stop, nc
}

func (r *queueRig) fanout(threshold, partitions int) (stop func()) {
	stop, _ = r.run(func(js jetstream.JetStream) interface{ Run(context.Context) error } {
		return NewFanoutQueued(js, r.db, Options{MaxDeliver: 5}, QueueOptions{Threshold: threshold, Partitions: partitions})
	})
	return stop
}

func (r *queueRig) workers(partitions int) (stop func(), nc *nats.Conn) {
	return r.run(func(js jetstream.JetStream) interface{ Run(context.Context) error } {
		return NewFanoutWorkers(js, partitions, Options{MaxDeliver: 5})
	})
}

// waitFanout waits for fanout, its queue included, to pass CONV seq.
func (r *queueRig) waitFanout(seq uint64) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := streams.NewWatermark(r.js, 10*time.Millisecond).Wait(ctx, seq, streams.ConsumerFanout); err != nil {
		r.t.Fatal(err)
	}
}

// queued is how many items the fanout queue ever took.
func (r *queueRig) queued() uint64 {
	r.t.Helper()
	s, err := r.js.Stream(context.Background(), streams.StreamFanout)
	if err != nil {
		r.t.Fatal(err)
	}
	return s.CachedInfo().State.LastSeq
}

// sources are the Natter-Src of user's message events, in inbox order.
func (r *queueRig) sources(user string) []uint64 {
	return inboxSources(r.t, r.js, streams.InboxSubject(user, streams.InboxMessages))
}

// eventSeq is the INBOX sequence of user's message event from src.
func (r *queueRig) eventSeq(user string, src uint64) (uint64, bool) {
	s, err := r.js.Stream(context.Background(), streams.StreamInbox)
	if err != nil {
		r.t.Fatal(err)
	}
	for seq := uint64(1); ; {
		m, err := s.GetMsg(context.Background(), seq, jetstream.WithGetMsgSubject(streams.InboxSubject(user, streams.InboxMessages)))
		if err != nil {
			return 0, false
		}
		if m.Header.Get(streams.HeaderSource) == fmt.Sprint(src) {
			return m.Sequence, true
		}
		seq = m.Sequence + 1
	}
}

// exactlyOnce fails unless every user's message events are want, once
// each, in that order when ordered (one conversation's), in any otherwise.
func (r *queueRig) exactlyOnce(users []string, want []uint64, ordered bool) {
	r.t.Helper()
	for _, u := range users {
		got := r.sources(u)
		if !ordered {
			got, want = slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(want))
		}
		if !slices.Equal(got, want) {
			r.t.Fatalf("%s's inbox sources = %v, want %v", u, got, want)
		}
	}
}

func members(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = userName(i)
	}
	return out
}

// A group at the threshold goes through the queue, a smaller one and a
// 1:1 conversation straight to the inboxes; every member gets each
// message once, and the barrier (Watermark on fanout) waits for the
// queue, not only for the fanout consumer.
func TestFanoutQueuesLargeGroupsOnly(t *testing.T) {
	const partitions = 3
	r := newQueueRig(t, 12, time.Minute, partitions)
	big, small, pair := r.group("big", 12), r.group("small", 5), r.direct("u000", "u001")
	r.fanout(12, partitions)

	s1 := r.send(big, "u000", "big", schema.MessageTypeGroup)
	s2 := r.send(small, "u001", "small", schema.MessageTypeGroup)
	s3 := r.send(pair, "u000", "u001", schema.MessageTypeUser)
	// Without workers, the fanout consumer passes all three but the big
	// group's events wait in the queue: the barrier must not pass.
	waitFor(t, "fanout consumer to ack", func() bool {
		c, err := r.js.Consumer(context.Background(), streams.StreamConv, streams.ConsumerFanout)
		return err == nil && c.CachedInfo().AckFloor.Stream >= s3
	})
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if err := streams.NewWatermark(r.js, 10*time.Millisecond).Wait(ctx, s1, streams.ConsumerFanout); err == nil {
		t.Fatal("the barrier passed a message whose events are still queued")
	}
	if got := r.sources("u011"); len(got) != 0 {
		t.Fatalf("u011 got %v before any worker ran", got)
	}

	r.workers(partitions)
	r.waitFanout(s3)
	if q := r.queued(); q < 2 || q > partitions {
		t.Fatalf("queue took %d items, want one per partition holding members of the big group (2..%d)", q, partitions)
	}
	// Across conversations the queued event may come last.
	r.exactlyOnce([]string{"u000", "u001"}, []uint64{s1, s2, s3}, false)
	r.exactlyOnce([]string{"u002", "u003", "u004"}, []uint64{s1, s2}, false)
	r.exactlyOnce(members(12)[5:], []uint64{s1}, true)
}

// Once a conversation has items queued, its later events follow them
// through the queue even when the group shrank below the threshold, so a
// member never sees message 2 (or a deletion) before message 1.
func TestFanoutKeepsAConversationInOrderWhileQueued(t *testing.T) {
	const partitions = 2
	r := newQueueRig(t, 12, time.Minute, partitions)
	big := r.group("big", 12)
	r.fanout(10, partitions)
	ctx := context.Background()

	s1 := r.send(big, "u000", "big", schema.MessageTypeGroup)
	// Seven leave as of seq 2: five remain, under the threshold.
	for i := 5; i < 12; i++ {
		if _, err := r.db.RemoveMember(ctx, "big", userName(i), 2); err != nil {
			t.Fatal(err)
		}
	}
	s2 := r.send(big, "u001", "big", schema.MessageTypeGroup)
	del, _ := json.Marshal(streams.Deletion{V: streams.RecordVersion, MessageID: schema.MessageID(big, 1), ConversationID: big,
		Seq: 1, UserID: "u000", For: "everyone"})
	ack, err := r.js.Publish(ctx, streams.DeleteSubject(big), del)
	if err != nil {
		t.Fatal(err)
	}
	s3 := ack.Sequence
	waitFor(t, "fanout consumer to ack", func() bool {
		c, err := r.js.Consumer(ctx, streams.StreamConv, streams.ConsumerFanout)
		return err == nil && c.CachedInfo().AckFloor.Stream >= s3
	})
	if got := r.sources("u001"); len(got) != 0 {
		t.Fatalf("u001 got %v directly while message 1 was still queued", got)
	}
	r.workers(partitions)
	r.waitFanout(s3)
	r.exactlyOnce(members(5), []uint64{s1, s2, s3}, true)
	r.exactlyOnce(members(12)[5:], []uint64{s1}, true)

	// With the queue drained, the small group goes direct again.
	before := r.queued()
	s4 := r.send(big, "u002", "big", schema.MessageTypeGroup)
	r.waitFanout(s4)
	if q := r.queued(); q != before {
		t.Fatalf("a 5-member group's message after the queue drained was queued (%d items, was %d)", q, before)
	}
	r.exactlyOnce(members(5), []uint64{s1, s2, s3, s4}, true)
}

// A worker whose connection dies after about half of a 400-member item's
// inbox writes leaves the item unacknowledged; the next worker writes the
// rest and nothing twice, within the duplicate window (Nats-Msg-Id) and
// past it (the worker looks for each event in the inbox).
func TestFanoutWorkerKilledMidItemLosesAndDoublesNothing(t *testing.T) {
	for _, tc := range []struct {
		name   string
		window time.Duration
	}{{"inside the duplicate window", time.Minute}, {"past the duplicate window", 100 * time.Millisecond}} {
		t.Run(tc.name, func(t *testing.T) {
			const n = 400
			r := newQueueRig(t, n, tc.window, 1)
			big := r.group("big", n)
			r.fanout(100, 1)
			src := r.send(big, "u000", "big", schema.MessageTypeGroup)
			waitFor(t, "the item to be queued", func() bool { return r.queued() == 1 })

			// The first worker publishes through a connection that dies
			// after n/2 events.
			nc, js := r.srv.Connect()
			w := NewFanoutWorkers(js, 1, Options{MaxDeliver: 5})
			w.onPublish = func(i int) {
				if i == n/2 {
					nc.Close()
				}
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- w.Run(ctx) }()
			waitFor(t, "the first worker's connection to die", nc.IsClosed)
			cancel()
			<-done
			written := 0
			for _, u := range members(n) {
				written += len(r.sources(u))
			}
			t.Logf("the first worker wrote %d of %d events before dying", written, n)
			if written >= n {
				t.Fatalf("the first worker wrote all %d events: the test did not interrupt it", written)
			}
			if tc.window < time.Second {
				time.Sleep(2 * tc.window) // past the window: JetStream no longer dedupes
			}

			r.workers(1)
			r.waitFanout(src)
			r.exactlyOnce(members(n), []uint64{src}, true)
		})
	}
}

// 1:1 messages queued behind big group messages: with the queue the
// fanout consumer writes the 1:1 event before the groups' thousands, as
// it does not when the queue is off (it writes in CONV order). The
// delays are logged; docs/benchmarks.md has the measured figures.
func TestDirectTrafficIsNotHeldUpByALargeGroup(t *testing.T) {
	const n, groupMsgs = 500, 8
	for _, queue := range []bool{false, true} {
		t.Run(fmt.Sprintf("queue=%v", queue), func(t *testing.T) {
			r := newQueueRig(t, n, time.Minute, 4)
			big, pair := r.group("big", n), r.direct("u000", "u001")
			threshold := 0
			if queue {
				threshold = 100
				r.workers(4)
			}
			start := time.Now()
			var last uint64
			for range groupMsgs {
				last = r.send(big, "u002", "big", schema.MessageTypeGroup)
			}
			direct := r.send(pair, "u000", "u001", schema.MessageTypeUser)
			r.fanout(threshold, 4) // started after the sends: everything waits in CONV
			var directAt time.Duration
			var position uint64
			waitFor(t, "the 1:1 event", func() bool {
				seq, ok := r.eventSeq("u001", direct)
				directAt, position = time.Since(start), seq
				return ok
			})
			r.waitFanout(max(last, direct))
			all := time.Since(start)
			t.Logf("queue=%v: 1:1 event stored after %v at INBOX position %d of %d; every group event after %v",
				queue, directAt, position, n*groupMsgs+1, all)
			if !queue && position <= n*groupMsgs {
				t.Fatalf("without the queue the 1:1 event is at %d, before the %d group events: fanout changed order", position, n*groupMsgs)
			}
			if queue && position > n*groupMsgs/2 {
				t.Fatalf("with the queue the 1:1 event came after %d of the %d group events: held up", position-1, n*groupMsgs)
			}
		})
	}
}

// Fanout shares natter.inbox.*.m with the queue's workers, whose events
// may come after its later ones: past the duplicate window, a redelivered
// event whose user's last event has a lower source (a worker's) may
// still be there, and fanout must find it rather than write it twice.
func TestSharedInboxWriterFindsItsEventBehindAWorkersOne(t *testing.T) {
	js := startJetStream(t, 100*time.Millisecond)
	ctx := context.Background()
	direct, err := newInboxWriter(ctx, js, streams.InboxMessages)
	if err != nil {
		t.Fatal(err)
	}
	direct.shared = true
	worker, err := newInboxWriter(ctx, js, streams.InboxMessages)
	if err != nil {
		t.Fatal(err)
	}
	worker.queued = true
	ev := func(src uint64, redelivered bool) inboxEvent {
		return inboxEvent{user: "alice", src: src, ts: time.Now().Add(-time.Minute), redelivered: redelivered, data: []byte(`{"type":"message"}`)}
	}
	// Fanout wrote 10, then a worker wrote a queued 5 after it.
	if err := direct.publish(ctx, []inboxEvent{ev(10, false)}); err != nil {
		t.Fatal(err)
	}
	if err := worker.publish(ctx, []inboxEvent{ev(5, false)}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // past the duplicate window
	if err := direct.publish(ctx, []inboxEvent{ev(10, true), ev(11, true)}); err != nil {
		t.Fatal(err)
	}
	if err := worker.publish(ctx, []inboxEvent{ev(5, true)}); err != nil {
		t.Fatal(err)
	}
	got := inboxSources(t, js, streams.InboxSubject("alice", streams.InboxMessages))
	if want := []uint64{10, 5, 11}; !slices.Equal(got, want) {
		t.Fatalf("alice's inbox sources = %v, want %v", got, want)
	}
}
