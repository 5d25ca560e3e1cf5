package bench

import (
	"math"
	"sync"
	"testing"
	"time"
)

// near reports whether got is within the histogram's precision (0.1%, and
// one microsecond) of want, both in milliseconds.
func near(got, want float64) bool {
	return math.Abs(got-want) <= want*0.001+0.001
}

func TestRecorderPercentiles(t *testing.T) {
	r := NewRecorder()
	// 1..10000 µs, once each: the p-th percentile is p% of 10 ms.
	for us := 1; us <= 10000; us++ {
		r.Record(time.Duration(us) * time.Microsecond)
	}
	l := r.Summary()
	if l.Count != 10000 {
		t.Fatalf("count = %d, want 10000", l.Count)
	}
	for _, c := range []struct {
		name      string
		got, want float64
	}{
		{"p50", l.P50, 5}, {"p90", l.P90, 9}, {"p99", l.P99, 9.9}, {"p99.9", l.P999, 9.99}, {"mean", l.Mean, 5.0005},
	} {
		if !near(c.got, c.want) {
			t.Errorf("%s = %v ms, want %v ms (±0.1%%)", c.name, c.got, c.want)
		}
	}
	if l.Max != 10 {
		t.Errorf("max = %v ms, want exactly 10", l.Max)
	}
}

func TestRecorderTail(t *testing.T) {
	// 990 fast and 10 slow: p99 is still fast, p99.9 and max are slow.
	r := NewRecorder()
	for range 990 {
		r.Record(time.Millisecond)
	}
	for range 10 {
		r.Record(2 * time.Second)
	}
	l := r.Summary()
	if !near(l.P99, 1) || !near(l.P999, 2000) || l.Max != 2000 {
		t.Errorf("p99 %v p99.9 %v max %v, want 1, 2000, 2000 ms", l.P99, l.P999, l.Max)
	}
}

func TestRecorderOutOfRange(t *testing.T) {
	r := NewRecorder()
	r.Record(-time.Second)  // counts as 0
	r.Record(3 * time.Hour) // beyond the histogram: clamped, max exact
	l := r.Summary()
	if l.Count != 2 {
		t.Fatalf("count = %d, want 2", l.Count)
	}
	if l.Max != float64(3*time.Hour/time.Millisecond) {
		t.Errorf("max = %v ms, want 3 h exactly", l.Max)
	}
	if l.P50 != 0 {
		t.Errorf("p50 = %v, want 0 (the negative latency)", l.P50)
	}
	if !near(l.P999, float64(time.Hour/time.Millisecond)) {
		t.Errorf("p99.9 = %v ms, want the 1 h ceiling", l.P999)
	}
}

func TestRecorderEmpty(t *testing.T) {
	if l := NewRecorder().Summary(); l != (Latency{}) {
		t.Errorf("empty summary = %+v, want zero", l)
	}
}

func TestRecorderWindow(t *testing.T) {
	r := NewRecorder()
	r.Record(time.Millisecond)
	r.Record(3 * time.Millisecond)
	if w := r.TakeWindow(); w.Count != 2 || !near(w.Max, 3) {
		t.Fatalf("first window = %+v, want 2 values up to 3 ms", w)
	}
	r.Record(7 * time.Millisecond)
	if w := r.TakeWindow(); w.Count != 1 || !near(w.P99, 7) {
		t.Fatalf("second window = %+v, want only the 7 ms", w)
	}
	if w := r.TakeWindow(); w.Count != 0 {
		t.Fatalf("third window = %+v, want empty", w)
	}
	if l := r.Summary(); l.Count != 3 || l.Max != 7 {
		t.Fatalf("total = %+v, want all 3 values", l)
	}
}

func TestRecorderConcurrent(t *testing.T) {
	r := NewRecorder()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 1000 {
				r.Record(time.Duration(g*1000+i) * time.Microsecond)
				if i%100 == 0 {
					r.TakeWindow()
				}
			}
		})
	}
	wg.Wait()
	if l := r.Summary(); l.Count != 8000 {
		t.Fatalf("count = %d, want 8000", l.Count)
	}
}

func TestErrorCounts(t *testing.T) {
	var e ErrorCounts
	if e.Snapshot() != nil || e.Total() != 0 {
		t.Fatal("zero ErrorCounts is not empty")
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 100 {
				e.Add("rate_limited")
			}
			e.Add("close_4029")
		})
	}
	wg.Wait()
	s := e.Snapshot()
	if s["rate_limited"] != 400 || s["close_4029"] != 4 || e.Total() != 404 {
		t.Fatalf("counts = %v, total %d", s, e.Total())
	}
	s["rate_limited"] = 0
	if e.Snapshot()["rate_limited"] != 400 {
		t.Fatal("Snapshot is not a copy")
	}
}
