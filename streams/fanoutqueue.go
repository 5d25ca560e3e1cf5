package streams

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The fanout work queue: fanout hands the events of a large group to it,
// one item per partition of the members, and partition workers write them
// into the inboxes, so that a 500-member message costs the fanout
// consumer a few publishes instead of 500 and the 1:1 traffic behind it
// is not held up.
//
//	natter.fanout.<partition>.<conversation_id>   FANOUT   a FanoutItem
//
// A member is always in the same partition (FanoutPartition), and one
// client at a time consumes a partition (a pinned priority group), so a
// member's queued events are written in the order fanout queued them,
// which is CONV order. The conversation id in the subject lets fanout
// ask whether a conversation still has queued items (QueuedConversations,
// Pending), so that it never writes a later event of that conversation
// directly before the queued ones.
const (
	StreamFanout = "FANOUT"
	fanoutPrefix = "natter.fanout."
	// fanoutGroup is the priority group of the partition consumers.
	fanoutGroup = "natter"
	// fanoutPinnedTTL is how long a silent worker keeps its partition
	// before another node's worker takes it over.
	fanoutPinnedTTL = 10 * time.Second
)

// FanoutQueue is the work-queue stream. No age limit: an item is a
// promise of inbox events and leaves only when a worker has written them.
func FanoutQueue(l Limits) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        StreamFanout,
		Description: "natter: inbox events of large groups waiting for a fanout worker, partitioned by member",
		Subjects:    []string{fanoutPrefix + ">"},
		Retention:   jetstream.WorkQueuePolicy,
		Discard:     jetstream.DiscardNew,
		Storage:     jetstream.FileStorage,
		Replicas:    l.Replicas,
		Duplicates:  l.DuplicateWindow,
	}
}

// FanoutSubject is where partition p's items for a conversation go.
func FanoutSubject(partition int, conversationID string) string {
	return fanoutPrefix + strconv.Itoa(partition) + "." + conversationID
}

// FanoutPartition is user's partition out of n.
func FanoutPartition(user string, n int) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(user))
	return int(h.Sum32() % uint32(max(n, 1)))
}

// FanoutWorker is the durable consumer name of partition p.
func FanoutWorker(p int) string { return "fanout-q" + strconv.Itoa(p) }

// FanoutWorkerDurable is partition p's consumer: pinned, so that one
// client at a time (on any node) handles the partition, in order.
func FanoutWorkerDurable(p int, t ConsumerTuning) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:        FanoutWorker(p),
		Description:    "natter fanout worker, partition " + strconv.Itoa(p),
		AckPolicy:      jetstream.AckExplicitPolicy,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		FilterSubject:  fanoutPrefix + strconv.Itoa(p) + ".>",
		AckWait:        t.AckWait,
		MaxDeliver:     t.MaxDeliver,
		MaxAckPending:  t.MaxAckPending,
		BackOff:        backOff(t.AckWait, t.MaxDeliver),
		PriorityPolicy: jetstream.PriorityPolicyPinned,
		PriorityGroups: []string{fanoutGroup},
		PinnedTTL:      fanoutPinnedTTL,
	}
}

// FanoutPriorityGroup is the pull option every partition worker consumes with.
func FanoutPriorityGroup() jetstream.PullConsumeOpt { return jetstream.PullPriorityGroup(fanoutGroup) }

// EnsureFanoutQueue declares the stream and the consumers of partitions
// 0..partitions-1; idempotent.
func EnsureFanoutQueue(ctx context.Context, js jetstream.JetStream, s Setup, partitions int) error {
	if _, err := js.CreateOrUpdateStream(ctx, FanoutQueue(s.Limits)); err != nil {
		return fmt.Errorf("declare stream %s: %w", StreamFanout, err)
	}
	for p := range partitions {
		if _, err := js.CreateOrUpdateConsumer(ctx, StreamFanout, FanoutWorkerDurable(p, s.Tuning)); err != nil {
			return fmt.Errorf("declare consumer %s: %w", FanoutWorker(p), err)
		}
	}
	return nil
}

// FanoutItem is one queued piece of a fanout: one event for the members
// of one partition. Version 1.
type FanoutItem struct {
	V int `json:"v"`
	// Src is the CONV sequence the event derives from, TS its CONV time
	// (ms): the worker's dedupe rests on both.
	Src  uint64 `json:"src"`
	TS   int64  `json:"ts"`
	Conv string `json:"conv"`
	// Users get Event in their inbox of Kind.
	Users []string        `json:"users"`
	Kind  string          `json:"kind"`
	Event json.RawMessage `json:"event"`
	// MaybeDone is set when fanout queued the item while redoing its
	// source: the events may be in the inboxes already.
	MaybeDone bool `json:"maybe_done,omitempty"`
}

