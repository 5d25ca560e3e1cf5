package storetest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/natter-chat/natter/store"
)

// GroupStore is what an adapter with groups implements besides
// store.Store.
type GroupStore interface {
	store.Store
	store.Groups
	store.GroupReceipts
	store.ReceiptLog
}

// groupTests run on adapters that implement GroupStore (the combined
// stores too, when both sides hold their part of groups); others skip.
var groupTests = []struct {
	name string
	fn   func(t *testing.T, s GroupStore)
}{
	{"GroupCreate", testGroupCreate},
	{"GroupAddMembers", testGroupAddMembers},
	{"GroupCap", testGroupCap},
	{"GroupConcurrentLastSeat", testGroupConcurrentLastSeat},
	{"GroupRemoveAndMembersAt", testGroupRemoveAndMembersAt},
	{"GroupLastAdminLeaves", testGroupLastAdminLeaves},
	{"GroupRoleAndRename", testGroupRoleAndRename},
	{"GroupUnreadFromJoining", testGroupUnreadFromJoining},
	{"GroupReceiptAggregates", testGroupReceiptAggregates},
	{"ReceiptLog", testReceiptLog},
}

func runGroups(t *testing.T, open func(t *testing.T) store.Store) {
	for _, tc := range groupTests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := open(t)
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("close: %v", err)
				}
			})
			gs, ok := s.(GroupStore)
			if !ok {
				t.Skipf("%T has no groups", s)
			}
			tc.fn(t, gs)
		})
	}
}

// newGroup creates group id (conversation "g"+id) with admin as its
// creator and the others as members, all joined at seq 1.
func newGroup(t *testing.T, s GroupStore, id, admin string, others ...string) store.Group {
	t.Helper()
	g := store.Group{ID: id, ConversationID: "g" + id, Name: "group " + id, CreatedBy: admin, CreatedAt: 100}
	ms := []store.Member{{UserID: admin, Role: store.RoleAdmin, JoinedSeq: 1, JoinedAt: 100}}
	for _, u := range others {
		ms = append(ms, store.Member{UserID: u, Role: store.RoleMember, JoinedSeq: 1, JoinedAt: 100})
	}
	ok(t, s.CreateGroup(t.Context(), g, ms))
	return g
}

func groupMsg(g store.Group, seq int64, sender string) store.Message {
	m := msg(g.ConversationID, seq, sender, g.ID, 1000+seq)
	m.MessageType = store.ConversationGroup
	return m
}

func testGroupCreate(t *testing.T, s GroupStore) {
	ctx := t.Context()
	a, b, c := user(t, s, "ann"), user(t, s, "bob"), user(t, s, "cyd")
	g := newGroup(t, s, "G1", a, b)
	got, err := s.Group(ctx, "G1")
	ok(t, err)
	if got.Name != "group G1" || got.ConversationID != "gG1" || got.MemberCount != 2 || got.CreatedBy != a {
		t.Fatalf("group = %+v", got)
	}
	ms, err := s.Members(ctx, "G1")
	ok(t, err)
	if len(ms) != 2 || ms[0].UserID != a || ms[0].Role != store.RoleAdmin || ms[1].Role != store.RoleMember {
		t.Fatalf("members = %+v", ms)
	}
	if _, err := s.Member(ctx, "G1", c); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("non-member: %v, want not found", err)
	}
	sum := summary(t, s, g.ConversationID, b)
	if sum.Type != store.ConversationGroup || sum.GroupID != "G1" || sum.Title != "group G1" || sum.PeerID != "" {
		t.Fatalf("summary = %+v", sum)
	}
	if _, err := s.Conversation(ctx, g.ConversationID, c); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("non-member's conversation: %v, want not found", err)
	}
	parts, err := s.Participants(ctx, g.ConversationID)
	ok(t, err)
	if want := []string{a, b}; !slices.Equal(parts, want) {
		t.Fatalf("participants %v, want %v", parts, want)
	}
	if _, err := s.Group(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown group: %v", err)
	}
	// An unknown member fails the whole creation.
	err = s.CreateGroup(ctx, store.Group{ID: "G2", ConversationID: "gG2", Name: "x", CreatedBy: a, CreatedAt: 1},
		[]store.Member{{UserID: a, Role: store.RoleAdmin, JoinedSeq: 1}, {UserID: "u-ghost", Role: store.RoleMember, JoinedSeq: 1}})
	wantErr(t, err, store.ErrNotFound)
	if _, err := s.Group(ctx, "G2"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("half-created group: %v", err)
	}
}

