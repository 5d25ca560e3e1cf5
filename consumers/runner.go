// Package consumers holds natter's durable JetStream consumers, one type
// each with Run(ctx) error: Persist writes CONV to the store, Fanout turns
// it into inbox events, Receipts applies delivered/read statuses.
//
// Every consumer acks explicitly after its effect is durable, so a crash
// redelivers what was in flight; each effect is idempotent (the store by
// (conversation, seq), inbox events by Nats-Msg-Id within the duplicate
// window and by the Natter-Src check after it).
package consumers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/natter-chat/natter/store"
	"github.com/natter-chat/natter/streams"
)

// Options tune every consumer.
type Options struct {
	// BatchSize is the most events handled in one batch.
	BatchSize int
	// MaxDeliver is how many tries an event gets before it is dead-lettered.
	MaxDeliver int
	// ResetOnStart redelivers at once what a previous process had in
	// flight (instead of after the ack wait). Only for the single process
	// that runs this consumer: a node restarted after kill -9 then serves
	// reads without waiting out the ack wait.
	ResetOnStart bool
	// Linger is how long a batch that is not full waits for more events.
	// Zero handles what is there at once.
	Linger time.Duration
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.BatchSize <= 0 {
		o.BatchSize = 256
	}
	if o.MaxDeliver <= 0 {
		o.MaxDeliver = 8
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// errPoison marks an event that can never succeed (it does not decode):
// it is dead-lettered at once instead of retried.
var errPoison = errors.New("poison event")

// errTransient marks a failure of what a consumer writes to (JetStream, or
// the store with store.ErrUnavailable), not of its events: the batch is
// kept and retried in place until it succeeds, never dead-lettered. A
// full disk or a restarting database must delay effects, not drop them.
var errTransient = errors.New("temporarily unavailable")

func transient(err error) bool {
	return errors.Is(err, errTransient) || errors.Is(err, store.ErrUnavailable)
}

// pullExpiry bounds how long a consumer can sit idle on a pull request
// the server no longer serves (after an operator resumes a paused
// consumer it takes up to this long to flow again); nats.go's 30 s
// default stalled resumed consumers for that long.
const pullExpiry = 5 * time.Second

// Retries in place back off up to maxStallBackoff and say so in the log at
// most every stallLogEvery.
const (
	maxStallBackoff = 5 * time.Second
	stallLogEvery   = 30 * time.Second
)

// batchFunc handles events in stream order and returns, for the events
// it could not handle, the error; poison events are reported per event.
type batchFunc func(ctx context.Context, msgs []jetstream.Msg) error

// runner pulls batches from one durable consumer and acks, naks or
// dead-letters them.
type runner struct {
	name string
	js   jetstream.JetStream
	cons jetstream.Consumer
	opts Options
	log  *slog.Logger
	// deliveredBefore is the last CONV sequence delivered before this
	// process started: anything up to it may have had its effect already.
	deliveredBefore uint64
	// retrying is set while a batch is retried in place: part of its
	// effects may have happened, as after a redelivery.
	retrying bool
	// dead holds the stream sequences of this batch's dead-lettered events.
	dead map[uint64]bool
}

func newRunner(ctx context.Context, js jetstream.JetStream, name string, opts Options) (*runner, error) {
	cons, err := js.Consumer(ctx, streams.StreamConv, name)
	if err != nil {
		return nil, fmt.Errorf("open consumer %s: %w", name, err)
	}
	opts = opts.withDefaults()
	r := &runner{name: name, js: js, cons: cons, opts: opts, log: opts.Logger.With("consumer", name),
		deliveredBefore: cons.CachedInfo().Delivered.Stream, dead: map[uint64]bool{}}
	if info := cons.CachedInfo(); opts.ResetOnStart && info.NumAckPending > 0 {
		if _, err := js.ResetConsumer(ctx, streams.StreamConv, name); err != nil {
			return nil, fmt.Errorf("reset consumer %s to its ack floor: %w", name, err)
		}
		r.log.Info("redelivering what the previous process had in flight", "events", info.NumAckPending, "from", info.AckFloor.Stream+1)
	}
	return r, nil
}

// source returns a CONV event's stream sequence and whether it may have
// been handled before (redelivered, or delivered before this process).
func (r *runner) source(m jetstream.Msg) (uint64, bool, error) {
	md, err := m.Metadata()
	if err != nil {
		return 0, false, fmt.Errorf("%w: no metadata: %v", errPoison, err)
	}
	return md.Sequence.Stream, r.retrying || md.NumDelivered > 1 || md.Sequence.Stream <= r.deliveredBefore, nil
}

// run feeds batches to handle until ctx ends. Events arrive through
// Consume (which keeps pull requests outstanding) and are grouped: one
// blocking receive, then whatever else is already there.
func (r *runner) run(ctx context.Context, handle batchFunc) error {
	ch := make(chan jetstream.Msg, r.opts.BatchSize)
	done := make(chan struct{})
	defer close(done)
	cc, err := r.cons.Consume(func(m jetstream.Msg) {
		select {
		case ch <- m:
		case <-done:
		}
	}, jetstream.PullMaxMessages(r.opts.BatchSize*2), jetstream.PullExpiry(pullExpiry), jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		if !errors.Is(err, jetstream.ErrNoHeartbeat) {
			r.log.Debug("consume", "err", err)
		}
	}))
	if err != nil {
		return fmt.Errorf("consume %s: %w", r.name, err)
	}
	defer cc.Stop()
	r.log.Info("consumer running")

	batch := make([]jetstream.Msg, 0, r.opts.BatchSize)
	for {
		batch = batch[:0]
		select {
		case <-ctx.Done():
			return nil
		case m := <-ch:
			batch = append(batch, m)
		}
	fill:
		for len(batch) < r.opts.BatchSize {
			select {
			case m := <-ch:
				batch = append(batch, m)
			default:
				break fill
			}
		}
		batch = r.linger(ctx, ch, batch)
		r.process(ctx, batch, handle)
	}
}

