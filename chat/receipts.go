package chat

import (
	"context"
	"sync"

	"github.com/natter-chat/natter/schema"
	"github.com/natter-chat/natter/store"
)

// receiptMarks remembers, per (conversation, reader), the furthest
// delivered and read seqs this node knows of: from the store, or published
// by this node (the receipts consumer applies every published status, and
// watermarks only move forward). A status they already cover changes
// nothing, so it is not written to CONV: a client repeating receipts
// cannot grow a stream kept for days. Another node's receipts may be
// missing here; the status is then published and the consumer, which
// tolerates duplicates, drops it.
type receiptMarks struct {
	mu sync.Mutex
	m  map[receiptKey]store.ReceiptState
}

type receiptKey struct{ conv, user string }

// maxReceiptMarks bounds the cache; past it the cache starts over, which
// costs one store read per reader on their next status.
const maxReceiptMarks = 100_000

func (r *receiptMarks) get(conv, user string) (store.ReceiptState, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	st, ok := r.m[receiptKey{conv, user}]
	return st, ok
}

// raise moves the cached state forward to st, never back.
func (r *receiptMarks) raise(conv, user string, st store.ReceiptState) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil || len(r.m) >= maxReceiptMarks {
		r.m = make(map[receiptKey]store.ReceiptState)
	}
	k := receiptKey{conv, user}
	cur := r.m[k]
	cur.DeliveredSeq = max(cur.DeliveredSeq, st.DeliveredSeq, st.ReadSeq)
	cur.ReadSeq = max(cur.ReadSeq, st.ReadSeq)
	r.m[k] = cur
}

// published records that status for seq was written to CONV.
func (r *receiptMarks) published(conv, user, status string, seq int64) {
	st := store.ReceiptState{DeliveredSeq: seq}
	if status == schema.StatusRead {
		st.ReadSeq = seq
	}
	r.raise(conv, user, st)
}

// covers reports whether st already holds status for seq.
func covers(st store.ReceiptState, status string, seq int64) bool {
	if status == schema.StatusRead {
		return st.ReadSeq >= seq
	}
	return st.DeliveredSeq >= seq
}

// receiptChangesNothing reports whether user's status for seq of conv is
// already reached. The store is read only when this node knows nothing
// of the reader yet: after that the cache is at least as far as anything
// this node published, and what only another node published costs a
// status record the consumer drops.
func (m *Messages) receiptChangesNothing(ctx context.Context, conv, user, status string, seq int64) (bool, error) {
	st, ok := m.marks.get(conv, user)
	if !ok {
		var err error
		if st, err = m.st.ReceiptState(ctx, conv, user); err != nil {
			return false, Translate(err, "status", RetryRequest)
		}
		m.marks.raise(conv, user, st)
	}
	return covers(st, status, seq), nil
}
