package gateway

import (
	"testing"
	"time"
)

func TestFrameQueueKeepsOrderAndBounds(t *testing.T) {
	q := newFrameQueue(2)
	if !q.push([]byte("a"), false, nil) || !q.push([]byte("b"), false, nil) {
		t.Fatal("a queue of 2 refused one of 2 frames")
	}
	if q.push([]byte("c"), false, nil) {
		t.Fatal("a full queue took a frame without waiting")
	}
	select {
	case <-q.ready:
	default:
		t.Fatal("no wakeup for the writer")
	}
	// A push that waits gets in once a take makes room.
	pushed := make(chan bool)
	go func() { pushed <- q.push([]byte("c"), true, nil) }()
	select {
	case <-pushed:
		t.Fatal("a waiting push got into a full queue")
	case <-time.After(20 * time.Millisecond):
	}
	if fs := q.take(); len(fs) != 2 || string(fs[0]) != "a" || string(fs[1]) != "b" {
		t.Fatalf("took %q, want [a b]", fs)
	}
	if !<-pushed {
		t.Fatal("the waiting push gave up")
	}
	if fs := q.take(); len(fs) != 1 || string(fs[0]) != "c" {
		t.Fatalf("took %q, want [c]", fs)
	}
	if q.len() != 0 || q.frames != nil {
		t.Fatal("an empty queue still holds its frames' array")
	}
	// A waiting push ends when the session quits.
	q.push([]byte("d"), false, nil)
	q.push([]byte("e"), false, nil)
	quit := make(chan struct{})
	go func() { pushed <- q.push([]byte("f"), true, quit) }()
	close(quit)
	if <-pushed {
		t.Fatal("a push into a full queue succeeded after quit")
	}
}
