package consumers

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/natter-chat/natter/streams"
)

// FanoutWorkers write the fanout queue's items into the inboxes: one
// runner per partition, each on the partition's pinned durable consumer,
// so every node may run them and one at a time handles a partition.
//
// An item is acknowledged only once all its inbox events are stored. A
// worker killed mid-item leaves it to be redelivered, and the events
// already written are recognised (inboxWriter with queued set): by
// Nats-Msg-Id, the same a direct fanout would use, or past the duplicate
// window by looking for the event's source in the member's inbox.
type FanoutWorkers struct {
	js         jetstream.JetStream
	partitions int
	opts       Options
	// onPublish, when set, is called with the count of events published
	// so far (tests kill a worker mid-item with it).
	onPublish func(n int)
}

// NewFanoutWorkers returns the workers of partitions 0..partitions-1
// (default 4, as QueueOptions).
func NewFanoutWorkers(js jetstream.JetStream, partitions int, opts Options) *FanoutWorkers {
	if partitions <= 0 {
		partitions = QueueOptions{}.withDefaults().Partitions
	}
	return &FanoutWorkers{js: js, partitions: partitions, opts: opts}
}

// Run consumes every partition until ctx ends or one of them fails.
func (fw *FanoutWorkers) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, fw.partitions)
	var wg sync.WaitGroup
	for p := range fw.partitions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fw.runPartition(ctx, p); err != nil {
				errs <- fmt.Errorf("fanout worker %d: %w", p, err)
				cancel()
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}

func (fw *FanoutWorkers) runPartition(ctx context.Context, p int) error {
	r, err := newRunnerOn(ctx, fw.js, streams.StreamFanout, streams.FanoutWorker(p), fw.opts)
	if err != nil {
		return err
	}
	w, err := newInboxWriter(ctx, fw.js, streams.InboxMessages)
	if err != nil {
		return err
	}
	w.queued, w.onPublish = true, fw.onPublish
	return r.run(ctx, func(ctx context.Context, batch []jetstream.Msg) error {
		var evs []inboxEvent
		for _, m := range batch {
			_, redelivered, err := r.source(m)
			if err != nil {
				r.deadLetter(ctx, m, err, 1)
				continue
			}
			it, err := streams.DecodeFanoutItem(m.Data())
			if err == nil && it.Kind != streams.InboxMessages {
				err = fmt.Errorf("kind %q", it.Kind)
			}
			if err != nil {
				r.deadLetter(ctx, m, fmt.Errorf("%w: fanout item does not decode: %v", errPoison, err), 1)
				continue
			}
			for _, u := range it.Users {
				evs = append(evs, inboxEvent{user: u, src: it.Src, ts: time.UnixMilli(it.TS),
					redelivered: redelivered || it.MaybeDone, data: it.Event})
			}
		}
		return w.publish(ctx, evs)
	})
}
