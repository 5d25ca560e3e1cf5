// Package streams declares, as data, natter's JetStream streams, durable
// consumers and KV buckets, and the subjects and headers that tie them
// together. Operators can inspect all of them with the standard nats CLI.
//
//	natter.conv.msg.<conversation_id>   CONV   a message (MessageRecord)
//	natter.conv.rcpt.<conversation_id>  CONV   a delivered/read status (Receipt)
//	natter.conv.del.<conversation_id>   CONV   a deletion (Deletion)
//	natter.conv.mem.<conversation_id>   CONV   a group membership change (Membership; groups to come)
//	natter.conv.erased.<conversation_id> CONV  the seq of an erased last message (erase.go)
//	natter.inbox.<user_id>.m            INBOX  message and deleted events for a user
//	natter.fanout.<partition>.<conv_id> FANOUT large groups' events waiting for a worker (fanoutqueue.go)
//	natter.inbox.<user_id>.r            INBOX  receipt events for a user
//	natter.inbox._erased                INBOX  the range of oldest events erased (ErasedHead)
//	natter.dlq.<consumer>               DEADLETTER  what a consumer gave up on
//	natter.deliver.<user_id>.<kind>     (core)  INBOX republishes every stored event here
//	natter.deliver.<user_id>.live       (core)  ephemeral events (typing), never stored
//	natter.blocks.changed               (core)  a pair's block changed: every node drops its cached state
//
// CONV carries records (records.go), versioned and separate from the
// client frames of schema; INBOX carries the rendered client events.
//
// Each inbox sub-subject has one writer that publishes in CONV order
// (receipts for .r), which makes redelivery after a crash detectable;
// .m has fanout and, behind it, the fanout queue's workers (see
// consumers/inbox.go for how each still tells a redelivery).
package streams

import (
	"crypto/sha256"
	"encoding/hex"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Stream, consumer and bucket names.
const (
	StreamConv       = "CONV"
	StreamInbox      = "INBOX"
	StreamDeadLetter = "DEADLETTER"

	ConsumerPersist  = "persist"
	ConsumerFanout   = "fanout"
	ConsumerReceipts = "receipts"
	// ConsumerErase erases the content of messages deleted for everyone
	// (erase.go); it reads deletions only.
	ConsumerErase = "erase"

	// BucketSessions holds revoked device ids (key: device id) so every
	// gateway cuts a revoked device off at once.
	BucketSessions = "natter_sessions"
)

// Subject prefixes.
const (
	convMsgPrefix  = "natter.conv.msg."
	convRcptPrefix = "natter.conv.rcpt."
	convDelPrefix  = "natter.conv.del."
	convMemPrefix  = "natter.conv.mem."
	inboxPrefix    = "natter.inbox."
	deliverPrefix  = "natter.deliver."
	dlqPrefix      = "natter.dlq."
)

// Header names. Nats-Msg-Id and Nats-Expected-Last-Subject-Sequence are
// JetStream's own (jetstream.MsgIDHeader, ExpectedLastSubjSeqHeader).
const (
	// HeaderSeq carries a message's seq in its conversation, so the
	// sequencer can read the last one back from the stream.
	HeaderSeq = "Natter-Seq"
	// HeaderSource carries the CONV stream sequence an inbox event was
	// derived from.
	HeaderSource = "Natter-Src"
	// HeaderError and HeaderOrigin describe a dead letter.
	HeaderError      = "Natter-Error"
	HeaderOrigin     = "Natter-Origin-Subject"
	HeaderOriginSeq  = "Natter-Origin-Seq"
	HeaderDeliveries = "Natter-Deliveries"
)

// Inbox kinds: one writer each.
const (
	InboxMessages = "m"
	InboxReceipts = "r"
)

// MsgSubject is where a conversation's messages are published.
func MsgSubject(conversationID string) string { return convMsgPrefix + conversationID }

// ReceiptSubject is where a conversation's statuses are published.
func ReceiptSubject(conversationID string) string { return convRcptPrefix + conversationID }

// DeleteSubject is where a conversation's deletions are published.
func DeleteSubject(conversationID string) string { return convDelPrefix + conversationID }

// MembershipSubject is where a group conversation's membership changes
// are published, in order with its messages.
func MembershipSubject(conversationID string) string { return convMemPrefix + conversationID }

// SubjectBlocksChanged tells every node that a pair's block changed (the
// payload is PairKey of the two users).
const SubjectBlocksChanged = "natter.blocks.changed"

// InboxSubject is one writer's part of a user's inbox.
func InboxSubject(userID, kind string) string { return inboxPrefix + userID + "." + kind }

// InboxFilter matches every event of a user's inbox.
func InboxFilter(userID string) string { return inboxPrefix + userID + ".>" }

// DeliverFilter matches the republished copies of a user's inbox events:
// what a connected device listens to. Each copy carries Nats-Sequence (its
// cursor) and Nats-Last-Sequence (the previous event on the same inbox
// subject), which is enough to detect a missed event.
func DeliverFilter(userID string) string { return deliverPrefix + userID + ".>" }

// LiveSubject carries a user's ephemeral events (typing): core NATS only,
// under DeliverFilter so that a connection needs one subscription. Such
// events carry no Nats-Sequence, which is how a connection tells them
// from stored ones.
func LiveSubject(userID string) string { return deliverPrefix + userID + ".live" }

// DeadLetterSubject is where a consumer puts what it gave up on.
func DeadLetterSubject(consumer string) string { return dlqPrefix + consumer }

// Kind of a CONV subject.
type Kind int

// CONV subject kinds.
const (
	KindUnknown Kind = iota
	KindMessage
	KindReceipt
	KindDelete
	// KindMembership is a group membership change; consumers of today
	// skip it.
	KindMembership
)

// ParseConvSubject returns the kind and conversation id of a CONV subject.
func ParseConvSubject(subject string) (Kind, string) {
	for _, p := range []struct {
		prefix string
		kind   Kind
	}{{convMsgPrefix, KindMessage}, {convRcptPrefix, KindReceipt}, {convDelPrefix, KindDelete}, {convMemPrefix, KindMembership}} {
		if len(subject) > len(p.prefix) && subject[:len(p.prefix)] == p.prefix {
			return p.kind, subject[len(p.prefix):]
		}
	}
	return KindUnknown, ""
}

// DedupeID is the Nats-Msg-Id of a send: stable for a sender and
// client_message_id, and safe as a header value whatever the client sent.
func DedupeID(senderID, clientMessageID string) string {
	h := sha256.Sum256([]byte(senderID + "\x00" + clientMessageID))
	return hex.EncodeToString(h[:16])
}

// Limits configures the streams.
type Limits struct {
	// Replicas is 1 on a single node, 3 on a cluster.
	Replicas int
	// ConvMaxAge is how long CONV keeps a message after it was published.
	// The store is the system of record; CONV only needs to outlive the
	// consumers' lag.
	ConvMaxAge time.Duration
	// InboxMaxAge is how far back a device can resume with its cursor.
	InboxMaxAge time.Duration
	// MaxBytes caps CONV (-1: unlimited); a full CONV refuses new sends
	// instead of dropping acknowledged ones. INBOX is bounded by age only:
	// it is derived from CONV, and a full INBOX would stall delivery to
	// every user instead of refusing new sends.
	MaxBytes int64
	// DuplicateWindow is JetStream's dedupe window for sends and events.
	DuplicateWindow time.Duration
}

// Stream configurations.
func Conv(l Limits) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        StreamConv,
		Description: "natter: per-conversation messages, statuses and deletions",
		Subjects:    []string{"natter.conv.>"},
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardNew,
		MaxAge:      l.ConvMaxAge,
		MaxBytes:    l.MaxBytes,
		Storage:     jetstream.FileStorage,
		Replicas:    l.Replicas,
		Duplicates:  l.DuplicateWindow,
	}
}

