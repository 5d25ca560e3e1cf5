// Package storetest is the conformance suite of store.Store: every adapter
// runs it from its own tests with
//
//	storetest.Run(t, func(t *testing.T) store.Store { ... a fresh, empty store ... })
package storetest

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/natter-chat/natter/store"
)

// Run runs every conformance test, each in parallel on a store of its own
// from open; Run closes it when the test ends.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"Users", testUsers},
		{"Devices", testDevices},
		{"RefreshRotation", testRefreshRotation},
		{"RefreshOfRevokedDevice", testRefreshOfRevokedDevice},
		{"Blocks", testBlocks},
		{"EnsureDirect", testEnsureDirect},
		{"ConversationSummary", testConversationSummary},
		{"ConversationListOrderAndPaging", testConversationList},
		{"SaveMessages", testSaveMessages},
		{"SaveMessagesIsAtomic", testSaveMessagesAtomic},
		{"SavePreviewTruncated", testPreview},
		{"MessageByClientID", testMessageByClientID},
		{"History", testHistory},
		{"HistoryStatus", testHistoryStatus},
		{"Receipts", testReceipts},
		{"UnreadCount", testUnreadCount},
		{"DeleteForEveryone", testDeleteForEveryone},
		{"DeleteForUser", testDeleteForUser},
		{"ConcurrentUse", testConcurrentUse},
		{"NULCharacters", testNULCharacters},
		{"ConcurrentEnsureDirect", testConcurrentEnsureDirect},
		{"EmptyConversationListedForOpener", testEmptyConversationListedForOpener},
		{"ConcurrentRefreshRotation", testConcurrentRefreshRotation},
	}
	tests = append(tests, pushTests...)
	tests = append(tests, directoryTests...)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := open(t)
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("close: %v", err)
				}
			})
			tc.fn(t, s)
		})
	}
	runGroups(t, open)
}

// --- helpers ---

func ok(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func wantErr(t *testing.T, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("got error %v, want %v", err, target)
	}
}

// user creates a user whose id is "u-"+name and returns the id.
func user(t *testing.T, s store.Store, name string) string {
	t.Helper()
	id := "u-" + name
	ok(t, s.CreateUser(t.Context(), store.User{ID: id, Username: name, PasswordHash: "hash-" + name, CreatedAt: 1}))
	return id
}

func direct(t *testing.T, s store.Store, id, a, b string, at int64) {
	t.Helper()
	ok(t, s.EnsureDirect(t.Context(), id, a, b, at))
}

// msg is message seq of conv, sent at ts, with a content and client id
// derived from conv and seq.
func msg(conv string, seq int64, sender, recipient string, ts int64) store.Message {
	return store.Message{
		ID:              fmt.Sprintf("m-%s-%d", conv, seq),
		ConversationID:  conv,
		Seq:             seq,
		SenderID:        sender,
		RecipientID:     recipient,
		MessageType:     store.ConversationDirect,
		Content:         fmt.Sprintf("hello %s #%d", conv, seq),
		ClientMessageID: fmt.Sprintf("c-%s-%d", conv, seq),
		ServerTS:        ts,
	}
}

func save(t *testing.T, s store.Store, msgs ...store.Message) {
	t.Helper()
	ok(t, s.SaveMessages(t.Context(), msgs))
}

func summary(t *testing.T, s store.Store, conv, viewer string) store.ConversationSummary {
	t.Helper()
	c, err := s.Conversation(t.Context(), conv, viewer)
	ok(t, err)
	return c
}

func history(t *testing.T, s store.Store, conv, viewer string, before int64, limit int) []store.HistoryEntry {
	t.Helper()
	hs, err := s.History(t.Context(), conv, viewer, before, limit)
	ok(t, err)
	return hs
}

func seqs(hs []store.HistoryEntry) []int64 {
	out := []int64{}
	for _, h := range hs {
		out = append(out, h.Seq)
	}
	return out
}

func ids(cs []store.ConversationSummary) []string {
	out := []string{}
	for _, c := range cs {
		out = append(out, c.ID)
	}
	return out
}

func deviceIDs(ds []store.Device) []string {
	out := []string{}
	for _, d := range ds {
		out = append(out, d.ID)
	}
	return out
}

// --- accounts ---

