package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natter-chat/natter/schema"
	"github.com/natter-chat/natter/streams"
)

// syncPoint implements the synced barrier: it waits until every message
// acknowledged so far has been persisted and fanned out, then returns the
// inbox position at or below which all their events lie. With a cursor it
// also checks the cursor against the events still retained.
func (g *Gateway) syncPoint(ctx context.Context, cursor string) (pos, from uint64, err error) {
	if cursor != "" {
		if from, err = parseCursor(cursor); err != nil {
			return 0, 0, err
		}
	}
	last, err := g.wm.ConvLastSeq(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("%w: %v", schema.ErrUnavailable, err)
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := g.wm.Wait(wctx, last, streams.ConsumerPersist, streams.ConsumerFanout); err != nil {
		return 0, 0, fmt.Errorf("%w: consumers are behind: %v", schema.ErrUnavailable, err)
	}
	first, pos, err := g.wm.InboxRange(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("%w: %v", schema.ErrUnavailable, err)
	}
	// A cursor past the end was not given out by this server's data; one
	// before the first retained event may have missed aged-out events.
	if cursor != "" && (from > pos || from+1 < first) {
		return 0, 0, errCursorExpired
	}
	return pos, from, nil
}

// errCursorExpired tells the client to resync from history.
var errCursorExpired = schema.Errorf(http.StatusGone, schema.CodeCursorExpired, "cursor is older than the retained events: resync from history, then connect without a cursor")

// withCursor splices "cursor" into a stored event (a JSON object).
func withCursor(data []byte, seq uint64) []byte {
	out := make([]byte, 0, len(data)+32)
	out = append(out, `{"cursor":"`...)
	out = strconv.AppendUint(out, seq, 10)
	out = append(out, '"')
	if len(data) > 2 {
		out = append(out, ',')
	}
	return append(out, data[1:]...)
}

var messageTypePrefix = []byte(`{"type":"message"`)

// redact drops the content of a replayed message that has since been
// deleted, for everyone or for this viewer: a replay never carries
// deleted content.
func (g *Gateway) redact(ctx context.Context, viewer string, data []byte) []byte {
	if !bytes.HasPrefix(data, messageTypePrefix) {
		return data
	}
	var ev schema.MessageEvent
	if json.Unmarshal(data, &ev) != nil {
		return data
	}
	// The history entry just at seq, as this viewer sees it.
	h, err := g.st.History(ctx, ev.ConversationID, viewer, ev.Seq+1, 1)
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

// Long-poll.

const (
	maxPollEvents  = 1000
	defaultPollSec = 30
	maxPollSec     = 60
)

func (g *Gateway) handleEvents(w http.ResponseWriter, r *http.Request) error {
	c := caller(r)
	q := r.URL.Query()
	timeout := defaultPollSec * time.Second
	if s := q.Get("timeout"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return schema.BadRequest("timeout must be a whole number of seconds")
		}
		timeout = time.Duration(min(n, maxPollSec)) * time.Second
	}
	cur := q.Get("cursor")
	pos, from, err := g.syncPoint(r.Context(), cur)
	if err != nil {
		return err
	}
	if cur == "" {
		writeJSON(w, http.StatusOK, map[string]any{"events": []any{}, "cursor": formatCursor(pos)})
		return nil
	}
	events, last, err := g.readInbox(r.Context(), c.UserID, from, timeout)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	var buf bytes.Buffer
	buf.WriteString(`{"events":[`)
	for i, e := range events {
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.Write(e)
	}
	buf.WriteString(`],"cursor":"` + formatCursor(last) + `"}`)
	_, _ = w.Write(buf.Bytes())
	return nil
}

// readInbox returns up to maxPollEvents events of user after cursor from,
// waiting up to timeout for the first one. It subscribes before its last
// look so an event stored in between wakes it.
func (g *Gateway) readInbox(ctx context.Context, user string, from uint64, timeout time.Duration) ([][]byte, uint64, error) {
	read := func() ([][]byte, uint64, error) {
		var events [][]byte
		last, err := g.scanInbox(ctx, user, from, 0, maxPollEvents, func(seq uint64, data []byte) error {
			events = append(events, withCursor(g.redact(ctx, user, data), seq))
			return nil
		})
		return events, last, err
	}
	events, last, err := read()
	if err != nil || len(events) > 0 || timeout == 0 {
		return events, last, err
	}
	wake := make(chan *nats.Msg, 1)
	sub, err := g.nc.ChanSubscribe(streams.DeliverFilter(user), wake)
	if err != nil {
		return nil, from, fmt.Errorf("%w: subscribe: %v", schema.ErrUnavailable, err)
	}
	defer func() { _ = sub.Unsubscribe() }()
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
