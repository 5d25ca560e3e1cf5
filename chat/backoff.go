package chat

import (
	"sync"
	"time"

	"github.com/natter-chat/natter/schema"
)

// LoginBackoff slows guessing against one account from any number of
// addresses: after Free failures a username waits 1 s, then 2 s, 4 s ...
// up to Max before its next attempt. It is not a lockout: the wait is
// bounded, and a success resets it.
type LoginBackoff struct {
	on      bool
	free    int
	max     time.Duration
	entries int // cap on tracked usernames, so that sprayed names cannot grow memory without bound

	mu       sync.Mutex
	failures map[string]*failure
}

type failure struct {
	count int
	until time.Time
	last  time.Time
}

// NewLoginBackoff: 5 free failures, capped at 5 min, 100,000 usernames.
func NewLoginBackoff(on bool) *LoginBackoff {
	return &LoginBackoff{on: on, free: 5, max: 5 * time.Minute, entries: 100_000, failures: map[string]*failure{}}
}

// Check returns a 429 while username must still wait.
func (b *LoginBackoff) Check(username string, now time.Time) error {
	if !b.on {
		return nil
	}
	b.mu.Lock()
	f := b.failures[username]
	var wait time.Duration
	if f != nil && now.Before(f.until) {
		wait = f.until.Sub(now)
	}
	b.mu.Unlock()
	if wait == 0 {
		return nil
	}
	e := Errorf(schema.CodeRateLimited, "too many failed logins for this account: retry in %s", wait.Round(time.Millisecond))
	e.RetryAfterMS = wait.Milliseconds() + 1
	return e
}

// Failed counts a failed login and reports how many in a row.
func (b *LoginBackoff) Failed(username string, now time.Time) int {
	if !b.on {
		return 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	f := b.failures[username]
	if f == nil {
		if len(b.failures) >= b.entries {
			b.expire(now)
		}
		f = &failure{}
		b.failures[username] = f
	}
	f.count++
	f.last = now
	if over := f.count - b.free; over > 0 {
		wait := b.max
		if over <= 20 {
			wait = min(time.Second<<(over-1), b.max)
		}
		f.until = now.Add(wait)
	}
	return f.count
}

// Succeeded resets username.
func (b *LoginBackoff) Succeeded(username string) {
	b.mu.Lock()
	delete(b.failures, username)
	b.mu.Unlock()
}

// expire drops entries idle past the longest wait, and if that is not
// enough, every entry still free (under the threshold): held under mu.
func (b *LoginBackoff) expire(now time.Time) {
	for k, f := range b.failures {
		if now.Sub(f.last) > b.max && now.After(f.until) {
			delete(b.failures, k)
		}
	}
	if len(b.failures) >= b.entries {
		for k, f := range b.failures {
			if f.count <= b.free {
				delete(b.failures, k)
			}
		}
	}
	if len(b.failures) >= b.entries {
		clear(b.failures)
	}
}
