package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/natter-chat/natter/streams"
)

// presenceWatch follows every account's presence through watcher
// connections (presence.subscribe, at most maxWatch users each), to time
// how long connects and disconnects take to show.
type presenceWatch struct {
	conns []*Conn

	mu      sync.Mutex
	status  map[string]string // user id -> last status seen
	online  int
	last    time.Time     // when the last change arrived
	changed chan struct{} // closed and replaced on every change
}

// maxWatch is natter's default --max-presence-subscriptions.
const maxWatch = 500

func (e *env) watchPresence(ctx context.Context, watcher account, accts []account) (*presenceWatch, error) {
	pw := &presenceWatch{status: map[string]string{}, changed: make(chan struct{})}
	handle := func(f *inbound, _ time.Time) {
		if f.Type != "presence" {
			return
		}
		var st string
		if json.Unmarshal(f.Status, &st) != nil {
			return
		}
		pw.mu.Lock()
		defer pw.mu.Unlock()
		prev := pw.status[f.UserID]
		if prev == st {
			return
		}
		pw.status[f.UserID] = st
		pw.last = time.Now()
		if st == "online" {
			pw.online++
		} else if prev == "online" {
			pw.online--
		}
		close(pw.changed)
		pw.changed = make(chan struct{})
	}
	for i := 0; i < len(accts); i += maxWatch {
		c, err := e.dial.Dial(ctx, watcher.Token, "", handle)
		if err != nil {
			pw.close()
			return nil, fmt.Errorf("presence watcher: %w", err)
		}
		pw.conns = append(pw.conns, c)
		if _, _, err := c.WaitSynced(ctx); err != nil {
			pw.close()
			return nil, fmt.Errorf("presence watcher: %w", err)
		}
		ids := make([]string, 0, maxWatch)
		for _, a := range accts[i:min(i+maxWatch, len(accts))] {
			ids = append(ids, a.UserID)
		}
		b, _ := json.Marshal(map[string]any{"type": "presence.subscribe", "user_ids": ids})
		if err := c.Send(ctx, b); err != nil {
			pw.close()
			return nil, fmt.Errorf("presence watcher: %w", err)
		}
	}
	// Every snapshot in (all offline: nobody is connected yet).
	if err := pw.wait(ctx, time.Minute, func() bool { return len(pw.status) == len(accts) }); err != nil {
		pw.close()
		return nil, fmt.Errorf("presence snapshots: %w", err)
	}
	return pw, nil
}

// wait polls cond (called with mu held) until it holds, for up to d.
func (pw *presenceWatch) wait(ctx context.Context, d time.Duration, cond func() bool) error {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		pw.mu.Lock()
		ok, ch := cond(), pw.changed
		pw.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-t.C:
			return fmt.Errorf("not after %v", d)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// lastChange is when the last change arrived.
func (pw *presenceWatch) lastChange() time.Time {
	pw.mu.Lock()
	defer pw.mu.Unlock()
	return pw.last
}

// onlineCount is how many watched users show online.
func (pw *presenceWatch) onlineCount() int {
	pw.mu.Lock()
	defer pw.mu.Unlock()
	return pw.online
}

func (pw *presenceWatch) close() { closeAll(pw.conns) }

// presenceWrites reads how many writes the presence bucket has taken
// (its stream's last sequence), through NATS at natsURL.
type presenceWrites struct {
	nc     *nats.Conn
	stream jetstream.Stream
}

func openPresenceWrites(ctx context.Context, natsURL string) (*presenceWrites, error) {
	nc, err := nats.Connect(natsURL, nats.Name("natter-bench"))
	if err != nil {
		return nil, fmt.Errorf("connect to NATS: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, err
	}
	s, err := js.Stream(ctx, "KV_"+streams.BucketPresence)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("presence bucket's stream: %w", err)
	}
	return &presenceWrites{nc: nc, stream: s}, nil
}

func (p *presenceWrites) count(ctx context.Context) (uint64, error) {
	info, err := p.stream.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.State.LastSeq, nil
}

func (p *presenceWrites) close() { p.nc.Close() }
