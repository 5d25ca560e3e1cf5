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
	"sync/atomic"
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
	// RetryDelay is the unit of a failed batch's back-off: delivery n is
	// retried after RetryDelay·2^min(n,6) (default 100 ms, so the eight
	// deliveries of MaxDeliver span about 19 s).
	RetryDelay time.Duration
	// Observer is told of every event handled and dead-lettered
	// (metrics); default none.
	Observer Observer
	Logger   *slog.Logger
}

// Observer is told what consumers do. Calls are on the hot path: cheap,
// never blocking.
type Observer interface {
	// Handled: consumer finished an event written to CONV age ago.
	Handled(consumer string, age time.Duration)
	DeadLettered(consumer string)
}

type nopObserver struct{}

func (nopObserver) Handled(string, time.Duration) {}
func (nopObserver) DeadLettered(string)           {}

func (o Options) withDefaults() Options {
	if o.BatchSize <= 0 {
		o.BatchSize = 256
	}
	if o.MaxDeliver <= 0 {
		o.MaxDeliver = 8
	}
	if o.RetryDelay <= 0 {
		o.RetryDelay = 100 * time.Millisecond
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Observer == nil {
		o.Observer = nopObserver{}
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
	// pinID is the pin id of the last message (handback.go): a string.
	pinID atomic.Value
	// pinMoved is set when a message comes with a pin id other than the
	// last one: this runner took the pin over (takeover.go).
	pinMoved atomic.Bool
	// afterReset is set from a takeover's reset until its first
	// redelivery arrives: what comes before it was delivered before the
	// reset and is dropped (takeover.go). resetPin is the pin id it was
	// made under and droppedAfterReset how many it has dropped.
	afterReset        bool
	resetPin          string
	droppedAfterReset int
	// deliveredBefore is the last CONV sequence delivered before this
	// process started: anything up to it may have had its effect already.
	deliveredBefore uint64
	// dedupeFor is how old an event may be for JetStream's dedupe (the
	// INBOX duplicate window, less a margin for clocks) to catch every
	// earlier copy of what it derives; 0 when unknown.
	dedupeFor time.Duration
	// retrying is set while a batch is retried in place: part of its
	// effects may have happened, as after a redelivery.
	retrying bool
	// dead holds the stream sequences of this batch's dead-lettered events.
	dead map[uint64]bool
}

func newRunner(ctx context.Context, js jetstream.JetStream, name string, opts Options) (*runner, error) {
	return newRunnerOn(ctx, js, streams.StreamConv, name, opts)
}

// newRunnerOn is newRunner for a durable consumer of another stream.
func newRunnerOn(ctx context.Context, js jetstream.JetStream, stream, name string, opts Options) (*runner, error) {
	opts = opts.withDefaults()
	cons, err := openConsumer(ctx, js, stream, name, opts.Logger)
	if err != nil {
		return nil, fmt.Errorf("open consumer %s: %w", name, err)
	}
	r := &runner{name: name, js: js, cons: cons, opts: opts, log: opts.Logger.With("consumer", name),
		deliveredBefore: cons.CachedInfo().Delivered.Stream, dead: map[uint64]bool{}}
	if inbox, err := js.Stream(ctx, streams.StreamInbox); err == nil {
		r.dedupeFor = inbox.CachedInfo().Config.Duplicates * 3 / 4
	}
	if info := cons.CachedInfo(); opts.ResetOnStart && info.NumAckPending > 0 {
		if _, err := js.ResetConsumer(ctx, stream, name); err != nil {
			return nil, fmt.Errorf("reset consumer %s to its ack floor: %w", name, err)
		}
		r.log.Info("redelivering what the previous process had in flight", "events", info.NumAckPending, "from", info.AckFloor.Stream+1)
	}
	return r, nil
}

// openConsumer opens a durable consumer, waiting while JetStream does not
// answer: a node restarted into a cluster that is still catching up got
// timeouts here and shut down (CI's TestCluster, after a kill -9).
// Other errors, a missing consumer among them, return at once.
func openConsumer(ctx context.Context, js jetstream.JetStream, stream, name string, log *slog.Logger) (jetstream.Consumer, error) {
	for attempt := 0; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		cons, err := js.Consumer(actx, stream, name)
		cancel()
		if err == nil || ctx.Err() != nil || !noAnswer(err) {
			return cons, err
		}
		log.Warn("JetStream does not answer yet; opening the consumer again", "consumer", name, "attempt", attempt+1, "err", err)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w (last: %w)", ctx.Err(), err)
		case <-time.After(min(250*time.Millisecond<<min(attempt, 5), 5*time.Second)):
		}
	}
}

// noAnswer reports whether err means JetStream did not answer in time.
func noAnswer(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, nats.ErrNoResponders)
}

