package gateway

import (
	"context"
	"sync"
	"time"
)

// pinger decides, for every WebSocket session of the node, when the
// server pings, from one ticker. A ticker per connection woke its writer
// every heartbeat only to find, for a client that pings on its own,
// nothing to do: at 17,000 idle connections that was 680 wakeups a second and
// 4.5 MB of timers (docs/benchmarks.md section 20). The writer is woken
// only when a ping is due.
type pinger struct {
	every    time.Duration
	mu       sync.Mutex
	sessions map[*session]struct{}
}

// newPinger sweeps four times a heartbeat, at least once a second: a
// silent client is pinged at most that much later than a ticker of its
// own would have.
func newPinger(heartbeat time.Duration) *pinger {
	every := min(heartbeat/4, time.Second)
	if every <= 0 {
		every = time.Second
	}
	return &pinger{every: every, sessions: make(map[*session]struct{})}
}

func (p *pinger) add(s *session) {
	p.mu.Lock()
	p.sessions[s] = struct{}{}
	p.mu.Unlock()
}

func (p *pinger) remove(s *session) {
	p.mu.Lock()
	delete(p.sessions, s)
	p.mu.Unlock()
}

// Run sweeps until ctx ends.
func (p *pinger) Run(ctx context.Context) error {
	t := time.NewTicker(p.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-t.C:
			p.sweep(now)
		}
	}
}

// sweep asks the writer of every session whose ping is due to send one;
// a writer that has not taken the last request yet is not asked twice.
func (p *pinger) sweep(now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for s := range p.sessions {
		if s.pingDue(now) {
			s.pinged.Store(now.UnixNano())
			select {
			case s.pingNow <- struct{}{}:
			default:
			}
		}
	}
}
