package consumers

import (
	"context"
	"maps"
	"path/filepath"
	"testing"

	"github.com/natter-chat/natter/store"
	"github.com/natter-chat/natter/store/sqlite"
)

// TestCompletedAggregates walks four members' delivered receipts over
// messages from three senders and checks which sender's messages each
// move completes: a message is complete when every member but its sender
// has it, and the member who got there last is the one whose move says so.
func TestCompletedAggregates(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "natter.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	for _, u := range []string{"a", "b", "c", "d"} {
		if err := db.CreateUser(ctx, store.User{ID: u, Username: "user_" + u, PasswordHash: "x"}); err != nil {
			t.Fatal(err)
		}
	}
	g := store.Group{ID: "G", ConversationID: "gG", Name: "g", CreatedBy: "a", CreatedAt: 1}
	var ms []store.Member
	for _, u := range []string{"a", "b", "c", "d"} {
		ms = append(ms, store.Member{UserID: u, Role: store.RoleMember, JoinedSeq: 1, JoinedAt: 1})
	}
	if err := db.CreateGroup(ctx, g, ms); err != nil {
		t.Fatal(err)
	}
	var msgs []store.Message
	for seq, sender := range map[int64]string{1: "a", 2: "b", 3: "a", 4: "c", 5: "a"} {
		msgs = append(msgs, store.Message{ID: "m", ConversationID: "gG", Seq: seq, SenderID: sender, RecipientID: "G",
			MessageType: "group", Content: "x", ClientMessageID: "c" + sender + string(rune('0'+seq)), ServerTS: seq})
	}
	if err := db.SaveMessages(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	for i, step := range []struct {
		reader string
		to     int64
		want   map[string]int64
	}{
		{"b", 5, map[string]int64{}},
		{"c", 5, map[string]int64{}},
		{"d", 3, map[string]int64{"a": 3}},         // b, c, d have a's 1 and 3; b's 2 waits for a
		{"a", 5, map[string]int64{"b": 2}},         // a was the last one b's 2 waited for; c's 4 waits for d
		{"d", 5, map[string]int64{"a": 5, "c": 4}}, // d was the last for a's 5 and c's 4
		{"b", 5, map[string]int64{}},               // no move, nothing
	} {
		st, err := db.ReceiptState(ctx, "gG", step.reader)
		if err != nil {
			t.Fatal(err)
		}
		got, err := completed(ctx, db, "gG", step.reader, false, st.DeliveredSeq, step.to)
		if err != nil {
			t.Fatal(err)
		}
		if got == nil {
			got = map[string]int64{}
		}
		if !maps.Equal(got, step.want) {
			t.Fatalf("step %d: %s delivers up to %d: completed %v, want %v", i, step.reader, step.to, got, step.want)
		}
		if err := db.AdvanceReceipt(ctx, "gG", step.reader, store.ReceiptState{DeliveredSeq: step.to}); err != nil {
			t.Fatal(err)
		}
	}
}