// source returns a CONV event's stream sequence and whether it may have
// been handled before (redelivered, or delivered before this process)
// beyond what JetStream's dedupe catches. An event younger than dedupeFor
// is not: any earlier copy of its inbox events was published after it,
// within the duplicate window, so publishing again is exact, whatever
// order other writers used. (The inbox writer's check for older ones
// assumes one writer in CONV order, which a takeover between nodes, or a
// nak'd event retried after later ones, breaks.)
func (r *runner) source(m jetstream.Msg) (uint64, bool, error) {
	md, err := m.Metadata()
	if err != nil {
		return 0, false, fmt.Errorf("%w: no metadata: %v", errPoison, err)
	}
	maybe := r.retrying || md.NumDelivered > 1 || md.Sequence.Stream <= r.deliveredBefore
	if maybe && r.dedupeFor > 0 && time.Since(md.Timestamp) < r.dedupeFor {
		maybe = false
	}
	return md.Sequence.Stream, maybe, nil
}

// run feeds batches to handle until ctx ends. Events arrive through
// Consume (which keeps pull requests outstanding) and are grouped: one
// blocking receive, then whatever else is already there.
func (r *runner) run(ctx context.Context, handle batchFunc) error {
	ch := make(chan jetstream.Msg, r.opts.BatchSize)
	done := make(chan struct{})
	copts := []jetstream.PullConsumeOpt{jetstream.PullMaxMessages(r.opts.BatchSize * 2), jetstream.PullExpiry(pullExpiry),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			if !errors.Is(err, jetstream.ErrNoHeartbeat) {
				r.log.Debug("consume", "err", err)
			}
		})}
	// A pinned consumer (the CONV consumers in cluster mode, the fanout
	// queue's partition workers always) serves one client's pulls at a
	// time.
	if groups := r.cons.CachedInfo().Config.PriorityGroups; len(groups) > 0 {
		copts = append(copts, jetstream.PullPriorityGroup(groups[0]))
	}
	cc, err := r.cons.Consume(func(m jetstream.Msg) {
		r.notePin(m)
		select {
		case ch <- m:
		case <-done:
			_ = m.Nak() // stopping: another node (or the next start) takes it now
		}
	}, copts...)
	if err != nil {
		return fmt.Errorf("consume %s: %w", r.name, err)
	}
	// What this runner received but never handled goes back at once
	// rather than after the ack wait: on a cluster another node's runner
	// of the same durable takes it during a rolling restart.
	defer func() {
		cc.Stop()
		close(done)
		for {
			select {
			case m := <-ch:
				_ = m.Nak()
			default:
				r.handBackPin()
				return
			}
		}
	}()
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
		if batch = r.dropBeforeReset(batch); len(batch) == 0 {
			continue
		}
		if r.pinMoved.Swap(false) && r.earlierInFlight(ctx, batch[0]) && r.resetToAckFloor(ctx) {
			continue // this batch comes again, after the earlier events
		}
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
	defer r.watchSlowBatch(batch)()
	err := safeHandle(ctx, batch, handle)
	if err != nil && transient(err) {
		batch, err = r.retryInPlace(ctx, batch, handle, err)
	}
	if err == nil {
		now := time.Now()
		for _, m := range batch {
			if aerr := m.Ack(); aerr != nil {
				// A lost ack only means a redelivery, which is idempotent.
				r.log.Debug("ack", "err", aerr)
			}
			if md, merr := m.Metadata(); merr == nil {
				r.opts.Observer.Handled(r.name, now.Sub(md.Timestamp))
			}
		}
		return
	}
	if ctx.Err() != nil {
		// Stopped mid-batch: nothing is acked, so the batch is redone
		// whole (idempotently), at once by whoever pulls next.
		for _, m := range batch {
			_ = m.Nak()
		}
		return
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
		delay := time.Duration(1<<min(n, 6)) * r.opts.RetryDelay
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

// slowBatch is how long a batch's handling may take before the log says
// so. A handler that blocks without an error (a store waiting on a lock)
// stalls its consumer without any other trace.
var slowBatch = 30 * time.Second // a variable for the test

// watchSlowBatch logs when batch's handling passes slowBatch, and how long
// it took once it is over; call the returned func when it is.
func (r *runner) watchSlowBatch(batch []jetstream.Msg) (done func()) {
	start := time.Now()
	var slow atomic.Bool
	t := time.AfterFunc(slowBatch, func() {
		slow.Store(true)
		first, last := batchRange(batch)
		r.log.Warn("a batch is still being handled", "for", time.Since(start).Round(time.Second), "events", len(batch), "first", first, "last", last)
	})
	return func() {
		if !t.Stop() && slow.Load() {
			r.log.Info("the slow batch is done", "took", time.Since(start).Round(time.Millisecond))
		}
	}
}

// batchRange is the stream sequences of batch's first and last event.
func batchRange(batch []jetstream.Msg) (first, last uint64) {
	if md, err := batch[0].Metadata(); err == nil {
		first = md.Sequence.Stream
	}
	if md, err := batch[len(batch)-1].Metadata(); err == nil {
		last = md.Sequence.Stream
	}
	return first, last
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
	r.opts.Observer.DeadLettered(r.name)
	_ = m.Term()
	if md != nil {
		r.dead[md.Sequence.Stream] = true
	}
}
