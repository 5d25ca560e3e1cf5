package chat

import (
	"fmt"
	"github.com/natter-chat/natter/internal/syncbuf"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// fail makes n failed attempts of username from addr at now, each begun
// and left counted.
func fail(t *testing.T, g *LoginGuard, username, addr string, now time.Time, n int) {
	t.Helper()
	for i := range n {
		if err := g.Begin(username, addr, now); err != nil {
			t.Fatalf("%s from %s, failure %d: refused early: %v", username, addr, i+1, err)
		}
	}
}

// The flooding address is slowed exponentially, capped, and a success
// from it resets it.
func TestLoginGuardSlowsTheGuessingAddressExponentially(t *testing.T) {
	g := NewLoginGuard(LoginGuardConfig{On: true, MaxWait: 16 * time.Second}, nil)
	now := time.Unix(1_700_000_000, 0)
	fail(t, g, "victim", "10.0.0.66", now, 5)
	fail(t, g, "victim", "10.0.0.66", now, 1) // the 6th is let through, then waits 1 s
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 16 * time.Second}
	for i, w := range want {
		e := wantRateLimited(t, g.Begin("victim", "10.0.0.66", now))
		if got := time.Duration(e.RetryAfterMS) * time.Millisecond; got < w || got > w+2*time.Millisecond {
			t.Fatalf("wait %d: retry after %s, want %s", i+1, got, w)
		}
		// One millisecond early is still refused; on time is let through.
		wantRateLimited(t, g.Begin("victim", "10.0.0.66", now.Add(w-time.Millisecond)))
		now = now.Add(w)
		fail(t, g, "victim", "10.0.0.66", now, 1)
	}
	// Other addresses are not slowed by it.
	fail(t, g, "victim", "10.0.0.1", now, 5)
	// A success from the guessing address resets it.
	g.Succeeded("victim", "10.0.0.66", now)
	fail(t, g, "victim", "10.0.0.66", now, 5)
}

// Guessing spread over many addresses uses up the account's ceiling: then
// fresh addresses wait, and the owner still logs in from an address they
// logged in from before. Within the ceiling a fresh address logs in.
func TestLoginGuardCeilingSparesKnownAddresses(t *testing.T) {
	var logs syncbuf.Buffer
	g := NewLoginGuard(LoginGuardConfig{On: true, AccountBurst: 20, AccountPerHour: 20}, slog.New(slog.NewTextHandler(&logs, nil)))
	now := time.Unix(1_700_000_000, 0)
	g.Begin("victim", "192.0.2.1", now) // the owner's usual address
	g.Succeeded("victim", "192.0.2.1", now)

	// 15 failures from three addresses: within the ceiling, a fresh
	// address still logs in.
	for a := range 3 {
		fail(t, g, "victim", fmt.Sprintf("10.0.1.%d", a), now, 5)
	}
	if err := g.Begin("victim", "198.51.100.7", now); err != nil {
		t.Fatalf("a fresh address within the ceiling: %v", err)
	}
	g.Succeeded("victim", "198.51.100.7", now)

	// 5 more addresses: the ceiling (20) runs out at the 20th failure.
	refused := 0
	for a := range 5 {
		for range 5 {
			if g.Begin("victim", fmt.Sprintf("10.0.2.%d", a), now) != nil {
				refused++
			}
		}
	}
	if refused != 25-(20-15) {
		t.Fatalf("%d of 25 guesses from new addresses refused, want 20 (the ceiling had 5 left)", refused)
	}
	e := wantRateLimited(t, g.Begin("victim", "203.0.113.9", now))
	if e.RetryAfterMS < 170_000 || e.RetryAfterMS > 181_000 {
		t.Errorf("fresh address retry after %d ms, want about 3 min (one failure at 20/h)", e.RetryAfterMS)
	}
	// The owner's addresses are spared.
	for _, addr := range []string{"192.0.2.1", "198.51.100.7"} {
		if err := g.Begin("victim", addr, now); err != nil {
			t.Fatalf("owner's known address %s refused: %v", addr, err)
		}
		g.Succeeded("victim", addr, now)
	}
	// Another account is not touched.
	fail(t, g, "bystander", "203.0.113.9", now, 5)
	// The ceiling refills: no lockout.
	if err := g.Begin("victim", "203.0.113.9", now.Add(3*time.Minute+time.Second)); err != nil {
		t.Fatalf("fresh address after the refill: %v", err)
	}
	out := logs.String()
	if !strings.Contains(out, "ceiling reached") || !strings.Contains(out, "username=victim") || !strings.Contains(out, "login back-off") {
		t.Errorf("back-off not logged with the username:\n%s", out)
	}
}

// Unknown usernames are slowed exactly like real ones (the answer says
// nothing about existence), and Undo leaves no trace.
func TestLoginGuardUnknownUsersAndUndo(t *testing.T) {
	g := NewLoginGuard(LoginGuardConfig{On: true}, nil)
	now := time.Unix(1_700_000_000, 0)
	for _, name := range []string{"victim", "nobody_here"} {
		fail(t, g, name, "10.0.0.1", now, 6)
		wantRateLimited(t, g.Begin(name, "10.0.0.1", now))
	}
	for range 50 {
		fail(t, g, "flaky", "10.0.0.1", now, 1)
		g.Undo("flaky", "10.0.0.1", now)
	}
	fail(t, g, "flaky", "10.0.0.1", now, 6)

	off := NewLoginGuard(LoginGuardConfig{}, nil)
	fail(t, off, "victim", "10.0.0.1", now, 1000)
}

// Millions of sprayed usernames and addresses stay within MaxEntries per
// table; idle entries expire.
func TestLoginGuardMemoryIsBounded(t *testing.T) {
	g := NewLoginGuard(LoginGuardConfig{On: true, MaxEntries: 1000}, nil)
	now := time.Unix(1_700_000_000, 0)
	for i := range 200_000 {
		name := fmt.Sprintf("user%d", i)
		addr := fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)
		_ = g.Begin(name, addr, now)
		if i%3 == 0 {
			g.Succeeded(name, addr, now)
		}
	}
	_ = g.Begin(strings.Repeat("x", 1<<20), "10.0.0.1", now) // not a username: not kept
	pairs, accounts, known := g.Len()
	if pairs > 1000 || accounts > 1000 || known > 1000 {
		t.Fatalf("tables hold %d pairs, %d accounts, %d known; want at most 1000 each", pairs, accounts, known)
	}
	g.expire(now.Add(31 * 24 * time.Hour))
	if pairs, accounts, known := g.Len(); pairs+accounts+known != 0 {
		t.Fatalf("after a month idle: %d pairs, %d accounts, %d known; want none", pairs, accounts, known)
	}
}
