package chat

import (
	"fmt"
	"testing"
	"time"

	"github.com/natter-chat/natter/schema"
)

func TestLoginBackoffGrowsIsBoundedAndResets(t *testing.T) {
	b := NewLoginBackoff(true)
	now := time.Unix(1_000_000, 0)
	for i := 0; i < 5; i++ {
		if err := b.Check("alice", now); err != nil {
			t.Fatalf("failure %d: %v, want free", i, err)
		}
		b.Failed("alice", now)
	}
	if err := b.Check("alice", now); err != nil {
		t.Fatalf("after 5 failures: %v, want free", err)
	}
	b.Failed("alice", now) // 6th: 1 s
	err := b.Check("alice", now)
	e, ok := err.(*schema.Error)
	if !ok || e.RetryAfterMS < 1000 || e.RetryAfterMS > 1001 {
		t.Fatalf("after 6 failures: %v, want 429 retry after 1 s", err)
	}
	if err := b.Check("alice", now.Add(time.Second)); err != nil {
		t.Fatalf("after the back-off: %v, want free", err)
	}
	b.Failed("alice", now) // 7th: 2 s
	if err := b.Check("alice", now.Add(1500*time.Millisecond)); err == nil {
		t.Fatal("7th failure: free after 1.5 s, want 2 s")
	}
	for i := 0; i < 50; i++ {
		b.Failed("alice", now)
	}
	if err := b.Check("alice", now.Add(5*time.Minute)); err != nil {
		t.Fatalf("after 57 failures: still waiting past 5 min: %v", err)
	}
	if err := b.Check("bob", now); err != nil {
		t.Fatalf("another account: %v", err)
	}
	b.Succeeded("alice")
	if err := b.Check("alice", now); err != nil {
		t.Fatalf("after a success: %v", err)
	}
	if err := NewLoginBackoff(false).Check("alice", now); err != nil {
		t.Fatal(err)
	}
	b.entries = 1000
	for i := 0; i < 10_000; i++ {
		b.Failed(fmt.Sprint("spray", i), now)
	}
	if len(b.failures) > 1000 {
		t.Fatalf("%d entries, want at most 1000", len(b.failures))
	}
}
