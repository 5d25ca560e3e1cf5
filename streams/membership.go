package streams

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// DecodeMembership decodes a membership record.
func DecodeMembership(data []byte) (Membership, error) {
	var m Membership
	err := decodeRecord(data, &m, func() int { return m.V })
	return m, err
}

// Membership makes a group membership change in the group conversation's
// order. Holding the conversation's sequencing lock, it calls change with
// the conversation's last seq (the change counts from the next one on:
// change writes the store with it), then publishes the records change
// returns on natter.conv.mem.<conversation>, each with AsOfSeq set. A
// message is therefore sequenced either before the change (seq <= AsOfSeq)
// or after it, in this process and, through
// Nats-Expected-Last-Subject-Sequence on the conversation's message
// subject, across processes: a message another node sequenced meanwhile
// makes the publish fail (ErrUnavailable) rather than order it wrongly.
//
// change's error is returned as it is; nothing is published then.
func (s *Sequencer) Membership(ctx context.Context, conv string, change func(ctx context.Context, lastSeq int64) ([]Membership, error)) error {
	c := s.get(conv)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.used = time.Now()
	if !c.loaded {
		if err := s.load(ctx, conv, c); err != nil {
			return err
		}
	}
	recs, err := change(ctx, c.seq)
	if err != nil {
		return err
	}
	subject := MembershipSubject(conv)
	for _, rec := range recs {
		rec.V, rec.AsOfSeq, rec.ConversationID = RecordVersion, c.seq, conv
		m := nats.NewMsg(subject)
		m.Data, _ = json.Marshal(rec)
		m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(c.streamSeq, 10))
		m.Header.Set(jetstream.ExpectedLastSubjSeqSubjHeader, MsgSubject(conv))
		if _, err := s.js.PublishMsg(ctx, m); err != nil {
			c.loaded = false
			if IsWrongLastSeq(err) {
				return fmt.Errorf("publish %s of %s: %w: another node sequenced a message meanwhile", rec.Change, conv, ErrUnavailable)
			}
			return fmt.Errorf("publish %s of %s: %w", rec.Change, conv, classify(err))
		}
	}
	return nil
}
