package bench

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

// loadSender is one open-loop sender of a message load: it sends the
// messages of flow to recipientID (a user, or a group) over conn.
type loadSender struct {
	conn        *Conn
	flow        *Flow
	recipientID string
	messageType string // "user" or "group"
}

// loadPlan is the timing of a load: every sender starts within one send
// interval after Start (spread so that they do not send in bursts), the
// measured window is [MeasureFrom, End).
type loadPlan struct {
	Start, MeasureFrom, End time.Time
	Scheds                  []Schedule
}

// planLoad plans n senders at rate each, for warmup then duration, starting
// after a short delay that lets every sender goroutine start on time.
func planLoad(n int, rate float64, warmup, duration time.Duration) loadPlan {
	start := time.Now().Add(500 * time.Millisecond)
	p := loadPlan{Start: start, MeasureFrom: start.Add(warmup), End: start.Add(warmup + duration)}
	iv := NewSchedule(start, rate, warmup+duration).Interval
	for i := range n {
		p.Scheds = append(p.Scheds, NewSchedule(start.Add(iv*time.Duration(i)/time.Duration(n)), rate, warmup+duration))
	}
	return p
}

// measureFrom is the first message of sched in the measured window.
func (p loadPlan) measureFrom(sched Schedule) int { return sched.IndexAt(p.MeasureFrom) }

// runLoad sends every sender's flow on its schedule, then waits up to
// --drain for outstanding acks and deliveries, and fills r with what l
// accounted. A sender whose connection ends stops; the message it was
// sending counts as unacked, the ones after it as never offered.
func (e *env) runLoad(ctx context.Context, l *Ledger, senders []loadSender, p loadPlan, r *Report) error {
	content := contentOf(e.cfg.Size)
	server, self := e.watchServer(), e.watchSelf()
	loadStart, haveStart := server.now()
	stop := e.progress(ctx, loadProgress(r.Scenario, l, p, server))
	defer stop()

	var wg sync.WaitGroup
	for _, s := range senders {
		wg.Go(func() {
			err := s.flow.Schedule().Run(ctx, realClock{}, func(ctx context.Context, i int, due time.Time) error {
				frame := sendFrame(l.MessageID(s.flow, i), s.recipientID, s.messageType, content, due.UnixMilli())
				l.Sent(s.flow, i)
				return s.conn.Send(ctx, frame)
			})
			if err != nil && !errors.Is(err, errConnClosed) && ctx.Err() == nil {
				e.log.Error("sender stopped", "err", err)
			}
		})
	}

	if err := (realClock{}).SleepUntil(ctx, p.MeasureFrom); err == nil {
		server.restart()
		self.restart()
	}
	wg.Wait()
	// Each sender's last message is due before End, and was sent late if
	// the sender fell behind; the window ends when the load does.
	loadEnd := time.Now()
	r.Server, r.Bench = server.stats(), self.stats()
	if err := ctx.Err(); err != nil {
		return err
	}
	window := max(loadEnd.Sub(p.MeasureFrom), p.End.Sub(p.MeasureFrom))

	if err := waitFor(ctx, e.cfg.Drain, l.Settled); err != nil {
		return err
	}
	settled := l.Settled()
	if !settled {
		all := l.Tally(nil, false)
		e.log.Warn("drain timed out: lost may count late deliveries (raise --drain)",
			"drain", e.cfg.Drain, "unacked", all.Unacked, "undelivered", all.Lost)
	}
	r.Seconds = window.Seconds()
	r.Messages = loadMessages(l, window, settled)
	if r.Server != nil && r.Messages.DeliveredPerSec > 0 {
		r.Messages.ServerCPUPerDeliveryUS = r.Server.CPUPercent / 100 * 1e6 / r.Messages.DeliveredPerSec
	}
	// Over the whole load, warm-up to drained, the server's CPU covers
	// exactly the work of the run's deliveries, however far behind it
	// fell: the figure that stays comparable on a busy machine.
	if end, ok := server.now(); ok && haveStart && settled {
		if all := l.Tally(nil, false); all.Delivered > 0 {
			r.Messages.ServerCPUPerDeliveryWholeUS = float64((end.CPU - loadStart.CPU).Microseconds()) / float64(all.Delivered)
		}
	}
	r.Latency.SendToAck = new(l.Ack.Summary())
	r.Latency.SendToDelivery = new(l.Delivery.Summary())
	r.Errors = e.errs.Snapshot()
	if n := l.Unknown(); n > 0 {
		e.log.Warn("frames about messages not of this run", "count", n)
	}
	return nil
}