// linger tops batch up with what arrives within Linger.
func (r *runner) linger(ctx context.Context, ch <-chan jetstream.Msg, batch []jetstream.Msg) []jetstream.Msg {
	if r.opts.Linger <= 0 || len(batch) >= r.opts.BatchSize {
		return batch
	}
	t := time.NewTimer(r.opts.Linger)
	defer t.Stop()
	for len(batch) < r.opts.BatchSize {
		select {
		case m := <-ch:
			batch = append(batch, m)
		case <-t.C:
			return batch
		case <-ctx.Done():
			return batch
		}
	}
	return batch
}

func (r *runner) process(ctx context.Context, batch []jetstream.Msg, handle batchFunc) {
	clear(r.dead)
	err := safeHandle(ctx, batch, handle)
	if err != nil && transient(err) {
		batch, err = r.retryInPlace(ctx, batch, handle, err)
	}
	if err == nil {
		for _, m := range batch {
			if aerr := m.Ack(); aerr != nil {
				// A lost ack only means a redelivery, which is idempotent.
				r.log.Debug("ack", "err", aerr)
			}
		}
		return
	}
	if ctx.Err() != nil {
		return // shutting down: redelivered after restart
	}
	for _, m := range batch {
		md, _ := m.Metadata()
		n := uint64(1)
		if md != nil {
			n = md.NumDelivered
		}
		if errors.Is(err, errPoison) || n >= uint64(r.opts.MaxDeliver) {
			r.deadLetter(ctx, m, err, n)
			continue
		}
		delay := time.Duration(1<<min(n, 6)) * 100 * time.Millisecond
		r.log.Warn("retrying batch", "events", len(batch), "delivery", n, "in", delay, "err", err)
		_ = m.NakWithDelay(delay)
	}
}

// retryInPlace retries a batch that failed for a transient reason until it
// succeeds, fails otherwise or ctx ends. The events stay with this
// process meanwhile (InProgress resets their ack wait), so the wait costs
// none of their MaxDeliver deliveries.
func (r *runner) retryInPlace(ctx context.Context, batch []jetstream.Msg, handle batchFunc, err error) ([]jetstream.Msg, error) {
	start, logged := time.Now(), time.Time{}
	r.retrying = true
	defer func() { r.retrying = false }()
	for attempt := 0; err != nil && transient(err) && ctx.Err() == nil; attempt++ {
		if time.Since(logged) >= stallLogEvery {
			r.log.Warn("stalled: retrying in place until it recovers", "events", len(batch), "for", time.Since(start).Round(time.Second), "err", err)
			logged = time.Now()
		}
		batch = slices.DeleteFunc(batch, func(m jetstream.Msg) bool {
			md, merr := m.Metadata()
			return merr == nil && r.dead[md.Sequence.Stream]
		})
		for _, m := range batch {
			_ = m.InProgress()
		}
		select {
		case <-ctx.Done():
		case <-time.After(min(100*time.Millisecond<<min(attempt, 6), r.maxStall())):
			err = safeHandle(ctx, batch, handle)
		}
	}
	if err == nil {
		r.log.Info("recovered", "events", len(batch), "stalled_for", time.Since(start).Round(time.Millisecond))
	}
	return batch, err
}

// maxStall is the longest wait between retries in place: short enough
// that InProgress comes before the consumer's ack wait ends.
func (r *runner) maxStall() time.Duration {
	if aw := r.cons.CachedInfo().Config.AckWait; aw > 0 {
		return min(maxStallBackoff, aw/3)
	}
	return maxStallBackoff
}

// safeHandle turns a panic in a handler into a poison error, so one bad
// event cannot crash the process over and over.
func safeHandle(ctx context.Context, batch []jetstream.Msg, handle batchFunc) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: panic: %v", errPoison, p)
		}
	}()
	return handle(ctx, batch)
}

// deadLetter copies m to the dead-letter stream with the reason, then
// terminates it so it is never redelivered.
func (r *runner) deadLetter(ctx context.Context, m jetstream.Msg, cause error, deliveries uint64) {
	md, _ := m.Metadata()
	out := nats.NewMsg(streams.DeadLetterSubject(r.name))
	out.Data = m.Data()
	out.Header.Set(streams.HeaderError, cause.Error())
	out.Header.Set(streams.HeaderOrigin, m.Subject())
	out.Header.Set(streams.HeaderDeliveries, strconv.FormatUint(deliveries, 10))
	if md != nil {
		out.Header.Set(streams.HeaderOriginSeq, strconv.FormatUint(md.Sequence.Stream, 10))
	}
	if _, err := r.js.PublishMsg(ctx, out); err != nil {
		// Not terminated: it is redelivered and dead-lettered again later.
		r.log.Error("dead-letter failed", "subject", m.Subject(), "err", err)
		return
	}
	r.log.Error("dead-lettered", "subject", m.Subject(), "deliveries", deliveries, "err", cause)
	_ = m.Term()
	if md != nil {
		r.dead[md.Sequence.Stream] = true
	}
}
