package bench

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// churnBackoff is how long a churn client waits after a failed connect, so
// that a refusing server is not spun on.
const churnBackoff = 100 * time.Millisecond

// runChurn is the churn scenario: --conns clients, each connecting, waiting
// for synced and disconnecting in a loop for --duration (closed loop: the
// result is the rate the server sustains).
func runChurn(ctx context.Context, e *env) (*Report, error) {
	cfg := e.cfg
	n, na := cfg.Conns, accountsFor(cfg)
	r := e.newReport("churn", map[string]any{"clients": n, "accounts": na, "source_ips": cfg.SourceIPs})
	accts, err := e.newAccounts(ctx, na)
	if err != nil {
		return nil, err
	}
	toSynced := NewRecorder()
	var connects, disconnects, failed atomic.Int64
	server, self := e.watchServer(), e.watchSelf()
	stop := e.progress(ctx, func(elapsed time.Duration) string {
		c := connects.Load()
		return fmt.Sprintf("churn %3.0fs  connects %d (%.0f/s)  failed %d  p99 %s",
			elapsed.Seconds(), c, float64(c)/elapsed.Seconds(), failed.Load(), windowP99(toSynced))
	})
	start := time.Now()
	deadline := start.Add(cfg.Duration)
	var wg sync.WaitGroup
	for w := range n {
		wg.Go(func() {
			for time.Now().Before(deadline) && ctx.Err() == nil {
				t0 := time.Now()
				c, err := e.dial.Dial(ctx, accts[w%na].Token, "", e.noteErrorFrames)
				if err != nil {
					failed.Add(1)
					_ = realClock{}.SleepUntil(ctx, time.Now().Add(churnBackoff))
					continue
				}
				_, at, err := c.WaitSynced(ctx)
				if err != nil {
					c.Close()
					failed.Add(1)
					continue
				}
				toSynced.Record(at.Sub(t0))
				connects.Add(1)
				c.Close()
				disconnects.Add(1)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	stop()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r.Seconds = elapsed.Seconds()
	r.Server, r.Bench = server.stats(), self.stats()
	r.Connections = &Connections{
		Clients:           n,
		Opened:            connects.Load(),
		Failed:            failed.Load(),
		Closed:            disconnects.Load(),
		ConnectsPerSec:    perSec(connects.Load(), elapsed),
		DisconnectsPerSec: perSec(disconnects.Load(), elapsed),
	}
	r.Latency.ConnectToSynced = new(toSynced.Summary())
	r.Errors = e.errs.Snapshot()
	return r, nil
}
