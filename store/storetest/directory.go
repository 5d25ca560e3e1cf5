package storetest

import (
	"slices"
	"testing"

	"github.com/natter-chat/natter/store"
)

// directoryTests cover the operator listings (store.UserDirectory,
// store.GroupDirectory); an adapter without them skips.
var directoryTests = []struct {
	name string
	fn   func(t *testing.T, s store.Store)
}{
	{"ListUsersPagingAndPrefix", testListUsers},
	{"DeviceActivity", testDeviceActivity},
	{"ListGroupsAndUserGroups", testListGroups},
}

func userDirectory(t *testing.T, s store.Store) store.UserDirectory {
	t.Helper()
	d, ok := s.(store.UserDirectory)
	if !ok {
		t.Skipf("%T has no user directory", s)
	}
	return d
}

func usernames(us []store.UserListing) []string {
	out := make([]string, len(us))
	for i, u := range us {
		out[i] = u.Username
	}
	return out
}

func testListUsers(t *testing.T, s store.Store) {
	ctx := t.Context()
	d := userDirectory(t, s)
	for _, n := range []string{"carol", "alice", "bob", "alina", "al", "zed"} {
		user(t, s, n)
	}
	list := func(prefix, after string, limit int, want ...string) []store.UserListing {
		t.Helper()
		us, err := d.ListUsers(ctx, prefix, after, limit)
		ok(t, err)
		if got := usernames(us); !slices.Equal(got, want) {
			t.Fatalf("ListUsers(%q, %q, %d) = %v, want %v", prefix, after, limit, got, want)
		}
		return us
	}
	list("", "", 100, "al", "alice", "alina", "bob", "carol", "zed")
	// Pages follow on from the last username, with nothing twice.
	list("", "", 2, "al", "alice")
	list("", "alice", 2, "alina", "bob")
	list("", "bob", 10, "carol", "zed")
	list("", "zed", 10)
	list("ali", "", 10, "alice", "alina")
	list("al", "al", 10, "alice", "alina")
	list("al", "alice", 1, "alina")
	list("x", "", 10)
	// An after before the prefix does not widen it.
	list("c", "a", 10, "carol")

	a := "u-alice"
	ok(t, s.CreateDevice(ctx, store.Device{ID: "d1", UserID: a, Name: "phone", CreatedAt: 10}, "h1"))
	ok(t, s.CreateDevice(ctx, store.Device{ID: "d2", UserID: a, Name: "laptop", CreatedAt: 30}, "h2"))
	ok(t, s.RevokeDevice(ctx, a, "d2", 40))
	us := list("alice", "", 1, "alice")
	if u := us[0]; u.ID != a || u.CreatedAt != 1 || u.Devices != 1 || u.LastLoginAt != 30 {
		t.Fatalf("alice's row = %+v, want id %s, created 1, 1 active device, last login 30 (the revoked one counts as a login)", u, a)
	}
	if u := list("bob", "", 1, "bob")[0]; u.Devices != 0 || u.LastLoginAt != 0 {
		t.Fatalf("bob's row = %+v, want no devices and no login", u)
	}
}

