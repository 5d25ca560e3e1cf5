package streams

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Erasure of a message deleted for everyone: its record in CONV and the
// message events carrying its content in INBOX are removed with
// JetStream's secure delete (the bytes in the block file are overwritten),
// leaving the deletion record and the deleted events. Sequences stay
// assigned: a replay skips the erased ones, and the sequencer reads a
// conversation's last seq from the store when CONV's tail message is
// gone (Sequencer.load).
//
// Erasing the oldest events of INBOX moves the stream's first sequence,
// which would make a cursor just before them look expired. The eraser
// records such a head erasure on SubjectErasedHead (a subject no user's
// filter matches) before deleting, and Sync.Point accepts a cursor whose
// missing events all lie in the recorded range.

// ErasedSubject holds, for a conversation whose last message in CONV was
// erased, a record whose Natter-Seq header is that message's seq: the
// sequencer takes the larger of it and its tail message's, so an erased
// tail never hands its seq out again. Consumers skip the subject (an
// unknown kind).
func ErasedSubject(conversationID string) string { return convErasedPrefix + conversationID }

const convErasedPrefix = "natter.conv.erased."

// SubjectErasedHead holds the last ErasedHead record, in INBOX.
const SubjectErasedHead = inboxPrefix + "_erased"

// ErasedHead says that INBOX sequences Lo..Hi were removed by erasure,
// not by age, while Until (ms since the epoch) has not passed: the
// oldest of them ages out no earlier than that.
type ErasedHead struct {
	V     int    `json:"v"`
	Lo    uint64 `json:"lo"`
	Hi    uint64 `json:"hi"`
	Until int64  `json:"until"`
}

// Covers reports whether every sequence in [from, to] was erased, at now.
func (h ErasedHead) Covers(from, to uint64, now time.Time) bool {
	return h.Hi > 0 && h.Lo <= from && to <= h.Hi && now.UnixMilli() < h.Until
}

// Eraser removes the stored copies of a message deleted for everyone.
type Eraser struct {
	nc    *nats.Conn
	js    jetstream.JetStream
	conv  jetstream.Stream
	inbox jetstream.Stream
	read  *InboxReader
}

// NewEraser erases in CONV and INBOX over js (and nc for direct gets).
func NewEraser(ctx context.Context, nc *nats.Conn, js jetstream.JetStream) (*Eraser, error) {
	conv, err := js.Stream(ctx, StreamConv)
	if err != nil {
		return nil, fmt.Errorf("open stream %s: %w", StreamConv, err)
	}
	inbox, err := js.Stream(ctx, StreamInbox)
	if err != nil {
		return nil, fmt.Errorf("open stream %s: %w", StreamInbox, err)
	}
	return &Eraser{nc: nc, js: js, conv: conv, inbox: inbox, read: NewInboxReader(nc)}, nil
}

// InboxCopy is one user's message event for a message: its INBOX
// sequence and the CONV sequence of the message (Natter-Src).
type InboxCopy struct {
	Seq, Src uint64
}

// clockSlack is how much earlier than the message's server_ts the search
// for its events starts: the events are stored after the message, but on
// a cluster the gateway's clock and the stream leader's may differ.
const clockSlack = time.Minute

// startTimeRequest is a batched direct get from a time on.
type startTimeRequest struct {
	StartTime time.Time `json:"start_time"`
	NextFor   string    `json:"next_by_subj"`
	Batch     int       `json:"batch"`
	MaxBytes  int       `json:"max_bytes,omitempty"`
}

type seqRequest struct {
	Seq      uint64 `json:"seq"`
	NextFor  string `json:"next_by_subj"`
	Batch    int    `json:"batch"`
	MaxBytes int    `json:"max_bytes,omitempty"`
}

// messageIDOf reads message_id and type of an inbox event.
type eventHead struct {
	Type      string `json:"type"`
	MessageID string `json:"message_id"`
}

