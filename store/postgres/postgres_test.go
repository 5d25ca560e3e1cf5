package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/natter-chat/natter/schema"
	"github.com/natter-chat/natter/store"
	"github.com/natter-chat/natter/store/storetest"
)

// serverURL is the superuser URL of the PostgreSQL the tests use
// (scripts/postgres prints one). Without it the tests skip, except in CI,
// where not running them is a failure.
func serverURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv("NATTER_TEST_POSTGRES_URL")
	if u == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("CI is set but NATTER_TEST_POSTGRES_URL is not: the PostgreSQL tests must run in CI (start a server with scripts/postgres)")
		}
		t.Skip("NATTER_TEST_POSTGRES_URL not set (scripts/postgres start DIR PORT prints one)")
	}
	return u
}

// freshDatabase creates an empty database on the test server, dropped when
// the test ends, and returns its URL.
func freshDatabase(t testing.TB) string {
	t.Helper()
	admin := serverURL(t)
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatalf("NATTER_TEST_POSTGRES_URL must be a postgres:// URL: %v", err)
	}
	b := make([]byte, 6)
	rand.Read(b)
	name := "natter_test_" + hex.EncodeToString(b)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `CREATE DATABASE `+name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn, err := pgx.Connect(ctx, admin)
		if err != nil {
			t.Errorf("drop %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, `DROP DATABASE `+name+` WITH (FORCE)`); err != nil {
			t.Errorf("drop %s: %v", name, err)
		}
	})
	u.Path = "/" + name
	return u.String()
}

