package chat

import (
	"sync"
	"time"
)

// CloseReason tells a transport why chat ends a session; each transport
// maps it to its own signal (gateway: a WebSocket close code).
type CloseReason int

const (
	// CloseRevoked: the device was revoked (do not reconnect with it).
	CloseRevoked CloseReason = iota + 1
	// CloseShutdown: the node is going away (reconnect, elsewhere).
	CloseShutdown
)

// Session is one open connection of one device, whatever its transport.
type Session interface {
	UserID() string
	DeviceID() string
	// Close ends the session; safe to call more than once, from anywhere.
	Close(CloseReason)
}

// Sessions is the registry of this node's open sessions: it cuts off a
// revoked device, closes everything at shutdown and knows who is online
// here.
type Sessions struct {
	mu       sync.Mutex
	sessions map[Session]struct{}
	online   map[string]int   // user id -> open sessions on this node
	lastSeen map[string]int64 // user id -> when their last session closed
	closed   bool
	// onChange is called, with mu held, when a user's first session here
	// opens or their last one closes; it must not block (the presence
	// registry only marks the user).
	onChange func(userID string)
}

func newSessions() *Sessions {
	return &Sessions{sessions: map[Session]struct{}{}, online: map[string]int{}, lastSeen: map[string]int64{}}
}

// Add registers s; false once Shutdown was called.
func (r *Sessions) Add(s Session) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	r.sessions[s] = struct{}{}
	if r.online[s.UserID()]++; r.online[s.UserID()] == 1 && r.onChange != nil {
		r.onChange(s.UserID())
	}
	return true
}

// Remove forgets s; the user shows offline once their last session is
// removed.
func (r *Sessions) Remove(s Session) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.sessions[s]; !ok {
		return
	}
	delete(r.sessions, s)
	u := s.UserID()
	if r.online[u]--; r.online[u] <= 0 {
		delete(r.online, u)
		r.lastSeen[u] = time.Now().UnixMilli()
		if r.onChange != nil {
			r.onChange(u)
		}
	}
}

// CloseDevice cuts off every session of a revoked device.
func (r *Sessions) CloseDevice(deviceID string) {
	r.mu.Lock()
	var victims []Session
	for s := range r.sessions {
		if s.DeviceID() == deviceID {
			victims = append(victims, s)
		}
	}
	r.mu.Unlock()
	for _, s := range victims {
		s.Close(CloseRevoked)
	}
}

// Shutdown refuses new sessions, closes every open one and returns them
// (so the caller can wait for them). Safe to call twice.
func (r *Sessions) Shutdown() []Session {
	r.mu.Lock()
	r.closed = true
	all := make([]Session, 0, len(r.sessions))
	for s := range r.sessions {
		all = append(all, s)
	}
	r.mu.Unlock()
	for _, s := range all {
		s.Close(CloseShutdown)
	}
	return all
}

// status is what this node knows of a user: online, or when they were
// last seen (0: not since this process started).
func (r *Sessions) status(userID string) (online bool, lastSeen int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.online[userID] > 0, r.lastSeen[userID]
}

// onlineUsers lists the users with a session on this node.
func (r *Sessions) onlineUsers() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.online))
	for u := range r.online {
		out = append(out, u)
	}
	return out
}
