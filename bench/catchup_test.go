package bench

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// A catchup whose accumulation falls short (the server refuses sends, or
// drops the sender's connection) must fail, saying how many of how many
// messages were acked and which errors came, instead of timing a smaller
// replay than asked.
func TestCatchupShortAccumulation(t *testing.T) {
	for _, c := range []struct {
		name   string
		fault  func(*fakeNatter)
		events string
		want   []string
	}{{
		name:   "refused",
		fault:  func(f *fakeNatter) { f.refuseFrom = 151 },
		events: "300",
		want:   []string{"150 of 300 messages acked", "150 refused", "rate_limited 150"},
	}, {
		// The connection ends with the whole window unanswered: the
		// sender must not wait for a free slot for ever.
		name:   "hung up",
		fault:  func(f *fakeNatter) { f.hangUpFrom, f.hangUpDelay = 101, 500*time.Millisecond },
		events: "600",
		want:   []string{"100 of 600 messages acked", "256 unanswered", "244 never sent"},
	}} {
		t.Run(c.name, func(t *testing.T) {
			fake, url := startFake(t)
			fake.mu.Lock()
			c.fault(fake)
			fake.mu.Unlock()
			start := time.Now()
			_, err := runBench(t, "catchup", "--url", url, "--pairs", "1", "--events", c.events, "--drain", "300ms")
			if !errors.Is(err, errShortAccumulation) {
				t.Fatalf("Main = %v, want %v", err, errShortAccumulation)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if strings.HasSuffix(err.Error(), "errors: none") {
				t.Errorf("error %q does not point at the errors seen", err)
			}
			if d := time.Since(start); d > 20*time.Second {
				t.Errorf("took %v: the senders waited for answers that could not come", d)
			}
		})
	}
}

func TestCheckAccumulated(t *testing.T) {
	if err := checkAccumulated(Tally{Sent: 600, Acked: 600, Delivered: 600}, 600, nil); err != nil {
		t.Errorf("everything acked: %v", err)
	}
	// The run of the bug report: the connection was reset 713 sends in.
	err := checkAccumulated(Tally{Sent: 713, Acked: 465, Unacked: 248}, 10000, map[string]int64{"conn_lost": 1, "close_4029": 2})
	want := "accumulation fell short: 465 of 10000 messages acked (0 refused, 248 unanswered, 9287 never sent); errors: close_4029 2, conn_lost 1"
	if !errors.Is(err, errShortAccumulation) || err.Error() != want {
		t.Errorf("checkAccumulated = %v, want %q", err, want)
	}
	if err := checkAccumulated(Tally{Sent: 10, Acked: 9, Failed: 1}, 10, nil); err == nil || !strings.HasSuffix(err.Error(), "errors: none") {
		t.Errorf("one refused, no error counts: %v", err)
	}
}