// DecodeFanoutItem decodes an item, refusing one of a newer version or
// without what a worker needs.
func DecodeFanoutItem(data []byte) (FanoutItem, error) {
	var it FanoutItem
	if err := json.Unmarshal(data, &it); err != nil {
		return it, err
	}
	switch {
	case it.V != 1:
		return it, fmt.Errorf("fanout item version %d", it.V)
	case it.Src == 0 || it.Kind == "" || len(it.Event) == 0:
		return it, errors.New("fanout item without src, kind or event")
	}
	return it, nil
}

// FanoutQueueState answers what fanout and the sync barrier ask of the
// queue.
type FanoutQueueState struct {
	js jetstream.JetStream
}

// NewFanoutQueueState reads the queue over js.
func NewFanoutQueueState(js jetstream.JetStream) *FanoutQueueState { return &FanoutQueueState{js: js} }

// Pending reports whether conversationID has items in the queue.
func (q *FanoutQueueState) Pending(ctx context.Context, conversationID string) (bool, error) {
	s, err := q.js.Stream(ctx, StreamFanout)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("fanout queue: %w: %v", ErrUnavailable, err)
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(fanoutPrefix+"*."+conversationID))
	if err != nil {
		return false, fmt.Errorf("fanout queue of %s: %w: %v", conversationID, ErrUnavailable, err)
	}
	return info.State.Msgs > 0 && len(info.State.Subjects) > 0, nil
}

// QueuedConversations lists the conversations with items in the queue.
func (q *FanoutQueueState) QueuedConversations(ctx context.Context) ([]string, error) {
	s, err := q.js.Stream(ctx, StreamFanout)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("fanout queue: %w: %v", ErrUnavailable, err)
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(fanoutPrefix+">"))
	if err != nil {
		return nil, fmt.Errorf("fanout queue subjects: %w: %v", ErrUnavailable, err)
	}
	seen := map[string]bool{}
	var out []string
	for subj := range info.State.Subjects {
		rest := strings.TrimPrefix(subj, fanoutPrefix)
		if i := strings.IndexByte(rest, '.'); i > 0 && !seen[rest[i+1:]] {
			seen[rest[i+1:]] = true
			out = append(out, rest[i+1:])
		}
	}
	return out, nil
}

// Floor is the lowest CONV sequence with an item still queued, or
// math.MaxUint64 when the queue is empty (or absent). Items are queued in
// CONV order, so the stream's first item holds the lowest.
func (q *FanoutQueueState) Floor(ctx context.Context) (uint64, error) {
	s, err := q.js.Stream(ctx, StreamFanout)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return math.MaxUint64, nil
	}
	if err != nil {
		return 0, fmt.Errorf("fanout queue: %w: %v", ErrUnavailable, err)
	}
	for range 3 {
		st := s.CachedInfo().State
		if st.Msgs == 0 {
			return math.MaxUint64, nil
		}
		m, err := s.GetMsg(ctx, st.FirstSeq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			// Acked meanwhile: look again.
			if _, err := s.Info(ctx); err != nil {
				return 0, fmt.Errorf("fanout queue: %w: %v", ErrUnavailable, err)
			}
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("fanout queue first item: %w: %v", ErrUnavailable, err)
		}
		it, err := DecodeFanoutItem(m.Data)
		if err != nil {
			return 0, nil // an item no worker can handle is dead-lettered soon: wait for it
		}
		return it.Src, nil
	}
	return 0, nil // churning: not passed yet, the caller polls again
}

// HasEvent reports whether user's inbox of kind holds an event derived
// from CONV sequence src, looking from since (minus clockSlack) on: the
// exact check of a writer that shares the subject with another writer
// and so cannot rely on the last event's source.
func (r *InboxReader) HasEvent(ctx context.Context, user, kind string, src uint64, since time.Time) (bool, error) {
	subj := "$JS.API.DIRECT.GET." + StreamInbox
	filter := InboxSubject(user, kind)
	req, _ := json.Marshal(startTimeRequest{StartTime: since.Add(-clockSlack).UTC(), NextFor: filter, Batch: scanBatch, MaxBytes: 4 << 20})
	for {
		var last uint64
		found := false
		got, more, err := r.directGetMsgs(ctx, subj, req, func(m *nats.Msg, seq uint64) error {
			last = seq
			if n, _ := strconv.ParseUint(m.Header.Get(HeaderSource), 10, 64); n == src {
				found = true
				return errStopScan
			}
			return nil
		})
		if found {
			return true, nil
		}
		if err != nil {
			return false, fmt.Errorf("look for event %d of %s: %w", src, user, err)
		}
		if got == 0 || !more {
			return false, nil
		}
		req, _ = json.Marshal(seqRequest{Seq: last + 1, NextFor: filter, Batch: scanBatch, MaxBytes: 4 << 20})
	}
}
