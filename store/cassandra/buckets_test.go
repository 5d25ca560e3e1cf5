package cassandra

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/natter-chat/natter/store"
)

func save(t *testing.T, db *DB, msgs ...store.Message) {
	t.Helper()
	if err := db.SaveMessages(t.Context(), msgs); err != nil {
		t.Fatal(err)
	}
}

func message(conv string, seq int64, sender string) store.Message {
	return store.Message{ID: fmt.Sprintf("m%d", seq), ConversationID: conv, Seq: seq, SenderID: sender,
		MessageType: store.ConversationDirect, Content: fmt.Sprintf("#%d", seq), ClientMessageID: fmt.Sprintf("c%d", seq), ServerTS: seq}
}

// TestAcrossBuckets uses buckets of 10 seqs so that history pages, the
// last seq and the unread count all have to cross partitions.
func TestAcrossBuckets(t *testing.T) {
	db := openFresh(t, Options{bucketSize: 10})
	ctx := t.Context()
	if err := db.EnsureDirect(ctx, "c1", "a", "b", 1); err != nil {
		t.Fatal(err)
	}
	// 1..35, in batches that straddle buckets, saved out of order, with a
	// replay of an old batch at the end.
	var batches [][]store.Message
	for lo := int64(1); lo <= 35; lo += 7 {
		var b []store.Message
		for seq := lo; seq < lo+7 && seq <= 35; seq++ {
			sender := "a"
			if seq%3 == 0 {
				sender = "b"
			}
			b = append(b, message("c1", seq, sender))
		}
		batches = append(batches, b)
	}
	for _, i := range []int{1, 0, 3, 2, 4, 1} {
		save(t, db, batches[i]...)
	}

	last, err := db.LastSeq(ctx, "c1")
	if err != nil || last != 35 {
		t.Fatalf("LastSeq = %d, %v; want 35", last, err)
	}
	var got []int64
	before := int64(0)
	for range 20 {
		page, err := db.History(ctx, "c1", "a", before, 4)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		for _, h := range page {
			got = append(got, h.Seq)
		}
		before = page[len(page)-1].Seq
	}
	var want []int64
	for seq := int64(35); seq >= 1; seq-- {
		want = append(want, seq)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("paged history = %v, want %v", got, want)
	}
	if page, err := db.History(ctx, "c1", "a", 1<<60, 3); err != nil || len(page) != 3 || page[0].Seq != 35 {
		t.Fatalf("history before a far-off seq = %v, %v; want 35, 34, 33", page, err)
	}

	// b read up to 8: its unread tail 9..35 spans buckets 0..3, 27
	// messages of which its own 9 (9, 12, ..., 33) do not count.
	if err := db.AdvanceReceipt(ctx, "c1", "b", store.ReceiptState{ReadSeq: 8}); err != nil {
		t.Fatal(err)
	}
	c, err := db.Conversation(ctx, "c1", "b")
	if err != nil {
		t.Fatal(err)
	}
	if c.UnreadCount != 27-9 || c.LastSeq != 35 || c.LastMessagePreview != "#35" {
		t.Fatalf("b's view = %+v, want unread 18, last seq 35", c)
	}
}

// TestUnreachable: a cluster that does not answer is ErrUnavailable,
// which callers retry, not some other error.
func TestUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	_, err = Open(ctx, Options{Hosts: []string{addr}, Timeout: time.Second})
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Open of a closed port = %v, want ErrUnavailable", err)
	}
}

// TestReopen: migrations are recorded and not applied twice; data stays.
func TestReopen(t *testing.T) {
	db := openFresh(t, Options{})
	ctx := t.Context()
	if err := db.EnsureDirect(ctx, "c1", "a", "a", 1); err != nil {
		t.Fatal(err)
	}
	save(t, db, message("c1", 1, "a"))
	again, err := Open(ctx, Options{Hosts: testHosts(t), Keyspace: db.keyspace})
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if m, err := again.Message(ctx, "c1", 1); err != nil || m.Content != "#1" {
		t.Fatalf("after reopen: %+v, %v", m, err)
	}
	ms, err := loadMigrations()
	if err != nil {
		t.Fatal(err)
	}
	var applied int
	if err := again.s.Query(`SELECT COUNT(*) FROM schema_migrations`).Scan(&applied); err != nil || applied != len(ms) {
		t.Fatalf("schema_migrations has %d rows (%v), want %d", applied, err, len(ms))
	}
}
