package bench

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"
)

// defaultHeartbeat is the client ping interval when synced names none.
const defaultHeartbeat = 25 * time.Second

// runIdle is the idle scenario: --conns connections that only keep
// themselves alive, held for --duration; it reports the server's RSS per
// connection (averaged over all of them, and marginal from half of them to
// all) and its CPU at idle.
func runIdle(ctx context.Context, e *env) (*Report, error) {
	cfg := e.cfg
	n, na := cfg.Conns, accountsFor(cfg)
	r := e.newReport("idle", map[string]any{"conns": n, "accounts": na, "source_ips": cfg.SourceIPs})
	extra := 0
	if cfg.Presence {
		extra = 1 // the watchers' account
	}
	all, err := e.newAccounts(ctx, na+extra)
	if err != nil {
		return nil, err
	}
	accts := all[:na]
	var pw *presenceWatch
	if cfg.Presence {
		if pw, err = e.watchPresence(ctx, all[na], accts); err != nil {
			return nil, err
		}
		defer pw.close()
	}
	server := e.watchServer()
	before, haveBefore := server.settle(ctx, 10*time.Second)

	var pongs, opened, failed atomic.Int64
	var heartbeatMS atomic.Int64
	handler := func(f *inbound, _ time.Time) {
		switch f.Type {
		case "pong":
			pongs.Add(1)
		case "error":
			e.errs.Note(f.Code, f.Message)
		}
	}
	conns := make([]*Conn, n)
	defer closeAll(conns)
	stop := e.progress(ctx, func(elapsed time.Duration) string {
		o := opened.Load()
		return fmt.Sprintf("idle connecting %d/%d  failed %d  %.0f/s", o, n, failed.Load(), float64(o)/elapsed.Seconds())
	})
	connect := func(ctx context.Context, i int) error {
		c, err := e.dial.Dial(ctx, accts[i%na].Token, "", handler)
		if err != nil {
			failed.Add(1)
			return ctx.Err() // a refused connection is counted, not fatal
		}
		sy, _, err := c.WaitSynced(ctx)
		if err != nil {
			c.Close()
			failed.Add(1)
			return ctx.Err()
		}
		heartbeatMS.Store(sy.HeartbeatMS)
		conns[i] = c
		opened.Add(1)
		return nil
	}
	samples, err := openInHalves(ctx, conns, cfg.Concurrency, server, connect)
	stop()
	if err != nil {
		return nil, err
	}
	if opened.Load() == 0 {
		return nil, fmt.Errorf("%w (errors: %v)", errNoConnection, e.errs.Snapshot())
	}
	var live []*Conn
	for _, c := range conns {
		if c != nil {
			live = append(live, c)
		}
	}

	// Hold: every connection pings once per heartbeat, the pings of all
	// of them spread evenly over the interval.
	hb := time.Duration(heartbeatMS.Load()) * time.Millisecond
	if hb <= 0 {
		hb = defaultHeartbeat
	}
	var kv *presenceWrites
	var kvBefore uint64
	if cfg.Presence && e.target.natsURL != "" {
		if kv, err = openPresenceWrites(ctx, e.target.natsURL); err != nil {
			e.log.Warn("no presence KV writes", "err", err)
		} else {
			defer kv.close()
			kvBefore, _ = kv.count(ctx)
		}
	}
	server.restart()
	self := e.watchSelf()
	var pings atomic.Int64
	dropped := func() (d int64) {
		for _, c := range live {
			select {
			case <-c.Done():
				d++
			default:
			}
		}
		return d
	}
	prev, _ := server.now()
	stop = e.progress(ctx, func(elapsed time.Duration) string {
		return fmt.Sprintf("idle %3.0fs  conns %d  dropped %d  pings %d  pongs %d", elapsed.Seconds(), len(live), dropped(), pings.Load(), pongs.Load()) +
			serverProgress(server, &prev)
	})
	start := time.Now()
	sched := NewSchedule(start.Add(hb/time.Duration(2*len(live))), float64(len(live))/hb.Seconds(), cfg.Duration)
	err = sched.Run(ctx, realClock{}, func(_ context.Context, i int, _ time.Time) error {
		if live[i%len(live)].TrySend(pingFrame) {
			pings.Add(1)
		}
		return nil
	})
	if err == nil {
		err = realClock{}.SleepUntil(ctx, start.Add(cfg.Duration))
	}
	stop()
	if err != nil {
		return nil, err
	}
	r.Seconds = time.Since(start).Seconds()
	r.Server, r.Bench = server.stats(), self.stats()
	var kvRate *float64
	if kv != nil {
		if after, err := kv.count(ctx); err == nil {
			rate := float64(after-kvBefore) / r.Seconds
			kvRate = &rate
		}
	}
	heldDropped, heldOpened, heldFailed := dropped(), opened.Load(), failed.Load()
	var onlineIn, offlineIn, closing, dialing time.Duration
	if pw != nil {
		// Presence under churn: every connection closes, then all open
		// again; how long from the first close (dial) until the watchers
		// saw the last account go offline (online), and how long the
		// closing (dialing) itself took.
		closeStart := time.Now()
		closeAll(conns)
		closing = time.Since(closeStart)
		if err := pw.wait(ctx, time.Minute, func() bool { return pw.online == 0 }); err != nil {
			e.log.Warn("not every account showed offline", "online", pw.onlineCount(), "err", err)
		}
		offlineIn = pw.lastChange().Sub(closeStart)
		again := make([]*Conn, n)
		defer closeAll(again)
		conns = again
		connectStart := time.Now()
		_ = forEach(ctx, n, cfg.Concurrency, connect)
		dialing = time.Since(connectStart)
		if err := pw.wait(ctx, time.Minute, func() bool { return pw.online == len(accts) }); err != nil {
			e.log.Warn("not every account showed online", "online", pw.onlineCount(), "accounts", len(accts), "err", err)
		}
		onlineIn = pw.lastChange().Sub(connectStart)
	}
	r.Connections = &Connections{
		Requested: n,
		Opened:    heldOpened,
		Failed:    heldFailed,
		Dropped:   heldDropped,
		Pings:     pings.Load(),
		Pongs:     pongs.Load(),

		PresenceOnlineSeconds:  onlineIn.Seconds(),
		PresenceOfflineSeconds: offlineIn.Seconds(),
		PresenceClosingSeconds: closing.Seconds(),
		PresenceDialingSeconds: dialing.Seconds(),
		PresenceKVWritesPerSec: kvRate,
	}
	if r.Server != nil && haveBefore {
		r.Connections.ServerRSSBefore = before.RSS
		if grown := r.Server.RSSBytes - before.RSS; grown > 0 {
			r.Connections.ServerRSSPerConn = float64(grown) / float64(len(live))
		}
	}
	if len(samples) == 2 {
		e.setMarginalRSS(r.Connections, samples[0], samples[1])
	}
	if pw != nil {
		r.Connections.PresenceUsers = len(accts)
	}
	r.Errors = e.errs.Snapshot()
	return r, nil
}

