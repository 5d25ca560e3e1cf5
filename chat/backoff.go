package chat

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/natter-chat/natter/schema"
)

// LoginGuard slows password guessing against one account without letting
// an attacker lock its owner out. Two limits, both in memory:
//
//   - per (account, client address): Free failures, then a wait of 1 s,
//     2 s, 4 s ... up to MaxWait before each next attempt from that
//     address; a success from it resets it. The address that floods pays,
//     no other one does.
//   - per account, across every address: a bucket of AccountBurst
//     failures refilled at AccountPerHour, for guessing spread over many
//     addresses. It does not apply to the last KnownAddrs addresses the
//     account logged in from, so the owner still logs in from home while
//     a botnet has used up the account's guesses.
//
// Unknown usernames are counted like real ones, so a 429 does not tell
// whether an account exists. Every map is capped at MaxEntries and idle
// entries expire (Run), so sprayed usernames cannot grow memory without
// bound. The zero wait of a refused attempt is never a lockout: the
// per-address wait is capped and the bucket refills.
type LoginGuard struct {
	cfg LoginGuardConfig
	log *slog.Logger

	mu       sync.Mutex
	pairs    map[string]*pairFailures // username "\x00" address
	accounts map[string]*accountBucket
	known    map[string][]knownAddr // username: newest last
}

// LoginGuardConfig tunes a LoginGuard; each zero field takes the default
// written beside it.
type LoginGuardConfig struct {
	// On turns the guard on (--rate-limit).
	On bool
	// Free failed logins per account and address before the back-off: 5.
	Free int
	// MaxWait caps the per-address back-off: 5 min.
	MaxWait time.Duration
	// AccountBurst and AccountPerHour: the per-account ceiling over
	// addresses the account never logged in from: 100, then 100 an hour.
	AccountBurst   int
	AccountPerHour float64
	// KnownAddrs is how many recent login addresses are remembered per
	// account: 8, for 30 days (KnownFor).
	KnownAddrs int
	KnownFor   time.Duration
	// MaxEntries caps each table (pairs, accounts, known addresses): 100,000.
	MaxEntries int
}

func (c LoginGuardConfig) withDefaults() LoginGuardConfig {
	if c.Free == 0 {
		c.Free = 5
	}
	if c.MaxWait == 0 {
		c.MaxWait = 5 * time.Minute
	}
	if c.AccountBurst == 0 {
		c.AccountBurst = 100
	}
	if c.AccountPerHour == 0 {
		c.AccountPerHour = 100
	}
	if c.KnownAddrs == 0 {
		c.KnownAddrs = 8
	}
	if c.KnownFor == 0 {
		c.KnownFor = 30 * 24 * time.Hour
	}
	if c.MaxEntries == 0 {
		c.MaxEntries = 100_000
	}
	return c
}

type pairFailures struct {
	count int
	until time.Time // no attempt from this address before
	last  time.Time
}

type accountBucket struct {
	tokens float64
	at     time.Time
}

type knownAddr struct {
	addr string
	at   time.Time
}

// NewLoginGuard returns a guard; log defaults to slog.Default().
func NewLoginGuard(cfg LoginGuardConfig, log *slog.Logger) *LoginGuard {
	if log == nil {
		log = slog.Default()
	}
	return &LoginGuard{cfg: cfg.withDefaults(), log: log,
		pairs: map[string]*pairFailures{}, accounts: map[string]*accountBucket{}, known: map[string][]knownAddr{}}
}

// tracked: a username that cannot be registered cannot be guessed, and
// must not make a key of up to a request body's size.
func tracked(username string) bool { return len(username) <= 32 }