func testUsers(t *testing.T, s store.Store) {
	ctx := t.Context()
	alice := store.User{ID: "u1", Username: "alice", PasswordHash: "$argon2id$x", CreatedAt: 10}
	ok(t, s.CreateUser(ctx, alice))
	for _, get := range []func() (store.User, error){
		func() (store.User, error) { return s.UserByID(ctx, "u1") },
		func() (store.User, error) { return s.UserByUsername(ctx, "alice") },
	} {
		got, err := get()
		ok(t, err)
		if got != alice {
			t.Fatalf("got %+v, want %+v", got, alice)
		}
	}

	wantErr(t, s.CreateUser(ctx, store.User{ID: "u2", Username: "alice", PasswordHash: "other", CreatedAt: 11}), store.ErrConflict)
	if got, err := s.UserByUsername(ctx, "alice"); err != nil || got.ID != "u1" {
		t.Fatalf("after a refused duplicate: %+v, %v; want the first alice", got, err)
	}
	_, err := s.UserByID(ctx, "u2")
	wantErr(t, err, store.ErrNotFound)
	_, err = s.UserByUsername(ctx, "nobody")
	wantErr(t, err, store.ErrNotFound)

	ok(t, s.SetLastSeenPrivacy(ctx, "u1", "nobody"))
	if got, _ := s.UserByID(ctx, "u1"); got.LastSeenPrivacy != "nobody" {
		t.Fatalf("LastSeenPrivacy = %q, want nobody", got.LastSeenPrivacy)
	}
	wantErr(t, s.SetLastSeenPrivacy(ctx, "u404", "nobody"), store.ErrNotFound)

	if got, _ := s.UserByID(ctx, "u1"); got.OnlinePrivacy != "" {
		t.Fatalf("OnlinePrivacy = %q, want empty (everyone) by default", got.OnlinePrivacy)
	}
	ok(t, s.SetOnlinePrivacy(ctx, "u1", "same_as_last_seen"))
	if got, _ := s.UserByID(ctx, "u1"); got.OnlinePrivacy != "same_as_last_seen" || got.LastSeenPrivacy != "nobody" {
		t.Fatalf("privacy = %q/%q, want same_as_last_seen/nobody", got.OnlinePrivacy, got.LastSeenPrivacy)
	}
	wantErr(t, s.SetOnlinePrivacy(ctx, "u404", "everyone"), store.ErrNotFound)
}

func testDevices(t *testing.T, s store.Store) {
	ctx := t.Context()
	a, b := user(t, s, "alice"), user(t, s, "bob")
	d1 := store.Device{ID: "d1", UserID: a, Name: "phone", CreatedAt: 10}
	// Created out of order: the list is by creation time.
	ok(t, s.CreateDevice(ctx, store.Device{ID: "d2", UserID: a, Name: "laptop", CreatedAt: 20}, "h2"))
	ok(t, s.CreateDevice(ctx, d1, "h1"))
	ok(t, s.CreateDevice(ctx, store.Device{ID: "d3", UserID: a, Name: "tablet", CreatedAt: 30}, "h3"))
	ok(t, s.CreateDevice(ctx, store.Device{ID: "db", UserID: b, CreatedAt: 5}, "hb"))

	got, err := s.Device(ctx, "d1")
	ok(t, err)
	if got != d1 {
		t.Fatalf("Device = %+v, want %+v", got, d1)
	}
	_, err = s.Device(ctx, "d404")
	wantErr(t, err, store.ErrNotFound)

	list := func(user string, want ...string) {
		t.Helper()
		ds, err := s.Devices(ctx, user)
		ok(t, err)
		if !slices.Equal(deviceIDs(ds), want) {
			t.Fatalf("Devices(%s) = %v, want %v", user, deviceIDs(ds), want)
		}
	}
	list(a, "d1", "d2", "d3")
	list(b, "db")

	ok(t, s.RevokeDevice(ctx, a, "d2", 100))
	list(a, "d1", "d3")
	if got, _ := s.Device(ctx, "d2"); got.RevokedAt == 0 {
		t.Fatal("revoked device has RevokedAt 0")
	}
	ok(t, s.RevokeDevice(ctx, a, "d2", 200))

	wantErr(t, s.RevokeDevice(ctx, b, "d1", 100), store.ErrNotFound)
	wantErr(t, s.RevokeDevice(ctx, a, "d404", 100), store.ErrNotFound)
	list(a, "d1", "d3")
}

func testRefreshRotation(t *testing.T, s store.Store) {
	ctx := t.Context()
	a := user(t, s, "alice")
	ok(t, s.CreateDevice(ctx, store.Device{ID: "d1", UserID: a, Name: "phone", CreatedAt: 10}, "h1"))

	d, err := s.RotateRefresh(ctx, "h1", "h2", 20)
	ok(t, err)
	if d.ID != "d1" || d.UserID != a || d.Name != "phone" {
		t.Fatalf("RotateRefresh returned %+v, want device d1 of %s", d, a)
	}
	_, err = s.RotateRefresh(ctx, "h2", "h3", 30)
	ok(t, err)

	_, err = s.RotateRefresh(ctx, "h404", "hx", 35)
	wantErr(t, err, store.ErrNotFound)

	// h1 was rotated away: presenting it again means it leaked.
	revoked, err := s.RotateRefresh(ctx, "h1", "h4", 40)
	wantErr(t, err, store.ErrRefreshReused)
	if revoked.ID != "d1" {
		t.Fatalf("reuse returned device %q, want d1 (the revoked one)", revoked.ID)
	}
	if got, _ := s.Device(ctx, "d1"); got.RevokedAt == 0 {
		t.Fatal("reuse did not revoke the device")
	}
	if ds, _ := s.Devices(ctx, a); len(ds) != 0 {
		t.Fatalf("Devices after reuse = %v, want none", deviceIDs(ds))
	}
	// Neither the current token nor the one offered with the reuse works.
	_, err = s.RotateRefresh(ctx, "h3", "h5", 50)
	wantErr(t, err, store.ErrNotFound)
	_, err = s.RotateRefresh(ctx, "h4", "h6", 50)
	wantErr(t, err, store.ErrNotFound)
}

func testRefreshOfRevokedDevice(t *testing.T, s store.Store) {
	ctx := t.Context()
	a := user(t, s, "alice")
	ok(t, s.CreateDevice(ctx, store.Device{ID: "d1", UserID: a, CreatedAt: 10}, "h1"))
	ok(t, s.RevokeDevice(ctx, a, "d1", 20))
	_, err := s.RotateRefresh(ctx, "h1", "h2", 30)
	wantErr(t, err, store.ErrNotFound)
}

