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
	// refused, when set, is told of every refusal (metrics).
	refused func()
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
	if l.refused != nil {
		l.refused()
	}
	e := Errorf(schema.CodeRateLimited, "rate limit exceeded: retry in %s", delay.Round(time.Millisecond))
	e.RetryAfterMS = delay.Milliseconds() + 1
	return e
}

// OnRefuse sets f to be called on every refusal; call it before use.
func (l *Limiter) OnRefuse(f func()) *Limiter {
	l.refused = f
	return l
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

// Frame kinds with a per-user rate limit of their own. Sends keep the
// contract's limit (Config.SendBurst, SendRate); the others cost a durable
// write (receipt, delete), a fan-out to other users (typing, presence) or
// an answer (ping), so a client that floods any of them is refused with
// 429 rate_limited instead of growing CONV or other users' traffic.
const (
	LimitReceipt  = "receipt"
	LimitTyping   = "typing"
	LimitDelete   = "delete"
	LimitPresence = "presence" // presence.subscribe and presence.unsubscribe
	LimitPing     = "ping"     // ping and frames that are refused as malformed
)

// limitDefault is a kind's default burst and rate per second. The rates
// leave room for any client that behaves: a receipt covers every earlier
// message of its conversation, so a device coming online sends about one
// per conversation; clients send typing at most every few seconds per
// conversation; heartbeats are the server's pings, not the client's.
type limitDefault struct {
	burst int
	rate  float64
}

var limitDefaults = map[string]limitDefault{
	LimitReceipt:  {burst: 200, rate: 50},
	LimitTyping:   {burst: 30, rate: 5},
	LimitDelete:   {burst: 50, rate: 5},
	LimitPresence: {burst: 20, rate: 2},
	LimitPing:     {burst: 30, rate: 5},
}

// Limits holds the per-user limiter of every frame kind but send.
type Limits struct {
	byKind map[string]*Limiter
}

// NewLimits builds the limiters with the defaults above; off allows
// everything (--rate-limit off).
func NewLimits(on bool) *Limits {
	l := &Limits{byKind: make(map[string]*Limiter, len(limitDefaults))}
	for kind, d := range limitDefaults {
		l.byKind[kind] = NewLimiter(on, d.rate, d.burst)
	}
	return l
}

// Allow takes a token of kind for userID, or returns 429 rate_limited with
// the wait. An unknown kind is a programming error and counts as ping.
func (l *Limits) Allow(kind, userID string) error {
	if l == nil {
		return nil
	}
	lim := l.byKind[kind]
	if lim == nil {
		lim = l.byKind[LimitPing]
	}
	return lim.Allow(userID)
}

// Run sweeps every limiter until ctx ends.
func (l *Limits) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, lim := range l.byKind {
		wg.Go(func() { _ = lim.Run(ctx) })
	}
	wg.Wait()
	return nil
}
