package chat

import (
	"context"
	"encoding/json"
	"strings"
	"sync"

	"github.com/natter-chat/natter/schema"
)

// PresenceSub is one connection's presence subscriptions: after a
// snapshot of each user it delivers a `presence` event whenever what the
// viewer may see of the user changes (never a repeat, so a user hidden
// by privacy or a block reads "offline" once and nothing more). Events
// come from the node's one registry watcher, shared by every
// subscription of the node.
type PresenceSub struct {
	p       *Presence
	viewer  string
	deliver func(event []byte) bool

	mu     sync.Mutex
	users  map[string]*subState
	closed bool
}

type subState struct {
	last schema.Presence
	// pending: the snapshot is on its way; a change meanwhile sets
	// changed and is sent after it, so events never overtake it.
	pending, changed bool
}

// NewSub returns an empty subscription set of viewer. deliver must not
// block: it returns false when the connection cannot take the event now
// (it is then offered again at the user's next change).
func (p *Presence) NewSub(viewer string, deliver func(event []byte) bool) *PresenceSub {
	return &PresenceSub{p: p, viewer: viewer, deliver: deliver, users: map[string]*subState{}}
}

// Subscribe adds ids and hands emit a snapshot of each, in order, before
// any event of that user is delivered. It refuses the whole request (and
// changes nothing) when an id is unknown (not_found) or the connection
// would watch more than the configured number of users (bad_request).
func (s *PresenceSub) Subscribe(ctx context.Context, ids []string, emit func(schema.Presence)) error {
	if len(ids) > schema.MaxPresenceSubscribe {
		return badRequest("at most %d user_ids per request", schema.MaxPresenceSubscribe)
	}
	uniq := make([]string, 0, len(ids))
	seen := make(map[string]struct{}, len(ids))
	for _, id := range ids {
		if _, dup := seen[id]; dup {
			continue
		}
		seen[id] = struct{}{}
		if err := s.p.rel.UserExists(ctx, id); err != nil {
			return err
		}
		uniq = append(uniq, id)
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return Errorf(schema.CodeUnavailable, "the connection is closing")
	}
	added := 0
	for _, id := range uniq {
		if _, ok := s.users[id]; !ok {
			added++
		}
	}
	if len(s.users)+added > s.p.maxSubs {
		n := len(s.users)
		s.mu.Unlock()
		return badRequest("at most %d presence subscriptions per connection (%d held, %d new)", s.p.maxSubs, n, added)
	}
	var fresh []string
	for _, id := range uniq {
		st := s.users[id]
		if st == nil {
			st = &subState{}
			s.users[id] = st
			fresh = append(fresh, id)
		}
		st.pending = true
	}
	s.mu.Unlock()
	for _, id := range fresh {
		s.p.reg.watch(ctx, id, s)
	}
	for _, id := range uniq {
		snap := s.p.Of(ctx, s.viewer, id)
		s.mu.Lock()
		st := s.users[id]
		if st != nil {
			st.last = snap
		}
		s.mu.Unlock()
		emit(snap)
		s.mu.Lock()
		if st = s.users[id]; st != nil {
			st.pending = false
			if st.changed {
				st.changed = false
				s.offerLocked(ctx, id, st)
			}
		}
		s.mu.Unlock()
	}
	return nil
}

// Unsubscribe drops ids (every user when ids is empty).
func (s *PresenceSub) Unsubscribe(ids []string) {
	s.mu.Lock()
	if len(ids) == 0 {
		for id := range s.users {
			ids = append(ids, id)
		}
	}
	var gone []string
	for _, id := range ids {
		if _, ok := s.users[id]; ok {
			delete(s.users, id)
			gone = append(gone, id)
		}
	}
	s.mu.Unlock()
	for _, id := range gone {
		s.p.reg.unwatch(id, s)
	}
}

// Close drops every subscription; safe to call twice.
func (s *PresenceSub) Close() {
	s.Unsubscribe(nil)
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
}

// Len is how many users the connection watches.
func (s *PresenceSub) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.users)
}

// blockChanged re-evaluates what the subscriptions here show of the two
// users of a pair (streams.PairKey) whose block changed: the change shows
// at once, not at the blocked user's next activity (which would tell
// when that happened).
func (p *Presence) blockChanged(pair string) {
	a, b, ok := strings.Cut(pair, "|")
	if !ok {
		return
	}
	p.reg.notify(a)
	p.reg.notify(b)
}

// changed is the registry's: user may look different now.
func (s *PresenceSub) changed(ctx context.Context, user string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.users[user]
	if st == nil {
		return
	}
	if st.pending {
		st.changed = true
		return
	}
	s.offerLocked(ctx, user, st)
}

// offerLocked delivers user's state when it differs from the last one
// sent. s.mu is held.
func (s *PresenceSub) offerLocked(ctx context.Context, user string, st *subState) {
	cur := s.p.Of(ctx, s.viewer, user)
	if cur == st.last {
		return
	}
	b, _ := json.Marshal(cur)
	if s.deliver(b) {
		st.last = cur
	}
}
