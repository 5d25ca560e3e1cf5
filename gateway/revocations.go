package gateway

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/natter-chat/natter/streams"
)

// revocations mirrors the sessions bucket: the revoked devices whose
// access tokens may still be unexpired. Every gateway watches it, so a
// revocation on any node cuts the device off everywhere at once.
type revocations struct {
	kv jetstream.KeyValue

	mu      sync.RWMutex
	revoked map[string]struct{}
	ready   chan struct{}
}

func newRevocations(ctx context.Context, js jetstream.JetStream) (*revocations, error) {
	kv, err := js.KeyValue(ctx, streams.BucketSessions)
	if err != nil {
		return nil, fmt.Errorf("open bucket %s: %w", streams.BucketSessions, err)
	}
	return &revocations{kv: kv, revoked: map[string]struct{}{}, ready: make(chan struct{})}, nil
}

// add records a revocation; the watcher of every node picks it up.
func (r *revocations) add(ctx context.Context, deviceID string) error {
	r.mu.Lock()
	r.revoked[deviceID] = struct{}{}
	r.mu.Unlock()
	if _, err := r.kv.Put(ctx, deviceID, []byte(strconv.FormatInt(time.Now().UnixMilli(), 10))); err != nil {
		return fmt.Errorf("record revocation of %s: %w", deviceID, err)
	}
	return nil
}

func (r *revocations) isRevoked(deviceID string) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	_, ok := r.revoked[deviceID]
	return ok
}

// watch keeps the set current and calls onRevoke for each new revocation.
func (r *revocations) watch(ctx context.Context, onRevoke func(deviceID string)) {
	for ctx.Err() == nil {
		w, err := r.kv.WatchAll(ctx)
		if err != nil {
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		for e := range w.Updates() {
			if e == nil {
				select {
				case <-r.ready:
				default:
					close(r.ready)
				}
				continue
			}
			if e.Operation() != jetstream.KeyValuePut {
				continue
			}
			r.mu.Lock()
			r.revoked[e.Key()] = struct{}{}
			r.mu.Unlock()
			onRevoke(e.Key())
		}
		_ = w.Stop()
	}
}
