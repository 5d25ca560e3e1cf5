package store_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/natter-chat/natter/store"
	"github.com/natter-chat/natter/store/sqlite"
)

func openSQLite(t *testing.T) *sqlite.DB {
	t.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "natter.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// Combine's titles are proven by store/cassandra's conformance run: the
// Cassandra side leaves every title empty, and storetest checks them.

// TestCombineClosesBoth: after Close neither side answers.
func TestCombineClosesBoth(t *testing.T) {
	users, messages := openSQLite(t), openSQLite(t)
	if err := store.Combine(users, messages).Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := users.UserByID(context.Background(), "u1"); err == nil {
		t.Fatal("the user side still answers after Close")
	}
	if _, err := messages.LastSeq(context.Background(), "c1"); err == nil {
		t.Fatal("the message side still answers after Close")
	}
}
