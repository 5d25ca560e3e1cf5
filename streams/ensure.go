package streams

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Setup is everything Ensure declares.
type Setup struct {
	Limits   Limits
	Tuning   ConsumerTuning
	TokenTTL time.Duration
}

// Ensure creates or updates every stream, durable consumer and KV bucket
// natter uses. It is idempotent and safe to run on every start.
func Ensure(ctx context.Context, js jetstream.JetStream, s Setup) error {
	for _, cfg := range []jetstream.StreamConfig{Conv(s.Limits), Inbox(s.Limits), DeadLetter(s.Limits)} {
		if _, err := js.CreateOrUpdateStream(ctx, cfg); err != nil {
			return fmt.Errorf("declare stream %s: %w", cfg.Name, err)
		}
	}
	for _, name := range []string{ConsumerPersist, ConsumerFanout, ConsumerReceipts, ConsumerErase} {
		if _, err := js.CreateOrUpdateConsumer(ctx, StreamConv, Durable(name, s.Tuning)); err != nil {
			return fmt.Errorf("declare consumer %s: %w", name, err)
		}
	}
	if _, err := js.CreateOrUpdateKeyValue(ctx, Sessions(s.Limits, s.TokenTTL)); err != nil {
		return fmt.Errorf("declare bucket %s: %w", BucketSessions, err)
	}
	if _, err := js.CreateOrUpdateKeyValue(ctx, PresenceBucket(s.Limits)); err != nil {
		return fmt.Errorf("declare bucket %s: %w", BucketPresence, err)
	}
	return nil
}

// Check reports the first stream or bucket natter needs that is missing
// or unreachable: what readiness asks.
func Check(ctx context.Context, js jetstream.JetStream) error {
	for _, name := range []string{StreamConv, StreamInbox, StreamDeadLetter} {
		if _, err := js.Stream(ctx, name); err != nil {
			return fmt.Errorf("stream %s: %w", name, err)
		}
	}
	for _, name := range []string{BucketSessions, BucketPresence} {
		if _, err := js.KeyValue(ctx, name); err != nil {
			return fmt.Errorf("bucket %s: %w", name, err)
		}
	}
	return nil
}
