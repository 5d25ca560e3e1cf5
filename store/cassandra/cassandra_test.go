package cassandra

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gocql/gocql"

	"github.com/natter-chat/natter/store"
	"github.com/natter-chat/natter/store/sqlite"
	"github.com/natter-chat/natter/store/storetest"
)

// testHosts is the Cassandra these tests use (scripts/cassandra starts
// one): without it they skip locally and fail in CI.
func testHosts(t testing.TB) []string {
	t.Helper()
	hosts := os.Getenv("NATTER_TEST_CASSANDRA_HOSTS")
	if hosts == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("NATTER_TEST_CASSANDRA_HOSTS is not set: CI must run these tests against a real Cassandra (scripts/cassandra start DIR PORT)")
		}
		t.Skip("NATTER_TEST_CASSANDRA_HOSTS not set; start one with scripts/cassandra start DIR PORT")
	}
	return strings.Split(hosts, ",")
}

// openFresh opens the store on a new keyspace, dropped when t ends.
func openFresh(t testing.TB, opts Options) *DB {
	t.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	opts.Hosts = testHosts(t)
	opts.Keyspace = "natter_test_" + hex.EncodeToString(b[:])
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	db, err := Open(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		// A schema change waits on a loaded node: give it more than a request's timeout.
		if err := db.s.Query(`DROP KEYSPACE IF EXISTS ` + opts.Keyspace).WithContext(ctx).RetryPolicy(&gocql.SimpleRetryPolicy{NumRetries: 5}).Exec(); err != nil {
			t.Logf("drop keyspace %s: %v", opts.Keyspace, err)
		}
		db.Close()
	})
	return db
}

func openSQLite(t testing.TB) *sqlite.DB {
	t.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "natter.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// TestConformance runs the whole store suite on users in SQLite and
// messages in Cassandra, as --store cassandra+sqlite does.
func TestConformance(t *testing.T) {
	testHosts(t)
	storetest.Run(t, func(t *testing.T) store.Store {
		return store.Combine(openSQLite(t), openFresh(t, Options{}))
	})
}
