package chat

import (
	"context"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natter-chat/natter/schema"
	"github.com/natter-chat/natter/streams"
)

// PollSessions gives long-polling devices what a WebSocket has: a
// session per device that counts as online, receives ephemeral events
// (typing, presence) and holds presence subscriptions. A session lives
// while polls arrive: it ends idle after the last poll ended, the time
// after which a silent WebSocket is dropped, so a device that stops
// polling goes offline like one that stops answering pings.
type PollSessions struct {
	idle     time.Duration
	sessions *Sessions
	presence *Presence
	live     *streams.Ephemeral

	mu       sync.Mutex
	byDevice map[string]*PollSession
}

func newPollSessions(idle time.Duration, sessions *Sessions, presence *Presence, live *streams.Ephemeral) *PollSessions {
	return &PollSessions{idle: idle, sessions: sessions, presence: presence, live: live, byDevice: map[string]*PollSession{}}
}

// pollBuffer is how many ephemeral events a session keeps between polls;
// older ones are dropped first (they are stale by then).
const pollBuffer = 256

// PollSession is one long-polling device.
type PollSession struct {
	owner  *PollSessions
	claims Claims

	mu     sync.Mutex
	active int         // polls (and REST calls) in progress
	idle   *time.Timer // runs while no poll is in progress
	events [][]byte
	wake   chan struct{}
	sub    *nats.Subscription
	psub   *PresenceSub
	closed bool
}

// Begin marks a poll of c's device in progress, opening its session if
// needed; call End when the poll is over.
func (ps *PollSessions) Begin(c Claims) (*PollSession, error) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	s := ps.byDevice[c.DeviceID]
	if s != nil {
		s.mu.Lock()
		if !s.closed {
			s.active++
			if s.idle != nil {
				s.idle.Stop()
				s.idle = nil
			}
			s.mu.Unlock()
			return s, nil
		}
		s.mu.Unlock() // closing: a new session replaces it
	}
	{
		s = &PollSession{owner: ps, claims: c, wake: make(chan struct{}, 1)}
		if !ps.sessions.Add(s) {
			return nil, Unavailable(nil, time.Second, "the server is shutting down", RetryRequest)
		}
		sub, err := ps.live.Subscribe(c.UserID, s.push)
		if err != nil {
			ps.sessions.Remove(s)
			return nil, Translate(err, "subscribe", RetryRequest)
		}
		s.sub = sub
		s.psub = ps.presence.NewSub(c.UserID, func(ev []byte) bool { s.push(ev); return true })
		s.active = 1
		ps.byDevice[c.DeviceID] = s
	}
	return s, nil
}

// End ends one poll; the session closes after the idle time unless
// another poll begins.
func (s *PollSession) End() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.active--; s.active > 0 || s.closed {
		return
	}
	s.idle = time.AfterFunc(s.owner.idle, func() {
		s.mu.Lock()
		expired := s.active == 0 && !s.closed
		s.mu.Unlock()
		if expired {
			s.Close(CloseShutdown)
		}
	})
}

// UserID, DeviceID and Close make a PollSession a Session.
func (s *PollSession) UserID() string   { return s.claims.UserID }
func (s *PollSession) DeviceID() string { return s.claims.DeviceID }

// Close ends the session (the device reads offline unless it has other
// sessions); a poll in progress still answers. Safe to call twice.
func (s *PollSession) Close(CloseReason) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	if s.idle != nil {
		s.idle.Stop()
	}
	s.mu.Unlock()
	ps := s.owner
	ps.mu.Lock()
	if ps.byDevice[s.claims.DeviceID] == s {
		delete(ps.byDevice, s.claims.DeviceID)
	}
	ps.mu.Unlock()
	_ = s.sub.Unsubscribe()
	s.psub.Close()
	ps.sessions.Remove(s)
}

// push keeps an ephemeral event for the next poll and wakes a waiting one.
func (s *PollSession) push(ev []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.events) == pollBuffer {
		s.events = s.events[1:]
	}
	s.events = append(s.events, ev)
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Wake receives when an ephemeral event is waiting.
func (s *PollSession) Wake() <-chan struct{} { return s.wake }

// Take returns and forgets the waiting ephemeral events.
func (s *PollSession) Take() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.events
	s.events = nil
	select {
	case <-s.wake: // the signal of what is taken now
	default:
	}
	return out
}

// Subscribe adds presence subscriptions, answered with a snapshot each;
// later changes arrive as events in the session's polls.
func (s *PollSession) Subscribe(ctx context.Context, ids []string) ([]schema.Presence, error) {
	var snaps []schema.Presence
	err := s.psub.Subscribe(ctx, ids, func(p schema.Presence) { snaps = append(snaps, p) })
	return snaps, err
}

// Unsubscribe drops presence subscriptions (all when ids is empty).
func (s *PollSession) Unsubscribe(ids []string) { s.psub.Unsubscribe(ids) }

// Run closes every long-poll session when ctx ends.
func (ps *PollSessions) Run(ctx context.Context) error {
	<-ctx.Done()
	ps.mu.Lock()
	all := make([]*PollSession, 0, len(ps.byDevice))
	for _, s := range ps.byDevice {
		all = append(all, s)
	}
	ps.mu.Unlock()
	for _, s := range all {
		s.Close(CloseShutdown)
	}
	return nil
}