// Begin counts a login attempt before its password is checked, as a
// failure until Succeeded or Undo says otherwise: concurrent guesses
// cannot all pass before the first one is counted. It refuses with 429
// rate_limited (and when to retry) while the address must wait or the
// account's ceiling is used up for this address.
func (g *LoginGuard) Begin(username, addr string, now time.Time) error {
	if !g.cfg.On || !tracked(username) {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	pk := username + "\x00" + addr
	p := g.pairs[pk]
	if p != nil && now.Before(p.until) {
		return retryIn(p.until.Sub(now), "too many failed logins for this account from this address")
	}
	known := g.isKnown(username, addr, now)
	var b *accountBucket
	if !known {
		b = g.accounts[username]
		if b == nil {
			b = &accountBucket{tokens: float64(g.cfg.AccountBurst), at: now}
		}
		b.refill(now, g.cfg)
		if b.tokens < 1 {
			wait := time.Duration((1 - b.tokens) / g.perSecond() * float64(time.Second))
			return retryIn(wait, "too many failed logins for this account: log in from an address you used before, or retry later")
		}
	}
	if p == nil {
		makeRoom(g, g.pairs, func(p *pairFailures) bool { return now.After(p.until) })
		p = &pairFailures{}
		g.pairs[pk] = p
	}
	p.count++
	p.last = now
	if over := p.count - g.cfg.Free; over > 0 {
		wait := g.cfg.MaxWait
		if over <= 20 {
			wait = min(time.Second<<(over-1), g.cfg.MaxWait)
		}
		p.until = now.Add(wait)
		if over == 1 {
			g.log.Warn("login back-off: repeated failed logins", "username", username, "addr", addr, "failures", p.count)
		}
	}
	if b != nil {
		if g.accounts[username] == nil {
			makeRoom(g, g.accounts, func(b *accountBucket) bool { return b.tokens >= 1 })
			g.accounts[username] = b
		}
		b.tokens--
		if b.tokens < 1 {
			g.log.Warn("login back-off: account's failed-login ceiling reached, only known addresses may log in",
				"username", username, "addr", addr)
		}
	}
	return nil
}

// Succeeded: the attempt begun from addr was right. The address's
// failures are forgotten, its token given back, and it is remembered as
// one the account logs in from.
func (g *LoginGuard) Succeeded(username, addr string, now time.Time) {
	if !g.cfg.On || !tracked(username) {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	wasKnown := g.isKnown(username, addr, now)
	delete(g.pairs, username+"\x00"+addr)
	if b := g.accounts[username]; b != nil && !wasKnown {
		b.tokens = min(b.tokens+1, float64(g.cfg.AccountBurst))
	}
	ks := slices.DeleteFunc(g.known[username], func(k knownAddr) bool { return k.addr == addr })
	if ks == nil {
		makeRoom(g, g.known, func([]knownAddr) bool { return true })
	}
	ks = append(ks, knownAddr{addr, now})
	if len(ks) > g.cfg.KnownAddrs {
		ks = slices.Delete(ks, 0, len(ks)-g.cfg.KnownAddrs)
	}
	g.known[username] = ks
}

// Undo: the attempt begun was neither right nor wrong (the store failed
// before answering): it is not counted.
func (g *LoginGuard) Undo(username, addr string, now time.Time) {
	if !g.cfg.On || !tracked(username) {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if p := g.pairs[username+"\x00"+addr]; p != nil && p.count > 0 {
		p.count--
		if p.count <= g.cfg.Free {
			p.until = time.Time{}
		}
	}
	if b := g.accounts[username]; b != nil && !g.isKnown(username, addr, now) {
		b.tokens = min(b.tokens+1, float64(g.cfg.AccountBurst))
	}
}

// isKnown reports whether username logged in from addr within KnownFor;
// mu held.
func (g *LoginGuard) isKnown(username, addr string, now time.Time) bool {
	for _, k := range g.known[username] {
		if k.addr == addr && now.Sub(k.at) < g.cfg.KnownFor {
			return true
		}
	}
	return false
}

func (g *LoginGuard) perSecond() float64 { return g.cfg.AccountPerHour / 3600 }

func (b *accountBucket) refill(now time.Time, cfg LoginGuardConfig) {
	if now.After(b.at) {
		b.tokens = min(b.tokens+now.Sub(b.at).Seconds()*cfg.AccountPerHour/3600, float64(cfg.AccountBurst))
		b.at = now
	}
}

// makeRoom keeps m under MaxEntries before an insert: when full, it drops
// a tenth of the entries, those cheap to forget (cheap says which) first,
// so a spray of new keys costs amortised O(1) per key. mu held.
func makeRoom[V any](g *LoginGuard, m map[string]V, cheap func(V) bool) {
	if len(m) < g.cfg.MaxEntries {
		return
	}
	target := g.cfg.MaxEntries - max(g.cfg.MaxEntries/10, 1)
	for k, v := range m {
		if len(m) <= target {
			return
		}
		if cheap(v) {
			delete(m, k)
		}
	}
	for k := range m { // map order is random: no key is safe to aim at
		if len(m) <= target {
			return
		}
		delete(m, k)
	}
}

// Len is the number of entries held, for tests of the memory bound.
func (g *LoginGuard) Len() (pairs, accounts, known int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.pairs), len(g.accounts), len(g.known)
}

// Run expires idle entries every minute until ctx ends: an address idle
// for an hour past its wait starts afresh, a refilled bucket is the same
// as none, a known address is kept for KnownFor.
func (g *LoginGuard) Run(ctx context.Context) error {
	if !g.cfg.On {
		return nil
	}
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-t.C:
			g.expire(now)
		}
	}
}

func (g *LoginGuard) expire(now time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for k, p := range g.pairs {
		if now.After(p.until) && now.Sub(p.last) > time.Hour {
			delete(g.pairs, k)
		}
	}
	for k, b := range g.accounts {
		if b.refill(now, g.cfg); b.tokens >= float64(g.cfg.AccountBurst) {
			delete(g.accounts, k)
		}
	}
	for k, ks := range g.known {
		ks = slices.DeleteFunc(ks, func(a knownAddr) bool { return now.Sub(a.at) >= g.cfg.KnownFor })
		if len(ks) == 0 {
			delete(g.known, k)
		} else {
			g.known[k] = ks
		}
	}
}

func retryIn(wait time.Duration, why string) error {
	wait = max(wait, time.Millisecond)
	e := Errorf(schema.CodeRateLimited, "%s: retry in %s", why, wait.Round(time.Millisecond))
	e.RetryAfterMS = wait.Milliseconds() + 1
	return e
}
