package consumers

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/natter-chat/natter/natsnode/natstest"
	"github.com/natter-chat/natter/streams"
)

// startJetStream runs a real embedded server with natter's streams.
func startJetStream(t *testing.T, dupWindow time.Duration) jetstream.JetStream {
	t.Helper()
	js := natstest.JetStream(t)
	ensureStreams(t, js, dupWindow)
	return js
}

// ensureStreams creates (or re-creates) natter's streams and consumers,
// with a 1 s ack wait.
func ensureStreams(t *testing.T, js jetstream.JetStream, dupWindow time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := streams.Ensure(ctx, js, streams.Setup{
		Limits:   streams.Limits{Replicas: 1, ConvMaxAge: time.Hour, InboxMaxAge: time.Hour, MaxBytes: -1, DuplicateWindow: dupWindow},
		Tuning:   streams.ConsumerTuning{MaxAckPending: 100, MaxDeliver: 3, AckWait: time.Second},
		TokenTTL: time.Minute,
	}); err != nil {
		t.Fatal(err)
	}
}

func inboxSources(t *testing.T, js jetstream.JetStream, subject string) []uint64 {
	t.Helper()
	ctx := context.Background()
	s, err := js.Stream(ctx, streams.StreamInbox)
	if err != nil {
		t.Fatal(err)
	}
	var out []uint64
	for seq := uint64(1); ; {
		m, err := s.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subject))
		if err != nil {
			return out
		}
		n, _ := strconv.ParseUint(m.Header.Get(streams.HeaderSource), 10, 64)
		out = append(out, n)
		seq = m.Sequence + 1
	}
}

// After a crash, redelivered sources are published again long after the
// duplicate window; the writer must skip exactly those already in the
// inbox and publish the rest, in order.
func TestInboxWriterSkipsWhatARedeliveryAlreadyPublished(t *testing.T) {
	js := startJetStream(t, 100*time.Millisecond)
	ctx := context.Background()
	w, err := newInboxWriter(ctx, js, streams.InboxMessages)
	if err != nil {
		t.Fatal(err)
	}
	ev := func(user string, src uint64, redelivered bool) inboxEvent {
		return inboxEvent{user: user, src: src, redelivered: redelivered, data: []byte(`{"type":"message"}`)}
	}
	// Before the "crash": sources 5 and 6 reached alice, only 5 reached bob.
	if err := w.publish(ctx, []inboxEvent{ev("alice", 5, false), ev("bob", 5, false), ev("alice", 6, false)}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // past the duplicate window: JetStream no longer dedupes

	// Redelivery of 5, 6 and 7 to both users.
	var batch []inboxEvent
	for _, src := range []uint64{5, 6, 7} {
		batch = append(batch, ev("alice", src, true), ev("bob", src, true))
	}
	if err := w.publish(ctx, batch); err != nil {
		t.Fatal(err)
	}
	for user, want := range map[string][]uint64{"alice": {5, 6, 7}, "bob": {5, 6, 7}} {
		got := inboxSources(t, js, streams.InboxSubject(user, streams.InboxMessages))
		if len(got) != len(want) {
			t.Fatalf("%s inbox sources = %v, want %v", user, got, want)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("%s inbox sources = %v, want %v", user, got, want)
			}
		}
	}
}

// Within the duplicate window a plain retry (not marked redelivered) is
// absorbed by Nats-Msg-Id.
func TestInboxWriterRetryInsideWindowIsDeduped(t *testing.T) {
	js := startJetStream(t, time.Minute)
	ctx := context.Background()
	w, err := newInboxWriter(ctx, js, streams.InboxMessages)
	if err != nil {
		t.Fatal(err)
	}
	evs := []inboxEvent{{user: "carol", src: 9, data: []byte(`{}`)}}
	for range 3 {
		if err := w.publish(ctx, evs); err != nil {
			t.Fatal(err)
		}
	}
	if got := inboxSources(t, js, streams.InboxSubject("carol", streams.InboxMessages)); len(got) != 1 {
		t.Fatalf("carol inbox sources = %v, want one event", got)
	}
}