func testBlocks(t *testing.T, s store.Store) {
	ctx := t.Context()
	a, b, c := user(t, s, "alice"), user(t, s, "bob"), user(t, s, "carol")
	blocked := func(x, y string, want bool) {
		t.Helper()
		got, err := s.Blocked(ctx, x, y)
		ok(t, err)
		if got != want {
			t.Fatalf("Blocked(%s, %s) = %v, want %v", x, y, got, want)
		}
	}
	listed := func(blocker string, want ...string) {
		t.Helper()
		got, err := s.BlockedUsers(ctx, blocker)
		ok(t, err)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Fatalf("BlockedUsers(%s) = %v, want %v", blocker, got, want)
		}
	}
	blocked(a, b, false)
	listed(a)
	ok(t, s.Block(ctx, a, b))
	ok(t, s.Block(ctx, a, b))
	listed(a, b)
	listed(b)
	ok(t, s.Block(ctx, a, c))
	listed(a, b, c)
	ok(t, s.Unblock(ctx, a, c))
	listed(a, b)
	blocked(a, b, true)
	blocked(b, a, true)
	blocked(a, c, false)
	blocked(c, b, false)

	// Each direction is its own block.
	ok(t, s.Block(ctx, b, a))
	ok(t, s.Unblock(ctx, a, b))
	blocked(a, b, true)
	ok(t, s.Unblock(ctx, b, a))
	blocked(a, b, false)
	ok(t, s.Unblock(ctx, b, a))
}

// --- conversations ---

func testEnsureDirect(t *testing.T, s store.Store) {
	ctx := t.Context()
	a, b, c := user(t, s, "alice"), user(t, s, "bob"), user(t, s, "carol")
	participants := func(conv string, want ...string) {
		t.Helper()
		got, err := s.Participants(ctx, conv)
		ok(t, err)
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Fatalf("Participants(%s) = %v, want %v", conv, got, want)
		}
	}
	direct(t, s, "c1", a, b, 10)
	direct(t, s, "c1", a, b, 10)
	direct(t, s, "c1", b, a, 20)
	participants("c1", a, b)
	if got := summary(t, s, "c1", a).CreatedAt; got != 10 {
		t.Fatalf("CreatedAt = %d after repeated EnsureDirect, want the first 10", got)
	}

	direct(t, s, "self", a, a, 10)
	participants("self", a)

	// An existing id is not a way to join someone else's conversation.
	wantErr(t, s.EnsureDirect(ctx, "c1", a, c, 30), store.ErrConflict)
	participants("c1", a, b)

	_, err := s.Participants(ctx, "nope")
	wantErr(t, err, store.ErrNotFound)

	shares := func(x, y string, want bool) {
		t.Helper()
		got, err := s.SharesConversation(ctx, x, y)
		ok(t, err)
		if got != want {
			t.Fatalf("SharesConversation(%s, %s) = %v, want %v", x, y, got, want)
		}
	}
	shares(a, b, true)
	shares(b, a, true)
	shares(a, c, false)
	shares(b, c, false)
}

func testConversationSummary(t *testing.T, s store.Store) {
	ctx := t.Context()
	a, b, c := user(t, s, "alice"), user(t, s, "bob"), user(t, s, "carol")
	direct(t, s, "c1", a, b, 10)
	direct(t, s, "self", a, a, 20)

	want := store.ConversationSummary{ID: "c1", Type: store.ConversationDirect, PeerID: b, Title: "bob", CreatedAt: 10}
	if got := summary(t, s, "c1", a); got != want {
		t.Fatalf("alice's view = %+v, want %+v", got, want)
	}
	if got := summary(t, s, "c1", b); got.PeerID != a || got.Title != "alice" {
		t.Fatalf("bob's view = %+v, want peer alice", got)
	}
	if got := summary(t, s, "self", a); got.PeerID != a || got.Title != "alice" || got.Type != store.ConversationDirect {
		t.Fatalf("self-chat = %+v, want peer alice", got)
	}

	_, err := s.Conversation(ctx, "c1", c)
	wantErr(t, err, store.ErrNotFound)
	_, err = s.Conversation(ctx, "nope", a)
	wantErr(t, err, store.ErrNotFound)
}

