package streams

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// On a cluster, direct gets are answered by any replica of INBOX (the
// local one first), and a follower may be a few writes behind the
// leader. A replay bounded by the barrier's position (Sync.Point reads it
// from the leader) that ends before that position may then have missed
// events the leader holds: the replay checks that the replica that
// answered holds the position itself, and reads again until it does.

// replicaWait bounds how long a replay waits for a lagging replica; past
// it the replay ends as it is (the position's own event may have been
// erased, streams/erase.go), and live delivery's gap repair follows.
const replicaWait = 2 * time.Second

// replicated reports, once per reader, whether INBOX has followers.
type replicated struct {
	once sync.Once
	yes  bool
}

func (r *InboxReader) inboxReplicated(ctx context.Context) bool {
	r.repl.once.Do(func() {
		js, err := jetstream.New(r.nc)
		if err != nil {
			return
		}
		if s, err := js.Stream(ctx, StreamInbox); err == nil {
			r.repl.yes = s.CachedInfo().Config.Replicas > 1
		}
	})
	return r.repl.yes
}

// behind reports whether the replica answering direct gets does not yet
// hold INBOX's event seq.
func (r *InboxReader) behind(ctx context.Context, seq uint64) (bool, error) {
	req, _ := json.Marshal(struct {
		Seq uint64 `json:"seq"`
	}{seq})
	m, err := r.nc.RequestWithContext(ctx, "$JS.API.DIRECT.GET."+StreamInbox, req)
	if err != nil {
		return false, fmt.Errorf("direct get %d: %w: %v", seq, ErrUnavailable, err)
	}
	switch m.Header.Get("Status") {
	case "":
		return false, nil
	case "404":
		return true, nil
	default:
		return false, fmt.Errorf("direct get %d: %w: status %s", seq, ErrUnavailable, m.Header.Get("Status"))
	}
}

// caughtUp is called when a replay bounded by upTo ended at last <
// upTo; it says whether to read on from last (the replica was behind).
// since is when the replay started waiting for the replica.
func (r *InboxReader) caughtUp(ctx context.Context, upTo uint64, since *time.Time) (bool, error) {
	if !r.inboxReplicated(ctx) {
		return true, nil
	}
	behind, err := r.behind(ctx, upTo)
	if err != nil || !behind {
		return true, err
	}
	if since.IsZero() {
		*since = time.Now()
	} else if time.Since(*since) > replicaWait {
		return true, nil
	}
	select {
	case <-ctx.Done():
		return true, ctx.Err()
	case <-time.After(5 * time.Millisecond):
	}
	return false, nil
}