// FindInboxCopies returns user's message events for messageID: those on
// the user's message subject from sentAt (minus clockSlack) on, up to the
// message's deleted event (nothing of the message comes after it, whether
// fanout wrote both or its queue did) or a source at or past before (the
// deletion's CONV sequence) in a direct conversation. A group's queued
// events may follow later direct ones of other conversations, so for a
// group the scan goes on to the deleted event or the end.
func (e *Eraser) FindInboxCopies(ctx context.Context, user, messageID string, sentAt time.Time, before uint64, group bool) ([]InboxCopy, error) {
	subj := "$JS.API.DIRECT.GET." + StreamInbox
	filter := InboxSubject(user, InboxMessages)
	var out []InboxCopy
	req, _ := json.Marshal(startTimeRequest{StartTime: sentAt.Add(-clockSlack).UTC(), NextFor: filter, Batch: scanBatch, MaxBytes: 4 << 20})
	for {
		var last uint64
		done := false
		got, more, err := e.read.directGetMsgs(ctx, subj, req, func(m *nats.Msg, seq uint64) error {
			last = seq
			src, _ := strconv.ParseUint(m.Header.Get(HeaderSource), 10, 64)
			if src >= before && !group {
				done = true
				return errStopScan
			}
			var h eventHead
			if json.Unmarshal(m.Data, &h) != nil || h.MessageID != messageID {
				return nil
			}
			switch h.Type {
			case "message":
				out = append(out, InboxCopy{Seq: seq, Src: src})
			case "deleted":
				done = true
				return errStopScan
			}
			return nil
		})
		if err != nil && !errors.Is(err, errStopScan) {
			return out, fmt.Errorf("find events of %s for %s: %w", messageID, user, err)
		}
		if done || got == 0 || !more {
			return out, nil
		}
		req, _ = json.Marshal(seqRequest{Seq: last + 1, NextFor: filter, Batch: scanBatch, MaxBytes: 4 << 20})
	}
}

var errStopScan = errors.New("stop scan")

// FindConvMessage returns the CONV sequence of message seq of conv by
// walking the conversation's message subject from its first record (the
// fallback when no inbox event names it), or 0 when CONV no longer has it.
func (e *Eraser) FindConvMessage(ctx context.Context, conv string, seq int64, before uint64) (uint64, error) {
	subj := MsgSubject(conv)
	for next := uint64(1); next < before; {
		m, err := e.conv.GetMsg(ctx, next, jetstream.WithGetMsgSubject(subj))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return 0, nil
		}
		if err != nil {
			return 0, fmt.Errorf("find message %d of %s: %w: %v", seq, conv, ErrUnavailable, err)
		}
		n, _ := strconv.ParseInt(m.Header.Get(HeaderSeq), 10, 64)
		switch {
		case n == seq:
			return m.Sequence, nil
		case n > seq:
			return 0, nil
		}
		next = m.Sequence + 1
	}
	return 0, nil
}

// EraseConvMessage securely deletes CONV record streamSeq after checking
// that it is message seq of conv; a record already gone is not an error.
func (e *Eraser) EraseConvMessage(ctx context.Context, conv string, seq int64, streamSeq uint64) error {
	m, err := e.conv.GetMsg(ctx, streamSeq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read CONV %d: %w: %v", streamSeq, ErrUnavailable, err)
	}
	if m.Subject != MsgSubject(conv) || m.Header.Get(HeaderSeq) != strconv.FormatInt(seq, 10) {
		return fmt.Errorf("CONV %d is %s seq %s, not message %d of %s: not erased", streamSeq, m.Subject, m.Header.Get(HeaderSeq), seq, conv)
	}
	// The tail of the subject is what the sequencer reads back: mark its
	// seq as used first (a crash in between leaves only the mark).
	tail, err := e.conv.GetLastMsgForSubject(ctx, MsgSubject(conv))
	if err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return fmt.Errorf("read tail of %s: %w: %v", conv, ErrUnavailable, err)
	}
	if err == nil && tail.Sequence == streamSeq {
		mark := nats.NewMsg(ErasedSubject(conv))
		mark.Header.Set(HeaderSeq, strconv.FormatInt(seq, 10))
		mark.Header.Set(jetstream.MsgIDHeader, "erased:"+strconv.FormatUint(streamSeq, 10))
		if _, err := e.js.PublishMsg(ctx, mark); err != nil {
			return fmt.Errorf("mark erased tail of %s: %w", conv, classify(err))
		}
	}
	if err := e.conv.SecureDeleteMsg(ctx, streamSeq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return fmt.Errorf("erase CONV %d: %w: %v", streamSeq, ErrUnavailable, err)
	}
	return nil
}

// EraseInbox securely deletes the INBOX events seqs. When they include
// the stream's first event it first records the head erasure (see
// ErasedHead), so a crash in between cannot leave a cursor expired.
func (e *Eraser) EraseInbox(ctx context.Context, seqs []uint64) error {
	if len(seqs) == 0 {
		return nil
	}
	seqs = slices.Sorted(slices.Values(seqs))
	info, err := e.inbox.Info(ctx)
	if err != nil {
		return fmt.Errorf("inbox info: %w: %v", ErrUnavailable, err)
	}
	if first := info.State.FirstSeq; slices.Contains(seqs, first) {
		if err := e.recordHead(ctx, info, seqs); err != nil {
			return err
		}
	}
	for _, s := range seqs {
		if err := e.inbox.SecureDeleteMsg(ctx, s); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			return fmt.Errorf("erase INBOX %d: %w: %v", s, ErrUnavailable, err)
		}
	}
	return nil
}

