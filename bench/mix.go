package bench

import (
	"context"
	"fmt"
	"time"
)

// runMix is the mix scenario: --pairs 1:1 pairs, each sender at --rate,
// and --groups groups of --members members, one sender each at
// --group-rate, all at once over the same server. It reports delivery
// latency overall and of 1:1 and group messages apart: the design
// document's mix (70 % 1:1, 30 % groups of 20: --pairs 70 --groups 30
// --members 20) and 1:1 latency while large groups send.
func runMix(ctx context.Context, e *env) (*Report, error) {
	cfg := e.cfg
	grate := cfg.GroupRate
	if grate == 0 {
		grate = cfg.Rate
	}
	r := e.newReport("mix", map[string]any{
		"pairs":           cfg.Pairs,
		"rate_per_sender": cfg.Rate,
		"groups":          cfg.Groups,
		"members":         cfg.Members,
		"rate_per_group":  grate,
		"size":            cfg.Size,
		"warmup":          cfg.Warmup.String(),
		"server_args":     cfg.ServerArgs,
	})
	accts, err := e.newAccounts(ctx, 2*cfg.Pairs+cfg.Groups*cfg.Members)
	if err != nil {
		return nil, err
	}
	groupAccts := accts[2*cfg.Pairs:]
	groups := make([]string, cfg.Groups)
	for g := range groups {
		if groups[g], err = e.api.createGroup(ctx, groupAccts[g*cfg.Members:(g+1)*cfg.Members]); err != nil {
			return nil, err
		}
	}
	l := NewLedger(e.runID, e.errs)
	conns, err := e.connectAll(ctx, accts, func(a account) func(*inbound, time.Time) { return ledgerHandler(l, a.UserID) })
	if err != nil {
		return nil, err
	}
	defer closeAll(conns)

	// One plan for both kinds: the same start, warm-up and end.
	p := planLoad(0, 1, cfg.Warmup, cfg.Duration)
	pairs := planLoad(cfg.Pairs, cfg.Rate, cfg.Warmup, cfg.Duration)
	grps := planLoad(cfg.Groups, grate, cfg.Warmup, cfg.Duration)
	direct, group := NewRecorder(), NewRecorder()
	var senders []loadSender
	for i := range cfg.Pairs {
		from, to := accts[2*i], accts[2*i+1]
		sched := pairs.Scheds[i]
		sched.Start = sched.Start.Add(p.Start.Sub(pairs.Start))
		f := l.AddFlow(from.UserID, []string{to.UserID}, sched, p.measureFrom(sched))
		f.RecordAlso(direct)
		senders = append(senders, loadSender{conn: conns[2*i], flow: f, recipientID: to.UserID, messageType: "user"})
	}
	for g := range cfg.Groups {
		members := groupAccts[g*cfg.Members : (g+1)*cfg.Members]
		var recipients []string
		for _, m := range members[1:] {
			recipients = append(recipients, m.UserID)
		}
		sched := grps.Scheds[g]
		sched.Start = sched.Start.Add(p.Start.Sub(grps.Start))
		f := l.AddFlow(members[0].UserID, recipients, sched, p.measureFrom(sched))
		f.RecordAlso(group)
		senders = append(senders, loadSender{conn: conns[2*cfg.Pairs+g*cfg.Members], flow: f, recipientID: groups[g], messageType: "group"})
	}
	l.Seal()
	if err := e.runLoad(ctx, l, senders, p, r); err != nil {
		return nil, fmt.Errorf("run load: %w", err)
	}
	if cfg.Pairs > 0 {
		r.Latency.DirectDelivery = new(direct.Summary())
	}
	if cfg.Groups > 0 {
		r.Latency.GroupDelivery = new(group.Summary())
	}
	return r, nil
}
