package chat

import (
	"bytes"
	"context"
	"encoding/json"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natter-chat/natter/schema"
	"github.com/natter-chat/natter/streams"
)

// Sync is how a device catches up: the synced barrier, replay from a
// cursor, and the long-poll read.
type Sync struct {
	st      Store
	wm      *streams.Watermark
	inbox   *streams.InboxReader
	cursors *cursorCodec

	// gen counts reconnections to NATS: core messages may have been lost
	// in between, so live sessions re-read from the stream.
	gen atomic.Uint64
}

func newSync(st Store, wm *streams.Watermark, inbox *streams.InboxReader, cursors *cursorCodec) *Sync {
	return &Sync{st: st, wm: wm, inbox: inbox, cursors: cursors}
}

// Reconnected is to be called when the NATS connection reconnected (cmd
// wires it; chat sets no handler on a shared connection).
func (s *Sync) Reconnected() { s.gen.Add(1) }

// Generation changes with every reconnection to NATS.
func (s *Sync) Generation() uint64 { return s.gen.Load() }

// ErrCursorExpired tells the client to resync from history.
var ErrCursorExpired = Errorf(schema.CodeCursorExpired, "cursor is older than the retained events: resync from history, then connect without a cursor")

// Point implements the synced barrier: it waits until every message
// acknowledged so far has been persisted and fanned out, then returns the
// inbox position at or below which all their events lie. With a cursor it
// also checks user's cursor against the events still retained, and
// returns it as from.
func (s *Sync) Point(ctx context.Context, user, cursor string) (pos, from uint64, err error) {
	if cursor != "" {
		if from, err = s.cursors.parse(user, cursor); err != nil {
			return 0, 0, err
		}
	}
	last, err := s.wm.ConvLastSeq(ctx)
	if err != nil {
		return 0, 0, Unavailable(err, 5*time.Second, "the message log is unavailable", RetryConnect)
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := s.wm.Wait(wctx, last, streams.ConsumerPersist, streams.ConsumerFanout); err != nil {
		return 0, 0, Unavailable(err, 5*time.Second, "the server is behind in delivering messages", RetryConnect)
	}
	first, pos, err := s.wm.InboxRange(ctx)
	if err != nil {
		return 0, 0, Unavailable(err, 5*time.Second, "the event log is unavailable", RetryConnect)
	}
	if cursor == "" {
		return pos, 0, nil
	}
	// A cursor past the end was never given out by this server's data;
	// one before the first retained event may have missed aged-out events.
	if from > pos {
		return 0, 0, badRequest("cursor was never issued: it is past the newest event; connect without a cursor")
	}
	if from+1 < first {
		// Events missing at the head were aged out, unless an erasure of
		// deleted content took them (streams.ErasedHead).
		h, ok, err := s.inbox.ErasedHead(ctx)
		if err != nil {
			return 0, 0, Unavailable(err, 5*time.Second, "the event log is unavailable", RetryConnect)
		}
		if !ok || !h.Covers(from+1, first-1, time.Now()) {
			return 0, 0, ErrCursorExpired
		}
	}
	return pos, from, nil
}

// FormatCursor renders user's cursor for stream position seq (opaque:
// see cursor.go).
func (s *Sync) FormatCursor(user string, seq uint64) string { return s.cursors.format(user, seq) }

// CursorsFor returns what FormatCursor returns for user, as a function of
// the position alone: cheaper for many of one user's cursors.
func (s *Sync) CursorsFor(user string) func(seq uint64) string { return s.cursors.forUser(user).format }

// Scan calls fn for each of user's events with a cursor in (after, upTo]
// (upTo 0: to the newest), oldest first, at most limit (0: no limit),
// each with its "cursor" field; redact drops the content of messages
// deleted since (a replay never carries deleted content). It returns the
// last cursor passed to fn, or after.
func (s *Sync) Scan(ctx context.Context, user string, after, upTo uint64, limit int, redact bool, fn func(seq uint64, event []byte) error) (uint64, error) {
	cursor := s.cursors.forUser(user)
	last, err := s.inbox.Scan(ctx, user, after, upTo, limit, func(seq uint64, data []byte) error {
		if redact {
			data = s.redact(ctx, user, data)
		}
		return fn(seq, WithCursor(data, cursor.format(seq)))
	})
	if err != nil {
		if ctx.Err() != nil {
			return last, ctx.Err()
		}
		return last, Translate(err, "read events", RetryConnect)
	}
	return last, nil
}

// Subscribe delivers user's live events to ch (streams.Delivered tells
// stored from ephemeral ones).
func (s *Sync) Subscribe(user string, ch chan *nats.Msg) (*nats.Subscription, error) {
	sub, err := s.inbox.Subscribe(user, ch)
	return sub, Translate(err, "subscribe", RetryConnect)
}

// WithCursor splices "cursor" into a stored event (a JSON object);
// cursor is one FormatCursor made (URL-safe: no escaping needed).
func WithCursor(data []byte, cursor string) []byte {
	out := make([]byte, 0, len(data)+40)
	out = append(out, `{"cursor":"`...)
	out = append(out, cursor...)
	out = append(out, '"')
	if len(data) > 2 {
		out = append(out, ',')
	}
	return append(out, data[1:]...)
}

var messageTypePrefix = []byte(`{"type":"message"`)

// redact drops the content of a replayed message that has since been
// deleted, for everyone or for this viewer.
func (s *Sync) redact(ctx context.Context, viewer string, data []byte) []byte {
	if !bytes.HasPrefix(data, messageTypePrefix) {
		return data
	}
	var ev schema.MessageEvent
	if json.Unmarshal(data, &ev) != nil {
		return data
	}
	// The history entry just at seq, as this viewer sees it.
	h, err := s.st.History(ctx, ev.ConversationID, viewer, ev.Seq+1, 1)
	if err != nil || len(h) == 0 || h[0].Seq != ev.Seq || !h[0].Deleted {
		return data
	}
	ev.Content = ""
	out, _ := json.Marshal(struct {
		schema.MessageEvent
		Deleted bool `json:"deleted"`
	}{ev, true})
	return out
}

// Long-poll limits of the contract.
const (
	MaxPollEvents  = 1000
	DefaultPollSec = 30
	MaxPollSec     = 60
)

// Poll returns up to MaxPollEvents events of user after cursor from,
// waiting up to timeout for the first one. It subscribes before its last
// look so an event stored in between wakes it.
func (s *Sync) Poll(ctx context.Context, user string, from uint64, timeout time.Duration) ([][]byte, uint64, error) {
	read := func() ([][]byte, uint64, error) {
		var events [][]byte
		last, err := s.Scan(ctx, user, from, 0, MaxPollEvents, true, func(_ uint64, ev []byte) error {
			events = append(events, ev)
			return nil
		})
		return events, last, err
	}
	events, last, err := read()
	if err != nil || len(events) > 0 || timeout == 0 {
		return events, last, err
	}
	wake, stop, err := s.inbox.Wake(user)
	if err != nil {
		return nil, from, Translate(err, "wait for events", RetryRequest)
	}
	defer stop()
	if events, last, err = read(); err != nil || len(events) > 0 {
		return events, last, err
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-wake:
		return read()
	case <-t.C:
		return nil, from, nil
	case <-ctx.Done():
		return nil, from, ctx.Err()
	}
}
