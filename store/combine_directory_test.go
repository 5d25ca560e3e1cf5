package store_test

import (
	"context"
	"testing"

	"github.com/natter-chat/natter/store"
)

// The operator's user listing of a combined store is the user side's
// (Cassandra's conformance run checks the rest through storetest).
func TestCombineListsUsersFromTheUserSide(t *testing.T) {
	ctx := context.Background()
	users, messages := openSQLite(t), openSQLite(t)
	s := store.Combine(users, messages)
	t.Cleanup(func() { _ = s.Close() })
	if err := users.CreateUser(ctx, store.User{ID: "u1", Username: "ann", PasswordHash: "h", CreatedAt: 1}); err != nil {
		t.Fatal(err)
	}
	if err := users.CreateDevice(ctx, store.Device{ID: "d1", UserID: "u1", Name: "phone", CreatedAt: 5}, "r1"); err != nil {
		t.Fatal(err)
	}
	d, ok := s.(store.UserDirectory)
	if !ok {
		t.Fatal("a combined store has no user directory")
	}
	us, err := d.ListUsers(ctx, "", "", 10)
	if err != nil || len(us) != 1 || us[0].ID != "u1" || us[0].Devices != 1 || us[0].LastLoginAt != 5 {
		t.Fatalf("ListUsers = %+v, %v", us, err)
	}
	ds, err := d.DeviceActivity(ctx, "u1")
	if err != nil || len(ds) != 1 || ds[0].Name != "phone" {
		t.Fatalf("DeviceActivity = %+v, %v", ds, err)
	}
	if _, ok := s.(store.GroupDirectory); ok {
		t.Error("a combined store claims a group directory it does not have")
	}
}
