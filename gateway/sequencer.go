package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/natter-chat/natter/schema"
	"github.com/natter-chat/natter/streams"
)

// sequencer assigns each message its seq and publishes it. Within a
// process, sends to one conversation are serialized by a mutex; across
// processes, each publish carries Nats-Expected-Last-Subject-Sequence, so
// of two gateways racing for the same seq exactly one wins and the other
// re-reads the conversation's last message and tries again. A seq is
// therefore gap-free and never doubled, and JetStream's dedupe window
// (Nats-Msg-Id) means a retry never consumes one.
type sequencer struct {
	js    jetstream.JetStream
	conv  jetstream.Stream
	store interface {
		LastSeq(ctx context.Context, conversationID string) (int64, error)
	}

	mu    sync.Mutex
	convs map[string]*convSeq
}

// convSeq is what this process last knew of a conversation's tail.
type convSeq struct {
	mu        sync.Mutex
	loaded    bool
	streamSeq uint64 // CONV sequence of the last message, 0 if none there
	seq       int64  // its seq in the conversation
	used      time.Time
}

// maxSeqConflicts bounds the retries of one send when other gateways keep
// winning the race for the conversation's next seq; between retries it
// backs off with jitter so contenders spread out.
const maxSeqConflicts = 50

func newSequencer(js jetstream.JetStream, conv jetstream.Stream, st interface {
	LastSeq(ctx context.Context, conversationID string) (int64, error)
}) *sequencer {
	return &sequencer{js: js, conv: conv, store: st, convs: map[string]*convSeq{}}
}

func (s *sequencer) get(conv string) *convSeq {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.convs[conv]
	if c == nil {
		c = &convSeq{}
		s.convs[conv] = c
	}
	return c
}

// publish sequences msg (its conversation, sender and content set) and
// returns the ack. A duplicate within the window returns the original.
func (s *sequencer) publish(ctx context.Context, msg schema.Message) (schema.Ack, error) {
	c := s.get(msg.ConversationID)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.used = time.Now()
	subject := streams.MsgSubject(msg.ConversationID)
	for attempt := range maxSeqConflicts {
		if attempt > 0 {
			backoff := time.Duration(rand.Int64N(int64(min(1<<attempt, 64)))) * time.Millisecond
			select {
			case <-ctx.Done():
				return schema.Ack{}, fmt.Errorf("%w: %v", schema.ErrUnavailable, ctx.Err())
			case <-time.After(backoff):
			}
		}
		if !c.loaded {
			if err := s.load(ctx, msg.ConversationID, c); err != nil {
				return schema.Ack{}, err
			}
		}
		msg.Seq = c.seq + 1
		msg.MessageID = schema.MessageID(msg.ConversationID, msg.Seq)
		m := nats.NewMsg(subject)
		m.Data, _ = json.Marshal(msg)
		m.Header.Set(jetstream.MsgIDHeader, streams.DedupeID(msg.SenderID, msg.ClientMessageID))
		m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(c.streamSeq, 10))
		m.Header.Set(streams.HeaderSeq, strconv.FormatInt(msg.Seq, 10))
		ack, err := s.js.PublishMsg(ctx, m)
		switch {
		case err == nil && ack.Duplicate:
			return s.original(ctx, ack.Sequence)
		case err == nil:
			c.streamSeq, c.seq = ack.Sequence, msg.Seq
			return ackOf(msg, false), nil
		case isWrongLastSeq(err):
			c.loaded = false // another gateway wrote: re-read and retry
			continue
		case isStreamFull(err):
			e := schema.Errorf(http.StatusServiceUnavailable, schema.CodeUnavailable,
				"the message log is full: new messages are refused until retention frees space (operators: raise --stream-max-bytes); retry later with the same client_message_id")
			e.RetryAfterMS = 30_000
			return schema.Ack{}, e
		case isStorageFailure(err):
			c.loaded = false
			e := schema.Errorf(http.StatusServiceUnavailable, schema.CodeUnavailable,
				"the server cannot store messages: its disk is full or failing (operators: free space in --data, see the log); retry later with the same client_message_id")
			e.RetryAfterMS = 30_000
			return schema.Ack{}, e
		case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout):
			// JetStream leaves a publish it cannot write unanswered.
			c.loaded = false
			e := schema.Errorf(http.StatusServiceUnavailable, schema.CodeUnavailable,
				"the message log did not answer in time: the server is overloaded or cannot write to its disk (operators: see the log); retry with the same client_message_id")
			e.RetryAfterMS = 5_000
			return schema.Ack{}, fmt.Errorf("%w: publish to %s: %v", e, subject, err)
		default:
			c.loaded = false
			return schema.Ack{}, fmt.Errorf("%w: publish to %s: %v", schema.ErrUnavailable, subject, err)
		}
	}
	return schema.Ack{}, fmt.Errorf("%w: %d seq conflicts on %s", schema.ErrUnavailable, maxSeqConflicts, msg.ConversationID)
}

