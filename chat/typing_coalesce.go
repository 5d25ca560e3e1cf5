package chat

// Coalescing of repeated "composing" (issue 12, hole 5); expiry of a
// composing without refresh is typing.go's.

import (
	"sync"
	"time"
)

// typingRefresh is how often a user's repeated "composing" to one
// conversation is passed on. Clients repeat it while the user types (and
// some on every key); receivers keep the indicator alive for several
// seconds after the last one, so one every 3 s keeps it shown while the
// rest are dropped.
const typingRefresh = 3 * time.Second

// typingGate coalesces repeated "composing": the first in a window is
// forwarded, the rest are not; a "paused" always is and ends the window,
// so the next "composing" is forwarded at once.
type typingGate struct {
	mu   sync.Mutex
	last map[typingKey]time.Time // when composing was last forwarded
}

// maxTypingEntries bounds the map between sweeps of expired entries.
const maxTypingEntries = 10_000

// forward reports whether state from user to conv is to be passed on now.
func (g *typingGate) forward(user, conv, state string, now time.Time) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	k := typingKey{user, conv}
	if state != "composing" {
		delete(g.last, k)
		return true
	}
	if at, ok := g.last[k]; ok && now.Sub(at) < typingRefresh {
		return false
	}
	if g.last == nil {
		g.last = make(map[typingKey]time.Time)
	}
	if len(g.last) >= maxTypingEntries {
		for k, at := range g.last {
			if now.Sub(at) >= typingRefresh {
				delete(g.last, k)
			}
		}
	}
	g.last[k] = now
	return true
}
