package gateway

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Calls run in order for one caller, and a call that blocks never holds
// up another caller: the pool grows instead.
func TestStackPoolNeverMakesACallerWait(t *testing.T) {
	p := newStackPool()
	release := make(chan struct{})
	var blocked sync.WaitGroup
	for range 3 {
		blocked.Add(1)
		go p.run(func() {
			blocked.Done()
			<-release // a client that does not read its answers
		})
	}
	blocked.Wait()
	var n atomic.Int32
	done := make(chan struct{})
	go func() {
		for range 100 {
			p.run(func() { n.Add(1) })
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("calls waited behind blocked ones: %d of 100 ran", n.Load())
	}
	close(release)
	if n.Load() != 100 {
		t.Fatalf("%d of 100 calls ran", n.Load())
	}
}

func TestStackPoolRunsOnAnotherGoroutineAndWaits(t *testing.T) {
	p := newStackPool()
	var order []int
	for i := range 5 {
		p.run(func() {
			time.Sleep(time.Millisecond)
			order = append(order, i) // no race: run returns after f
		})
	}
	for i, v := range order {
		if v != i {
			t.Fatalf("calls ran out of order: %v", order)
		}
	}
	if len(order) != 5 {
		t.Fatalf("%d of 5 calls ran before run returned", len(order))
	}
}

// Run owns the workers: when its ctx ends they exit, and a later call
// still runs (on the caller's goroutine).
func TestStackPoolRunStopsWorkers(t *testing.T) {
	p := newStackPool()
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { _ = p.Run(ctx); close(stopped) }()
	for range 3 {
		p.run(func() {})
	}
	cancel()
	select {
	case <-stopped:
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return after cancel: workers still alive")
	}
	ran := false
	p.run(func() { ran = true })
	if !ran {
		t.Fatal("a call after Run returned did not run")
	}
}