func testConversationList(t *testing.T, s store.Store) {
	ctx := t.Context()
	a, b, c, d, e := user(t, s, "alice"), user(t, s, "bob"), user(t, s, "carol"), user(t, s, "dave"), user(t, s, "erin")
	direct(t, s, "cA", a, b, 100)
	direct(t, s, "cB", a, c, 200)
	direct(t, s, "cC", a, d, 50)
	direct(t, s, "cD", a, e, 300)
	direct(t, s, "cSelf", a, a, 10)
	direct(t, s, "other", b, c, 1000) // not alice's
	save(t, s, msg("cA", 1, b, a, 500), msg("cC", 1, d, a, 300))

	list := func(after store.ConversationPage, limit int) []store.ConversationSummary {
		t.Helper()
		cs, err := s.Conversations(ctx, a, after, limit)
		ok(t, err)
		return cs
	}
	// Activity: cA 500 (message), cD 300 and cC 300 (tie: id desc), cB 200, cSelf 10.
	wantOrder := []string{"cA", "cD", "cC", "cB", "cSelf"}
	all := list(store.ConversationPage{}, 100)
	if !slices.Equal(ids(all), wantOrder) {
		t.Fatalf("list = %v, want %v", ids(all), wantOrder)
	}
	for _, cs := range all {
		if one := summary(t, s, cs.ID, a); one != cs {
			t.Fatalf("list row %+v differs from Conversation %+v", cs, one)
		}
	}

	var paged []string
	var after store.ConversationPage
	for range len(wantOrder) + 1 {
		page := list(after, 2)
		if len(page) > 2 {
			t.Fatalf("page of %d rows with limit 2", len(page))
		}
		if len(page) == 0 {
			break
		}
		paged = append(paged, ids(page)...)
		last := page[len(page)-1]
		after = store.ConversationPage{ActivityAt: last.ActivityAt(), ID: last.ID}
	}
	if !slices.Equal(paged, wantOrder) {
		t.Fatalf("paged = %v, want %v", paged, wantOrder)
	}
	if got := ids(list(store.ConversationPage{ActivityAt: 300, ID: "cD"}, 100)); !slices.Equal(got, wantOrder[2:]) {
		t.Fatalf("after (300, cD) = %v, want %v", got, wantOrder[2:])
	}

	// A new message moves its conversation to the top.
	save(t, s, msg("cSelf", 1, a, a, 2000))
	if got := ids(list(store.ConversationPage{}, 1)); !slices.Equal(got, []string{"cSelf"}) {
		t.Fatalf("first after a new message = %v, want [cSelf]", got)
	}
}

// --- messages ---

func testSaveMessages(t *testing.T, s store.Store) {
	ctx := t.Context()
	a, b, c := user(t, s, "alice"), user(t, s, "bob"), user(t, s, "carol")
	direct(t, s, "c1", a, b, 10)
	direct(t, s, "c2", a, c, 10)
	lastSeq := func(conv string, want int64) {
		t.Helper()
		got, err := s.LastSeq(ctx, conv)
		ok(t, err)
		if got != want {
			t.Fatalf("LastSeq(%s) = %d, want %d", conv, got, want)
		}
	}
	lastFields := func(conv string, want store.Message) {
		t.Helper()
		got := summary(t, s, conv, a)
		if got.LastSeq != want.Seq || got.LastMessageAt != want.ServerTS || got.LastMessagePreview != want.Content {
			t.Fatalf("%s last = (%d, %d, %q), want (%d, %d, %q)", conv,
				got.LastSeq, got.LastMessageAt, got.LastMessagePreview, want.Seq, want.ServerTS, want.Content)
		}
	}

	ok(t, s.SaveMessages(ctx, nil))
	lastSeq("c1", 0)
	lastSeq("nope", 0)

	batch := []store.Message{msg("c1", 1, a, b, 100), msg("c1", 2, b, a, 110), msg("c1", 3, a, b, 120)}
	save(t, s, batch...)
	lastSeq("c1", 3)
	got, err := s.Message(ctx, "c1", 2)
	ok(t, err)
	if got != batch[1] {
		t.Fatalf("Message = %+v, want %+v", got, batch[1])
	}
	lastFields("c1", batch[2])

	// Replaying the batch (with different content) plus one new message
	// leaves the stored ones as they were.
	replay := slices.Clone(batch)
	for i := range replay {
		replay[i].Content = "changed"
	}
	save(t, s, append(replay, msg("c1", 4, b, a, 130))...)
	for _, m := range batch {
		if got, _ := s.Message(ctx, "c1", m.Seq); got != m {
			t.Fatalf("replay changed seq %d: %+v", m.Seq, got)
		}
	}
	lastSeq("c1", 4)
	lastFields("c1", msg("c1", 4, b, a, 130))

	// An older batch replayed alone does not move the conversation back.
	save(t, s, replay[:2]...)
	lastFields("c1", msg("c1", 4, b, a, 130))

	// The highest seq counts, not the slice order; one batch may span
	// conversations.
	save(t, s, msg("c1", 6, a, b, 150), msg("c2", 1, c, a, 140), msg("c1", 5, a, b, 145))
	lastSeq("c1", 6)
	lastFields("c1", msg("c1", 6, a, b, 150))
	lastFields("c2", msg("c2", 1, c, a, 140))

	_, err = s.Message(ctx, "c1", 99)
	wantErr(t, err, store.ErrNotFound)
	_, err = s.Message(ctx, "nope", 1)
	wantErr(t, err, store.ErrNotFound)
}

func testSaveMessagesAtomic(t *testing.T, s store.Store) {
	ctx := t.Context()
	a, b := user(t, s, "alice"), user(t, s, "bob")
	direct(t, s, "c1", a, b, 10)
	err := s.SaveMessages(ctx, []store.Message{msg("c1", 1, a, b, 100), msg("nope", 1, a, b, 100)})
	wantErr(t, err, store.ErrNotFound)
	_, err = s.Message(ctx, "c1", 1)
	wantErr(t, err, store.ErrNotFound)
	if got := summary(t, s, "c1", a); got.LastSeq != 0 {
		t.Fatalf("a failed batch advanced last_seq to %d", got.LastSeq)
	}
}

