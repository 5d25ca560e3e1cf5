package streams

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Revocations mirrors the sessions bucket: the revoked devices whose
// access tokens may still be unexpired. Every node runs one, so a
// revocation on any node cuts the device off everywhere at once.
type Revocations struct {
	kv       jetstream.KeyValue
	onRevoke func(deviceID string)

	mu      sync.RWMutex
	revoked map[string]struct{}
	loaded  chan struct{} // closed once the bucket's content was read
	once    sync.Once
}

// NewRevocations opens the bucket; Run watches it and calls onRevoke
// (which may be nil) for each revocation it learns of.
func NewRevocations(ctx context.Context, js jetstream.JetStream, onRevoke func(deviceID string)) (*Revocations, error) {
	kv, err := js.KeyValue(ctx, BucketSessions)
	if err != nil {
		return nil, fmt.Errorf("open bucket %s: %w", BucketSessions, err)
	}
	if onRevoke == nil {
		onRevoke = func(string) {}
	}
	return &Revocations{kv: kv, onRevoke: onRevoke, revoked: map[string]struct{}{}, loaded: make(chan struct{})}, nil
}

// Add records a revocation; the watcher of every node picks it up.
func (r *Revocations) Add(ctx context.Context, deviceID string) error {
	r.mu.Lock()
	r.revoked[deviceID] = struct{}{}
	r.mu.Unlock()
	if _, err := r.kv.Put(ctx, deviceID, []byte(strconv.FormatInt(time.Now().UnixMilli(), 10))); err != nil {
		return fmt.Errorf("record revocation of %s: %w: %v", deviceID, ErrUnavailable, err)
	}
	return nil
}

// IsRevoked reports a revoked device.
func (r *Revocations) IsRevoked(deviceID string) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	_, ok := r.revoked[deviceID]
	return ok
}

// Loaded is closed once every revocation stored before Run started is
// known: until then a revoked token could pass.
func (r *Revocations) Loaded() <-chan struct{} { return r.loaded }

// Run keeps the set current until ctx ends.
func (r *Revocations) Run(ctx context.Context) error {
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
				r.once.Do(func() { close(r.loaded) })
				continue
			}
			if e.Operation() != jetstream.KeyValuePut {
				continue
			}
			r.mu.Lock()
			r.revoked[e.Key()] = struct{}{}
			r.mu.Unlock()
			r.onRevoke(e.Key())
		}
		_ = w.Stop()
	}
	return nil
}
