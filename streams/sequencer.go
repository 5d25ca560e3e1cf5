package streams

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/natter-chat/natter/schema"
)

// LastSeqReader is what the sequencer needs from the store: a
// conversation's last seq once CONV no longer holds its messages.
type LastSeqReader interface {
	LastSeq(ctx context.Context, conversationID string) (int64, error)
}

// Sequencer assigns each message its seq and publishes it to CONV. Within
// a process, sends to one conversation are serialized by a mutex; across
// processes, each publish carries Nats-Expected-Last-Subject-Sequence, so
// of two writers racing for the same seq exactly one wins and the other
// re-reads the conversation's last message and tries again. A seq is
// therefore gap-free and never doubled, and JetStream's dedupe window
// (Nats-Msg-Id) means a retry never consumes one.
type Sequencer struct {
	js    jetstream.JetStream
	conv  jetstream.Stream
	store LastSeqReader

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

// maxSeqConflicts bounds the retries of one send when other writers keep
// winning the race for the conversation's next seq; between retries it
// backs off with jitter so contenders spread out.
const maxSeqConflicts = 50

// NewSequencer returns a sequencer over CONV. Run forgets idle
// conversations.
func NewSequencer(js jetstream.JetStream, conv jetstream.Stream, st LastSeqReader) *Sequencer {
	return &Sequencer{js: js, conv: conv, store: st, convs: map[string]*convSeq{}}
}

func (s *Sequencer) get(conv string) *convSeq {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.convs[conv]
	if c == nil {
		c = &convSeq{}
		s.convs[conv] = c
	}
	return c
}

// Publish sequences rec (its conversation, sender and content set) and
// returns it with its seq and message id. A duplicate within JetStream's
// window returns the original record and duplicate true. Errors wrap
// ErrStreamFull, ErrStorage, ErrTimeout or ErrUnavailable, or the store's
// error when the conversation's tail had to be read from it.
func (s *Sequencer) Publish(ctx context.Context, rec MessageRecord) (MessageRecord, bool, error) {
	c := s.get(rec.ConversationID)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.used = time.Now()
	rec.V = RecordVersion
	subject := MsgSubject(rec.ConversationID)
	for attempt := range maxSeqConflicts {
		if attempt > 0 {
			backoff := time.Duration(rand.Int64N(int64(min(1<<attempt, 64)))) * time.Millisecond
			select {
			case <-ctx.Done():
				return rec, false, fmt.Errorf("publish to %s: %w: %v", subject, ErrUnavailable, ctx.Err())
			case <-time.After(backoff):
			}
		}
		if !c.loaded {
			if err := s.load(ctx, rec.ConversationID, c); err != nil {
				return rec, false, err
			}
		}
		rec.Seq = c.seq + 1
		rec.MessageID = schema.MessageID(rec.ConversationID, rec.Seq)
		m := nats.NewMsg(subject)
		m.Data, _ = json.Marshal(rec)
		m.Header.Set(jetstream.MsgIDHeader, DedupeID(rec.SenderID, rec.ClientMessageID))
		m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(c.streamSeq, 10))
		m.Header.Set(HeaderSeq, strconv.FormatInt(rec.Seq, 10))
		ack, err := s.js.PublishMsg(ctx, m)
		switch {
		case err == nil && ack.Duplicate:
			orig, err := s.original(ctx, ack.Sequence)
			return orig, true, err
		case err == nil:
			c.streamSeq, c.seq = ack.Sequence, rec.Seq
			return rec, false, nil
		case IsWrongLastSeq(err):
			c.loaded = false // another writer won: re-read and retry
			continue
		case IsStreamFull(err):
			return rec, false, fmt.Errorf("publish to %s: %w", subject, ErrStreamFull)
		case IsStorageFailure(err):
			c.loaded = false
			return rec, false, fmt.Errorf("publish to %s: %w: %v", subject, ErrStorage, err)
		case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout):
			c.loaded = false
			return rec, false, fmt.Errorf("publish to %s: %w: %v", subject, ErrTimeout, err)
		default:
			c.loaded = false
			return rec, false, fmt.Errorf("publish to %s: %w: %v", subject, ErrUnavailable, err)
		}
	}
	return rec, false, fmt.Errorf("publish to %s: %w: %d seq conflicts", subject, ErrUnavailable, maxSeqConflicts)
}

// load reads the conversation's last message from CONV, or from the store
// when CONV no longer holds any (they aged out after being persisted),
// and the seq of an erased last message, whichever is larger.
func (s *Sequencer) load(ctx context.Context, conv string, c *convSeq) error {
	last, err := s.conv.GetLastMsgForSubject(ctx, MsgSubject(conv))
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		seq, err := s.store.LastSeq(ctx, conv)
		if err != nil {
			return fmt.Errorf("last seq of %s: %w", conv, err)
		}
		c.streamSeq, c.seq = 0, seq
	case err != nil:
		return fmt.Errorf("read tail of %s: %w: %v", conv, ErrUnavailable, err)
	default:
		seq, err := strconv.ParseInt(last.Header.Get(HeaderSeq), 10, 64)
		if err != nil {
			return fmt.Errorf("message %d of %s has no %s header: %w", last.Sequence, conv, HeaderSeq, err)
		}
		c.streamSeq, c.seq = last.Sequence, seq
	}
	// An erased tail (erase.go) left its seq on the erased subject.
	mark, err := s.conv.GetLastMsgForSubject(ctx, ErasedSubject(conv))
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
	case err != nil:
		return fmt.Errorf("read erased tail of %s: %w: %v", conv, ErrUnavailable, err)
	default:
		if seq, err := strconv.ParseInt(mark.Header.Get(HeaderSeq), 10, 64); err == nil && seq > c.seq {
			c.seq = seq
		}
	}
	c.loaded = true
	return nil
}

// original reads back the message a duplicate publish refers to.
func (s *Sequencer) original(ctx context.Context, streamSeq uint64) (MessageRecord, error) {
	raw, err := s.conv.GetMsg(ctx, streamSeq)
	if err != nil {
		return MessageRecord{}, fmt.Errorf("read original message %d: %w: %v", streamSeq, ErrUnavailable, err)
	}
	rec, err := DecodeMessage(raw.Data)
	if err != nil {
		return MessageRecord{}, fmt.Errorf("decode original message %d: %w", streamSeq, err)
	}
	return rec, nil
}

// Run forgets conversations idle for 10 minutes until ctx ends; they are
// re-read from CONV on their next send.
func (s *Sequencer) Run(ctx context.Context) error {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
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