func testPreview(t *testing.T, s store.Store) {
	a, b := user(t, s, "alice"), user(t, s, "bob")
	direct(t, s, "c1", a, b, 10)
	m := msg("c1", 1, a, b, 100)
	m.Content = strings.Repeat("é", 150)
	save(t, s, m)
	p := summary(t, s, "c1", a).LastMessagePreview
	if utf8.RuneCountInString(p) != 100 || !strings.HasPrefix(m.Content, p) {
		t.Fatalf("preview has %d runes (%q), want the first 100", utf8.RuneCountInString(p), p)
	}
	if got, _ := s.Message(t.Context(), "c1", 1); got.Content != m.Content {
		t.Fatal("the message itself was truncated")
	}
}

func testMessageByClientID(t *testing.T, s store.Store) {
	ctx := t.Context()
	a, b := user(t, s, "alice"), user(t, s, "bob")
	direct(t, s, "c1", a, b, 10)
	withClientID := func(m store.Message, id string) store.Message {
		m.ClientMessageID = id
		return m
	}
	// Seq 3 is stored first: the lowest seq wins, not the first stored.
	save(t, s, withClientID(msg("c1", 3, a, b, 120), "x"))
	save(t, s, withClientID(msg("c1", 1, a, b, 100), "x"), withClientID(msg("c1", 2, a, b, 110), "y"),
		withClientID(msg("c1", 4, b, a, 130), "x"))

	find := func(sender, clientID string, wantSeq int64) {
		t.Helper()
		m, err := s.MessageByClientID(ctx, sender, clientID)
		ok(t, err)
		if m.Seq != wantSeq || m.SenderID != sender || m.ClientMessageID != clientID {
			t.Fatalf("MessageByClientID(%s, %s) = %+v, want seq %d", sender, clientID, m, wantSeq)
		}
	}
	find(a, "x", 1)
	find(a, "y", 2)
	find(b, "x", 4)
	_, err := s.MessageByClientID(ctx, a, "z")
	wantErr(t, err, store.ErrNotFound)
	_, err = s.MessageByClientID(ctx, b, "y")
	wantErr(t, err, store.ErrNotFound)
}

func testHistory(t *testing.T, s store.Store) {
	a, b := user(t, s, "alice"), user(t, s, "bob")
	direct(t, s, "c1", a, b, 10)
	direct(t, s, "c2", a, a, 10)
	var msgs []store.Message
	for seq := int64(1); seq <= 5; seq++ {
		from, to := a, b
		if seq%2 == 0 {
			from, to = b, a
		}
		msgs = append(msgs, msg("c1", seq, from, to, 100+seq))
	}
	save(t, s, msgs...)

	for _, tc := range []struct {
		before int64
		limit  int
		want   []int64
	}{
		{0, 10, []int64{5, 4, 3, 2, 1}},
		{-1, 10, []int64{5, 4, 3, 2, 1}},
		{0, 3, []int64{5, 4, 3}},
		{4, 2, []int64{3, 2}},
		{3, 10, []int64{2, 1}},
		{1, 10, []int64{}},
		{100, 1, []int64{5}},
	} {
		if got := seqs(history(t, s, "c1", a, tc.before, tc.limit)); !slices.Equal(got, tc.want) {
			t.Fatalf("History(before %d, limit %d) = %v, want %v", tc.before, tc.limit, got, tc.want)
		}
	}
	for _, h := range history(t, s, "c1", b, 0, 10) {
		if h.Message != msgs[h.Seq-1] {
			t.Fatalf("history entry %+v, want %+v", h.Message, msgs[h.Seq-1])
		}
	}
	if got := history(t, s, "c2", a, 0, 10); len(got) != 0 {
		t.Fatalf("history of an empty conversation = %v", seqs(got))
	}
}

func testHistoryStatus(t *testing.T, s store.Store) {
	ctx := t.Context()
	a, b := user(t, s, "alice"), user(t, s, "bob")
	direct(t, s, "c1", a, b, 10)
	direct(t, s, "self", a, a, 10)
	save(t, s, msg("c1", 1, a, b, 1), msg("c1", 2, a, b, 2), msg("c1", 3, a, b, 3), msg("c1", 4, a, b, 4),
		msg("c1", 5, b, a, 5), msg("self", 1, a, a, 1))

	statuses := func(conv, viewer string, want ...string) {
		t.Helper()
		var got []string
		for _, h := range history(t, s, conv, viewer, 0, 10) {
			got = append(got, h.Status)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("statuses of %s (newest first) = %v, want %v", conv, got, want)
		}
	}
	statuses("c1", a, "sent", "sent", "sent", "sent", "sent")

	ok(t, s.AdvanceReceipt(ctx, "c1", b, store.ReceiptState{DeliveredSeq: 3}))
	statuses("c1", a, "sent", "sent", "delivered", "delivered", "delivered")
	ok(t, s.AdvanceReceipt(ctx, "c1", b, store.ReceiptState{DeliveredSeq: 3, ReadSeq: 2}))
	statuses("c1", a, "sent", "sent", "delivered", "read", "read")
	// Bob's message 5 depends on Alice's receipts only.
	ok(t, s.AdvanceReceipt(ctx, "c1", a, store.ReceiptState{ReadSeq: 5}))
	statuses("c1", a, "read", "sent", "delivered", "read", "read")
	// The status is the sender's view, whoever looks.
	statuses("c1", b, "read", "sent", "delivered", "read", "read")

	ok(t, s.AdvanceReceipt(ctx, "self", a, store.ReceiptState{DeliveredSeq: 1, ReadSeq: 1}))
	statuses("self", a, "sent")
}