func testGroupAddMembers(t *testing.T, s GroupStore) {
	ctx := t.Context()
	a, b, c, d := user(t, s, "ann"), user(t, s, "bob"), user(t, s, "cyd"), user(t, s, "dan")
	newGroup(t, s, "G1", a, b)
	added, err := s.AddMembers(ctx, "G1", []string{c, b, d}, 7, 200)
	ok(t, err)
	if want := []string{c, d}; !slices.Equal(added, want) {
		t.Fatalf("added %v, want %v (bob was a member)", added, want)
	}
	g, err := s.Group(ctx, "G1")
	ok(t, err)
	if g.MemberCount != 4 {
		t.Fatalf("member_count %d, want 4", g.MemberCount)
	}
	m, err := s.Member(ctx, "G1", c)
	ok(t, err)
	if m.JoinedSeq != 7 || m.Role != store.RoleMember || m.JoinedAt != 200 {
		t.Fatalf("member = %+v", m)
	}
	st, err := s.ReceiptState(ctx, "gG1", c)
	ok(t, err)
	if st.DeliveredSeq != 6 || st.ReadSeq != 6 {
		t.Fatalf("a member joining at 7 starts at %+v, want 6/6", st)
	}
	// Adding again changes nothing; an unknown user adds no one.
	added, err = s.AddMembers(ctx, "G1", []string{c}, 9, 300)
	ok(t, err)
	if len(added) != 0 {
		t.Fatalf("re-added %v", added)
	}
	_, err = s.AddMembers(ctx, "G1", []string{user(t, s, "eve"), "u-ghost"}, 9, 300)
	wantErr(t, err, store.ErrNotFound)
	if g, _ := s.Group(ctx, "G1"); g.MemberCount != 4 {
		t.Fatalf("a failed add left member_count %d", g.MemberCount)
	}
	if _, err := s.Member(ctx, "G1", "u-eve"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a failed add kept eve: %v", err)
	}
	_, err = s.AddMembers(ctx, "nope", []string{c}, 1, 1)
	wantErr(t, err, store.ErrNotFound)
}

// fill creates n users named prefix-i.
func fill(t *testing.T, s GroupStore, prefix string, n int) []string {
	t.Helper()
	out := make([]string, n)
	for i := range out {
		out[i] = user(t, s, fmt.Sprintf("%s%d", prefix, i))
	}
	return out
}

func testGroupCap(t *testing.T, s GroupStore) {
	ctx := t.Context()
	a := user(t, s, "ann")
	us := fill(t, s, "m", store.MaxGroupMembers)
	newGroup(t, s, "G1", a, us[:400]...)
	// 401 members; 100 more would be 501: refused as a whole.
	_, err := s.AddMembers(ctx, "G1", us[400:], 2, 2)
	wantErr(t, err, store.ErrGroupFull)
	if g, _ := s.Group(ctx, "G1"); g.MemberCount != 401 {
		t.Fatalf("member_count %d after a refused add, want 401", g.MemberCount)
	}
	if _, err := s.Member(ctx, "G1", us[400]); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a refused add kept a member: %v", err)
	}
	added, err := s.AddMembers(ctx, "G1", us[400:499], 2, 2)
	ok(t, err)
	if len(added) != 99 {
		t.Fatalf("added %d, want 99", len(added))
	}
	_, err = s.AddMembers(ctx, "G1", us[499:], 3, 3)
	wantErr(t, err, store.ErrGroupFull)
	// Too many at creation.
	ms := []store.Member{{UserID: a, Role: store.RoleAdmin, JoinedSeq: 1}}
	for _, u := range us {
		ms = append(ms, store.Member{UserID: u, Role: store.RoleMember, JoinedSeq: 1})
	}
	err = s.CreateGroup(ctx, store.Group{ID: "G2", ConversationID: "gG2", Name: "big", CreatedBy: a}, ms)
	wantErr(t, err, store.ErrGroupFull)
}

