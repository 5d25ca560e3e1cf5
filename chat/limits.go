package chat

import (
	"context"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/natter-chat/natter/schema"
)

// Limiter holds one token bucket per key (a user, a client address).
type Limiter struct {
	on    bool
	rate  rate.Limit
	burst int

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	lim  *rate.Limiter
	used time.Time
}

// NewLimiter allows burst calls per key at once, then perSecond; off
// allows everything.
func NewLimiter(on bool, perSecond float64, burst int) *Limiter {
	return &Limiter{on: on, rate: rate.Limit(perSecond), burst: burst, buckets: map[string]*bucket{}}
}

// Allow takes a token for key or returns a 429 saying when to retry.
func (l *Limiter) Allow(key string) error {
	if !l.on {
		return nil
	}
	now := time.Now()
	l.mu.Lock()
	b := l.buckets[key]
	if b == nil {
		b = &bucket{lim: rate.NewLimiter(l.rate, l.burst)}
		l.buckets[key] = b
	}
	b.used = now
	r := b.lim.ReserveN(now, 1)
	l.mu.Unlock()
	delay := r.DelayFrom(now)
	if delay == 0 {
		return nil
	}
	r.CancelAt(now)
	e := Errorf(schema.CodeRateLimited, "rate limit exceeded: retry in %s", delay.Round(time.Millisecond))
	e.RetryAfterMS = delay.Milliseconds() + 1
	return e
}

// Run forgets buckets that have refilled, so the map stays as large as
// the set of recently active keys, until ctx ends.
func (l *Limiter) Run(ctx context.Context) error {
	full := time.Duration(float64(l.burst)/float64(l.rate)*float64(time.Second)) + time.Minute
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-t.C:
			l.mu.Lock()
			for k, b := range l.buckets {
				if now.Sub(b.used) > full {
					delete(l.buckets, k)
				}
			}
			l.mu.Unlock()
		}
	}
}
