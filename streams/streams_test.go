package streams

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/natter-chat/natter/natsnode/natstest"
)

func TestDedupeID(t *testing.T) {
	a := DedupeID("u1", "c1")
	if a != DedupeID("u1", "c1") {
		t.Fatal("not stable")
	}
	if len(a) != 32 || strings.Trim(a, "0123456789abcdef") != "" {
		t.Fatalf("%q is not 32 lowercase hex characters", a)
	}
	seen := map[string][2]string{}
	for _, p := range [][2]string{
		{"u1", "c1"}, {"u2", "c1"}, {"u1", "c2"}, {"u1", ""}, {"", "u1"},
		{"u1", "c1\x00"}, {"u", "1c1"}, {"u1c", "1"}, // concatenation must not collide
		{"u1", strings.Repeat("x", 128)}, {"u1", "\r\nNats-Msg-Id: evil"}, {"u1", "\xff"},
	} {
		id := DedupeID(p[0], p[1])
		if prev, dup := seen[id]; dup {
			t.Errorf("%q and %q share dedupe id %s", prev, p, id)
		}
		seen[id] = p
		if strings.ContainsAny(id, "\r\n: ") {
			t.Errorf("%q is unsafe as a header value", id)
		}
	}
}

func TestSubjects(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{MsgSubject("d1"), "natter.conv.msg.d1"},
		{ReceiptSubject("d1"), "natter.conv.rcpt.d1"},
		{DeleteSubject("d1"), "natter.conv.del.d1"},
		{InboxSubject("u1", InboxMessages), "natter.inbox.u1.m"},
		{InboxSubject("u1", InboxReceipts), "natter.inbox.u1.r"},
		{InboxFilter("u1"), "natter.inbox.u1.>"},
		{DeadLetterSubject(ConsumerFanout), "natter.dlq.fanout"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

func TestParseConvSubject(t *testing.T) {
	for _, tc := range []struct {
		subject string
		kind    Kind
		conv    string
	}{
		{MsgSubject("d0abc"), KindMessage, "d0abc"},
		{ReceiptSubject("d0abc"), KindReceipt, "d0abc"},
		{DeleteSubject("g01HZY"), KindDelete, "g01HZY"},
		{"natter.conv.msg.", KindUnknown, ""},
		{"natter.conv.rcpt.", KindUnknown, ""},
		{"natter.conv.del.", KindUnknown, ""},
		{"natter.conv.msg", KindUnknown, ""},
		{"natter.conv.other.d1", KindUnknown, ""},
		{"natter.conv.msgx.d1", KindUnknown, ""},
		{"natter.inbox.u1.m", KindUnknown, ""},
		{"natter.dlq.fanout", KindUnknown, ""},
		{"NATTER.CONV.MSG.d1", KindUnknown, ""},
		{"", KindUnknown, ""},
	} {
		kind, conv := ParseConvSubject(tc.subject)
		if kind != tc.kind || conv != tc.conv {
			t.Errorf("ParseConvSubject(%q) = %v, %q; want %v, %q", tc.subject, kind, conv, tc.kind, tc.conv)
		}
	}
	// Every kind round-trips through its subject builder.
	for kind, build := range map[Kind]func(string) string{KindMessage: MsgSubject, KindReceipt: ReceiptSubject, KindDelete: DeleteSubject} {
		if k, c := ParseConvSubject(build("d42")); k != kind || c != "d42" {
			t.Errorf("kind %v: got %v %q", kind, k, c)
		}
	}
}

func TestDurable(t *testing.T) {
	tune := ConsumerTuning{MaxAckPending: 10000, MaxDeliver: 8, AckWait: 30 * time.Second}
	for _, name := range []string{ConsumerPersist, ConsumerFanout, ConsumerReceipts} {
		c := Durable(name, tune)
		if c.Durable != name || c.Name != "" && c.Name != name {
			t.Errorf("%s: durable %q name %q", name, c.Durable, c.Name)
		}
		if c.AckPolicy != jetstream.AckExplicitPolicy || c.DeliverPolicy != jetstream.DeliverAllPolicy {
			t.Errorf("%s: ack %v deliver %v", name, c.AckPolicy, c.DeliverPolicy)
		}
		if c.AckWait != tune.AckWait || c.MaxDeliver != tune.MaxDeliver || c.MaxAckPending != tune.MaxAckPending {
			t.Errorf("%s: tuning not applied: %+v", name, c)
		}
		want := ""
		if name == ConsumerReceipts {
			want = "natter.conv.rcpt.>"
		}
		if c.FilterSubject != want || len(c.FilterSubjects) != 0 {
			t.Errorf("%s: filter %q %v, want %q", name, c.FilterSubject, c.FilterSubjects, want)
		}
		if len(c.BackOff) >= c.MaxDeliver {
			t.Errorf("%s: %d backoffs for MaxDeliver %d", name, len(c.BackOff), c.MaxDeliver)
		}
	}
	// The receipts filter matches every receipt subject and nothing else of CONV.
	f := Durable(ConsumerReceipts, tune).FilterSubject
	prefix := strings.TrimSuffix(f, ">")
	if !strings.HasPrefix(ReceiptSubject("d1"), prefix) || strings.HasPrefix(MsgSubject("d1"), prefix) || strings.HasPrefix(DeleteSubject("d1"), prefix) {
		t.Errorf("filter %q", f)
	}
}

func TestBackOff(t *testing.T) {
	base := 30 * time.Second
	for _, tc := range []struct {
		maxDeliver int
		want       []time.Duration
	}{
		{-1, nil}, {0, nil}, {1, nil},
		{2, []time.Duration{base}},
		{3, []time.Duration{base, 2 * base}},
		{8, []time.Duration{base, 2 * base, 4 * base, 8 * base}},
		{100, []time.Duration{base, 2 * base, 4 * base, 8 * base}},
	} {
		got := backOff(base, tc.maxDeliver)
		if len(got) != len(tc.want) {
			t.Errorf("maxDeliver %d: %v, want %v", tc.maxDeliver, got, tc.want)
			continue
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("maxDeliver %d: %v, want %v", tc.maxDeliver, got, tc.want)
			}
		}
	}
}

func TestStreamConfigs(t *testing.T) {
	l := Limits{Replicas: 1, ConvMaxAge: 7 * 24 * time.Hour, InboxMaxAge: 30 * 24 * time.Hour, MaxBytes: -1, DuplicateWindow: 2 * time.Minute}
	conv, inbox, dlq := Conv(l), Inbox(l), DeadLetter(l)
	if conv.Name != StreamConv || inbox.Name != StreamInbox || dlq.Name != StreamDeadLetter {
		t.Fatal("names")
	}
	if conv.Discard != jetstream.DiscardNew || inbox.Discard != jetstream.DiscardNew {
		t.Error("CONV and INBOX must refuse new messages when full, not drop acknowledged ones")
	}
	if conv.MaxAge != l.ConvMaxAge || inbox.MaxAge != l.InboxMaxAge || conv.Duplicates != l.DuplicateWindow || inbox.Duplicates != l.DuplicateWindow {
		t.Error("limits not applied")
	}
	if conv.Storage != jetstream.FileStorage || inbox.Storage != jetstream.FileStorage || dlq.Storage != jetstream.FileStorage {
		t.Error("streams must be on file storage")
	}
	// Each natter subject is captured by exactly one stream.
	for subj, want := range map[string]string{
		MsgSubject("d1"): StreamConv, ReceiptSubject("d1"): StreamConv, DeleteSubject("d1"): StreamConv,
		InboxSubject("u1", InboxMessages): StreamInbox, InboxSubject("u1", InboxReceipts): StreamInbox,
		DeadLetterSubject(ConsumerPersist): StreamDeadLetter,
	} {
		var got []string
		for _, c := range []jetstream.StreamConfig{conv, inbox, dlq} {
			for _, pat := range c.Subjects {
				if strings.HasPrefix(subj, strings.TrimSuffix(pat, ">")) {
					got = append(got, c.Name)
				}
			}
		}
		if len(got) != 1 || got[0] != want {
			t.Errorf("%s captured by %v, want %s", subj, got, want)
		}
	}
	if s := Sessions(l, time.Hour); s.Bucket != BucketSessions || s.TTL <= time.Hour {
		t.Errorf("sessions bucket %+v: entries must outlive the tokens", s)
	}
}

// TestEnsureOnJetStream declares everything on a real embedded server,
// twice (it runs on every start), with the tunings config allows.
func TestEnsureOnJetStream(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an embedded NATS server")
	}
	js := natstest.JetStream(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	limits := Limits{Replicas: 1, ConvMaxAge: 7 * 24 * time.Hour, InboxMaxAge: 30 * 24 * time.Hour, MaxBytes: -1, DuplicateWindow: 2 * time.Minute}
	for _, md := range []int{8, 8, 1, 2, 3} {
		err := Ensure(ctx, js, Setup{Limits: limits, Tuning: ConsumerTuning{MaxAckPending: 10000, MaxDeliver: md, AckWait: 30 * time.Second}, TokenTTL: time.Hour})
		if err != nil {
			t.Fatalf("Ensure with MaxDeliver %d: %v", md, err)
		}
	}
	// The receipts consumer sees statuses only.
	for _, subj := range []string{MsgSubject("d1"), ReceiptSubject("d1"), DeleteSubject("d1")} {
		if _, err := js.Publish(ctx, subj, []byte("{}")); err != nil {
			t.Fatal(err)
		}
	}
	for name, want := range map[string]uint64{ConsumerPersist: 3, ConsumerFanout: 3, ConsumerReceipts: 1} {
		c, err := js.Consumer(ctx, StreamConv, name)
		if err != nil {
			t.Fatal(err)
		}
		info, err := c.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.NumPending != want {
			t.Errorf("%s: %d pending, want %d", name, info.NumPending, want)
		}
	}
	// Inbox subjects land in INBOX, not CONV.
	if ack, err := js.Publish(ctx, InboxSubject("u1", InboxMessages), []byte("{}")); err != nil || ack.Stream != StreamInbox {
		t.Fatalf("inbox publish: %+v %v", ack, err)
	}
}

// A wait that runs out says where the consumer stands.
func TestProgressSaysWhereAConsumerStands(t *testing.T) {
	info := &jetstream.ConsumerInfo{
		AckFloor: jetstream.SequenceInfo{Stream: 1125}, Delivered: jetstream.SequenceInfo{Stream: 1804},
		NumAckPending: 8, NumRedelivered: 2, NumWaiting: 1,
		PriorityGroups: []jetstream.PriorityGroupState{{Group: PriorityGroup, PinnedClientID: "pin-1"}},
	}
	want := "acked up to 1125, delivered up to 1804, 8 awaiting ack, 2 redelivered, 1 pulls waiting, pinned to pin-1"
	if got := progress(info); got != want {
		t.Errorf("progress = %q, want %q", got, want)
	}
}
