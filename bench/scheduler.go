package bench

import (
	"context"
	"math"
	"time"
)

// Schedule is an open-loop send schedule: send i (0 <= i < Count) is due
// at Start + i*Interval, whatever became of the sends before it. Latency is
// measured from the due time, so a server that stalls shows as latency
// instead of as fewer sends: the bench does not coordinate with the system
// it measures (no coordinated omission).
type Schedule struct {
	Start    time.Time
	Interval time.Duration
	Count    int
}

// NewSchedule returns the schedule of rate sends per second from start for
// d: rate×d sends (rounded up), the last one due before start+d.
func NewSchedule(start time.Time, rate float64, d time.Duration) Schedule {
	iv := max(time.Duration(float64(time.Second)/rate), 1)
	// The epsilon keeps 3/s for 1s at 3 sends despite float rounding.
	n := int(math.Ceil(rate*d.Seconds() - 1e-9))
	return Schedule{Start: start, Interval: iv, Count: max(n, 0)}
}

// At is when send i is due.
func (s Schedule) At(i int) time.Time {
	return s.Start.Add(time.Duration(i) * s.Interval)
}

// IndexAt is the first send due at or after t, in [0, Count].
func (s Schedule) IndexAt(t time.Time) int {
	d := t.Sub(s.Start)
	if d <= 0 {
		return 0
	}
	return min(int((d+s.Interval-1)/s.Interval), s.Count)
}

// End is when the schedule's last send is due plus one interval.
func (s Schedule) End() time.Time { return s.At(s.Count) }

// Run calls send(ctx, i, due) for every send of s, in order, each as soon
// as it is due and never before. It never waits for an answer; a send call
// that returns late does not move the sends after it, which are then
// overdue and made at once, each with its own due time. Run returns nil
// once every send was made, ctx's error if it ends first, or the first
// error of send.
func (s Schedule) Run(ctx context.Context, clk clock, send func(ctx context.Context, i int, due time.Time) error) error {
	for i := range s.Count {
		due := s.At(i)
		if err := clk.SleepUntil(ctx, due); err != nil {
			return err
		}
		if err := send(ctx, i, due); err != nil {
			return err
		}
	}
	return nil
}

// clock is the time source of the scheduler; tests substitute a fake.
type clock interface {
	Now() time.Time
	// SleepUntil returns nil once t has come, or ctx's error if ctx ends
	// first.
	SleepUntil(ctx context.Context, t time.Time) error
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) SleepUntil(ctx context.Context, t time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err()
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