func Inbox(l Limits) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        StreamInbox,
		Description: "natter: each user's events, their offline queue and sync log",
		Subjects:    []string{"natter.inbox.>"},
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardNew,
		MaxAge:      l.InboxMaxAge,
		Storage:     jetstream.FileStorage,
		Replicas:    l.Replicas,
		Duplicates:  l.DuplicateWindow,
		// Devices read their replay with batched direct gets and their
		// live events from the republished copies: a connection costs a
		// core subscription, not a consumer.
		AllowDirect: true,
		RePublish:   &jetstream.RePublish{Source: inboxPrefix + ">", Destination: deliverPrefix + ">"},
	}
}

func DeadLetter(l Limits) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        StreamDeadLetter,
		Description: "natter: events a consumer gave up on, with the reason in Natter-Error",
		Subjects:    []string{"natter.dlq.>"},
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		MaxAge:      l.InboxMaxAge,
		Storage:     jetstream.FileStorage,
		Replicas:    l.Replicas,
	}
}

// Sessions is the KV bucket of revoked devices. Entries only need to
// outlive the access tokens they revoke.
func Sessions(l Limits, tokenTTL time.Duration) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:      BucketSessions,
		Description: "natter: revoked devices",
		TTL:         tokenTTL + time.Minute,
		Storage:     jetstream.FileStorage,
		Replicas:    l.Replicas,
	}
}

// ConsumerTuning is shared by the durable consumers.
type ConsumerTuning struct {
	MaxAckPending int
	MaxDeliver    int
	AckWait       time.Duration
	// Pinned gives CONV's consumers one active puller at a time among the
	// nodes of a cluster (JetStream's pinned priority group): each inbox
	// subject must have one writer that publishes in CONV order, and
	// persist's batches must not deadlock each other in the store. The
	// other nodes' pulls wait and take over when the pinned one stops
	// pulling for PinnedTTL (docs/architecture.md, "Cluster mode").
	Pinned bool
}

// PriorityGroup is the priority group of pinned consumers, and PinnedTTL
// how long the pinned puller may go without a pull request before
// another node's takes over: three of the consumers' 5 s pull expiries.
const (
	PriorityGroup = "natter"
	PinnedTTL     = 15 * time.Second
)

// Durable returns the config of one of the durable consumers on CONV.
// persist and fanout read everything (so their ack floor is exact for the
// sync barrier); receipts reads only statuses.
func Durable(name string, t ConsumerTuning) jetstream.ConsumerConfig {
	c := jetstream.ConsumerConfig{
		Durable:       name,
		Description:   "natter " + name,
		AckPolicy:     jetstream.AckExplicitPolicy,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckWait:       t.AckWait,
		MaxDeliver:    t.MaxDeliver,
		MaxAckPending: t.MaxAckPending,
		// Backs off redeliveries after an ack timeout; explicit naks set
		// their own delay.
		BackOff: backOff(t.AckWait, t.MaxDeliver),
	}
	if t.Pinned {
		c.PriorityPolicy = jetstream.PriorityPolicyPinned
		c.PriorityGroups = []string{PriorityGroup}
		c.PinnedTTL = PinnedTTL
	}
	switch name {
	case ConsumerReceipts:
		c.FilterSubject = convRcptPrefix + ">"
	case ConsumerErase:
		c.FilterSubject = convDelPrefix + ">"
	}
	return c
}

func backOff(base time.Duration, maxDeliver int) []time.Duration {
	if maxDeliver <= 1 {
		return nil
	}
	n := min(maxDeliver-1, 4)
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = base << i
	}
	return out
}