func testReceipts(t *testing.T, s store.Store) {
	ctx := t.Context()
	a, b, c := user(t, s, "alice"), user(t, s, "bob"), user(t, s, "carol")
	direct(t, s, "c1", a, b, 10)
	state := func(user string, want store.ReceiptState) {
		t.Helper()
		got, err := s.ReceiptState(ctx, "c1", user)
		ok(t, err)
		if got != want {
			t.Fatalf("ReceiptState(%s) = %+v, want %+v", user, got, want)
		}
	}
	state(a, store.ReceiptState{})
	state(c, store.ReceiptState{})
	if got, err := s.ReceiptState(ctx, "nope", a); err != nil || got != (store.ReceiptState{}) {
		t.Fatalf("ReceiptState of an unknown conversation = %+v, %v; want zero", got, err)
	}

	steps := []struct{ give, want store.ReceiptState }{
		{store.ReceiptState{DeliveredSeq: 5, ReadSeq: 2}, store.ReceiptState{DeliveredSeq: 5, ReadSeq: 2}},
		{store.ReceiptState{DeliveredSeq: 3, ReadSeq: 1}, store.ReceiptState{DeliveredSeq: 5, ReadSeq: 2}},
		{store.ReceiptState{ReadSeq: 7}, store.ReceiptState{DeliveredSeq: 7, ReadSeq: 7}},
		{store.ReceiptState{DeliveredSeq: 9}, store.ReceiptState{DeliveredSeq: 9, ReadSeq: 7}},
		{store.ReceiptState{}, store.ReceiptState{DeliveredSeq: 9, ReadSeq: 7}},
	}
	for _, st := range steps {
		ok(t, s.AdvanceReceipt(ctx, "c1", a, st.give))
		state(a, st.want)
	}
	state(b, store.ReceiptState{})

	// Receipts never make someone a participant.
	wantErr(t, s.AdvanceReceipt(ctx, "c1", c, store.ReceiptState{ReadSeq: 1}), store.ErrNotFound)
	state(c, store.ReceiptState{})
	if _, err := s.Conversation(ctx, "c1", c); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("carol sees c1 after a refused receipt: %v", err)
	}
}

func testUnreadCount(t *testing.T, s store.Store) {
	ctx := t.Context()
	a, b := user(t, s, "alice"), user(t, s, "bob")
	direct(t, s, "c1", a, b, 10)
	save(t, s, msg("c1", 1, a, b, 1), msg("c1", 2, a, b, 2), msg("c1", 3, b, a, 3), msg("c1", 4, a, b, 4),
		msg("c1", 5, a, b, 5), msg("c1", 6, a, b, 6))

	unread := func(viewer string, wantUnread, wantLastRead int64) {
		t.Helper()
		got := summary(t, s, "c1", viewer)
		if got.UnreadCount != wantUnread || got.LastReadSeq != wantLastRead {
			t.Fatalf("%s: unread %d, last read %d; want %d, %d", viewer, got.UnreadCount, got.LastReadSeq, wantUnread, wantLastRead)
		}
		cs, err := s.Conversations(ctx, viewer, store.ConversationPage{}, 10)
		ok(t, err)
		if len(cs) != 1 || cs[0] != got {
			t.Fatalf("%s's list %+v, want [%+v]", viewer, cs, got)
		}
	}
	unread(b, 5, 0) // 1, 2, 4, 5, 6: bob's own 3 does not count
	unread(a, 1, 0)

	ok(t, s.AdvanceReceipt(ctx, "c1", b, store.ReceiptState{ReadSeq: 2}))
	unread(b, 3, 2)
	// Delivery alone does not read.
	ok(t, s.AdvanceReceipt(ctx, "c1", b, store.ReceiptState{DeliveredSeq: 6}))
	unread(b, 3, 2)

	ok(t, s.DeleteForEveryone(ctx, "c1", 4))
	unread(b, 2, 2)
	ok(t, s.DeleteForUser(ctx, "c1", 5, b))
	unread(b, 1, 2)
	// Hiding is per viewer: Alice hiding 6 leaves it unread for Bob.
	ok(t, s.DeleteForUser(ctx, "c1", 6, a))
	unread(b, 1, 2)
	ok(t, s.DeleteForUser(ctx, "c1", 3, a))
	unread(a, 0, 0)
}

