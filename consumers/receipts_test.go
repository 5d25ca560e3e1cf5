package consumers

import (
	"testing"

	"github.com/natter-chat/natter/schema"
	"github.com/natter-chat/natter/store"
)

func TestAdvance(t *testing.T) {
	type st = store.ReceiptState
	cases := []struct {
		name   string
		from   st
		status string
		seq    int64
		want   st
		moved  bool
	}{
		{"first delivered", st{}, schema.StatusDelivered, 1, st{DeliveredSeq: 1}, true},
		{"first read implies delivered", st{}, schema.StatusRead, 3, st{DeliveredSeq: 3, ReadSeq: 3}, true},
		{"delivered forward", st{DeliveredSeq: 2}, schema.StatusDelivered, 5, st{DeliveredSeq: 5}, true},
		{"delivered same seq twice", st{DeliveredSeq: 5}, schema.StatusDelivered, 5, st{DeliveredSeq: 5}, false},
		{"delivered backwards", st{DeliveredSeq: 5}, schema.StatusDelivered, 4, st{DeliveredSeq: 5}, false},
		{"read after delivered", st{DeliveredSeq: 5}, schema.StatusRead, 5, st{DeliveredSeq: 5, ReadSeq: 5}, true},
		{"read below delivered keeps delivered", st{DeliveredSeq: 9}, schema.StatusRead, 4, st{DeliveredSeq: 9, ReadSeq: 4}, true},
		{"read above delivered raises delivered", st{DeliveredSeq: 2, ReadSeq: 1}, schema.StatusRead, 7, st{DeliveredSeq: 7, ReadSeq: 7}, true},
		{"read same seq twice", st{DeliveredSeq: 7, ReadSeq: 7}, schema.StatusRead, 7, st{DeliveredSeq: 7, ReadSeq: 7}, false},
		{"read backwards", st{DeliveredSeq: 7, ReadSeq: 7}, schema.StatusRead, 3, st{DeliveredSeq: 7, ReadSeq: 7}, false},
		{"delivered after read of same seq", st{DeliveredSeq: 7, ReadSeq: 7}, schema.StatusDelivered, 7, st{DeliveredSeq: 7, ReadSeq: 7}, false},
		{"delivered after read of later seq", st{DeliveredSeq: 7, ReadSeq: 7}, schema.StatusDelivered, 6, st{DeliveredSeq: 7, ReadSeq: 7}, false},
		{"delivered beyond read", st{DeliveredSeq: 7, ReadSeq: 7}, schema.StatusDelivered, 8, st{DeliveredSeq: 8, ReadSeq: 7}, true},
		{"sent is not a status", st{DeliveredSeq: 1}, schema.StatusSent, 9, st{DeliveredSeq: 1}, false},
		{"unknown status", st{}, "seen", 9, st{}, false},
		{"seq 0 never moves", st{}, schema.StatusRead, 0, st{}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, moved := advance(tc.from, tc.status, tc.seq)
			if got != tc.want || moved != tc.moved {
				t.Fatalf("advance(%+v, %s, %d) = %+v, %v; want %+v, %v", tc.from, tc.status, tc.seq, got, moved, tc.want, tc.moved)
			}
		})
	}
}

// TestAdvanceSequences applies status streams and checks the invariants:
// state only moves forward, read <= delivered, a no-change returns the
// input, and each change is reported exactly once (one event per change).
func TestAdvanceSequences(t *testing.T) {
	type step struct {
		status string
		seq    int64
	}
	D, R := schema.StatusDelivered, schema.StatusRead
	for _, steps := range [][]step{
		{{D, 1}, {D, 1}, {R, 1}, {R, 1}, {D, 1}},
		{{R, 5}, {D, 3}, {D, 5}, {D, 6}, {R, 6}, {R, 2}},
		{{D, 3}, {D, 2}, {D, 1}, {R, 1}, {R, 2}, {R, 3}, {R, 4}},
	} {
		var s store.ReceiptState
		changes := 0
		for _, p := range steps {
			next, moved := advance(s, p.status, p.seq)
			if next.DeliveredSeq < s.DeliveredSeq || next.ReadSeq < s.ReadSeq {
				t.Fatalf("%v: moved backwards from %+v to %+v", steps, s, next)
			}
			if next.ReadSeq > next.DeliveredSeq {
				t.Fatalf("%v: read %d beyond delivered %d", steps, next.ReadSeq, next.DeliveredSeq)
			}
			if moved != (next != s) {
				t.Fatalf("%v: moved=%v but %+v -> %+v", steps, moved, s, next)
			}
			if moved {
				changes++
			}
			s = next
		}
		if changes == 0 {
			t.Fatalf("%v: nothing moved", steps)
		}
	}
}