// load reads the conversation's last message from CONV, or from the store
// when CONV no longer holds any (they aged out after being persisted).
func (s *sequencer) load(ctx context.Context, conv string, c *convSeq) error {
	last, err := s.conv.GetLastMsgForSubject(ctx, streams.MsgSubject(conv))
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		seq, err := s.store.LastSeq(ctx, conv)
		if err != nil {
			return fmt.Errorf("last seq of %s: %w", conv, err)
		}
		c.streamSeq, c.seq = 0, seq
	case err != nil:
		return fmt.Errorf("%w: read tail of %s: %v", schema.ErrUnavailable, conv, err)
	default:
		seq, err := strconv.ParseInt(last.Header.Get(streams.HeaderSeq), 10, 64)
		if err != nil {
			return fmt.Errorf("message %d of %s has no %s header: %w", last.Sequence, conv, streams.HeaderSeq, err)
		}
		c.streamSeq, c.seq = last.Sequence, seq
	}
	c.loaded = true
	return nil
}

// original reads back the message a duplicate publish refers to.
func (s *sequencer) original(ctx context.Context, streamSeq uint64) (schema.Ack, error) {
	raw, err := s.conv.GetMsg(ctx, streamSeq)
	if err != nil {
		return schema.Ack{}, fmt.Errorf("%w: read original message %d: %v", schema.ErrUnavailable, streamSeq, err)
	}
	var msg schema.Message
	if err := json.Unmarshal(raw.Data, &msg); err != nil {
		return schema.Ack{}, fmt.Errorf("decode original message %d: %w", streamSeq, err)
	}
	return ackOf(msg, true), nil
}

func ackOf(m schema.Message, duplicate bool) schema.Ack {
	return schema.Ack{ClientMessageID: m.ClientMessageID, MessageID: m.MessageID, ConversationID: m.ConversationID,
		Seq: m.Seq, ServerTS: m.ServerTS, Status: schema.StatusSent, Duplicate: duplicate}
}

// isStreamFull reports JetStream refusing a message because the stream
// reached its byte limit (discard-new).
func isStreamFull(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == 10077 && strings.Contains(apiErr.Description, "maximum bytes")
}

// isStorageFailure reports JetStream failing to write a message (a full
// or failing disk) or having disabled itself after such a failure.
func isStorageFailure(err error) bool {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	switch apiErr.ErrorCode {
	case jetstream.JSErrCodeJetStreamNotEnabled, jetstream.JSErrCodeJetStreamNotEnabledForAccount,
		10023: // insufficient resources
		return true
	case 10077: // error storing message
		return !isStreamFull(err)
	}
	return false
}

func isWrongLastSeq(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// sweep forgets conversations idle for 10 minutes; they are re-read from
// CONV on their next send.
func (s *sequencer) sweep(ctx context.Context) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			s.mu.Lock()
			for k, c := range s.convs {
				if c.mu.TryLock() {
					if now.Sub(c.used) > 10*time.Minute {
						delete(s.convs, k)
					}
					c.mu.Unlock()
				}
			}
			s.mu.Unlock()
		}
	}
}
