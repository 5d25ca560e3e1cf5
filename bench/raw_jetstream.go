package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// jsMaxPending bounds the async publishes awaiting their ack.
const jsMaxPending = 4096

// runRawJetStream is the raw-jetstream scenario: an embedded JetStream on
// file storage (synced as --fsync says) and one in-process publisher
// publishing --size byte messages asynchronously as fast as acks allow:
// the ceiling of natter's durable sends on this machine.
func runRawJetStream(ctx context.Context, e *env) (*Report, error) {
	cfg := e.cfg
	r := e.newReport("raw-jetstream", map[string]any{
		"size": cfg.Size, "fsync": cfg.Fsync, "max_pending": jsMaxPending, "warmup": cfg.Warmup.String(),
		"server": "in-process (its CPU is the bench's)",
	})
	dir, err := os.MkdirTemp("", "natter-bench-js-")
	if err != nil {
		return nil, fmt.Errorf("make store directory: %w", err)
	}
	defer os.RemoveAll(dir)
	ns, err := server.NewServer(&server.Options{
		ServerName: "natter-bench",
		DontListen: true,
		NoLog:      true,
		NoSigs:     true,
		JetStream:  true,
		StoreDir:   dir,
		SyncAlways: cfg.Fsync == "always",
		// natter's default --sync-interval in "interval" mode
		SyncInterval: time.Second,
	})
	if err != nil {
		return nil, fmt.Errorf("configure nats-server: %w", err)
	}
	ns.Start()
	defer func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	}()
	if !ns.ReadyForConnections(10 * time.Second) {
		return nil, errors.New("nats-server not ready after 10s")
	}
	nc, err := nats.Connect(ns.ClientURL(), nats.InProcessServer(ns))
	if err != nil {
		return nil, fmt.Errorf("connect to nats-server: %w", err)
	}
	defer nc.Close()

	// Each message carries the time it was published (ns since base), so
	// the ack handler needs no lookup.
	base := time.Now()
	start := base.Add(100 * time.Millisecond)
	measureFrom, end := start.Add(cfg.Warmup), start.Add(cfg.Warmup+cfg.Duration)
	measureOff := int64(measureFrom.Sub(base))
	lat := NewRecorder()
	var published, acked atomic.Int64 // measured ones
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(jsMaxPending),
		jetstream.WithPublishAsyncAckHandler(func(_ jetstream.JetStream, m *nats.Msg, _ *jetstream.PubAck) {
			if t := int64(binary.BigEndian.Uint64(m.Data)); t >= measureOff {
				acked.Add(1)
				lat.Record(time.Since(base) - time.Duration(t))
			}
		}),
		jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, _ *nats.Msg, err error) {
			e.errs.Note(jsErrorCode(err), err.Error())
		}),
	)
	if err != nil {
		return nil, fmt.Errorf("open jetstream: %w", err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name:     "BENCH",
		Subjects: []string{"bench.>"},
		Storage:  jetstream.FileStorage,
	}); err != nil {
		return nil, fmt.Errorf("create stream: %w", err)
	}

	self := e.watchSelf()
	stop := e.progress(ctx, func(elapsed time.Duration) string {
		return fmt.Sprintf("raw-jetstream %3.0fs  published %d  acked %d  p99 %s",
			elapsed.Seconds(), published.Load(), acked.Load(), windowP99(lat))
	})
	defer stop()
	if err := (realClock{}).SleepUntil(ctx, start); err != nil {
		return nil, err
	}
	measuring := false
	for now := time.Now(); now.Before(end); now = time.Now() {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if !measuring && !now.Before(measureFrom) {
			measuring = true
			self.restart()
		}
		data := make([]byte, cfg.Size)
		binary.BigEndian.PutUint64(data, uint64(now.Sub(base)))
		// A full window blocks the publisher (up to --drain) rather than
		// fail: that is the back-pressure of a closed loop.
		if _, err := js.PublishAsync("bench.msg", data, jetstream.WithStallWait(max(cfg.Drain, time.Second))); err != nil {
			e.errs.Note(jsErrorCode(err), err.Error())
			continue
		}
		if measuring {
			published.Add(1)
		}
	}
	loadEnd := time.Now()
	r.Bench = self.stats()
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(cfg.Drain):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	window := loadEnd.Sub(measureFrom)
	pending := int64(js.PublishAsyncPending()) // warm-up publishes too
	r.Seconds = window.Seconds()
	r.Messages = &Messages{
		Offered:       published.Load(),
		Acked:         acked.Load(),
		OfferedPerSec: perSec(published.Load(), window),
		AckedPerSec:   perSec(acked.Load(), window),
		Unacked:       pending,
		Settled:       pending == 0,
	}
	r.Latency.SendToAck = new(lat.Summary())
	r.Errors = e.errs.Snapshot()
	return r, nil
}

// jsErrorCode names a JetStream publish error.
func jsErrorCode(err error) string {
	switch {
	case errors.Is(err, jetstream.ErrTooManyStalledMsgs):
		return "js_stalled"
	case errors.Is(err, nats.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return "js_timeout"
	case errors.Is(err, nats.ErrNoResponders):
		return "js_no_responders"
	}
	return "js_error"
}