func open(t testing.TB, connURL string) *DB {
	t.Helper()
	db, err := Open(context.Background(), connURL, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func TestConformance(t *testing.T) {
	serverURL(t)
	storetest.Run(t, func(t *testing.T) store.Store { return open(t, freshDatabase(t)) })
}

func TestReopenKeepsData(t *testing.T) {
	ctx := t.Context()
	dbURL := freshDatabase(t)
	db := open(t, dbURL)
	if err := db.CreateUser(ctx, store.User{ID: "u1", Username: "alice", PasswordHash: "h", CreatedAt: 1}); err != nil {
		t.Fatal(err)
	}
	if err := db.EnsureDirect(ctx, "c1", "u1", "u1", 1); err != nil {
		t.Fatal(err)
	}
	want := store.Message{ID: "m1", ConversationID: "c1", Seq: 1, SenderID: "u1", RecipientID: "u1",
		MessageType: "user", Content: "hi", ClientMessageID: "x", ServerTS: 5}
	if err := db.SaveMessages(ctx, []store.Message{want}); err != nil {
		t.Fatal(err)
	}
	db.Close()

	applied, err := Migrate(ctx, dbURL, nil)
	if err != nil || len(applied) != 0 {
		t.Fatalf("Migrate on a migrated database applied %v (%v), want nothing", applied, err)
	}
	db = open(t, dbURL)
	defer db.Close()
	if got, err := db.Message(ctx, "c1", 1); err != nil || got != want {
		t.Fatalf("after reopen: %+v, %v; want %+v", got, err, want)
	}
}

// Two nodes starting together against an empty database: both succeed and
// every migration is applied once.
func TestMigrateConcurrently(t *testing.T) {
	ms, err := schema.Migrations(migrations, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	for round := range 3 {
		dbURL := freshDatabase(t)
		const nodes = 4
		var (
			wg      sync.WaitGroup
			applied [nodes][]string
			errs    [nodes]error
		)
		for i := range nodes {
			wg.Go(func() { applied[i], errs[i] = Migrate(t.Context(), dbURL, nil) })
		}
		wg.Wait()
		var all []string
		for i := range nodes {
			if errs[i] != nil {
				t.Fatalf("round %d: node %d: %v", round, i, errs[i])
			}
			all = append(all, applied[i]...)
		}
		slices.Sort(all)
		var want []string
		for _, m := range ms {
			want = append(want, m.Name)
		}
		if !slices.Equal(all, want) {
			t.Fatalf("round %d: applied %v in total, want each of %v once", round, all, want)
		}
		db := open(t, dbURL)
		var rows int
		if err := db.pool.QueryRow(t.Context(), `SELECT COUNT(*) FROM schema_migrations`).Scan(&rows); err != nil || rows != len(ms) {
			t.Fatalf("round %d: schema_migrations has %d rows (%v), want %d", round, rows, err, len(ms))
		}
		db.Close()
	}
}

func TestNewerSchemaRefused(t *testing.T) {
	ctx := t.Context()
	dbURL := freshDatabase(t)
	db := open(t, dbURL)
	if _, err := db.pool.Exec(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (9999, 'future', 0)`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if db, err := Open(ctx, dbURL, Options{}); err == nil {
		db.Close()
		t.Fatal("opened a database with a newer schema")
	}
}

// The driver's real errors for a lost connection and an unreachable
// server are store.ErrUnavailable, and a password never shows in errors.
func TestUnavailable(t *testing.T) {
	ctx := t.Context()
	db := open(t, freshDatabase(t))
	defer db.Close()

	// The server ends this very session (FATAL 57P01, admin shutdown).
	_, err := db.exec(ctx, "terminate", `SELECT pg_terminate_backend(pg_backend_pid())`)
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("terminated session: %v, want ErrUnavailable", err)
	}
	// The pool replaces the connection: the store works again.
	if _, err := db.UserByID(ctx, "nobody"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("after a terminated session: %v, want ErrNotFound", err)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close() // nothing listens there now
	_, err = Open(ctx, "postgres://natter:s3cr3t-pw@"+closed+"/natter?connect_timeout=5", Options{})
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("connection refused: %v, want ErrUnavailable", err)
	}
	if strings.Contains(err.Error(), "s3cr3t-pw") {
		t.Fatalf("error shows the password: %v", err)
	}
	for _, bad := range []string{"postgres://natter:s3cr3t-pw@127.0.0.1:notaport/db", "host=127.0.0.1 password=s3cr3t-pw port=x"} {
		_, err := Open(ctx, bad, Options{})
		if err == nil || strings.Contains(err.Error(), "s3cr3t-pw") {
			t.Fatalf("Open(%q) = %v, want an error that hides the password", bad, err)
		}
	}
}

func TestClassify(t *testing.T) {
	for code, want := range map[string]error{
		"23505": store.ErrConflict,
		"23503": store.ErrNotFound,
		"22021": store.ErrNotFound,
		"08006": store.ErrUnavailable, // connection failure
		"53100": store.ErrUnavailable, // disk full
		"53300": store.ErrUnavailable, // too many connections
		"57P01": store.ErrUnavailable, // admin shutdown
		"57P03": store.ErrUnavailable, // cannot connect now (starting up)
		"40001": store.ErrUnavailable, // serialization failure
		"40P01": store.ErrUnavailable, // deadlock
		"25006": store.ErrUnavailable, // read-only: a standby after failover
		"42P01": nil,                  // undefined table: a bug, not a retry
		"23502": nil,                  // not-null violation
	} {
		err := classify(fmt.Errorf("doing it: %w", &pgconn.PgError{Code: code}))
		for _, sentinel := range []error{store.ErrConflict, store.ErrNotFound, store.ErrUnavailable} {
			if errors.Is(err, sentinel) != (sentinel == want) {
				t.Errorf("classify(%s) = %v, want %v", code, err, want)
			}
		}
	}
	if err := classify(context.Canceled); errors.Is(err, store.ErrUnavailable) {
		t.Errorf("a cancelled context is not the store being unavailable: %v", err)
	}
}

// BenchmarkSaveMessages saves batches of 500 spread over 50 conversations,
// the shape of the persistence consumer's work (as store/sqlite's).
func BenchmarkSaveMessages(b *testing.B) {
	const batchSize, conversations = 500, 50
	ctx := context.Background()
	db := open(b, freshDatabase(b))
	defer db.Close()
	for c := range conversations {
		u := fmt.Sprintf("u%d", c)
		if err := db.CreateUser(ctx, store.User{ID: u, Username: u, PasswordHash: "h"}); err != nil {
			b.Fatal(err)
		}
		if err := db.EnsureDirect(ctx, fmt.Sprintf("c%d", c), u, u, 1); err != nil {
			b.Fatal(err)
		}
	}
	seq := make([]int64, conversations)
	batch := make([]store.Message, batchSize)
	for b.Loop() {
		b.StopTimer()
		for i := range batch {
			c := i % conversations
			seq[c]++
			u := fmt.Sprintf("u%d", c)
			batch[i] = store.Message{ID: fmt.Sprintf("m%d-%d", c, seq[c]), ConversationID: fmt.Sprintf("c%d", c), Seq: seq[c],
				SenderID: u, RecipientID: u, MessageType: "user", Content: "a typical short chat message, about sixty bytes long",
				ClientMessageID: fmt.Sprintf("cm%d", seq[c]), ServerTS: seq[c]}
		}
		b.StartTimer()
		if err := db.SaveMessages(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*batchSize)/b.Elapsed().Seconds(), "msgs/s")
}