func testDeleteForEveryone(t *testing.T, s store.Store) {
	ctx := t.Context()
	a, b := user(t, s, "alice"), user(t, s, "bob")
	direct(t, s, "c1", a, b, 10)
	m1, m2 := msg("c1", 1, a, b, 100), msg("c1", 2, a, b, 200)
	save(t, s, m1, m2)

	ok(t, s.DeleteForEveryone(ctx, "c1", 1))
	got, err := s.Message(ctx, "c1", 1)
	ok(t, err)
	if !got.Deleted || got.Content != "" || got.ClientMessageID != m1.ClientMessageID {
		t.Fatalf("deleted message = %+v, want a tombstone keeping its client id", got)
	}
	for _, viewer := range []string{a, b} {
		hs := history(t, s, "c1", viewer, 0, 10)
		if !slices.Equal(seqs(hs), []int64{2, 1}) || !hs[1].Deleted || hs[1].Content != "" || hs[0].Deleted {
			t.Fatalf("%s's history = %+v, want seq 1 a tombstone", viewer, hs)
		}
	}
	if p := summary(t, s, "c1", a).LastMessagePreview; p != m2.Content {
		t.Fatalf("preview = %q after deleting an older message, want %q", p, m2.Content)
	}
	// A retry of the deleted message is still recognised.
	if dup, err := s.MessageByClientID(ctx, a, m1.ClientMessageID); err != nil || dup.Seq != 1 {
		t.Fatalf("MessageByClientID of a deleted message = %+v, %v", dup, err)
	}

	ok(t, s.DeleteForEveryone(ctx, "c1", 2))
	ok(t, s.DeleteForEveryone(ctx, "c1", 2))
	sum := summary(t, s, "c1", a)
	if sum.LastMessagePreview != "" || sum.LastSeq != 2 || sum.LastMessageAt != 200 {
		t.Fatalf("after deleting the last message: %+v, want empty preview, seq and time kept", sum)
	}
	// Replaying the batch does not bring the content back.
	save(t, s, m1, m2)
	if got, _ := s.Message(ctx, "c1", 2); !got.Deleted || got.Content != "" {
		t.Fatalf("replay resurrected %+v", got)
	}
	if p := summary(t, s, "c1", a).LastMessagePreview; p != "" {
		t.Fatalf("replay restored the preview %q", p)
	}

	wantErr(t, s.DeleteForEveryone(ctx, "c1", 3), store.ErrNotFound)
	wantErr(t, s.DeleteForEveryone(ctx, "nope", 1), store.ErrNotFound)
}

func testDeleteForUser(t *testing.T, s store.Store) {
	ctx := t.Context()
	a, b := user(t, s, "alice"), user(t, s, "bob")
	direct(t, s, "c1", a, b, 10)
	m1 := msg("c1", 1, a, b, 100)
	save(t, s, m1, msg("c1", 2, b, a, 200))

	ok(t, s.DeleteForUser(ctx, "c1", 1, b))
	ok(t, s.DeleteForUser(ctx, "c1", 1, b))
	hb := history(t, s, "c1", b, 0, 10)
	if len(hb) != 2 || !hb[1].Deleted || hb[1].Content != "" || hb[1].Seq != 1 {
		t.Fatalf("bob's history = %+v, want seq 1 a tombstone", hb)
	}
	ha := history(t, s, "c1", a, 0, 10)
	if len(ha) != 2 || ha[1].Message != m1 {
		t.Fatalf("alice's history = %+v, want seq 1 intact", ha)
	}
	if got, _ := s.Message(ctx, "c1", 1); got != m1 {
		t.Fatalf("Message after a delete for one user = %+v, want it intact", got)
	}
	wantErr(t, s.DeleteForUser(ctx, "c1", 3, b), store.ErrNotFound)
	wantErr(t, s.DeleteForUser(ctx, "nope", 1, b), store.ErrNotFound)
}

