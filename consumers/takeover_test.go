package consumers

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/natter-chat/natter/natsnode/natstest"
)

// A node that dies holding a pinned consumer's first events in flight
// must not let the node taking the pin over handle the later ones first:
// the takeover resets the consumer to its ack floor and handles every
// event in stream order. Without the reset the dead node's events come
// back only after the ack wait (20 s here), behind the others.
func TestTakeoverKeepsStreamOrder(t *testing.T) {
	ctx := t.Context()
	srv := natstest.Start(t)
	_, js := srv.Connect()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}}); err != nil {
		t.Fatal(err)
	}
	const name = "pinned"
	if _, err := js.CreateConsumer(ctx, "T", jetstream.ConsumerConfig{
		Durable: name, AckPolicy: jetstream.AckExplicitPolicy, AckWait: 20 * time.Second, MaxDeliver: 5,
		PriorityPolicy: jetstream.PriorityPolicyPinned, PriorityGroups: []string{"g"}, PinnedTTL: time.Second,
	}); err != nil {
		t.Fatal(err)
	}
	const n = 10
	for i := range n {
		if _, err := js.Publish(ctx, "t.a", []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}

	// The node that dies: it takes the pin and events 1..3, then its
	// connection goes without a word.
	deadNC, deadJS := srv.Connect()
	dead, err := deadJS.Consumer(ctx, "T", name)
	if err != nil {
		t.Fatal(err)
	}
	got, err := dead.Fetch(3, jetstream.FetchPriorityGroup("g"), jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	held := 0
	for range got.Messages() {
		held++
	}
	if held != 3 {
		t.Fatalf("the dying node got %d events, want 3 (%v)", held, got.Error())
	}
	deadNC.Close()

	// The node that takes over.
	_, liveJS := srv.Connect()
	r, err := newRunnerOn(ctx, liveJS, "T", name, Options{})
	if err != nil {
		t.Fatal(err)
	}
	handled := runHandling(ctx, t, r)
	want := make([]uint64, n)
	for i := range want {
		want[i] = uint64(i + 1)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		h := handled()
		if slices.Equal(h, want) {
			return
		}
		if len(h) >= n || !increasing(h) || time.Now().After(deadline) {
			t.Fatalf("handled %v, want 1..%d once each in stream order", h, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// runHandling runs r until the test ends and returns what it has handled
// so far: the stream sequences, in the order handled.
func runHandling(ctx context.Context, t *testing.T, r *runner) (handled func() []uint64) {
	var mu sync.Mutex
	var seqs []uint64
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- r.run(runCtx, func(_ context.Context, batch []jetstream.Msg) error {
			mu.Lock()
			defer mu.Unlock()
			for _, m := range batch {
				md, err := m.Metadata()
				if err != nil {
					return err
				}
				seqs = append(seqs, md.Sequence.Stream)
			}
			return nil
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("runner: %v", err)
		}
	})
	return func() []uint64 {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(seqs)
	}
}

func increasing(s []uint64) bool {
	for i := 1; i < len(s); i++ {
		if s[i] <= s[i-1] {
			return false
		}
	}
	return true
}

// A runner that reset its consumer and lost the pin before the first
// redelivery reached it never sees delivery sequence 1: the other node
// got it. Given the pin back, it must handle what comes, not drop it
// unacked until MaxDeliver ends it (persist stalled so in a rolling
// restart). Without a pin, it stops dropping after what can have been in
// flight at the reset.
func TestDroppingAfterResetEnds(t *testing.T) {
	for _, tc := range []struct {
		name      string
		pinned    bool
		wantFirst uint64
	}{
		{"pin moved back", true, 4},
		{"no redelivery came", false, 4 + 5*2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			srv := natstest.Start(t)
			_, js := srv.Connect()
			if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}}); err != nil {
				t.Fatal(err)
			}
			const name = "c"
			cfg := jetstream.ConsumerConfig{Durable: name, AckPolicy: jetstream.AckExplicitPolicy, AckWait: time.Minute, MaxDeliver: 5}
			var fetchOpts []jetstream.FetchOpt
			if tc.pinned {
				cfg.PriorityPolicy, cfg.PriorityGroups, cfg.PinnedTTL = jetstream.PriorityPolicyPinned, []string{"g"}, time.Second
				fetchOpts = append(fetchOpts, jetstream.FetchPriorityGroup("g"))
			}
			if _, err := js.CreateConsumer(ctx, "T", cfg); err != nil {
				t.Fatal(err)
			}
			const n = 33
			for i := range n {
				if _, err := js.Publish(ctx, "t.a", []byte{byte(i)}); err != nil {
					t.Fatal(err)
				}
			}
			// Another node handles 1..3, so what comes next has delivery
			// sequences above 1.
			otherNC, otherJS := srv.Connect()
			other, err := otherJS.Consumer(ctx, "T", name)
			if err != nil {
				t.Fatal(err)
			}
			got, err := other.Fetch(3, append(fetchOpts, jetstream.FetchMaxWait(5*time.Second))...)
			if err != nil {
				t.Fatal(err)
			}
			for m := range got.Messages() {
				if err := m.DoubleAck(ctx); err != nil {
					t.Fatal(err)
				}
			}
			otherNC.Close()

			_, liveJS := srv.Connect()
			r, err := newRunnerOn(ctx, liveJS, "T", name, Options{BatchSize: 2})
			if err != nil {
				t.Fatal(err)
			}
			// As left by a reset made under a pin since moved away.
			r.afterReset = true
			if tc.pinned {
				r.resetPin = "a pin long gone"
				r.pinID.Store(r.resetPin)
			}
			handled := runHandling(ctx, t, r)
			var want []uint64
			for s := tc.wantFirst; s <= n; s++ {
				want = append(want, s)
			}
			deadline := time.Now().Add(20 * time.Second)
			for {
				h := handled()
				if slices.Equal(h, want) {
					return
				}
				if len(h) >= len(want) || time.Now().After(deadline) {
					t.Fatalf("handled %v, want %d..%d", h, tc.wantFirst, n)
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
}
