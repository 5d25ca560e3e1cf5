package bench

import (
	"context"
	"errors"
	"testing"
	"time"
)

// fakeClock is a clock whose time moves only when something sleeps on it
// or advances it: the scheduler runs instantly and deterministically.
type fakeClock struct{ now time.Time }

func (c *fakeClock) Now() time.Time { return c.now }

func (c *fakeClock) SleepUntil(ctx context.Context, t time.Time) error {
	if t.After(c.now) {
		c.now = t
	}
	return ctx.Err()
}

type sendRecord struct {
	i       int
	due, at time.Time
}

func TestNewSchedule(t *testing.T) {
	start := time.Unix(1000, 0)
	for _, c := range []struct {
		rate  float64
		d     time.Duration
		count int
		iv    time.Duration
	}{
		{100, time.Second, 100, 10 * time.Millisecond},
		{3, time.Second, 3, 333333333},
		{20, 2500 * time.Millisecond, 50, 50 * time.Millisecond},
		{0.5, time.Second, 1, 2 * time.Second},
	} {
		s := NewSchedule(start, c.rate, c.d)
		if s.Count != c.count || s.Interval != c.iv {
			t.Errorf("NewSchedule(%v/s, %v) = %d sends every %v, want %d every %v", c.rate, c.d, s.Count, s.Interval, c.count, c.iv)
		}
		if last := s.At(s.Count - 1); !last.Before(start.Add(c.d)) && c.count > 1 {
			t.Errorf("NewSchedule(%v/s, %v): last send due at %v, after the end", c.rate, c.d, last.Sub(start))
		}
	}
}

func TestScheduleIndexAt(t *testing.T) {
	start := time.Unix(1000, 0)
	s := Schedule{Start: start, Interval: 10 * time.Millisecond, Count: 100}
	for _, c := range []struct {
		at   time.Duration
		want int
	}{{-time.Second, 0}, {0, 0}, {time.Millisecond, 1}, {10 * time.Millisecond, 1}, {11 * time.Millisecond, 2}, {time.Hour, 100}} {
		if got := s.IndexAt(start.Add(c.at)); got != c.want {
			t.Errorf("IndexAt(start%+v) = %d, want %d", c.at, got, c.want)
		}
	}
}

func TestScheduleRunsAtFixedIntervals(t *testing.T) {
	clk := &fakeClock{now: time.Unix(1000, 0)}
	s := NewSchedule(clk.now.Add(time.Second), 100, time.Second)
	var got []sendRecord
	err := s.Run(context.Background(), clk, func(_ context.Context, i int, due time.Time) error {
		got = append(got, sendRecord{i, due, clk.Now()})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 100 {
		t.Fatalf("%d sends, want 100", len(got))
	}
	for k, r := range got {
		want := s.Start.Add(time.Duration(k) * 10 * time.Millisecond)
		if r.i != k || !r.due.Equal(want) || !r.at.Equal(want) {
			t.Fatalf("send %d: index %d due %v sent %v, want due and sent at %v", k, r.i, r.due, r.at, want)
		}
	}
}

// A stall (the send call blocking, as a full connection does) must neither
// drop sends nor move the ones after it: they go out late, at once, each
// with its own due time, and the lateness is latency.
func TestScheduleStallIsLatencyNotFewerSends(t *testing.T) {
	clk := &fakeClock{now: time.Unix(1000, 0)}
	s := NewSchedule(clk.now, 100, time.Second) // every 10 ms
	const stall = 500 * time.Millisecond
	var got []sendRecord
	err := s.Run(context.Background(), clk, func(_ context.Context, i int, due time.Time) error {
		got = append(got, sendRecord{i, due, clk.Now()})
		if i == 10 {
			clk.now = clk.now.Add(stall) // this send blocks for 500 ms
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 100 {
		t.Fatalf("%d sends after a stall, want all 100", len(got))
	}
	stallEnd := s.At(10).Add(stall) // 600 ms after start
	for _, r := range got {
		if !r.due.Equal(s.At(r.i)) {
			t.Fatalf("send %d due %v, want its scheduled %v", r.i, r.due, s.At(r.i))
		}
		late := r.at.Sub(r.due)
		switch {
		case r.i <= 10 || r.i >= 60: // before the stall, and caught up after it
			if late != 0 {
				t.Errorf("send %d is %v late, want on time", r.i, late)
			}
		default: // due during the stall: sent when it ended
			if !r.at.Equal(stallEnd) || late != stallEnd.Sub(s.At(r.i)) {
				t.Errorf("send %d sent %v after start (%v late), want at the stall's end", r.i, r.at.Sub(s.Start), late)
			}
		}
	}
	// The first send after the stall waited nearly the whole stall.
	if late := got[11].at.Sub(got[11].due); late != stall-10*time.Millisecond {
		t.Errorf("send 11 latency = %v, want %v", late, stall-10*time.Millisecond)
	}
}

func TestScheduleStallRealClock(t *testing.T) {
	s := NewSchedule(time.Now(), 1000, 200*time.Millisecond)
	var n int
	var worst time.Duration
	err := s.Run(context.Background(), realClock{}, func(_ context.Context, i int, due time.Time) error {
		n++
		worst = max(worst, time.Since(due))
		if i == 20 {
			time.Sleep(50 * time.Millisecond)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != 200 {
		t.Fatalf("%d sends, want 200", n)
	}
	if worst < 40*time.Millisecond {
		t.Errorf("worst lateness %v: the 50 ms stall should show as latency", worst)
	}
}

func TestScheduleStops(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	clk := &fakeClock{now: time.Unix(1000, 0)}
	s := NewSchedule(clk.now, 100, time.Second)
	var n int
	err := s.Run(ctx, clk, func(context.Context, int, time.Time) error {
		if n++; n == 5 {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) || n != 5 {
		t.Fatalf("after cancel: err %v after %d sends, want context.Canceled after 5", err, n)
	}
	boom := errors.New("boom")
	n = 0
	err = s.Run(context.Background(), clk, func(context.Context, int, time.Time) error {
		n++
		return boom
	})
	if !errors.Is(err, boom) || n != 1 {
		t.Fatalf("failing send: err %v after %d sends, want boom after 1", err, n)
	}
}
