package sqlite

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/natter-chat/natter/store"
	"github.com/natter-chat/natter/store/storetest"
)

func open(t testing.TB, path string) *DB {
	t.Helper()
	db, err := Open(context.Background(), path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return open(t, filepath.Join(t.TempDir(), "natter.db"))
	})
}

func TestReopenKeepsData(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "natter.db")
	db := open(t, path)
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
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db = open(t, path) // migrations must not run twice
	defer db.Close()
	if got, err := db.Message(ctx, "c1", 1); err != nil || got != want {
		t.Fatalf("after reopen: %+v, %v; want %+v", got, err, want)
	}
	if u, err := db.UserByUsername(ctx, "alice"); err != nil || u.ID != "u1" {
		t.Fatalf("after reopen: user %+v, %v", u, err)
	}
	var applied int
	if err := db.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM schema_migrations`).Scan(&applied); err != nil || applied == 0 {
		t.Fatalf("schema_migrations has %d rows (%v)", applied, err)
	}
}

func TestOpenOptions(t *testing.T) {
	ctx := t.Context()
	for mode, want := range map[string]int{"": 1, "interval": 1, "always": 2} {
		db, err := Open(ctx, filepath.Join(t.TempDir(), "natter.db"), Options{Fsync: mode})
		if err != nil {
			t.Fatal(err)
		}
		var sync int
		var journal string
		if err := db.w.QueryRowContext(ctx, `PRAGMA synchronous`).Scan(&sync); err != nil {
			t.Fatal(err)
		}
		if err := db.r.QueryRowContext(ctx, `PRAGMA journal_mode`).Scan(&journal); err != nil {
			t.Fatal(err)
		}
		db.Close()
		if sync != want || journal != "wal" {
			t.Errorf("fsync %q: synchronous=%d journal_mode=%s, want %d and wal", mode, sync, journal, want)
		}
	}
	if _, err := Open(ctx, filepath.Join(t.TempDir(), "natter.db"), Options{Fsync: "never"}); err == nil {
		t.Error("unknown fsync mode accepted")
	}
}

func TestNewerSchemaRefused(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "natter.db")
	db := open(t, path)
	if _, err := db.w.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (9999, 'future', 0)`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if db, err := Open(ctx, path, Options{}); err == nil {
		db.Close()
		t.Fatal("opened a database with a newer schema")
	}
}

func BenchmarkSaveMessages(b *testing.B) {
	for _, fsync := range []string{"interval", "always"} {
		// 500 over 50 conversations: a consumer far behind; 32 over 1,000:
		// the batches of 5,000 msg/s on 1,000 pairs with a 10 ms linger.
		for _, shape := range [][2]int{{500, 50}, {32, 1000}} {
			b.Run(fmt.Sprintf("fsync=%s/batch=%d/conversations=%d", fsync, shape[0], shape[1]), func(b *testing.B) {
				benchmarkSaveMessages(b, fsync, shape[0], shape[1])
			})
		}
	}
}

// benchmarkSaveMessages saves batches of batchSize spread over
// conversations, the shape of the persistence consumer's work, under a
// cancellable context as the consumer's is.
func benchmarkSaveMessages(b *testing.B, fsync string, batchSize, conversations int) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	db, err := Open(ctx, filepath.Join(b.TempDir(), "natter.db"), Options{Fsync: fsync})
	if err != nil {
		b.Fatal(err)
	}
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
	next := 0
	for b.Loop() {
		b.StopTimer()
		for i := range batch {
			c := next % conversations
			next++
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
