package chat

import (
	"fmt"
	"testing"
)

func TestSeenIDsAnswersMaybeUntilLoaded(t *testing.T) {
	s := newSeenIDs()
	if !s.mayHave("u1", "never-added") {
		t.Fatal("an unloaded filter said an id was surely new: it must answer maybe until it holds the store's ids")
	}
}

func TestSeenIDsHasEveryAddedIDAcrossLayers(t *testing.T) {
	s := newSeenIDs()
	s.capacity = 100 // force several layers
	s.ready.Store(true)
	const n = 1000
	for i := range n {
		s.add(fmt.Sprintf("user%d", i%7), fmt.Sprintf("cmid-%d", i))
	}
	if len(s.layers) < 3 {
		t.Fatalf("%d layers after %d adds at capacity 100, want the filter to grow", len(s.layers), n)
	}
	for i := range n {
		if !s.mayHave(fmt.Sprintf("user%d", i%7), fmt.Sprintf("cmid-%d", i)) {
			t.Fatalf("added id %d reported as new: a retry would create a second message", i)
		}
	}
	// The same client_message_id from another sender is another key, and
	// the sender/id boundary is part of the key.
	falsePositives := 0
	for i := range n {
		if s.mayHave(fmt.Sprintf("other%d", i), fmt.Sprintf("cmid-%d", i)) {
			falsePositives++
		}
	}
	if s.mayHave("user1c", "mid-1") {
		falsePositives++
	}
	if falsePositives > n/20 {
		t.Errorf("%d of %d never-added ids reported as maybe: the filter saves nothing", falsePositives, n)
	}
}