// openInHalves calls connect for every index of conns, workers at a time:
// first for half of them, then for the rest, each half followed by a
// settled sample of the server's RSS. The difference of the two samples is
// what the second half cost, free of what the server held before the
// first connection. It returns no samples when the server's pid is
// unknown, or there are too few connections for two halves.
func openInHalves(ctx context.Context, conns []*Conn, workers int, server *procWatch, connect func(context.Context, int) error) ([]rssAt, error) {
	half := len(conns) / 2
	if err := forEach(ctx, half, workers, connect); err != nil {
		return nil, err
	}
	var samples []rssAt
	if half > 0 {
		if s, ok := settledRSS(ctx, server, conns[:half]); ok {
			samples = append(samples, s)
		}
	}
	rest := func(ctx context.Context, j int) error { return connect(ctx, half+j) }
	if err := forEach(ctx, len(conns)-half, workers, rest); err != nil {
		return nil, err
	}
	if len(samples) == 1 {
		if s, ok := settledRSS(ctx, server, conns); ok {
			return append(samples, s), nil
		}
	}
	return nil, nil
}

// rssAt is the server's RSS while it held conns connections.
type rssAt struct {
	conns int64
	rss   int64
}

// settledRSS samples the server's RSS once it holds still, with the
// connections of conns that are open at that moment.
func settledRSS(ctx context.Context, server *procWatch, conns []*Conn) (rssAt, bool) {
	s, ok := server.settle(ctx, 10*time.Second)
	if !ok {
		return rssAt{}, false
	}
	return rssAt{conns: countOpen(conns), rss: s.RSS}, true
}

// countOpen counts the connections of conns that were opened and have not
// ended.
func countOpen(conns []*Conn) (n int64) {
	for _, c := range conns {
		if c == nil {
			continue
		}
		select {
		case <-c.Done():
		default:
			n++
		}
	}
	return n
}

// marginalRSS is the server's RSS growth per connection from a to b. It is
// only meaningful when b holds more connections and more memory: a shrink
// means the server returned memory between the samples (the GC, the
// hashing garbage), which no per-connection cost explains.
func marginalRSS(a, b rssAt) (float64, bool) {
	added, grown := b.conns-a.conns, b.rss-a.rss
	if added <= 0 || grown <= 0 {
		return 0, false
	}
	return float64(grown) / float64(added), true
}

// setMarginalRSS puts the marginal RSS per connection from a to b into c,
// or logs why there is none.
func (e *env) setMarginalRSS(c *Connections, a, b rssAt) {
	per, ok := marginalRSS(a, b)
	if !ok {
		e.log.Warn("no marginal RSS per connection: RSS or connections did not grow between the samples",
			"conns_from", a.conns, "rss_from", a.rss, "conns_to", b.conns, "rss_to", b.rss)
		return
	}
	c.ServerRSSMarginalPerConn, c.MarginalFrom, c.MarginalTo = per, a.conns, b.conns
}

// accountsFor is how many accounts the connections of idle and churn share.
func accountsFor(cfg Config) int {
	if cfg.Accounts == 0 || cfg.Accounts > cfg.Conns {
		return cfg.Conns
	}
	return cfg.Accounts
}

var errNoConnection = errors.New("no connection opened")
