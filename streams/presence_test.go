package streams

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/natter-chat/natter/natsnode/natstest"
)

func presenceKV(t *testing.T) *PresenceKV {
	t.Helper()
	js := natstest.JetStream(t)
	ctx := context.Background()
	if _, err := js.CreateOrUpdateKeyValue(ctx, PresenceBucket(Limits{Replicas: 1})); err != nil {
		t.Fatal(err)
	}
	p, err := NewPresenceKV(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// A lease nobody renews lapses by itself, and every watcher is told; a
// renewed one stays; a dropped one ends at once.
func TestPresenceLeaseLapses(t *testing.T) {
	p := presenceKV(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	state := map[string]Lease{}
	loaded := make(chan struct{})
	var once sync.Once
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = p.WatchLeases(ctx, func(l Lease) {
			mu.Lock()
			state[l.Node] = l
			mu.Unlock()
		}, func() { once.Do(func() { close(loaded) }) })
	}()
	defer func() { cancel(); <-done }()
	<-loaded
	ttl := 2 * time.Second
	for _, n := range []string{"crashed", "kept", "dropped"} {
		if err := p.RenewLease(ctx, n, ttl); err != nil {
			t.Fatal(err)
		}
	}
	get := func(n string) (Lease, bool) {
		mu.Lock()
		defer mu.Unlock()
		l, ok := state[n]
		return l, ok
	}
	waitFor(t, 20*time.Second, "three leases alive", func() bool {
		a, _ := get("crashed")
		b, _ := get("kept")
		c, _ := get("dropped")
		return a.Alive && b.Alive && c.Alive
	})
	if err := p.DropLease(ctx, "dropped"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	stopKeep := make(chan struct{})
	keepDone := make(chan struct{})
	go func() {
		defer close(keepDone)
		tick := time.NewTicker(ttl / 3)
		defer tick.Stop()
		for {
			select {
			case <-stopKeep:
				return
			case <-tick.C:
				_ = p.RenewLease(ctx, "kept", ttl)
			}
		}
	}()
	defer func() { close(stopKeep); <-keepDone }()
	waitFor(t, 20*time.Second, "dropped lease ends", func() bool { l, _ := get("dropped"); return !l.Alive })
	waitFor(t, 20*time.Second, "unrenewed lease lapses", func() bool { l, _ := get("crashed"); return !l.Alive })
	if took := time.Since(start); took < ttl/2 {
		t.Fatalf("lease lapsed after %v, before its TTL %v", took, ttl)
	}
	if l, _ := get("kept"); !l.Alive {
		t.Fatal("a renewed lease lapsed")
	}
	// A watcher that starts later still learns of the lapse (the marker).
	later := map[string]bool{}
	lctx, lcancel := context.WithCancel(ctx)
	ldone := make(chan struct{})
	go func() {
		defer close(ldone)
		_ = p.WatchLeases(lctx, func(l Lease) { later[l.Node] = l.Alive }, lcancel)
	}()
	<-ldone
	if alive, seen := later["crashed"]; !seen || alive {
		t.Fatalf("a later watcher saw crashed=%v (seen %v), want lapsed", alive, seen)
	}
}

// Concurrent writers of one user key never lose each other's change.
func TestPresenceUpdateUserCAS(t *testing.T) {
	p := presenceKV(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			node := string(rune('a' + i))
			if err := p.UpdateUser(ctx, "u1", func(r *PresenceRecord) bool {
				if r.Nodes == nil {
					r.Nodes = map[string]int64{}
				}
				r.Nodes[node] = int64(i)
				return true
			}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	rec, rev, err := p.User(ctx, "u1")
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.Nodes) != 8 || rev == 0 {
		t.Fatalf("record %+v rev %d, want 8 nodes", rec, rev)
	}
	// An unchanged record is not written.
	if err := p.UpdateUser(ctx, "u1", func(*PresenceRecord) bool { return false }); err != nil {
		t.Fatal(err)
	}
	if _, rev2, _ := p.User(ctx, "u1"); rev2 != rev {
		t.Fatalf("revision moved from %d to %d without a change", rev, rev2)
	}
	if rec, rev, err := p.User(ctx, "nobody"); err != nil || rev != 0 || len(rec.Nodes) != 0 {
		t.Fatalf("missing key: %+v %d %v", rec, rev, err)
	}
}

func waitFor(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
