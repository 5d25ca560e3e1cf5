package chat

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/natter-chat/natter/schema"
)

func wantRateLimited(t *testing.T, err error) *schema.Error {
	t.Helper()
	var e *schema.Error
	if !errors.As(err, &e) {
		t.Fatalf("want a 429 *schema.Error, got %T %v", err, err)
	}
	if e.Code != schema.CodeRateLimited {
		t.Fatalf("want rate_limited, got %s", e.Code)
	}
	if e.RetryAfterMS <= 0 {
		t.Fatalf("RetryAfterMS %d, want > 0", e.RetryAfterMS)
	}
	return e
}

func TestLimiterBurstThenRefusal(t *testing.T) {
	l := NewLimiter(true, 1, 3) // 3 at once, then one per second
	for i := range 3 {
		if err := l.Allow("u1"); err != nil {
			t.Fatalf("call %d within the burst: %v", i+1, err)
		}
	}
	e := wantRateLimited(t, l.Allow("u1"))
	if e.RetryAfterMS > 1001 || e.RetryAfterMS < 900 {
		t.Errorf("RetryAfterMS %d, want about 1000 at 1/s", e.RetryAfterMS)
	}
}

func TestLimiterPerKeyIndependence(t *testing.T) {
	l := NewLimiter(true, 0.001, 2)
	for range 2 {
		if err := l.Allow("a"); err != nil {
			t.Fatal(err)
		}
	}
	wantRateLimited(t, l.Allow("a"))
	for _, k := range []string{"b", "", "A", "a "} {
		if err := l.Allow(k); err != nil {
			t.Errorf("key %q limited by key a: %v", k, err)
		}
	}
	wantRateLimited(t, l.Allow("a"))
}

func TestLimiterOffAllowsEverything(t *testing.T) {
	l := NewLimiter(false, 0.001, 1)
	for i := range 10000 {
		if err := l.Allow("u1"); err != nil {
			t.Fatalf("call %d with limits off: %v", i, err)
		}
	}
	if len(l.buckets) != 0 {
		t.Errorf("limits off still keeps %d buckets", len(l.buckets))
	}
}

func TestLimiterRefusalsDoNotConsume(t *testing.T) {
	// A refused request "changes nothing": hammering a limited key must
	// not push its next allowed time further out.
	l := NewLimiter(true, 20, 1) // one token every 50 ms
	if err := l.Allow("u1"); err != nil {
		t.Fatal(err)
	}
	first := wantRateLimited(t, l.Allow("u1"))
	for range 100 {
		e := wantRateLimited(t, l.Allow("u1"))
		if e.RetryAfterMS > first.RetryAfterMS {
			t.Fatalf("RetryAfterMS grew from %d to %d: refusals consume tokens", first.RetryAfterMS, e.RetryAfterMS)
		}
	}
	if first.RetryAfterMS > 51 {
		t.Errorf("RetryAfterMS %d, want at most 51 at 20/s", first.RetryAfterMS)
	}
	// Waiting as told is enough.
	time.Sleep(time.Duration(first.RetryAfterMS) * time.Millisecond)
	if err := l.Allow("u1"); err != nil {
		t.Fatalf("after waiting RetryAfterMS: %v", err)
	}
}

func TestLimiterConcurrentBurst(t *testing.T) {
	const burst = 50
	l := NewLimiter(true, 0.001, burst)
	var ok, limited atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				if err := l.Allow("u1"); err == nil {
					ok.Add(1)
				} else {
					limited.Add(1)
				}
				_ = l.Allow("other")
			}
		})
	}
	wg.Wait()
	if ok.Load() != burst || limited.Load() != 800-burst {
		t.Fatalf("%d allowed, %d limited; want exactly %d allowed", ok.Load(), limited.Load(), burst)
	}
}

func TestLimiterSweepStops(t *testing.T) {
	l := NewLimiter(true, 1, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = l.Run(ctx); close(done) }()
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("sweep did not return after cancel")
	}
}

func TestLimitsPerKindAndOff(t *testing.T) {
	l := NewLimits(true)
	for i := range limitDefaults[LimitTyping].burst {
		if err := l.Allow(LimitTyping, "u1"); err != nil {
			t.Fatalf("typing %d within the burst: %v", i+1, err)
		}
	}
	wantRateLimited(t, l.Allow(LimitTyping, "u1"))
	// Other kinds and other users keep their own budget.
	for _, kind := range []string{LimitReceipt, LimitDelete, LimitPresence, LimitPing} {
		if err := l.Allow(kind, "u1"); err != nil {
			t.Errorf("%s limited by typing: %v", kind, err)
		}
	}
	if err := l.Allow(LimitTyping, "u2"); err != nil {
		t.Errorf("u2 limited by u1: %v", err)
	}
	off := NewLimits(false)
	for i := range 10000 {
		if err := off.Allow(LimitPing, "u1"); err != nil {
			t.Fatalf("ping %d with limits off: %v", i, err)
		}
	}
	var none *Limits
	if err := none.Allow(LimitPing, "u1"); err != nil {
		t.Fatalf("nil Limits: %v", err)
	}
}

func TestTypingGate(t *testing.T) {
	var g typingGate
	now := time.Unix(1000, 0)
	if !g.forward("u", "c", "composing", now) {
		t.Fatal("first composing not forwarded")
	}
	if g.forward("u", "c", "composing", now.Add(typingRefresh-time.Millisecond)) {
		t.Fatal("repeat within the window forwarded")
	}
	if !g.forward("u", "c2", "composing", now) || !g.forward("u2", "c", "composing", now) {
		t.Fatal("another conversation or user coalesced with the first")
	}
	if !g.forward("u", "c", "composing", now.Add(typingRefresh)) {
		t.Fatal("refresh after the window not forwarded")
	}
	if !g.forward("u", "c", "paused", now.Add(typingRefresh)) || !g.forward("u", "c", "composing", now.Add(typingRefresh)) {
		t.Fatal("paused, or the composing right after it, not forwarded")
	}
}
