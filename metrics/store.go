package metrics

import (
	"context"
	"errors"
	"time"

	"github.com/natter-chat/natter/store"
)

// MessageWriter is the persist consumer's view of the store: the one
// write on the hot path of every message.
type MessageWriter interface {
	SaveMessages(ctx context.Context, msgs []store.Message) error
	DeleteForEveryone(ctx context.Context, conversationID string, seq int64) error
	DeleteForUser(ctx context.Context, conversationID string, seq int64, userID string) error
}

// TimeWrites times w's writes. It wraps only the persist consumer's
// writer: a decorator of the whole store would hide the optional
// interfaces (groups, receipt logs, push) that chat and the consumers
// find by type assertion. Reads are timed by route in
// natter_http_request_seconds. A nil *Metrics returns w as it is.
func (m *Metrics) TimeWrites(w MessageWriter) MessageWriter {
	if m == nil {
		return w
	}
	return &timedWriter{w: w, m: m}
}

type timedWriter struct {
	w MessageWriter
	m *Metrics
}

func (t *timedWriter) observe(op string, start time.Time, err error) {
	t.m.storeLatency.WithLabelValues(op).Observe(time.Since(start).Seconds())
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		t.m.storeErrors.WithLabelValues(op).Inc()
	}
}

func (t *timedWriter) SaveMessages(ctx context.Context, msgs []store.Message) (err error) {
	defer func(start time.Time) { t.observe("save_messages", start, err) }(time.Now())
	return t.w.SaveMessages(ctx, msgs)
}

func (t *timedWriter) DeleteForEveryone(ctx context.Context, conversationID string, seq int64) (err error) {
	defer func(start time.Time) { t.observe("delete_for_everyone", start, err) }(time.Now())
	return t.w.DeleteForEveryone(ctx, conversationID, seq)
}

func (t *timedWriter) DeleteForUser(ctx context.Context, conversationID string, seq int64, userID string) (err error) {
	defer func(start time.Time) { t.observe("delete_for_user", start, err) }(time.Now())
	return t.w.DeleteForUser(ctx, conversationID, seq, userID)
}
