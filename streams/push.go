package streams

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// The push worker: a durable consumer on INBOX (each message event there
// is already one recipient's, fanout having decided who, groups included,
// and its stream sequence is the cursor the push carries) and a KV bucket
// of what it has sent.
const (
	ConsumerPush = "push"
	// BucketPush holds, per (message, device), that a push went out
	// (key "n.<hash>"), and per (user, conversation) the last push, for
	// collapsing bursts (key "c.<hash>").
	BucketPush = "natter_push"
)

// pushRecordTTL bounds how long the worker remembers a push: longer than
// any redelivery of the event it came from (max deliver tries with
// back-off, a few minutes) and than the collapse interval.
const pushRecordTTL = 24 * time.Hour

// PushBucket is the push worker's KV bucket.
func PushBucket(l Limits) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:      BucketPush,
		Description: "natter: pushes sent (per message and device) and the last push per user and conversation",
		TTL:         pushRecordTTL,
		Storage:     jetstream.FileStorage,
		Replicas:    l.Replicas,
	}
}

// PushDurable is the push worker's consumer on INBOX: message events only
// (natter.inbox.*.m), starting with what arrives after it is first
// declared, so that turning push on does not notify a month of history.
func PushDurable(t ConsumerTuning) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       ConsumerPush,
		Description:   "natter push",
		AckPolicy:     jetstream.AckExplicitPolicy,
		DeliverPolicy: jetstream.DeliverNewPolicy,
		FilterSubject: inboxPrefix + "*." + InboxMessages,
		AckWait:       t.AckWait,
		MaxDeliver:    t.MaxDeliver,
		MaxAckPending: t.MaxAckPending,
		BackOff:       backOff(t.AckWait, t.MaxDeliver),
	}
}

// EnsurePush declares the push worker's consumer and bucket; like Ensure,
// idempotent. Only a node that sends pushes calls it.
func EnsurePush(ctx context.Context, js jetstream.JetStream, s Setup) error {
	if _, err := js.CreateOrUpdateConsumer(ctx, StreamInbox, PushDurable(s.Tuning)); err != nil {
		return fmt.Errorf("declare consumer %s: %w", ConsumerPush, err)
	}
	if _, err := js.CreateOrUpdateKeyValue(ctx, PushBucket(s.Limits)); err != nil {
		return fmt.Errorf("declare bucket %s: %w", BucketPush, err)
	}
	return nil
}

// ParseInboxSubject returns the user and kind of an inbox subject
// (natter.inbox.<user_id>.<kind>).
func ParseInboxSubject(subject string) (userID, kind string, ok bool) {
	rest, found := strings.CutPrefix(subject, inboxPrefix)
	if !found {
		return "", "", false
	}
	i := strings.LastIndexByte(rest, '.')
	if i <= 0 || i == len(rest)-1 {
		return "", "", false
	}
	return rest[:i], rest[i+1:], true
}
