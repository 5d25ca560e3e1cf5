package chat

import (
	"context"
	"errors"
	"time"

	"github.com/natter-chat/natter/schema"
)

// Observer is told what chat does, for metrics. Calls are on the hot
// path: keep them cheap and never blocking.
type Observer interface {
	// Sent reports a send's result: "sent", "duplicate" or the refusal's
	// error code, and how long it took to answer.
	Sent(result string, d time.Duration)
	// RateLimited reports a refusal by the named limit.
	RateLimited(limit string)
}

type nopObserver struct{}

func (nopObserver) Sent(string, time.Duration) {}
func (nopObserver) RateLimited(string)         {}

// Send validates, rate-limits, dedupes against the store, authorizes,
// sequences and publishes. The ack is returned only after JetStream
// stored the message; the observer hears of every outcome.
func (m *Messages) Send(ctx context.Context, c Claims, req *schema.SendRequest) (schema.Ack, error) {
	start := time.Now()
	ack, err := m.send(ctx, c, req)
	result := "sent"
	switch {
	case err != nil:
		result = schema.CodeInternal
		var e *schema.Error
		if errors.As(err, &e) {
			result = e.Code
		}
	case ack.Duplicate:
		result = "duplicate"
	}
	m.obs.Sent(result, time.Since(start))
	return ack, err
}