func testDeviceActivity(t *testing.T, s store.Store) {
	ctx := t.Context()
	d := userDirectory(t, s)
	a, b := user(t, s, "alice"), user(t, s, "bob")
	ok(t, s.CreateDevice(ctx, store.Device{ID: "d2", UserID: a, Name: "laptop", CreatedAt: 20}, "h2"))
	ok(t, s.CreateDevice(ctx, store.Device{ID: "d1", UserID: a, Name: "phone", CreatedAt: 10}, "h1"))
	ok(t, s.CreateDevice(ctx, store.Device{ID: "db", UserID: b, CreatedAt: 5}, "hb"))
	_, err := s.RotateRefresh(ctx, "h1", "h1b", 50)
	ok(t, err)
	_, err = s.RotateRefresh(ctx, "h1b", "h1c", 70)
	ok(t, err)
	ok(t, s.RevokeDevice(ctx, a, "d2", 90))

	ds, err := d.DeviceActivity(ctx, a)
	ok(t, err)
	if len(ds) != 2 {
		t.Fatalf("DeviceActivity = %+v, want d1 and d2", ds)
	}
	if got := ds[0]; got.ID != "d1" || got.Name != "phone" || got.CreatedAt != 10 || got.RevokedAt != 0 || got.LastRefreshAt != 70 {
		t.Fatalf("d1 = %+v, want phone, created 10, active, last refresh 70", got)
	}
	if got := ds[1]; got.ID != "d2" || got.RevokedAt != 90 || got.LastRefreshAt != 0 {
		t.Fatalf("d2 = %+v, want revoked at 90 (listed still), never refreshed", got)
	}
	if ds, err = d.DeviceActivity(ctx, "u-nobody"); err != nil || len(ds) != 0 {
		t.Fatalf("DeviceActivity(unknown) = %v, %v; want none, no error", ds, err)
	}
}

func testListGroups(t *testing.T, s store.Store) {
	ctx := t.Context()
	gs, ok1 := s.(GroupStore)
	gd, ok2 := s.(store.GroupDirectory)
	if !ok1 || !ok2 {
		t.Skipf("%T has no group directory", s)
	}
	a, b, c := user(t, gs, "ann"), user(t, gs, "bob"), user(t, gs, "cyd")
	g1 := newGroup(t, gs, "G1", a, b)
	newGroup(t, gs, "G3", b, a, c)
	newGroup(t, gs, "G2", c)
	save(t, gs, groupMsg(g1, 1, a), groupMsg(g1, 2, b))

	ids := func(ls []store.GroupListing) []string {
		out := []string{}
		for _, g := range ls {
			out = append(out, g.ID)
		}
		return out
	}
	all, err := gd.ListGroups(ctx, "", 10)
	ok(t, err)
	if !slices.Equal(ids(all), []string{"G1", "G2", "G3"}) {
		t.Fatalf("ListGroups = %v, want G1 G2 G3", ids(all))
	}
	if g := all[0]; g.Name != "group G1" || g.MemberCount != 2 || g.CreatedBy != a || g.LastSeq != 2 || g.LastMessageAt != 1002 {
		t.Fatalf("G1 = %+v, want 2 members, last seq 2 at 1002", g)
	}
	if g := all[1]; g.MemberCount != 1 || g.LastSeq != 0 || g.LastMessageAt != 0 {
		t.Fatalf("G2 = %+v, want 1 member, no message", g)
	}
	page, err := gd.ListGroups(ctx, "G1", 1)
	ok(t, err)
	if !slices.Equal(ids(page), []string{"G2"}) {
		t.Fatalf("ListGroups after G1, 1 = %v, want G2", ids(page))
	}

	ok(t, gs.SetRole(ctx, "G3", a, store.RoleAdmin))
	_, err = gs.RemoveMember(ctx, "G1", b, 3)
	ok(t, err)
	of := func(user string) []string {
		t.Helper()
		ug, err := gd.UserGroups(ctx, user)
		ok(t, err)
		out := []string{}
		for _, g := range ug {
			out = append(out, g.ID+":"+g.Role)
		}
		return out
	}
	if got := of(a); !slices.Equal(got, []string{"G1:admin", "G3:admin"}) {
		t.Fatalf("ann's groups = %v", got)
	}
	if got := of(b); !slices.Equal(got, []string{"G3:admin"}) {
		t.Fatalf("bob's groups = %v, want G3 only: he left G1", got)
	}
	if got := of(c); !slices.Equal(got, []string{"G2:admin", "G3:member"}) {
		t.Fatalf("cyd's groups = %v", got)
	}
	if got := of("u-nobody"); len(got) != 0 {
		t.Fatalf("unknown user's groups = %v", got)
	}
}