// testConcurrentUse writes and reads from many goroutines at once, as the
// gateway and the consumers do: nothing may fail with a lock error or lose
// a write.
func testConcurrentUse(t *testing.T, s store.Store) {
	const (
		workers = 8
		batches = 10
		perBat  = 20
	)
	ctx := t.Context()
	hub := user(t, s, "hub")
	var wg sync.WaitGroup
	errs := make(chan error, workers*(batches*3+2))
	for w := range workers {
		peer := user(t, s, fmt.Sprintf("peer%d", w))
		conv := fmt.Sprintf("c%d", w)
		wg.Go(func() {
			errs <- s.EnsureDirect(ctx, conv, hub, peer, 1)
			var seq int64
			for range batches {
				var batch []store.Message
				for range perBat {
					seq++
					batch = append(batch, msg(conv, seq, peer, hub, seq))
				}
				errs <- s.SaveMessages(ctx, batch)
				errs <- s.AdvanceReceipt(ctx, conv, hub, store.ReceiptState{ReadSeq: seq / 2})
				_, err := s.Conversations(ctx, hub, store.ConversationPage{}, 5)
				errs <- err
			}
			_, err := s.History(ctx, conv, hub, 0, 50)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		ok(t, err)
	}
	for w := range workers {
		conv := fmt.Sprintf("c%d", w)
		c := summary(t, s, conv, hub)
		if c.LastSeq != batches*perBat || c.UnreadCount != batches*perBat/2 {
			t.Fatalf("%s: last seq %d, unread %d; want %d, %d", conv, c.LastSeq, c.UnreadCount, batches*perBat, batches*perBat/2)
		}
	}
}

// testNULCharacters: the contract allows U+0000 in what clients write
// (content, client_message_id, device names); it must come back intact,
// and a lookup by a key holding one finds nothing rather than failing.
// (PostgreSQL's text type cannot store U+0000.)
func testNULCharacters(t *testing.T, s store.Store) {
	ctx := t.Context()
	a, b := user(t, s, "alice"), user(t, s, "bob")
	direct(t, s, "c1", a, b, 10)
	m := msg("c1", 1, a, b, 100)
	m.Content, m.ClientMessageID = "nul\x00inside", "cid\x00x"
	save(t, s, m)
	if got, err := s.Message(ctx, "c1", 1); err != nil || got != m {
		t.Fatalf("Message = %+v, %v; want %+v", got, err, m)
	}
	if got, err := s.MessageByClientID(ctx, a, m.ClientMessageID); err != nil || got != m {
		t.Fatalf("MessageByClientID = %+v, %v; want %+v", got, err, m)
	}
	if hs := history(t, s, "c1", b, 0, 10); len(hs) != 1 || hs[0].Message != m {
		t.Fatalf("History = %+v, want [%+v]", hs, m)
	}
	if p := summary(t, s, "c1", a).LastMessagePreview; p != m.Content {
		t.Fatalf("preview = %q, want %q", p, m.Content)
	}
	d := store.Device{ID: "d1", UserID: a, Name: "my\x00phone", CreatedAt: 10}
	ok(t, s.CreateDevice(ctx, d, "h1"))
	if got, err := s.Device(ctx, "d1"); err != nil || got != d {
		t.Fatalf("Device = %+v, %v; want %+v", got, err, d)
	}

	_, err := s.UserByUsername(ctx, "ali\x00ce")
	wantErr(t, err, store.ErrNotFound)
	_, err = s.UserByID(ctx, "u\x00")
	wantErr(t, err, store.ErrNotFound)
	_, err = s.Device(ctx, "d\x00")
	wantErr(t, err, store.ErrNotFound)
	_, err = s.Conversation(ctx, "c\x00", a)
	wantErr(t, err, store.ErrNotFound)
	_, err = s.Participants(ctx, "c\x00")
	wantErr(t, err, store.ErrNotFound)
	_, err = s.MessageByClientID(ctx, "u\x00", "x")
	wantErr(t, err, store.ErrNotFound)
	_, err = s.RotateRefresh(ctx, "h\x00", "h2", 20)
	wantErr(t, err, store.ErrNotFound)
	if hs := history(t, s, "c\x00", a, 0, 10); len(hs) != 0 {
		t.Fatalf("History of a key with U+0000 = %v", seqs(hs))
	}
	if n, err := s.LastSeq(ctx, "c\x00"); err != nil || n != 0 {
		t.Fatalf("LastSeq of a key with U+0000 = %d, %v", n, err)
	}
	if st, err := s.ReceiptState(ctx, "c\x00", a); err != nil || st != (store.ReceiptState{}) {
		t.Fatalf("ReceiptState of a key with U+0000 = %+v, %v", st, err)
	}
	wantErr(t, s.AdvanceReceipt(ctx, "c\x00", a, store.ReceiptState{ReadSeq: 1}), store.ErrNotFound)
	if blocked, err := s.Blocked(ctx, a, "u\x00"); err != nil || blocked {
		t.Fatalf("Blocked with a key holding U+0000 = %v, %v", blocked, err)
	}
	if shares, err := s.SharesConversation(ctx, a, "u\x00"); err != nil || shares {
		t.Fatalf("SharesConversation with a key holding U+0000 = %v, %v", shares, err)
	}
}

// testConcurrentEnsureDirect: both participants opening the conversation
// at the same moment (on several devices) all succeed, and it has exactly
// its two participants.
func testConcurrentEnsureDirect(t *testing.T, s store.Store) {
	a, b := user(t, s, "alice"), user(t, s, "bob")
	for round := range 5 {
		conv := fmt.Sprintf("c%d", round)
		var wg sync.WaitGroup
		errs := make([]error, 8)
		for i := range errs {
			x, y := a, b
			if i%2 == 1 {
				x, y = b, a
			}
			wg.Go(func() { errs[i] = s.EnsureDirect(t.Context(), conv, x, y, int64(10+i)) })
		}
		wg.Wait()
		for _, err := range errs {
			ok(t, err)
		}
		got, err := s.Participants(t.Context(), conv)
		ok(t, err)
		slices.Sort(got)
		if want := []string{a, b}; !slices.Equal(got, want) {
			t.Fatalf("Participants(%s) = %v, want %v", conv, got, want)
		}
	}
}

// testConcurrentRefreshRotation: one refresh token presented twice at the
// same moment (a stolen copy racing its owner) rotates once; the other
// presentation is reuse, which revokes the device.
func testConcurrentRefreshRotation(t *testing.T, s store.Store) {
	a := user(t, s, "alice")
	for round := range 5 {
		dev := fmt.Sprintf("d%d", round)
		ok(t, s.CreateDevice(t.Context(), store.Device{ID: dev, UserID: a, CreatedAt: 10}, dev+"-h0"))
		var wg sync.WaitGroup
		errs := make([]error, 4)
		for i := range errs {
			wg.Go(func() {
				_, errs[i] = s.RotateRefresh(t.Context(), dev+"-h0", fmt.Sprintf("%s-h%d", dev, i+1), 20)
			})
		}
		wg.Wait()
		rotated, reused := 0, 0
		for _, err := range errs {
			switch {
			case err == nil:
				rotated++
			case errors.Is(err, store.ErrRefreshReused), errors.Is(err, store.ErrNotFound):
				reused++ // ErrNotFound: it came after the reuse had revoked the device
			default:
				t.Fatalf("RotateRefresh: %v", err)
			}
		}
		if rotated != 1 {
			t.Fatalf("round %d: %d concurrent rotations of one token succeeded, want exactly 1 (errors %v)", round, rotated, errs)
		}
		if d, err := s.Device(t.Context(), dev); err != nil || d.RevokedAt == 0 {
			t.Fatalf("round %d: device after a racing reuse = %+v, %v; want it revoked", round, d, err)
		}
	}
}
