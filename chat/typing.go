package chat

import (
	"context"
	"sync"
	"time"
)

// typingExpiry ends a `composing` that is not refreshed: after ttl
// without another composing from the same user in the same conversation,
// the other participants get `paused`, so a client that crashed or lost
// its connection mid-sentence does not leave "typing..." on screen. It
// runs on the sender's node; a paused (explicit or expired) stops it.
type typingExpiry struct {
	ttl  time.Duration
	fire func(ctx context.Context, user, conv string)

	mu      sync.Mutex
	timers  map[typingKey]*time.Timer
	ctx     context.Context
	cancel  context.CancelFunc
	stopped bool
}

type typingKey struct{ user, conv string }

func newTypingExpiry(ttl time.Duration, fire func(ctx context.Context, user, conv string)) *typingExpiry {
	t := &typingExpiry{ttl: ttl, fire: fire, timers: map[typingKey]*time.Timer{}}
	t.ctx, t.cancel = context.WithCancel(context.Background())
	return t
}

// note records a typing state that was just published.
func (t *typingExpiry) note(user, conv, state string) {
	k := typingKey{user, conv}
	t.mu.Lock()
	defer t.mu.Unlock()
	if old := t.timers[k]; old != nil {
		old.Stop()
		delete(t.timers, k)
	}
	if state != "composing" || t.stopped {
		return
	}
	var timer *time.Timer
	timer = time.AfterFunc(t.ttl, func() {
		t.mu.Lock()
		mine := t.timers[k] == timer
		if mine {
			delete(t.timers, k)
		}
		t.mu.Unlock()
		if mine {
			t.fire(t.ctx, user, conv)
		}
	})
	t.timers[k] = timer
}

// Run stops every timer when ctx ends.
func (t *typingExpiry) Run(ctx context.Context) error {
	<-ctx.Done()
	t.mu.Lock()
	t.stopped = true
	for k, timer := range t.timers {
		timer.Stop()
		delete(t.timers, k)
	}
	t.mu.Unlock()
	t.cancel()
	return nil
}

// expireTyping tells the participants that user stopped composing.
func (p *Presence) expireTyping(ctx context.Context, user, conv string) {
	_ = p.Typing(ctx, user, conv, "paused")
}
