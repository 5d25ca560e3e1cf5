package gateway

import (
	"sync"

	"github.com/natter-chat/natter/chat"
	"github.com/natter-chat/natter/schema"
)

// userCap caps one kind of long-lived connection (WebSockets, waiting
// long-polls) per user, so that one account cannot hold the descriptors
// the server keeps for everyone: the per-address cap does not see a user
// who connects from many addresses.
type userCap struct {
	what string // "WebSockets", "long-polls"
	max  int    // 0: no cap

	mu   sync.Mutex
	open map[string]int // only users with at least one open
}

func newUserCap(what string, max int) *userCap {
	return &userCap{what: what, max: max, open: map[string]int{}}
}

// capRetryMS is the Retry-After of a refusal: a slot frees when one of the
// user's connections ends, which the server cannot foresee; 5 s keeps a
// reconnect loop cheap.
const capRetryMS = 5000

// acquire takes one of user's slots, or answers 429 rate_limited. The
// release it returns gives the slot back; it is safe to call twice.
func (c *userCap) acquire(user string) (release func(), err error) {
	if c.max <= 0 {
		return func() {}, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.open[user] >= c.max {
		e := chat.Errorf(schema.CodeRateLimited, "at most %d %s per user are open at once: close one, then retry", c.max, c.what)
		e.RetryAfterMS = capRetryMS
		return nil, e
	}
	c.open[user]++
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			if c.open[user]--; c.open[user] <= 0 {
				delete(c.open, user)
			}
		})
	}, nil
}

// count is how many of user's connections are open (tests).
func (c *userCap) count(user string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.open[user]
}
