package bench

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// catchupWindow is how many sends each catchup sender keeps unacked.
const catchupWindow = 256

// runCatchup is the catchup scenario: --pairs devices go offline while
// their peers send each of them --events messages; then all reconnect at
// once with their cursors, and the scenario measures the time from each
// reconnect to synced, checking that every message was replayed before it
// (synced is a barrier) and none twice.
func runCatchup(ctx context.Context, e *env) (*Report, error) {
	cfg := e.cfg
	np, k := cfg.Pairs, cfg.Events
	r := e.newReport("catchup", map[string]any{"devices": np, "events": k, "size": cfg.Size})
	accts, err := e.newAccounts(ctx, 2*np) // sender 2i sends to device 2i+1
	if err != nil {
		return nil, err
	}
	senders, devices := make([]account, np), make([]account, np)
	for i := range np {
		senders[i], devices[i] = accts[2*i], accts[2*i+1]
	}

	// Each device connects once, keeps its cursor and goes offline.
	cursors := make([]string, np)
	err = forEach(ctx, np, cfg.Concurrency, func(ctx context.Context, i int) error {
		c, err := e.dial.Dial(ctx, devices[i].Token, "", nil)
		if err != nil {
			return fmt.Errorf("connect %s: %w", devices[i].Username, err)
		}
		defer c.Close()
		sy, _, err := c.WaitSynced(ctx)
		if err != nil {
			return fmt.Errorf("connect %s: %w", devices[i].Username, err)
		}
		cursors[i] = sy.Cursor
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("take cursors: %w", err)
	}

	// The peers send, each with at most catchupWindow sends unacked.
	l := NewLedger(e.runID, e.errs)
	flows := make([]*Flow, np)
	slots := make([]chan struct{}, np)
	for i := range np {
		// Latency from "due" means nothing here: no message is measured.
		sched := Schedule{Start: time.Now(), Interval: time.Nanosecond, Count: k}
		flows[i] = l.AddFlow(senders[i].UserID, []string{devices[i].UserID}, sched, k)
		slots[i] = make(chan struct{}, catchupWindow)
	}
	l.Seal()
	index := make(map[string]int, np)
	for i, s := range senders {
		index[s.UserID] = i
	}
	conns, err := e.connectAll(ctx, senders, func(a account) func(*inbound, time.Time) {
		h, slot := ledgerHandler(l, a.UserID), slots[index[a.UserID]]
		return func(f *inbound, at time.Time) {
			h(f, at)
			if f.Type == "ack" || f.Type == "error" {
				select {
				case <-slot:
				default:
				}
			}
		}
	})
	if err != nil {
		return nil, err
	}
	stop := e.progress(ctx, func(elapsed time.Duration) string {
		lv := l.Live()
		return fmt.Sprintf("catchup accumulating %d/%d  acked %d  %.0f/s", lv.Sent, np*k, lv.Acked, float64(lv.Acked)/elapsed.Seconds())
	})
	content := contentOf(cfg.Size)
	start := time.Now()
	var wg sync.WaitGroup
	for i := range np {
		wg.Go(func() {
			for j := range k {
				// A connection that ended answers nothing: without Done
				// a full window would wait for ever.
				select {
				case slots[i] <- struct{}{}:
				case <-conns[i].Done():
					return
				case <-ctx.Done():
					return
				}
				frame := sendFrame(l.MessageID(flows[i], j), devices[i].UserID, "user", content, time.Now().UnixMilli())
				l.Sent(flows[i], j)
				if conns[i].Send(ctx, frame) != nil {
					return
				}
			}
		})
	}
	wg.Wait()
	err = waitFor(ctx, cfg.Drain, l.Answered)
	sendTime, answered := time.Since(start), l.Answered()
	stop()
	closeAll(conns)
	if err != nil {
		return nil, err
	}
	sent := l.Tally(nil, false)
	if err := checkAccumulated(sent, np*k, e.errs.Snapshot()); err != nil {
		return nil, err
	}

	// Every device reconnects at once with its cursor. Missing counts,
	// per device, the acked messages (all np*k of them, as checked above)
	// that its synced came without.
	server, self := e.watchServer(), e.watchSelf()
	toSynced := NewRecorder()
	var missing, replayed, synced atomic.Int64
	reconnect := time.Now()
	stop = e.progress(ctx, func(time.Duration) string {
		return fmt.Sprintf("catchup replaying  synced %d/%d  events %d", synced.Load(), np, l.Live().Delivered)
	})
	devConns := make([]*Conn, np)
	defer closeAll(devConns)
	err = forEach(ctx, np, np, func(ctx context.Context, i int) error {
		t0 := time.Now()
		c, err := e.dial.Dial(ctx, devices[i].Token, cursors[i], ledgerHandler(l, devices[i].UserID))
		if err != nil {
			return fmt.Errorf("reconnect %s: %w", devices[i].Username, err)
		}
		devConns[i] = c
		_, at, err := c.WaitSynced(ctx)
		if err != nil {
			return fmt.Errorf("reconnect %s: %w", devices[i].Username, err)
		}
		toSynced.Record(at.Sub(t0))
		// Every frame before synced was handled before WaitSynced returned.
		t := l.Tally(flows[i], false)
		missing.Add(t.Lost)
		replayed.Add(t.Delivered)
		synced.Add(1)
		return nil
	})
	stop()
	if err != nil {
		return nil, err
	}
	r.Seconds = time.Since(reconnect).Seconds()
	r.Server, r.Bench = server.stats(), self.stats()
	lat := toSynced.Summary()
	r.Latency.ConnectToSynced = &lat
	r.Messages = &Messages{
		Offered:       sent.Sent,
		Acked:         sent.Acked,
		Failed:        sent.Failed,
		OfferedPerSec: perSec(sent.Sent, sendTime),
		AckedPerSec:   perSec(sent.Acked, sendTime),
		Unacked:       sent.Unacked,
		Settled:       answered,
	}
	r.Catchup = &Catchup{
		Devices:         np,
		EventsPerDevice: k,
		Replayed:        replayed.Load(),
		Missing:         missing.Load(),
		Duplicates:      l.Duplicates(),
		// all devices replayed at once: the slowest one ends the replay
		EventsPerSec: perSec(replayed.Load(), time.Duration(lat.Max*float64(time.Millisecond))),
	}
	r.Errors = e.errs.Snapshot()
	return r, nil
}

// errShortAccumulation is a catchup whose devices would not have --events
// messages waiting: its replay would measure a smaller catch-up than asked.
var errShortAccumulation = errors.New("accumulation fell short")

// checkAccumulated fails a catchup unless every one of the want messages
// of the accumulation was acked; the error counts what happened to the
// rest, and errs (the error counts so far) says why.
func checkAccumulated(t Tally, want int, errs map[string]int64) error {
	if t.Acked >= int64(want) {
		return nil
	}
	return fmt.Errorf("%w: %d of %d messages acked (%d refused, %d unanswered, %d never sent); errors: %s",
		errShortAccumulation, t.Acked, want, t.Failed, t.Unacked, int64(want)-t.Sent, errorList(errs))
}

// errorList renders error counts by code, sorted, for an error message.
func errorList(errs map[string]int64) string {
	if len(errs) == 0 {
		return "none"
	}
	var b strings.Builder
	for i, code := range slices.Sorted(maps.Keys(errs)) {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %d", code, errs[code])
	}
	return b.String()
}
