package streams

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Watermark answers "has consumer C handled everything up to CONV
// sequence N?", the question behind the sync barrier and
// read-your-writes on REST. Concurrent waiters share consumer-info
// requests, so a burst of connections costs a few requests, not one each.
type Watermark struct {
	js   jetstream.JetStream
	poll time.Duration

	mu    sync.Mutex
	infos map[string]*infoCall
	queue *FanoutQueueState
	// floor is the shared read of the fanout queue's floor.
	floor *floorCall
}

type floorCall struct {
	at    time.Time
	done  chan struct{}
	floor uint64
	err   error
}

type infoCall struct {
	at   time.Time // when the request started
	done chan struct{}
	info *jetstream.ConsumerInfo
	err  error
}

// NewWatermark polls consumer state every poll interval while someone waits.
func NewWatermark(js jetstream.JetStream, poll time.Duration) *Watermark {
	return &Watermark{js: js, poll: poll, infos: map[string]*infoCall{}, queue: NewFanoutQueueState(js)}
}

// ConvLastSeq is the CONV stream's last sequence: everything acknowledged
// to a client so far is at or below it.
func (w *Watermark) ConvLastSeq(ctx context.Context) (uint64, error) {
	return lastSeq(ctx, w.js, StreamConv)
}

// InboxRange is the INBOX stream's first and last sequence.
func (w *Watermark) InboxRange(ctx context.Context) (first, last uint64, err error) {
	st, err := state(ctx, w.js, StreamInbox)
	return st.FirstSeq, st.LastSeq, err
}

func lastSeq(ctx context.Context, js jetstream.JetStream, stream string) (uint64, error) {
	st, err := state(ctx, js, stream)
	return st.LastSeq, err
}

func state(ctx context.Context, js jetstream.JetStream, stream string) (jetstream.StreamState, error) {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return jetstream.StreamState{}, fmt.Errorf("stream %s info: %w", stream, err)
	}
	return s.CachedInfo().State, nil
}

// Wait returns once each named consumer has acknowledged every CONV
// event up to seq, or with ctx's error. For fanout that includes the
// events it queued (FANOUT): they are written when the queue holds no
// item of a source up to seq.
func (w *Watermark) Wait(ctx context.Context, seq uint64, consumers ...string) error {
	for _, name := range consumers {
		since := time.Now()
		for {
			info, err := w.info(ctx, name, since)
			if err != nil {
				return err
			}
			if handled(info, seq) && name == ConsumerFanout {
				// Fanout queued everything up to seq before acking it, so
				// the queue is read after the consumer.
				floor, err := w.queueFloor(ctx, time.Now())
				if err != nil {
					return err
				}
				if floor > seq {
					break
				}
			} else if handled(info, seq) {
				break
			}
			since = time.Now()
			select {
			case <-ctx.Done():
				return fmt.Errorf("wait for %s to reach %d (%s): %w", name, seq, progress(info), ctx.Err())
			case <-time.After(w.poll):
			}
		}
	}
	return nil
}

// progress says where a consumer stands, for an operator reading why a
// wait ran out: a floor that does not move with little awaiting ack
// points at a handler stuck in its batch, many redelivered at a poison
// event or a lost ack.
func progress(info *jetstream.ConsumerInfo) string {
	s := fmt.Sprintf("acked up to %d, delivered up to %d, %d awaiting ack, %d redelivered, %d pulls waiting",
		info.AckFloor.Stream, info.Delivered.Stream, info.NumAckPending, info.NumRedelivered, info.NumWaiting)
	for _, g := range info.PriorityGroups {
		if g.PinnedClientID != "" {
			s += ", pinned to " + g.PinnedClientID
		}
	}
	return s
}

// handled reports whether every event up to seq has been acknowledged.
// It is exact for consumers that read the whole stream (persist, fanout):
// a filtered consumer's pending counts can lag a just-stored message.
func handled(info *jetstream.ConsumerInfo, seq uint64) bool {
	return info.AckFloor.Stream >= seq || info.NumAckPending == 0 && info.Delivered.Stream >= seq
}

// info returns consumer info fetched after since, joining a request in
// flight when it started late enough.
func (w *Watermark) info(ctx context.Context, name string, since time.Time) (*jetstream.ConsumerInfo, error) {
	w.mu.Lock()
	c := w.infos[name]
	if c == nil || c.at.Before(since) {
		// This caller fetches for every waiter that joins meanwhile: the
		// request has an owner and no goroutine outlives its caller.
		c = &infoCall{at: time.Now(), done: make(chan struct{})}
		w.infos[name] = c
		w.mu.Unlock()
		w.fetch(ctx, name, c)
		return c.info, c.err
	}
	w.mu.Unlock()
	select {
	case <-c.done:
		return c.info, c.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// queueFloor is FanoutQueueState.Floor read after since, shared like info.
func (w *Watermark) queueFloor(ctx context.Context, since time.Time) (uint64, error) {
	w.mu.Lock()
	c := w.floor
	if c == nil || c.at.Before(since) {
		c = &floorCall{at: time.Now(), done: make(chan struct{})}
		w.floor = c
		w.mu.Unlock()
		func() {
			defer close(c.done)
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			c.floor, c.err = w.queue.Floor(fctx)
		}()
		return c.floor, c.err
	}
	w.mu.Unlock()
	select {
	case <-c.done:
		return c.floor, c.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// fetch does not stop when the caller's ctx ends: other waiters share
// its answer. It is bounded by its own timeout instead.
func (w *Watermark) fetch(ctx context.Context, name string, c *infoCall) {
	defer close(c.done)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	cons, err := w.js.Consumer(ctx, StreamConv, name)
	if err != nil {
		c.err = fmt.Errorf("consumer %s info: %w", name, err)
		return
	}
	c.info = cons.CachedInfo()
}