// loadMessages is the Messages section of a load that l accounted for
// over the measured window. Unacked and Lost count the same measured
// messages as Offered, so that "lost N of M offered" compares like with
// like; the warm-up's own are reported beside them, since a warm-up loss
// is as much a server fault. Duplicates cannot always be tied to a message
// (a repeated seq is caught before the lookup), so they stay whole-run.
func loadMessages(l *Ledger, window time.Duration, settled bool) *Messages {
	measured := l.Tally(nil, true)
	warmup := l.Tally(nil, false).minus(measured)
	return &Messages{
		Offered:         measured.Sent,
		Acked:           measured.Acked,
		Failed:          measured.Failed,
		Delivered:       measured.Delivered,
		OfferedPerSec:   perSec(measured.Sent, window),
		AckedPerSec:     perSec(measured.Acked, window),
		DeliveredPerSec: perSec(measured.Delivered, window),
		Unacked:         measured.Unacked,
		Lost:            measured.Lost,
		WarmupUnacked:   warmup.Unacked,
		WarmupLost:      warmup.Lost,
		Duplicates:      l.Duplicates(),
		Settled:         settled,
	}
}

// loadProgress is the progress line of a message load.
func loadProgress(name string, l *Ledger, p loadPlan, server *procWatch) func(time.Duration) string {
	prev, _ := server.now()
	return func(time.Duration) string {
		now := time.Now()
		phase := "measure"
		switch {
		case now.Before(p.MeasureFrom):
			phase = "warmup"
		case now.After(p.End):
			phase = "drain"
		}
		lv := l.Live()
		line := fmt.Sprintf("%s %s %3.0fs  sent %d  acked %d  delivered %d  dup %d  p99 ack %s  delivery %s",
			name, phase, now.Sub(p.Start).Seconds(), lv.Sent, lv.Acked, lv.Delivered, lv.Duplicates,
			windowP99(l.Ack), windowP99(l.Delivery))
		return line + serverProgress(server, &prev)
	}
}

// windowP99 is the p99 of r's current window for a progress line.
func windowP99(r *Recorder) string {
	w := r.TakeWindow()
	if w.Count == 0 {
		return "-"
	}
	return msStr(w.P99) + " ms"
}

// serverProgress is the server's part of a progress line: its CPU since
// *prev (when that is long enough to mean something) and its RSS.
func serverProgress(server *procWatch, prev *procSample) string {
	s, ok := server.now()
	if !ok {
		return ""
	}
	if s.At.Sub(prev.At) < progressEvery/2 {
		return "  server " + bytesIEC(s.RSS)
	}
	cpu := cpuPercent(*prev, s)
	*prev = s
	return fmt.Sprintf("  server %.0f%% %s", cpu, bytesIEC(s.RSS))
}

// waitFor polls cond until it holds or timeout passes (which is no error:
// the report shows what was still missing).
func waitFor(ctx context.Context, timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for !cond() && time.Now().Before(deadline) {
		select {
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// ledgerHandler reports the frames of userID's connection to l.
func ledgerHandler(l *Ledger, userID string) func(*inbound, time.Time) {
	r := &Receiver{UserID: userID}
	return func(f *inbound, at time.Time) {
		switch f.Type {
		case "ack":
			l.OnAck(f.ClientMessageID, at)
		case "error":
			l.OnError(f.Ref, f.Code, f.Message)
		case "message":
			l.OnMessage(r, f, at)
		}
	}
}

// contentOf is message content of size bytes.
func contentOf(size int) string {
	const text = "natter bench "
	return strings.Repeat(text, size/len(text)+1)[:size]
}