// testGroupConcurrentLastSeat: two admins add a different user each to a
// group of 499: exactly one gets the 500th seat.
func testGroupConcurrentLastSeat(t *testing.T, s GroupStore) {
	ctx := t.Context()
	a := user(t, s, "ann")
	us := fill(t, s, "m", store.MaxGroupMembers+1)
	newGroup(t, s, "G1", a, us[:store.MaxGroupMembers-2]...)
	for round := range 5 {
		if round > 0 {
			// Free the seat again for another race.
			var winner string
			for _, u := range us[store.MaxGroupMembers-2:] {
				if _, err := s.Member(ctx, "G1", u); err == nil {
					winner = u
				}
			}
			_, err := s.RemoveMember(ctx, "G1", winner, int64(10*round))
			ok(t, err)
		}
		var wg sync.WaitGroup
		errs := make([]error, 2)
		start := make(chan struct{})
		for i := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				_, errs[i] = s.AddMembers(ctx, "G1", []string{us[store.MaxGroupMembers-2+i]}, int64(10*round+1), 1)
			}()
		}
		close(start)
		wg.Wait()
		full, succeeded := 0, 0
		for _, err := range errs {
			switch {
			case err == nil:
				succeeded++
			case errors.Is(err, store.ErrGroupFull):
				full++
			default:
				t.Fatalf("round %d: %v", round, err)
			}
		}
		if succeeded != 1 || full != 1 {
			t.Fatalf("round %d: %d succeeded, %d full; want 1 and 1", round, succeeded, full)
		}
		g, err := s.Group(ctx, "G1")
		ok(t, err)
		ms, err := s.Members(ctx, "G1")
		ok(t, err)
		if g.MemberCount != store.MaxGroupMembers || len(ms) != store.MaxGroupMembers {
			t.Fatalf("round %d: member_count %d, %d members; want %d", round, g.MemberCount, len(ms), store.MaxGroupMembers)
		}
	}
}

func testGroupRemoveAndMembersAt(t *testing.T, s GroupStore) {
	ctx := t.Context()
	a, b, c := user(t, s, "ann"), user(t, s, "bob"), user(t, s, "cyd")
	g := newGroup(t, s, "G1", a, b)
	// cyd joins at 3, leaves at 5 (sees 3 and 4), comes back at 8.
	_, err := s.AddMembers(ctx, "G1", []string{c}, 3, 2)
	ok(t, err)
	promoted, err := s.RemoveMember(ctx, "G1", c, 5)
	ok(t, err)
	if promoted != "" {
		t.Fatalf("removing a member promoted %q", promoted)
	}
	if _, err := s.Conversation(ctx, g.ConversationID, c); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a removed member still has the conversation: %v", err)
	}
	if _, err := s.RemoveMember(ctx, "G1", c, 6); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("removing a non-member: %v", err)
	}
	_, err = s.AddMembers(ctx, "G1", []string{c}, 8, 3)
	ok(t, err)
	for seq, want := range map[int64][]string{
		1: {a, b}, 2: {a, b}, 3: {a, b, c}, 4: {a, b, c}, 5: {a, b}, 7: {a, b}, 8: {a, b, c}, 100: {a, b, c},
	} {
		got, err := s.MembersAt(ctx, "G1", seq)
		ok(t, err)
		if !slices.Equal(got, want) {
			t.Errorf("members at %d: %v, want %v", seq, got, want)
		}
	}
	if g, _ := s.Group(ctx, "G1"); g.MemberCount != 3 {
		t.Fatalf("member_count %d, want 3", g.MemberCount)
	}
}

