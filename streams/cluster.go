package streams

import (
	"context"
	"errors"
	"sync"

	"github.com/nats-io/nats.go/jetstream"
)

// Place declares Ensure's streams and buckets all at once. On a cluster
// each replicated stream answers only once its Raft group has elected a
// leader, seconds each; declared one by one, as Ensure does, a cluster's
// first start waited for every election in turn. Ensure afterwards finds
// them in place. The caller bounds ctx.
func Place(ctx context.Context, js jetstream.JetStream, s Setup) error {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	run := func(f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	for _, cfg := range []jetstream.StreamConfig{Conv(s.Limits), Inbox(s.Limits), DeadLetter(s.Limits)} {
		run(func() error { _, err := js.CreateOrUpdateStream(ctx, cfg); return err })
	}
	for _, cfg := range []jetstream.KeyValueConfig{Sessions(s.Limits, s.TokenTTL), PresenceBucket(s.Limits)} {
		run(func() error { _, err := js.CreateOrUpdateKeyValue(ctx, cfg); return err })
	}
	wg.Wait()
	return errors.Join(errs...)
}
