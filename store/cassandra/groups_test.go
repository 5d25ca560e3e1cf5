package cassandra

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/natter-chat/natter/store"
)

// TestGroupViewFollowsTheUserSide: the user side decides membership. A
// participation left behind in Cassandra (a removal whose mirror failed)
// shows the former member neither the group nor its page slot, and the
// list page stays full.
func TestGroupViewFollowsTheUserSide(t *testing.T) {
	ctx := t.Context()
	users, cass := openSQLite(t), openFresh(t, Options{})
	s := store.Combine(users, cass)
	gs := s.(interface {
		store.Store
		store.Groups
	})
	var ids []string
	for _, name := range []string{"ann", "bob"} {
		id := "u-" + name
		if err := s.CreateUser(ctx, store.User{ID: id, Username: name, PasswordHash: "x", CreatedAt: 1}); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	ann, bob := ids[0], ids[1]
	// Three groups, bob in all; then bob leaves G1 on the user side only.
	for i := range 3 {
		id := fmt.Sprintf("G%d", i)
		g := store.Group{ID: id, ConversationID: "g" + id, Name: "group " + id, CreatedBy: ann, CreatedAt: int64(100 + i)}
		if err := gs.CreateGroup(ctx, g, []store.Member{{UserID: ann, Role: store.RoleAdmin, JoinedSeq: 1, JoinedAt: 1},
			{UserID: bob, Role: store.RoleMember, JoinedSeq: 1, JoinedAt: 1}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := users.RemoveMember(ctx, "G1", bob, 1); err != nil {
		t.Fatal(err)
	}
	if parts, _ := cass.Participants(ctx, "gG1"); !slices.Contains(parts, bob) {
		t.Fatalf("participants %v: the test needs bob left behind in Cassandra", parts)
	}
	if _, err := s.Conversation(ctx, "gG1", bob); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a former member's view of the group: %v, want not found", err)
	}
	page, err := s.Conversations(ctx, bob, store.ConversationPage{}, 2)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range page {
		got = append(got, c.ID+"="+c.Title)
	}
	if want := []string{"gG2=group G2", "gG0=group G0"}; !slices.Equal(got, want) {
		t.Fatalf("bob's first page of 2: %v, want %v (full, without G1)", got, want)
	}
	// Removing through the combined store ends the participation too.
	if _, err := gs.RemoveMember(ctx, "G2", bob, 1); err != nil {
		t.Fatal(err)
	}
	if parts, _ := cass.Participants(ctx, "gG2"); slices.Contains(parts, bob) {
		t.Fatalf("participants %v after the removal: bob still there", parts)
	}
}

// TestClientMessageIDs: the combined store lists the message side's
// (sender, client_message_id) pairs, which loads natter's dedupe filter.
func TestClientMessageIDs(t *testing.T) {
	ctx := t.Context()
	s := store.Combine(openSQLite(t), openFresh(t, Options{}))
	if err := s.EnsureDirect(ctx, "c1", "a", "b", 1); err != nil {
		t.Fatal(err)
	}
	var msgs []store.Message
	for i := range 3 {
		seq := int64(i + 1)
		msgs = append(msgs, store.Message{ID: fmt.Sprintf("c1-%d", seq), ConversationID: "c1", Seq: seq, SenderID: "a",
			RecipientID: "b", MessageType: store.ConversationDirect, Content: "hi", ClientMessageID: fmt.Sprintf("x%d", i), ServerTS: 1})
	}
	if err := s.SaveMessages(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	lister := s.(interface {
		ClientMessageIDs(ctx context.Context, fn func(senderID, clientMessageID string)) error
	})
	var got []string
	if err := lister.ClientMessageIDs(ctx, func(sender, cmid string) { got = append(got, sender+"/"+cmid) }); err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	if want := []string{"a/x0", "a/x1", "a/x2"}; !slices.Equal(got, want) {
		t.Fatalf("client message ids %v, want %v", got, want)
	}
}
