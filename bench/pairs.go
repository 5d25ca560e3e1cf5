package bench

import (
	"context"
	"fmt"
	"time"
)

// runPairs is the pairs scenario: --pairs one-to-one pairs, each sender
// sending to its peer at --rate messages per second, open loop.
func runPairs(ctx context.Context, e *env) (*Report, error) {
	cfg := e.cfg
	r := e.newReport("pairs", map[string]any{
		"pairs":           cfg.Pairs,
		"rate_per_sender": cfg.Rate,
		"size":            cfg.Size,
		"warmup":          cfg.Warmup.String(),
	})
	accts, err := e.newAccounts(ctx, 2*cfg.Pairs)
	if err != nil {
		return nil, err
	}
	l := NewLedger(e.runID, e.errs)
	conns, err := e.connectAll(ctx, accts, func(a account) func(*inbound, time.Time) { return ledgerHandler(l, a.UserID) })
	if err != nil {
		return nil, err
	}
	defer closeAll(conns)

	p := planLoad(cfg.Pairs, cfg.Rate, cfg.Warmup, cfg.Duration)
	senders := make([]loadSender, cfg.Pairs)
	for i := range senders {
		from, to := accts[2*i], accts[2*i+1]
		senders[i] = loadSender{
			conn:        conns[2*i],
			flow:        l.AddFlow(from.UserID, []string{to.UserID}, p.Scheds[i], p.measureFrom(p.Scheds[i])),
			recipientID: to.UserID,
			messageType: "user",
		}
	}
	l.Seal()
	if err := e.runLoad(ctx, l, senders, p, r); err != nil {
		return nil, fmt.Errorf("run load: %w", err)
	}
	return r, nil
}
