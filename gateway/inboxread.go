package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"

	"github.com/natter-chat/natter/schema"
	"github.com/natter-chat/natter/streams"
)

// scanBatch is how many events one direct-get request asks for.
const scanBatch = 256

// directGetRequest is JetStream's batched direct get: the events of one
// user after a sequence, in order, up to an optional sequence.
type directGetRequest struct {
	Seq      uint64 `json:"seq"`
	NextFor  string `json:"next_by_subj"`
	Batch    int    `json:"batch"`
	UpToSeq  uint64 `json:"up_to_seq,omitempty"`
	MaxBytes int    `json:"max_bytes,omitempty"`
}

// scanInbox calls fn for each of user's events with a cursor in
// (after, upTo] (upTo 0: up to the newest), oldest first, at most limit
// events (0: no limit). It returns the cursor of the last event passed
// to fn, or after when there was none.
func (g *Gateway) scanInbox(ctx context.Context, user string, after, upTo uint64, limit int, fn func(seq uint64, data []byte) error) (uint64, error) {
	last, n := after, 0
	subj := "$JS.API.DIRECT.GET." + streams.StreamInbox
	for {
		if upTo > 0 && last >= upTo {
			return last, nil
		}
		batch := scanBatch
		if limit > 0 {
			batch = min(batch, limit-n)
			if batch == 0 {
				return last, nil
			}
		}
		req, _ := json.Marshal(directGetRequest{Seq: last + 1, NextFor: streams.InboxFilter(user), Batch: batch, UpToSeq: upTo, MaxBytes: 4 << 20})
		past := false
		got, more, err := g.directGet(ctx, subj, req, func(seq uint64, data []byte) error {
			// nats-server honours up_to_seq only for multi_last requests,
			// so the bound is enforced here.
			if upTo > 0 && seq > upTo {
				past = true
				return nil
			}
			last = seq
			n++
			return fn(seq, data)
		})
		if err != nil {
			return last, err
		}
		if got == 0 || !more || past {
			return last, nil
		}
	}
}

// directGet sends one batched direct get and hands each message to fn.
// more reports whether the server said further events match.
func (g *Gateway) directGet(ctx context.Context, subj string, req []byte, fn func(seq uint64, data []byte) error) (got int, more bool, err error) {
	inbox := g.nc.NewRespInbox()
	sub, err := g.nc.SubscribeSync(inbox)
	if err != nil {
		return 0, false, fmt.Errorf("%w: subscribe: %v", schema.ErrUnavailable, err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := g.nc.PublishRequest(subj, inbox, req); err != nil {
		return 0, false, fmt.Errorf("%w: direct get: %v", schema.ErrUnavailable, err)
	}
	for {
		m, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			return got, false, fmt.Errorf("%w: direct get: %v", schema.ErrUnavailable, err)
		}
		switch status := m.Header.Get("Status"); status {
		case "":
		case "404": // nothing (more) matches
			return got, false, nil
		case "204": // end of batch
			pending, _ := strconv.ParseUint(m.Header.Get("Nats-Num-Pending"), 10, 64)
			return got, pending > 0, nil
		default:
			return got, false, fmt.Errorf("%w: direct get status %s %s", schema.ErrUnavailable, status, m.Header.Get("Description"))
		}
		seq, err := strconv.ParseUint(m.Header.Get(nats.JSSequence), 10, 64)
		if err != nil {
			return got, false, fmt.Errorf("direct get reply without %s: %w", nats.JSSequence, err)
		}
		got++
		if err := fn(seq, m.Data); err != nil {
			return got, false, err
		}
	}
}
