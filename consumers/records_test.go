package consumers

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/natter-chat/natter/schema"
	"github.com/natter-chat/natter/streams"
)

// After an upgrade CONV holds records of the old format (no "v") next to
// versioned ones, and group membership records: persist and fanout
// handle the first two alike, persist skips the third and fanout renders
// it as a group event for the user concerned, dead-lettering nothing.
func TestConsumersReadOldAndNewRecordsAndMembership(t *testing.T) {
	js := startJetStream(t, time.Minute)
	db, conv := conversation(t)
	ctx := context.Background()
	publishMessages(t, js, conv, 1, 1) // the old format: a schema.Message
	mem, _ := json.Marshal(streams.Membership{V: streams.RecordVersion, ConversationID: conv, GroupID: "g1",
		Change: "member_added", UserID: "bob", By: "alice", TS: 2})
	if _, err := js.Publish(ctx, streams.MembershipSubject(conv), mem); err != nil {
		t.Fatal(err)
	}
	rec, _ := json.Marshal(streams.MessageRecord{V: streams.RecordVersion, MessageID: schema.MessageID(conv, 2),
		ConversationID: conv, Seq: 2, SenderID: "bob", RecipientID: "alice", MessageType: schema.MessageTypeUser,
		Content: "new format", ClientMessageID: "n2", ServerTS: 3})
	if _, err := js.Publish(ctx, streams.MsgSubject(conv), rec); err != nil {
		t.Fatal(err)
	}
	runConsumer(t, NewPersist(js, db, Options{MaxDeliver: 2}))
	runConsumer(t, NewFanout(js, db, Options{MaxDeliver: 2}))

	wm := streams.NewWatermark(js, 10*time.Millisecond)
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := wm.Wait(wctx, 3, streams.ConsumerPersist, streams.ConsumerFanout); err != nil {
		t.Fatal(err)
	}
	for seq, want := range map[int64]string{1: "m1", 2: "new format"} {
		m, err := db.Message(ctx, conv, seq)
		if err != nil || m.Content != want {
			t.Fatalf("stored message %d = %+v, %v; want content %q", seq, m, err, want)
		}
	}
	s, err := js.Stream(ctx, streams.StreamInbox)
	if err != nil {
		t.Fatal(err)
	}
	for _, user := range []string{"alice", "bob"} {
		var contents, groups []string
		for seq := uint64(1); ; {
			m, err := s.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(streams.InboxSubject(user, streams.InboxMessages)))
			if err != nil {
				break
			}
			var ev schema.MessageEvent
			if err := json.Unmarshal(m.Data, &ev); err == nil && ev.Type == schema.TypeGroup {
				groups = append(groups, string(m.Data))
				seq = m.Sequence + 1
				continue
			}
			if err := json.Unmarshal(m.Data, &ev); err != nil || ev.Type != schema.TypeMessage {
				t.Fatalf("%s inbox event %s: %v", user, m.Data, err)
			}
			contents = append(contents, ev.Content)
			seq = m.Sequence + 1
		}
		if len(contents) != 2 || contents[0] != "m1" || contents[1] != "new format" {
			t.Fatalf("%s got events %q, want [m1, new format]", user, contents)
		}
		// The group g1 has no members in the store: only bob, whom the
		// change concerns, hears of it.
		if want := map[string]int{"alice": 0, "bob": 1}[user]; len(groups) != want {
			t.Fatalf("%s got group events %q, want %d", user, groups, want)
		}
	}
	if n := deadLettered(t, js); n != 0 {
		t.Fatalf("%d records dead-lettered, want 0", n)
	}
}
