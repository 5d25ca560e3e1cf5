package bench

import (
	"testing"
	"time"
)

// Lost and Unacked count the messages Offered counts, the measured ones;
// the warm-up's are reported apart.
func TestLoadMessagesCountsMeasuredSet(t *testing.T) {
	l, f, _ := testFlow(t) // 10 messages, 0 and 1 warm-up
	b := &Receiver{UserID: "b"}
	now := time.Unix(2000, 0)
	for i := range 10 {
		l.Sent(f, i)
		if i == 1 || i == 9 {
			continue // unacked: 1 in the warm-up, 9 measured
		}
		l.OnAck(l.MessageID(f, i), now)
		if i == 0 || i == 5 || i == 6 {
			continue // lost: 0 in the warm-up, 5 and 6 measured
		}
		l.OnMessage(b, msg(l, f, i), now)
	}
	got := loadMessages(l, 4*time.Second, false)
	want := Messages{
		Offered: 8, Acked: 7, Delivered: 5, OfferedPerSec: 2, AckedPerSec: 1.75, DeliveredPerSec: 1.25,
		Unacked: 1, Lost: 2, WarmupUnacked: 1, WarmupLost: 1,
	}
	if *got != want {
		t.Errorf("messages = %+v\nwant       %+v", *got, want)
	}
}