func testGroupLastAdminLeaves(t *testing.T, s GroupStore) {
	ctx := t.Context()
	a, b, c := user(t, s, "ann"), user(t, s, "bob"), user(t, s, "cyd")
	newGroup(t, s, "G1", a)
	_, err := s.AddMembers(ctx, "G1", []string{c}, 2, 200)
	ok(t, err)
	_, err = s.AddMembers(ctx, "G1", []string{b}, 3, 300)
	ok(t, err)
	// cyd joined before bob although bob's id sorts first.
	promoted, err := s.RemoveMember(ctx, "G1", a, 4)
	ok(t, err)
	if promoted != c {
		t.Fatalf("promoted %q, want the longest-standing member %q", promoted, c)
	}
	m, err := s.Member(ctx, "G1", c)
	ok(t, err)
	if m.Role != store.RoleAdmin {
		t.Fatalf("cyd is %s", m.Role)
	}
	// With another admin left, nobody is promoted.
	ok(t, s.SetRole(ctx, "G1", b, store.RoleAdmin))
	promoted, err = s.RemoveMember(ctx, "G1", c, 5)
	ok(t, err)
	if promoted != "" {
		t.Fatalf("promoted %q though bob is admin", promoted)
	}
	promoted, err = s.RemoveMember(ctx, "G1", b, 6)
	ok(t, err)
	if promoted != "" {
		t.Fatalf("promoted %q in an empty group", promoted)
	}
}

func testGroupRoleAndRename(t *testing.T, s GroupStore) {
	ctx := t.Context()
	a, b := user(t, s, "ann"), user(t, s, "bob")
	g := newGroup(t, s, "G1", a, b)
	ok(t, s.SetRole(ctx, "G1", b, store.RoleAdmin))
	m, err := s.Member(ctx, "G1", b)
	ok(t, err)
	if m.Role != store.RoleAdmin {
		t.Fatalf("role %s", m.Role)
	}
	wantErr(t, s.SetRole(ctx, "G1", "u-ghost", store.RoleAdmin), store.ErrNotFound)
	ok(t, s.RenameGroup(ctx, "G1", "Ünïcode name ✓"))
	if sum := summary(t, s, g.ConversationID, a); sum.Title != "Ünïcode name ✓" {
		t.Fatalf("title %q after rename", sum.Title)
	}
	wantErr(t, s.RenameGroup(ctx, "nope", "x"), store.ErrNotFound)
}

func testGroupUnreadFromJoining(t *testing.T, s GroupStore) {
	ctx := t.Context()
	a, b, c := user(t, s, "ann"), user(t, s, "bob"), user(t, s, "cyd")
	g := newGroup(t, s, "G1", a, b)
	save(t, s, groupMsg(g, 1, a), groupMsg(g, 2, b), groupMsg(g, 3, a))
	_, err := s.AddMembers(ctx, "G1", []string{c}, 4, 2)
	ok(t, err)
	save(t, s, groupMsg(g, 4, a), groupMsg(g, 5, c))
	if sum := summary(t, s, g.ConversationID, c); sum.UnreadCount != 1 || sum.LastSeq != 5 || sum.LastReadSeq != 3 {
		t.Fatalf("cyd's summary %+v: want 1 unread (seq 4), last_read_seq 3", sum)
	}
	if sum := summary(t, s, g.ConversationID, b); sum.UnreadCount != 4 {
		t.Fatalf("bob's unread %d, want 4", sum.UnreadCount)
	}
	// History status of a group message: the least advanced other member.
	ok(t, s.AdvanceReceipt(ctx, g.ConversationID, b, store.ReceiptState{DeliveredSeq: 4, ReadSeq: 4}))
	hs := history(t, s, g.ConversationID, a, 0, 10)
	if hs[1].Seq != 4 || hs[1].Status != "sent" {
		t.Fatalf("seq 4 as its sender sees it: %+v, want sent (cyd has not got it)", hs[1])
	}
	if hs[2].Seq != 3 || hs[2].Status != "read" {
		t.Fatalf("seq 3 as its sender sees it: %+v, want read (bob read it, cyd joined after it)", hs[2])
	}
}