// recordHead publishes the range of sequences the stream's head will
// have lost once seqs are erased: from its first sequence up to the first
// event that stays.
func (e *Eraser) recordHead(ctx context.Context, info *jetstream.StreamInfo, seqs []uint64) error {
	first := info.State.FirstSeq
	stays := info.State.LastSeq + 1
	for s := first; s <= info.State.LastSeq; {
		n, err := e.nextExisting(ctx, s)
		if err != nil {
			return err
		}
		if n == 0 {
			break
		}
		if !slices.Contains(seqs, n) {
			stays = n
			break
		}
		s = n + 1
	}
	until := int64(1<<63 - 1)
	if age := info.Config.MaxAge; age > 0 {
		until = info.State.FirstTime.Add(age).UnixMilli()
	}
	head := ErasedHead{V: 1, Lo: first, Hi: stays - 1, Until: until}
	if prev, ok, err := e.read.ErasedHead(ctx); err != nil {
		return err
	} else if ok && prev.Hi+1 >= first && prev.Lo < first && time.Now().UnixMilli() < prev.Until {
		head.Lo, head.Until = prev.Lo, min(prev.Until, until)
	}
	data, _ := json.Marshal(head)
	m := nats.NewMsg(SubjectErasedHead)
	m.Data = data
	if _, err := e.js.PublishMsg(ctx, m); err != nil {
		return fmt.Errorf("record erased head: %w", classify(err))
	}
	return nil
}

// nextExisting is the first INBOX sequence at or after s that holds an
// event (0: none).
func (e *Eraser) nextExisting(ctx context.Context, s uint64) (uint64, error) {
	req, _ := json.Marshal(seqRequest{Seq: s, NextFor: inboxPrefix + ">", Batch: 1})
	var n uint64
	_, _, err := e.read.directGetMsgs(ctx, "$JS.API.DIRECT.GET."+StreamInbox, req, func(_ *nats.Msg, seq uint64) error {
		n = seq
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("next INBOX event from %d: %w", s, err)
	}
	return n, nil
}

// ErasedHead reads the last head-erasure record; ok is false when there
// is none.
func (r *InboxReader) ErasedHead(ctx context.Context) (ErasedHead, bool, error) {
	m, err := r.nc.RequestWithContext(ctx, "$JS.API.DIRECT.GET."+StreamInbox+"."+SubjectErasedHead, nil)
	if err != nil {
		return ErasedHead{}, false, fmt.Errorf("read erased head: %w: %v", ErrUnavailable, err)
	}
	switch status := m.Header.Get("Status"); status {
	case "":
	case "404":
		return ErasedHead{}, false, nil
	default:
		return ErasedHead{}, false, fmt.Errorf("read erased head: %w: status %s", ErrUnavailable, status)
	}
	var h ErasedHead
	if err := json.Unmarshal(m.Data, &h); err != nil {
		return ErasedHead{}, false, fmt.Errorf("decode erased head: %w", err)
	}
	return h, true, nil
}

// directGetMsgs sends one batched direct get and hands each whole message
// (headers too) to fn; more reports whether further events match.
func (r *InboxReader) directGetMsgs(ctx context.Context, subj string, req []byte, fn func(m *nats.Msg, seq uint64) error) (got int, more bool, err error) {
	inbox := r.nc.NewRespInbox()
	sub, err := r.nc.SubscribeSync(inbox)
	if err != nil {
		return 0, false, fmt.Errorf("direct get: subscribe: %w: %v", ErrUnavailable, err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := r.nc.PublishRequest(subj, inbox, req); err != nil {
		return 0, false, fmt.Errorf("direct get: %w: %v", ErrUnavailable, err)
	}
	for {
		m, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			return got, false, fmt.Errorf("direct get: %w: %v", ErrUnavailable, err)
		}
		switch status := m.Header.Get("Status"); status {
		case "":
		case "404": // nothing (more) matches
			return got, false, nil
		case "204": // end of batch
			pending, _ := strconv.ParseUint(m.Header.Get("Nats-Num-Pending"), 10, 64)
			return got, pending > 0, nil
		default:
			return got, false, fmt.Errorf("direct get: %w: status %s %s", ErrUnavailable, status, m.Header.Get("Description"))
		}
		seq, err := strconv.ParseUint(m.Header.Get(nats.JSSequence), 10, 64)
		if err != nil {
			return got, false, fmt.Errorf("direct get reply without %s: %w", nats.JSSequence, err)
		}
		got++
		if err := fn(m, seq); err != nil {
			return got, false, err
		}
	}
}