func testGroupReceiptAggregates(t *testing.T, s GroupStore) {
	ctx := t.Context()
	a, b, c := user(t, s, "ann"), user(t, s, "bob"), user(t, s, "cyd")
	g := newGroup(t, s, "G1", a, b, c)
	save(t, s, groupMsg(g, 1, a), groupMsg(g, 2, b), groupMsg(g, 3, a), groupMsg(g, 4, c))
	ok(t, s.AdvanceReceipt(ctx, g.ConversationID, b, store.ReceiptState{DeliveredSeq: 4, ReadSeq: 1}))
	ok(t, s.AdvanceReceipt(ctx, g.ConversationID, c, store.ReceiptState{DeliveredSeq: 2, ReadSeq: 2}))
	low, err := s.LowestReceipts(ctx, g.ConversationID, false, 2)
	ok(t, err)
	if want := []store.UserSeq{{UserID: a, Seq: 0}, {UserID: c, Seq: 2}}; !slices.Equal(low, want) {
		t.Fatalf("lowest delivered %v, want %v", low, want)
	}
	low, err = s.LowestReceipts(ctx, g.ConversationID, true, 3)
	ok(t, err)
	if want := []store.UserSeq{{UserID: a, Seq: 0}, {UserID: b, Seq: 1}, {UserID: c, Seq: 2}}; !slices.Equal(low, want) {
		t.Fatalf("lowest read %v, want %v", low, want)
	}
	sent, err := s.LastSent(ctx, g.ConversationID, 1, 4)
	ok(t, err)
	if want := []store.UserSeq{{UserID: a, Seq: 3}, {UserID: b, Seq: 2}, {UserID: c, Seq: 4}}; !slices.Equal(sent, want) {
		t.Fatalf("last sent in (1, 4]: %v, want %v", sent, want)
	}
	sent, err = s.LastSent(ctx, g.ConversationID, 3, 3)
	ok(t, err)
	if len(sent) != 0 {
		t.Fatalf("an empty range has senders %v", sent)
	}
}

func testReceiptLog(t *testing.T, s GroupStore) {
	ctx := t.Context()
	a, b, c := user(t, s, "ann"), user(t, s, "bob"), user(t, s, "cyd")
	g := newGroup(t, s, "G1", a, b, c)
	changes := []store.ReceiptChange{
		{ConversationID: g.ConversationID, UserID: b, Seq: 2, Status: "delivered", TS: 10},
		{ConversationID: g.ConversationID, UserID: b, Seq: 5, Status: "delivered", TS: 20},
		{ConversationID: g.ConversationID, UserID: b, Seq: 5, Status: "read", TS: 30},
		{ConversationID: g.ConversationID, UserID: c, Seq: 4, Status: "read", TS: 25},
	}
	ok(t, s.LogReceipts(ctx, changes))
	ok(t, s.LogReceipts(ctx, changes[:2])) // idempotent
	times, err := s.ReceiptTimes(ctx, g.ConversationID, 3)
	ok(t, err)
	want := []store.ReceiptTime{{UserID: b, DeliveredAt: 20, ReadAt: 30}, {UserID: c, DeliveredAt: 25, ReadAt: 25}}
	if !slices.Equal(times, want) {
		t.Fatalf("times of seq 3: %+v, want %+v", times, want)
	}
	times, err = s.ReceiptTimes(ctx, g.ConversationID, 5)
	ok(t, err)
	if want := []store.ReceiptTime{{UserID: b, DeliveredAt: 20, ReadAt: 30}}; !slices.Equal(times, want) {
		t.Fatalf("times of seq 5: %+v, want %+v", times, want)
	}
}
